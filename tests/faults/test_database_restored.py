"""Fault 5: the database is restored from a backup while Temporal keeps its runs.

Sign-ups made after the backup are gone from the database, but their registration workflows still run,
under references the restored counter hands out again. Registration must keep working: new sign-ups
answer 201, get their email and activate; a link of a lost sign-up is refused, never a 500.
"""

from __future__ import annotations

import pytest

from starter.client import registration_id

from . import flows
from .conftest import HarnessFactory

pytestmark = pytest.mark.faults


async def test_registration_keeps_working_after_the_database_is_restored_from_a_backup(
    harness: HarnessFactory,
) -> None:
    async with harness(api_through_proxy=True) as h, h.http() as http:
        known_email, known_ref = await flows.active(h, http)
        await h.quiescent(known_ref)
        async with h.backup() as restore:
            lost = [await flows.registered(h, http) for _ in range(2)]  # still waiting for their links
            for _, reference, _ in lost:
                await h.quiescent(reference)
            await restore()

            problems = []
            new_refs = []
            for _ in range(3):  # the first two collide with the lost sign-ups' references
                email, created = await flows.sign_up(http)
                if created.status_code != 201:
                    problems.append(f"POST /customers: {created.status_code} {created.text[:200]}")
                    continue
                reference = created.json()["data"]["id"]
                new_refs.append(reference)
                token = flows.token_from(await h.mail_to(email, "please confirm"))
                assert (await flows.confirm(http, token)).status_code == 204
                await h.mail_to(email, "active")
                assert (await h.result(registration_id(reference)))["outcome"] == "verified"
            for _, reference, token in lost:
                answer = await flows.confirm(http, token)
                if answer.status_code not in (422, 404):
                    problems.append(f"a lost sign-up's link ({reference}): {answer.status_code} {answer.text[:200]}")
            assert (await flows.sign_in(http, known_email)).status_code == 201  # what the backup held still works
            h.log(f"after the restore: new references {new_refs}, lost {[ref for _, ref, _ in lost]}")
            problems += await h.delivery_problems(new_refs)
    assert not problems, "\n".join(problems)
