"""Staff sign-in to the back office with an authenticator app (ACCOUNTS_STAFF_MFA_REQUIRED), over HTTP on both
databases; and the customer's page with its MFA row and the support's removal form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import Database, StackFactory
from sqlalchemy import select
from test_backoffice_web import csrf_token, flash, staff_with_password
from test_mfa_http import email_activated

from accounts import mfa_staff, mfa_totp
from accounts.mfa import MfaPolicy
from accounts.models import Staff, utcnow

pytestmark = pytest.mark.e2e


async def sign_in(http: httpx.AsyncClient, name: str, password: str, code: str | None) -> httpx.Response:
    form = await http.get("/backoffice/sign-in")
    assert form.status_code == 200
    data = {"name": name, "password": password, "csrf_token": csrf_token(form), "next": "/backoffice"}
    if code is not None:
        data["code"] = code
    return await http.post("/backoffice/sign-in", data=data)


async def test_staff_sign_in_needs_the_authenticator_code(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, staff_mfa_required=True) as e2e:
        name, password = await staff_with_password(e2e)
        async with e2e.http() as http:
            form = await http.get("/backoffice/sign-in")
            assert 'name="code"' in form.text
            # not enrolled yet: the one answer of a failed sign-in (the right password is not confirmed),
            # which names the enrolment
            not_enrolled = await sign_in(http, name, password, "123456")
            assert not_enrolled.status_code == 400
            assert "Ask an admin (accounts staff mfa-enroll NAME)" in flash(not_enrolled)

        async with e2e.database.sessions() as session:
            staff_id = await session.scalar(select(Staff.id).where(Staff.name == name))
        assert staff_id is not None
        enrolment = await mfa_staff.enrol(e2e.database.sessions, MfaPolicy.from_settings(e2e.settings), staff_id, name)
        now = utcnow()
        code = mfa_totp.code_at(enrolment.secret, now)
        wrong = "000000" if code != "000000" else "111111"
        async with e2e.http() as http:
            assert (await sign_in(http, name, password, None)).status_code == 400
            assert (await sign_in(http, name, password, wrong)).status_code == 400
            assert (await sign_in(http, name, "Wrong-password-9", code)).status_code == 400
            signed = await sign_in(http, name, password, code)
            assert (signed.status_code, signed.headers["location"]) == (303, "/backoffice")
        async with e2e.http() as http:  # the same code again: a replay
            assert (await sign_in(http, name, password, code)).status_code == 400
            later = mfa_totp.code_at(enrolment.secret, now + timedelta(seconds=30))  # the next step
            assert (await sign_in(http, name, password, later)).status_code == 303


async def test_without_the_setting_staff_sign_in_asks_no_code(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e:
        name, password = await staff_with_password(e2e)
        async with e2e.http() as http:
            assert 'name="code"' not in (await http.get("/backoffice/sign-in")).text
            assert (await sign_in(http, name, password, None)).status_code == 303


async def test_the_customer_page_shows_mfa_and_support_removes_it(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e:
        name, password = await staff_with_password(e2e)
        async with e2e.http() as http:
            _, reference, _, _ = await email_activated(e2e, http)
            assert (await sign_in(http, name, password, None)).status_code == 303
            page = await http.get(f"/backoffice/ui/customers/{reference}")
            assert "email (activated)" in page.text and "mfa-remove" in page.text
            removed = await http.post(
                f"/backoffice/ui/customers/{reference}/mfa-remove",
                data={"reason": "lost phone", "csrf_token": csrf_token(page)},
                follow_redirects=True,
            )
            assert flash(removed).startswith("success: Two-step sign-in is removed")
            assert 'data-testid="customer-mfa">off<' in removed.text
