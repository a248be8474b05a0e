"""Passwords end to end over HTTP: forgotten, restore (Glue and the storefront form), change."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, token_from, unique_email
from sqlalchemy import update
from test_login_http import PASSWORD, registered, sign_in, sign_in_after_lift

from accounts.models import Customer

pytestmark = pytest.mark.e2e
NEW_PASSWORD = "Lantern-7#quiet-harbor"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=4) as built:
        yield built


def forgotten(email: Any) -> dict[str, Any]:
    return {"data": {"type": "customer-forgotten-password", "attributes": {"email": email}}}


def restore(key: str, password: str = NEW_PASSWORD, confirm: str | None = None) -> dict[str, Any]:
    attributes = {"restorePasswordKey": key, "password": password, "confirmPassword": confirm or password}
    return {"data": {"type": "customer-restore-password", "id": key, "attributes": attributes}}


def change(old: str, new: str = NEW_PASSWORD, confirm: str | None = None) -> dict[str, Any]:
    attributes = {"password": old, "newPassword": new, "confirmPassword": confirm or new}
    return {"data": {"type": "customer-password", "attributes": attributes}}


async def test_forgotten_password_answers_alike_and_the_key_restores(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        known = await http.post("/customer-forgotten-password", json=forgotten(email))
        unknown = await http.post("/customer-forgotten-password", json=forgotten(unique_email("nobody")))
        assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (204, b"")
        key = token_from(await e2e.mail_to(email, "reset"))

        mismatch = await http.patch(f"/customer-restore-password/{key}", json=restore(key, confirm=NEW_PASSWORD + "x"))
        assert (mismatch.status_code, mismatch.json()["errors"][0]["code"]) == (422, "406")
        # Glue's schema: the lengths come before the policy, one 901 per field
        weak = await http.patch(f"/customer-restore-password/{key}", json=restore(key, "short"))
        assert (weak.status_code, [e["detail"] for e in weak.json()["errors"]]) == (
            422,
            [
                "password => This value is too short. It should have 12 characters or more.",
                "confirmPassword => This value is too short. It should have 12 characters or more.",
            ],
        )
        common = await http.patch(f"/customer-restore-password/{key}", json=restore(key, "password1234"))
        assert (common.status_code, common.json()["errors"][0]["code"]) == (400, "422")

        done = await http.patch(f"/customer-restore-password/{key}", json=restore(key))
        assert done.status_code == 204
        again = await http.patch(f"/customer-restore-password/{key}", json=restore(key))
        assert (again.status_code, again.json()["errors"][0]) == (
            422,
            {"status": 422, "code": "415", "detail": "Restore password key is not valid."},
        )
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201
        assert (await sign_in(http, email, PASSWORD)).status_code == 401
        await e2e.mail_to(email, "was changed")


async def test_the_storefront_form_works_without_javascript(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        await http.post("/customer-forgotten-password", json=forgotten(email))
        mail = await e2e.mail_to(email, "reset")
        link = next(link for link in mail.links if "/password/restore?token=" in link)
        form = await http.get(link, headers={"Accept-Language": "de"})
        assert form.status_code == 200 and 'method="post"' in form.text and "<script" not in form.text
        token = re.search(r'name="token" value="([^"]+)"', form.text)
        assert token is not None

        fields = {"token": token.group(1), "password": NEW_PASSWORD, "confirm_password": "different-Pass#123"}
        refused = await http.post("/password/restore", data=fields, headers={"Accept-Language": "de"})
        # in the customer's language (en_US here), whatever the browser asks for
        assert refused.status_code == 422 and 'lang="en"' in refused.text and 'role="alert"' in refused.text
        fields["confirm_password"] = NEW_PASSWORD
        accepted = await http.post("/password/restore", data=fields)
        assert accepted.status_code == 200
        reused = await http.post("/password/restore", data=fields)
        assert reused.status_code == 400
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201


async def test_the_reset_page_speaks_the_customers_language_and_refuses_a_dead_link_at_once(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        async with e2e.database.sessions.begin() as session:
            await session.execute(
                update(Customer).where(Customer.customer_reference == reference).values(locale="de_DE")
            )
        await http.post("/customer-forgotten-password", json=forgotten(email))
        mail = await e2e.mail_to(email, "zurücksetzen")
        link = next(link for link in mail.links if "/password/restore?token=" in link)
        english_browser = {"Accept-Language": "en-US"}
        form = await http.get(link, headers=english_browser)  # the customer's language, not the browser's
        assert form.status_code == 200 and 'lang="de"' in form.text and "Neues Passwort festlegen" in form.text
        token = re.search(r'name="token" value="([^"]+)"', form.text)
        assert token is not None
        fields = {"token": token.group(1), "password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
        done = await http.post("/password/restore", data=fields, headers=english_browser)
        assert done.status_code == 200 and 'lang="de"' in done.text

        used = await http.get(link, headers=english_browser)  # no form to fill in for nothing
        assert used.status_code == 400 and 'lang="de"' in used.text and 'name="password"' not in used.text
        unknown = await http.get("/password/restore?token=not-a-key", headers=english_browser)
        assert unknown.status_code == 400 and 'lang="en"' in unknown.text and 'name="password"' not in unknown.text
        assert (await http.get("/password/restore")).status_code == 400


async def test_change_password_ends_other_sessions_and_a_wrong_one_counts(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        tokens = (await sign_in(http, email)).json()["data"]["attributes"]
        bearer = {"Authorization": f"Bearer {tokens['accessToken']}"}

        other = await http.patch("/customer-password/DE--99999", json=change(PASSWORD), headers=bearer)
        assert (other.status_code, other.json()["errors"][0]["code"]) == (403, "411")
        mismatch = await http.patch(
            f"/customer-password/{reference}", json=change(PASSWORD, confirm=NEW_PASSWORD + "x"), headers=bearer
        )
        assert (mismatch.status_code, mismatch.json()["errors"][0]["code"]) == (422, "406")
        short = await http.patch(f"/customer-password/{reference}", json=change(PASSWORD, "short"), headers=bearer)
        assert (short.status_code, [e["detail"] for e in short.json()["errors"]]) == (
            422,
            [
                "newPassword => This value is too short. It should have 12 characters or more.",
                "confirmPassword => This value is too short. It should have 12 characters or more.",
            ],
        )
        for _ in range(3):
            wrong = await http.patch(f"/customer-password/{reference}", json=change("not it at all"), headers=bearer)
            assert (wrong.status_code, wrong.json()["errors"][0]) == (
                400,
                {"status": 400, "code": "408", "detail": "Invalid password"},
            )
        # three wrong current passwords plus one wrong sign-in reach the threshold of 4
        assert (await sign_in(http, email, "wrong password!")).status_code == 401
        assert (await sign_in(http, email)).status_code == 429
        await e2e.accounts.logins.unlock(reference, agent="alice", reason="test")

        tokens = (await sign_in_after_lift(e2e, http, email)).json()["data"]["attributes"]
        bearer = {"Authorization": f"Bearer {tokens['accessToken']}"}
        changed = await http.patch(f"/customer-password/{reference}", json=change(PASSWORD), headers=bearer)
        assert changed.status_code == 204
        assert (await http.get("/customers", headers=bearer)).status_code == 401  # old access token dead
        refresh = {"data": {"type": "refresh-tokens", "attributes": {"refreshToken": tokens["refreshToken"]}}}
        assert (await http.post("/refresh-tokens", json=refresh)).status_code == 401
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201
    await e2e.mail_to(email, "was changed")


async def test_the_changed_email_goes_out_even_if_the_api_dies_after_answering(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e:
        async with e2e.http() as http:
            email, reference = await registered(e2e, http)
            bearer = {
                "Authorization": f"Bearer {(await sign_in(http, email)).json()['data']['attributes']['accessToken']}"
            }
            assert (
                await http.patch(f"/customer-password/{reference}", json=change(PASSWORD), headers=bearer)
            ).status_code == 204
        await e2e.stop_api()  # the API process is gone right after answering
        await e2e.mail_to(email, "was changed")


async def test_bad_password_requests_get_documented_errors(e2e: Stack) -> None:
    async with e2e.http() as http:
        bad_email = await http.post("/customer-forgotten-password", json=forgotten("not an email"))
        missing = await http.post(
            "/customer-forgotten-password", json={"data": {"type": "customer-forgotten-password"}}
        )
        unknown_key = await http.patch("/customer-restore-password/nope", json=restore("nope"))
        no_token = await http.patch("/customer-password/DE--1", json=change(PASSWORD))
        huge = await http.patch("/customer-restore-password/k", json=restore("k", "x" * 1_000_000))
    assert (bad_email.status_code, bad_email.json()["errors"][0]["code"]) == (422, "901")
    assert (missing.status_code, missing.json()["errors"]) == (
        400,
        [{"status": 400, "detail": "Post data is invalid."}],
    )
    assert (unknown_key.status_code, unknown_key.json()["errors"][0]["code"]) == (422, "415")
    assert (no_token.status_code, no_token.json()["errors"][0]["code"]) == (403, "002")
    assert (huge.status_code, huge.json()["errors"][0]["detail"]) == (
        422,
        "password => This value is too long. It should have 128 characters or less.",
    )
