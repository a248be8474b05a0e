"""Back-office actions over HTTP with staff API keys: who may call them, and what each one does."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import ACCOUNTS, Database, Stack, StackFactory, checkout_env, token_from
from sqlalchemy import select
from test_login_http import PASSWORD, registered, sign_in

from accounts.models import AuditEvent
from accounts.staff import StaffDirectory

pytestmark = pytest.mark.e2e
NEW_PASSWORD = "Lantern-7#quiet-harbor"
ACTIONS = ["verify", "resend-verification", "unlock", "password-token", "password", "force-password-reset"]


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(
        dev_server, database, api=True, lockout_max_failures=3, verification_resend_min_interval=0
    ) as built:
        yield built


async def staff_key(stack: Stack, name: str, role: str = "admin") -> str:
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    _, key = await directory.create(f"{name}-{os.urandom(4).hex()}", role)
    return key


def body_for(action: str) -> dict[str, Any]:
    return {"password": {"password": NEW_PASSWORD}, "verify": {"reason": "r"}, "unlock": {"reason": "r"}}.get(
        action, {}
    )


@pytest.mark.parametrize("action", ACTIONS)
async def test_only_staff_keys_open_back_office_routes(e2e: Stack, action: str) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        customer_token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        url = f"/backoffice/customers/{reference}/{action}"
        anonymous = await http.post(url, json=body_for(action))
        as_customer = await http.post(url, json=body_for(action), headers={"Authorization": f"Bearer {customer_token}"})
        forged = await http.post(url, json=body_for(action), headers={"Authorization": "Bearer stf_1_not-the-key"})
    assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (403, "002")
    assert (as_customer.status_code, as_customer.json()["errors"][0]["code"]) == (401, "001")
    assert (forged.status_code, forged.json()["errors"][0]["code"]) == (401, "001")


async def test_staff_keys_never_open_customer_routes(e2e: Stack) -> None:
    key = await staff_key(e2e, "alice")
    async with e2e.http() as http:
        response = await http.get("/customers", headers={"Authorization": f"Bearer {key}"})
    assert (response.status_code, response.json()["errors"][0]["code"]) == (401, "001")


async def test_each_action_does_its_work_and_names_the_staff_member(e2e: Stack) -> None:
    key = await staff_key(e2e, "alice")
    staff = {"Authorization": f"Bearer {key}"}
    async with e2e.http() as http:
        # verify manually and resend, on an unverified registration
        unverified, pending = await registered(e2e, http, confirm=False)
        for _ in range(50):  # 429 while the first link is still being recorded ("on its way")
            resent = await http.post(f"/backoffice/customers/{pending}/resend-verification", headers=staff)
            if resent.status_code != 429:
                break
            await asyncio.sleep(0.1)
        assert resent.status_code == 204
        verified = await http.post(
            f"/backoffice/customers/{pending}/verify", json={"reason": "ticket 7"}, headers=staff
        )
        assert verified.status_code == 200 and verified.json()["data"]["attributes"]["registeredAt"]
        again = await http.post(f"/backoffice/customers/{pending}/verify", json={"reason": "twice"}, headers=staff)
        assert (again.status_code, again.json()["errors"][0]["detail"]) == (
            409, f"Not awaiting verification ({pending} is verified)."
        )  # fmt: skip
        assert (await sign_in(http, unverified)).status_code == 201

        # unlock
        email, reference = await registered(e2e, http)
        not_locked = await http.post(f"/backoffice/customers/{reference}/unlock", json={"reason": "r"}, headers=staff)
        not_locked_error = (not_locked.status_code, not_locked.json()["errors"][0]["detail"])
        assert not_locked_error == (409, f"{reference} is not locked.")
        for _ in range(3):
            await sign_in(http, email, "wrong password!")
        await e2e.mail_to(email, "paused")
        unlocked = await http.post(
            f"/backoffice/customers/{reference}/unlock", json={"reason": "called"}, headers=staff
        )
        assert unlocked.status_code == 204
        assert (await sign_in(http, email)).status_code == 201

        # set a password: policy enforced, customer notified
        weak = await http.post(f"/backoffice/customers/{reference}/password", json={"password": "short"}, headers=staff)
        assert (weak.status_code, weak.json()["errors"][0]["code"]) == (400, "418")
        assert (
            await http.post(
                f"/backoffice/customers/{reference}/password", json={"password": NEW_PASSWORD}, headers=staff
            )
        ).status_code == 204
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201
        await e2e.mail_to(email, "was changed")

        # force a reset: the current password stops working with a distinct code
        assert (
            await http.post(f"/backoffice/customers/{reference}/force-password-reset", headers=staff)
        ).status_code == 204
        forced = await sign_in(http, email, NEW_PASSWORD)
        assert (forced.status_code, forced.json()["errors"][0]["code"]) == (401, "426")
        await e2e.mail_to(email, "reset")

        # a set-password link
        other_email, other = await registered(e2e, http)
        assert (await http.post(f"/backoffice/customers/{other}/password-token", headers=staff)).status_code == 204
        link = await e2e.mail_to(other_email, "choose your password")
        await e2e.accounts.passwords.complete_reset(token_from(link), NEW_PASSWORD)

        missing = await http.post("/backoffice/customers/DE--0/password-token", headers=staff)
        assert (missing.status_code, missing.json()["errors"][0]["code"]) == (404, "402")

    async with e2e.database.sessions() as session:
        actors = set(
            (
                await session.execute(
                    select(AuditEvent.event, AuditEvent.actor).where(
                        AuditEvent.customer_reference.in_([pending, reference, other])
                    )
                )
            ).all()
        )
    name = next(a for e, a in actors if e == "verified_manually")
    assert name.startswith("alice-")
    assert {("verified_manually", name), ("account_unlocked", name), ("password_set", name),
            ("password_reset_forced", name)} <= actors  # fmt: skip


async def test_staff_create_prints_a_working_key(e2e: Stack, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        "staff",
        "create",
        f"bob-{os.urandom(3).hex()}",
        "--role",
        "admin",
        cwd=tmp_path,
        env=checkout_env({**os.environ, "ACCOUNTS_DATABASE_URL": e2e.settings.database_url,
                          "ACCOUNTS_ARGON2_TIME_COST": "1", "ACCOUNTS_ARGON2_MEMORY_COST": "8192",
                          "ACCOUNTS_ARGON2_PARALLELISM": "1"}),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    key = stdout.decode().strip().splitlines()[-1]
    assert key.startswith("stf_")
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        response = await http.post(
            f"/backoffice/customers/{reference}/password-token", headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 204
    assert PASSWORD not in key
