"""Review of issue 16 (re-authentication, undo link, MFA): findings as failing tests. Both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, token_from, unique_email
from sqlalchemy import select
from test_login_http import PASSWORD, registered, sign_in
from test_profile_http import profile

from accounts import mfa_totp
from accounts.models import Customer, utcnow

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, mfa_code_resend_min_interval=timedelta(0)) as built:
        yield built


def bearer_of(attributes: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {attributes['accessToken']}"}


async def login(http: httpx.AsyncClient, email: str) -> dict[str, Any]:
    signed = await sign_in(http, email)
    assert signed.status_code == 201, signed.text
    attributes: dict[str, Any] = signed.json()["data"]["attributes"]
    return attributes


async def stored(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


def mfa_body(resource: str, kind: str) -> dict[str, Any]:
    return {"data": {"type": resource, "attributes": {"type": kind}}}


async def thief_enrols_totp(http: httpx.AsyncClient, stolen: dict[str, str]) -> str:
    """With the stolen access token alone (no password, no code): the thief's own authenticator app."""
    started = await http.post(
        "/multi-factor-auth-type-activate", json=mfa_body("multi-factor-auth-type-activate", "totp"), headers=stolen
    )
    assert started.status_code == 200, started.text
    secret: str = started.json()["data"]["attributes"]["secret"]
    verified = await http.post(
        "/multi-factor-auth-type-verify",
        json=mfa_body("multi-factor-auth-type-verify", "totp"),
        headers={**stolen, "X-MFA-Code": mfa_totp.code_at(secret, utcnow())},
    )
    assert verified.status_code == 204, verified.text
    return secret


async def test_a_stolen_token_cannot_delete_the_account_by_enrolling_its_own_second_factor(e2e: Stack) -> None:
    """Issue 16's first goal: the bearer token alone must not delete the account. The token can activate
    a TOTP method (no password, no code asked while none is active), and a code of that method is then
    accepted as the re-authentication instead of the password (starter/reauth.py)."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        stolen = bearer_of(await login(http, email))
        secret = await thief_enrols_totp(http, stolen)
        code = mfa_totp.code_at(secret, utcnow() + timedelta(seconds=30))
        deleted = await http.request("DELETE", f"/customers/{reference}", headers={**stolen, "X-MFA-Code": code})
        assert deleted.status_code != 204, "deleted with the stolen token and a factor the thief enrolled"
        assert (await stored(e2e, reference)).anonymized_at is None


async def test_a_stolen_token_cannot_move_the_email_by_enrolling_its_own_second_factor(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        stolen = bearer_of(await login(http, email))
        secret = await thief_enrols_totp(http, stolen)
        thief = unique_email("thief")
        code = mfa_totp.code_at(secret, utcnow() + timedelta(seconds=30))
        moved = await http.patch(
            f"/customers/{reference}", json=profile(email=thief), headers={**stolen, "X-MFA-Code": code}
        )
        assert moved.status_code != 200, "email change started with the stolen token and the thief's own factor"
        assert not e2e.sink.to(thief)


async def test_after_an_undo_the_password_the_thief_knew_no_longer_signs_in(e2e: Stack) -> None:
    """docs/api.md: the undo sends a reset link 'the thief may know the password'. But the password keeps
    working (only the undo_blocked branch sets password_reset_required): the thief signs straight back in
    with the restored address and the known password, and can then delete the account (the password is
    the re-authentication), which no undo link brings back."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        stolen = bearer_of(await login(http, email))
        thief_email = unique_email("thief")
        moved = await http.patch(
            f"/customers/{reference}", json=profile(email=thief_email, password=PASSWORD), headers=stolen
        )
        assert moved.status_code == 200, moved.text
        key = token_from(await e2e.mail_to(thief_email, "confirm your new email"))
        confirmation = {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}
        assert (await http.post("/customer-email-change-confirmation", json=confirmation)).status_code == 204
        undo = token_from(await e2e.mail_to(email, "was changed"))
        undone = await http.post("/email-change/undo", data={"token": undo})
        assert undone.status_code == 200 and "Your email address is back" in undone.text, undone.text

        again = await sign_in(http, email)  # the thief: the victim's address is no secret, the password known
        if again.status_code == 201:
            tokens = again.json()["data"]["attributes"]
            deletion = {"data": {"type": "customers", "attributes": {"password": PASSWORD}}}
            gone = await http.request("DELETE", f"/customers/{reference}", headers=bearer_of(tokens), json=deletion)
            assert gone.status_code != 204, "after the undo the thief signed in and deleted the account"
        assert again.status_code != 201, again.text


async def test_the_current_email_with_a_short_password_is_validated_as_glue_does(e2e: Stack) -> None:
    """docs/api.md (re-authentication): 'Without a new email (or with the current one), password/
    confirmPassword are validated as Glue does'. The length rule is switched off by the mere presence of
    `email` (api/password_lengths.py `unless`), so the current address turns Glue's 901 into a 200."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        bearer = bearer_of(await login(http, email))
        plain = await http.patch(
            f"/customers/{reference}", json=profile(password="short", confirmPassword="short"), headers=bearer
        )
        assert (plain.status_code, plain.json()["errors"][0]["code"]) == (422, "901")
        same = await http.patch(
            f"/customers/{reference}",
            json=profile(email=email, password="short", confirmPassword="short"),
            headers=bearer,
        )
        assert same.status_code == 422, same.text


async def test_an_unenrolled_staff_member_s_right_password_is_not_told_apart_from_a_wrong_one(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """ACCOUNTS_STAFF_MFA_REQUIRED: a member without an enrolment gets 403 'ask an admin to enrol' for the
    right password, 400 for a wrong one, and the right guess costs no failure (api/web/sign_in.py releases
    the reservations): an oracle that confirms a guessed staff password for free, while the sign-in says
    'one answer' for unknown name, wrong password and wrong code."""
    from test_backoffice_web import staff_with_password
    from test_staff_mfa_http import sign_in as staff_sign_in

    async with stack(dev_server, database, api=True, staff_mfa_required=True) as e2e:
        name, password = await staff_with_password(e2e)
        async with e2e.http() as http:
            wrong = await staff_sign_in(http, name, "Wrong-password-9", "123456")
            right = await staff_sign_in(http, name, password, "123456")
        assert right.status_code == wrong.status_code, (right.status_code, wrong.status_code)
