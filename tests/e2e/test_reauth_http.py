"""Account security over HTTP (issue 16): a bearer token alone cannot move the email address or delete the
account, and the old address can undo a change (every session ends). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, press_the_button, registration_body, token_from, unique_email
from sqlalchemy import func, select
from test_login_http import PASSWORD, registered, sign_in
from test_profile_http import profile

from accounts.models import AuditEvent, Customer, OneTimeToken

pytestmark = pytest.mark.e2e

WRONG = "not-my-password-at-all"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=3) as built:
        yield built


def deletion(password: str | None = None) -> dict[str, Any]:
    return {"data": {"type": "customers", "attributes": {} if password is None else {"password": password}}}


async def delete(http: httpx.AsyncClient, reference: str, bearer: dict[str, str], **body: Any) -> httpx.Response:
    return await http.request("DELETE", f"/customers/{reference}", headers=bearer, **body)


def error(response: httpx.Response) -> tuple[int, str, str]:
    first = response.json()["errors"][0]
    return response.status_code, first["code"], first["detail"]


async def login(http: httpx.AsyncClient, email: str) -> dict[str, Any]:
    signed = await sign_in(http, email)
    assert signed.status_code == 201, signed.text
    attributes: dict[str, Any] = signed.json()["data"]["attributes"]
    return attributes


def bearer_of(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def refresh(http: httpx.AsyncClient, tokens: dict[str, Any]) -> httpx.Response:
    body = {"data": {"type": "refresh-tokens", "attributes": {"refreshToken": tokens["refreshToken"]}}}
    return await http.post("/refresh-tokens", json=body)


async def stored(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def events(stack: Stack, reference: str) -> list[str]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.event).where(AuditEvent.customer_reference == reference).order_by(AuditEvent.id)
        )
        return list(rows)


async def change_links(stack: Stack, reference: str) -> int:
    async with stack.database.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(OneTimeToken).join(Customer)
                .where(OneTimeToken.purpose == "email_change", Customer.customer_reference == reference)
            ) or 0
        )  # fmt: skip


async def test_a_stolen_token_alone_can_neither_move_the_email_nor_delete_the_account(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        stolen = bearer_of(await login(http, email))
        thief = unique_email("thief")

        blank = (422, "901", "password => This value should not be blank.")
        assert error(await http.patch(f"/customers/{reference}", json=profile(email=thief), headers=stolen)) == blank
        # an MFA code is no proof yet (MFA is not connected): the password is still asked for
        with_code = {**stolen, "X-MFA-Code": "123456"}
        assert error(await http.patch(f"/customers/{reference}", json=profile(email=thief), headers=with_code)) == blank
        wrong = await http.patch(f"/customers/{reference}", json=profile(email=thief, password=WRONG), headers=stolen)
        assert error(wrong) == (400, "408", "Invalid password")

        assert error(await delete(http, reference, stolen)) == blank  # Glue's DELETE: no body
        assert error(await delete(http, reference, stolen, json=deletion())) == blank
        assert error(await delete(http, reference, stolen, json=deletion(WRONG)))[:2] == (400, "408")

        account = await http.get(f"/customers/{reference}", headers=stolen)
        assert account.status_code == 200 and account.json()["data"]["attributes"]["email"] == email
        assert (await stored(e2e, reference)).anonymized_at is None
        assert await change_links(e2e, reference) == 0 and not e2e.sink.to(thief)

        # a profile update that keeps the address needs no password (Glue's clients send the whole profile)
        kept = await http.patch(f"/customers/{reference}", json=profile(email=email.upper(), lastName="Kept"),
                                headers=stolen)  # fmt: skip
        assert kept.status_code == 200, kept.text
        assert (kept.json()["data"]["attributes"]["lastName"], await change_links(e2e, reference)) == ("Kept", 0)


async def test_wrong_passwords_count_as_failed_sign_ins_until_the_account_locks(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        stolen = bearer_of(await login(http, email))
        thief = unique_email("thief")
        answers = [
            await http.patch(f"/customers/{reference}", json=profile(email=thief, password=WRONG), headers=stolen),
            await delete(http, reference, stolen, json=deletion(WRONG)),
            await http.patch(f"/customers/{reference}", json=profile(email=thief, password=WRONG), headers=stolen),
        ]
        assert [error(a)[:2] for a in answers] == [(400, "408")] * 3  # ACCOUNTS_LOCKOUT_MAX_FAILURES=3

        # locked: even the right password is refused now, here and at sign-in, as for guesses at sign-in
        locked = await http.patch(f"/customers/{reference}", json=profile(email=thief, password=PASSWORD),
                                  headers=stolen)  # fmt: skip
        assert error(locked)[:2] == (429, "4401") and int(locked.headers["Retry-After"]) > 0
        assert error(await delete(http, reference, stolen, json=deletion(PASSWORD)))[:2] == (429, "4401")
        assert (await sign_in(http, email)).status_code == 429
        assert (await stored(e2e, reference)).email == email
        await e2e.mail_to(email, "are paused")  # the lockout workflow told the customer


async def test_the_current_password_moves_the_email_and_deletes_the_account(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        bearer = bearer_of(await login(http, email))
        new_email = unique_email("new")
        changed = await http.patch(f"/customers/{reference}", json=profile(email=new_email, password=PASSWORD,
                                   confirmPassword=PASSWORD), headers=bearer)  # fmt: skip
        assert changed.status_code == 200, changed.text
        await e2e.mail_to(new_email, "confirm your new email")
        # confirmPassword, when sent, must match (Glue's 406)
        differ = await http.patch(f"/customers/{reference}", json=profile(email=unique_email("x"), password=PASSWORD,
                                  confirmPassword=WRONG), headers=bearer)  # fmt: skip
        assert error(differ)[:2] == (422, "406")

        deleted = await delete(http, reference, bearer, json=deletion(PASSWORD))
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert (await stored(e2e, reference)).anonymized_at is not None


async def test_an_undo_link_after_a_takeover_gives_the_address_back_and_ends_every_session(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        victim = await login(http, email)
        # the thief has a token and the password: the proof is not enough, the undo link is the way back
        thief_email = unique_email("thief")
        moved = await http.patch(f"/customers/{reference}", json=profile(email=thief_email, password=PASSWORD),
                                 headers=bearer_of(victim))  # fmt: skip
        assert moved.status_code == 200
        key = token_from(await e2e.mail_to(thief_email, "confirm your new email"))
        confirmation = {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}
        assert (await http.post("/customer-email-change-confirmation", json=confirmation)).status_code == 204
        assert (await http.get(f"/customers/{reference}", headers=bearer_of(victim))).status_code == 401
        thief = await login(http, thief_email)

        notice = await e2e.mail_to(email, "was changed")
        assert "***@" in notice.text and thief_email not in notice.text
        [link] = [link for link in notice.links if "/email-change/undo?token=" in link]
        page = await http.get(link)
        assert page.status_code == 200 and "Undo the change" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert (await stored(e2e, reference)).email == thief_email  # the GET (a mail scanner's) changed nothing
        assert (await http.get(f"/customers/{reference}", headers=bearer_of(thief))).status_code == 200

        undone = await press_the_button(http, page)
        assert undone.status_code == 200 and "Your email address is back" in undone.text, undone.text
        assert (await stored(e2e, reference)).email == email
        assert error(await http.get(f"/customers/{reference}", headers=bearer_of(thief)))[:2] == (401, "001")
        assert (await refresh(http, thief)).status_code == 401
        assert (await refresh(http, victim)).status_code == 401
        reset = await e2e.mail_to(email, "reset the password")  # on to a new password: the thief knew this one
        assert (await sign_in(http, thief_email)).status_code == 401
        # the password the thief knew no longer works: the reset link is the way back in (review16)
        assert error(await sign_in(http, email))[:2] == (401, "426")
        key, new_password = token_from(reset), "Qz7#long-harbor-lamp"
        restore = {"data": {"type": "customer-restore-password", "id": key, "attributes": {
            "restorePasswordKey": key, "password": new_password, "confirmPassword": new_password}}}  # fmt: skip
        assert (await http.patch(f"/customer-restore-password/{key}", json=restore)).status_code == 204
        assert (await sign_in(http, email, new_password)).status_code == 201

        again = await http.post("/email-change/undo", data={"token": token_from(notice)})
        assert again.status_code == 400 and "invalid" in again.text
        trail = await events(e2e, reference)
        assert trail.index("email_changed") < trail.index("email_change_undone")


async def test_an_undo_link_used_after_its_lifetime_is_refused(
    stack: StackFactory, time_skipping: Any, database: Database
) -> None:
    async with stack(time_skipping, database, api=True) as e2e, e2e.http() as http:
        email, reference = await registered(e2e, http)
        bearer = bearer_of(await login(http, email))
        new_email = unique_email("new")
        moved = await http.patch(f"/customers/{reference}", json=profile(email=new_email, password=PASSWORD),
                                 headers=bearer)  # fmt: skip
        assert moved.status_code == 200
        key = token_from(await e2e.mail_to(new_email, "confirm your new email"))
        confirmation = {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}
        assert (await http.post("/customer-email-change-confirmation", json=confirmation)).status_code == 204
        undo = token_from(await e2e.mail_to(email, "was changed"))

        await e2e.env.sleep(e2e.settings.email_change_undo_lifetime + timedelta(seconds=1))
        late = await http.post("/email-change/undo", data={"token": undo})
        assert late.status_code == 400 and "invalid" in late.text
        assert (await stored(e2e, reference)).email == new_email
        assert "email_change_undone" not in await events(e2e, reference)


async def test_a_sign_up_of_the_released_address_cannot_block_the_undo(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        thief_email = unique_email("thief")
        moved = await http.patch(f"/customers/{reference}", json=profile(email=thief_email, password=PASSWORD),
                                 headers=bearer_of(await login(http, email)))  # fmt: skip
        assert moved.status_code == 200
        key = token_from(await e2e.mail_to(thief_email, "confirm your new email"))
        confirmation = {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}
        assert (await http.post("/customer-email-change-confirmation", json=confirmation)).status_code == 204
        undo = token_from(await e2e.mail_to(email, "was changed"))
        # the thief registers the address the change released, to keep its owner from taking it back
        squatted = await http.post("/customers", json=registration_body(email, PASSWORD))
        assert squatted.status_code == 201, squatted.text

        undone = await http.post("/email-change/undo", data={"token": undo})
        assert undone.status_code == 200 and "Your email address is back" in undone.text, undone.text
        assert (await stored(e2e, reference)).email == email
        assert (await stored(e2e, squatted.json()["data"]["id"])).email.endswith("@released.invalid")
        assert error(await sign_in(http, email))[:2] == (401, "426")  # on to the reset link (review16)
