"""Fault 2: the SMTP server is down while registrations, password resets and lock notices are due.

The sink is stopped and later started again on the same port. The issue asks for a minute; 25 s keep
the suite within its budget and show the same thing: by then each send has failed four or five times and
waits for a retry that is as far away as the outage was long (exponential backoff, capped at 5 minutes),
so every email must arrive once, within about one outage length after the server is back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from starter.client import registration_id
from starter.passwords import reset_id
from workflows.lockout import lockout_workflow_id

from . import flows
from .conftest import HarnessFactory

pytestmark = pytest.mark.faults
DOWN_FOR = 25.0
SOON = DOWN_FOR + 15  # the next retry is at most about one outage length away


async def test_emails_due_while_smtp_is_down_arrive_once_soon_after_it_returns(harness: HarnessFactory) -> None:
    async with harness(database="sqlite") as h, h.http() as http:
        resetting = await asyncio.gather(*(flows.active(h, http) for _ in range(2)))
        locking = await asyncio.gather(*(flows.active(h, http) for _ in range(2)))
        for _, reference in [*resetting, *locking]:
            await h.quiescent(reference)

        await h.stop_sink()
        stopped = time.monotonic()
        signups = await asyncio.gather(*(flows.sign_up(http) for _ in range(3)))
        for _, created in signups:
            assert created.status_code == 201, created.text  # the answer never waits for an email
        for email, _ in resetting:
            assert (await flows.forgot_password(http, email)).status_code == 204
        for email, _ in locking:
            await flows.fail_sign_ins(http, email, h.settings.lockout_max_failures)
        await asyncio.sleep(max(0.0, DOWN_FOR - (time.monotonic() - stopped)))
        await h.start_sink()
        back = time.monotonic()

        due = [(email, "please confirm") for email, _ in signups]
        due += [(email, "reset the password") for email, _ in resetting]
        due += [(email, "paused") for email, _ in locking]
        arrived = await asyncio.gather(*(h.mail_to(email, subject, timeout=SOON) for email, subject in due))
        h.log(f"every due email arrived {time.monotonic() - back:.1f} s after the SMTP server returned")

        # the lifecycles go on: sign-ups confirm, resets complete, locks lift
        registered = [created.json()["data"]["id"] for _, created in signups]
        for message in arrived[: len(signups)]:
            assert (await flows.confirm(http, flows.token_from(message))).status_code == 204
        for message in arrived[len(signups) : len(signups) + len(resetting)]:
            assert (await flows.restore_password(http, flows.token_from(message))).status_code == 204
        for email, _ in signups:
            await h.mail_to(email, "active")
        for email, _ in resetting:
            await h.mail_to(email, "password of your")

        results: dict[str, object] = {
            registration_id(ref): {"customer_reference": ref, "outcome": "verified"} for ref in registered
        }
        results |= {reset_id(ref): "password_set" for _, ref in resetting}
        results |= {lockout_workflow_id(ref): {"subject": f"customer:{ref}", "locks": 1} for _, ref in locking}
        for workflow_id, expected in results.items():
            assert await h.result(workflow_id) == expected, workflow_id

        references = registered + [ref for _, ref in [*resetting, *locking]]
        assert await h.delivery_problems(references) == []
        counts = await h.audit_counts(references)
        assert [key for key, n in counts.items() if n != 1] == []
        assert {event for (_, event) in counts} == {
            "registration_started",
            "email_verified",
            "password_reset",
            "account_locked",
            "account_unlocked",
        }
