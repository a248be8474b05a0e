"""Where a customer is signed in, over HTTP: GET/DELETE /customers/{ref}/sessions, the new-device email and
its "this wasn't me" link, and the back office's list and end (accounts/customer_sessions.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, press_the_button, token_from
from sqlalchemy import event, select, update
from test_backoffice_http import staff_key
from test_backoffice_web import csrf_token, staff_with_password, web_sign_in
from test_login_http import JSONAPI, PASSWORD, login_body, registered
from test_passwords_http import NEW_PASSWORD, forgotten, restore

from accounts.access_tokens import AccessTokenIssuer
from accounts.models import AuditEvent, Customer, CustomerSession, DeviceToken, utcnow
from accounts.tokens import hash_token

pytestmark = pytest.mark.e2e
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.0 Mobile/15E148 Safari/604.1"
)
NEW_SIGN_IN = "New sign-in"
DEVICE = "X-Device-Token"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def sign_in_from(
    http: httpx.AsyncClient,
    email: str,
    user_agent: str,
    *,
    client: str = "203.0.113.7",
    device: str | None = None,
    password: str = PASSWORD,
) -> dict[str, Any]:
    """A sign-in from a browser (its user agent) in a network (named by the trusted proxy, 127.0.0.1)."""
    headers = {"Content-Type": JSONAPI, "User-Agent": user_agent, "X-Forwarded-For": client}
    if device is not None:
        headers[DEVICE] = device
    answer = await http.post("/access-tokens", json=login_body(email, password), headers=headers)
    assert answer.status_code == 201, answer.text
    return {**answer.json()["data"]["attributes"], "deviceToken": answer.headers[DEVICE]}


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    body = {"data": {"type": "refresh-tokens", "attributes": {"refreshToken": refresh_token}}}
    return await http.post("/refresh-tokens", json=body, headers={"Content-Type": JSONAPI})


def new_sign_in_emails(stack: Stack, email: str) -> list[Any]:
    return [m for m in stack.sink.to(email) if NEW_SIGN_IN.lower() in m.subject.lower()]


async def test_the_list_shows_each_sign_in_with_its_device_and_delete_ends_it(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        laptop = await sign_in_from(http, email, FIREFOX, client="203.0.113.7")
        phone = await sign_in_from(http, email, SAFARI, client="2001:db8:abcd:12::1")
        url = f"/customers/{reference}/sessions"

        listed = await http.get(url, headers=bearer(laptop))
        assert listed.status_code == 200, listed.text
        data = listed.json()["data"]
        assert [d["attributes"]["device"] for d in data] == ["Mobile Safari on iOS", "Firefox on Windows"]
        assert {d["type"] for d in data} == {"customer-sessions"}
        by_device = {d["attributes"]["device"]: d for d in data}
        assert by_device["Firefox on Windows"]["attributes"]["networkPrefix"] == "203.0.113.0/24"
        assert by_device["Mobile Safari on iOS"]["attributes"]["networkPrefix"] == "2001:db8:abcd::/48"
        assert by_device["Firefox on Windows"]["attributes"]["current"] is True
        assert by_device["Mobile Safari on iOS"]["attributes"]["current"] is False
        assert set(by_device["Firefox on Windows"]["attributes"]) == {
            "device", "networkPrefix", "createdAt", "lastUsedAt", "current"
        }  # fmt: skip
        assert all(tokens["refreshToken"] not in listed.text for tokens in (laptop, phone))
        assert "203.0.113.7" not in listed.text  # the prefix only, never the address
        phone_id = by_device["Mobile Safari on iOS"]["id"]
        assert jwt.decode(phone["accessToken"], options={"verify_signature": False})["sid"] == phone_id

        # a refresh moves "last used"
        before = by_device["Firefox on Windows"]["attributes"]["lastUsedAt"]
        renewed = await refresh(http, laptop["refreshToken"])
        assert renewed.status_code == 201
        laptop = renewed.json()["data"]["attributes"]
        after = await http.get(url, headers=bearer(laptop))
        firefox = next(d for d in after.json()["data"] if d["attributes"]["device"] == "Firefox on Windows")
        assert firefox["attributes"]["lastUsedAt"] > before and firefox["attributes"]["current"] is True

        ended = await http.delete(f"{url}/{phone_id}", headers=bearer(laptop))
        assert ended.status_code == 204
        refused = await refresh(http, phone["refreshToken"])
        assert (refused.status_code, refused.json()["errors"][0]["code"]) == (401, "004")
        gone = await http.get(f"/customers/{reference}", headers=bearer(phone))
        assert (gone.status_code, gone.json()["errors"][0]["code"]) == (401, "001")
        assert (await http.get(f"/customers/{reference}", headers=bearer(laptop))).status_code == 200
        remaining = await http.get(url, headers=bearer(laptop))
        assert [d["attributes"]["device"] for d in remaining.json()["data"]] == ["Firefox on Windows"]

        again = await http.delete(f"{url}/{phone_id}", headers=bearer(laptop))
        assert again.status_code == 404
        assert again.json()["errors"] == [{"status": 404, "code": "1630", "detail": "Customer session not found."}]
        unknown = await http.delete(f"{url}/{'0' * 32}", headers=bearer(laptop))
        assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (404, "1630")
        assert (await http.get(url)).status_code == 403  # signed in only


async def test_another_customers_sessions_are_neither_listed_nor_ended(e2e: Stack) -> None:
    async with e2e.http() as http:
        mine, my_reference = await registered(e2e, http)
        theirs, their_reference = await registered(e2e, http)
        me = await sign_in_from(http, mine, FIREFOX)
        them = await sign_in_from(http, theirs, CHROME)
        their_id = jwt.decode(them["accessToken"], options={"verify_signature": False})["sid"]

        listed = await http.get(f"/customers/{their_reference}/sessions", headers=bearer(me))
        assert (listed.status_code, listed.json()["errors"][0]["code"]) == (403, "411")
        ended = await http.delete(f"/customers/{their_reference}/sessions/{their_id}", headers=bearer(me))
        assert (ended.status_code, ended.json()["errors"][0]["code"]) == (403, "411")
        through_mine = await http.delete(f"/customers/{my_reference}/sessions/{their_id}", headers=bearer(me))
        assert (through_mine.status_code, through_mine.json()["errors"][0]["code"]) == (404, "1630")

        assert (await http.get(f"/customers/{their_reference}", headers=bearer(them))).status_code == 200
        assert (await refresh(http, them["refreshToken"])).status_code == 201


async def test_a_new_device_is_emailed_once_and_the_first_device_never(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        first = await sign_in_from(http, email, FIREFOX)  # the account's first device: the sign-up's
        await sign_in_from(http, email, FIREFOX, device=first["deviceToken"])  # the same device, by its token

        await sign_in_from(http, email, CHROME)  # a new browser: told
        alert = await e2e.mail_to(email, NEW_SIGN_IN)
        assert "Chrome on Mac OS X" in alert.text and "203.0.113.0/24" in alert.text
        assert "203.0.113.7" not in alert.text + alert.html and "This wasn&#39;t me" in alert.html, alert.text
        assert re.search(r"When: \S", alert.text)
        assert "/account/not-me?token=" in token_link(alert)

        await sign_in_from(http, email, CHROME)  # the same browser and network, without a token: not again
        await sign_in_from(http, email, FIREFOX)  # the first device, without its token: seen before
        async with e2e.database.sessions.begin() as session:  # its token expires: still the customer's device
            await session.execute(
                update(DeviceToken)
                .where(DeviceToken.token_hash == hash_token(first["deviceToken"]))
                .values(expires_at=utcnow() - timedelta(days=1))
            )
        await sign_in_from(http, email, FIREFOX, client="192.0.2.1", device=first["deviceToken"])
        await sign_in_from(http, email, SAFARI, client="198.51.100.20")  # one more new one: the barrier
        barrier = await e2e.sink.wait_for(lambda m: email in m.to and "Mobile Safari on iOS" in m.text)
        assert "198.51.100.0/24" in barrier.text
        await asyncio.sleep(0.5)  # any alert of the sign-ins before it started before its own
        assert len(new_sign_in_emails(e2e, email)) == 2

        # a device token that is not this account's is no known device, whatever the browser
        other, _ = await registered(e2e, http)
        elsewhere = await sign_in_from(http, other, FIREFOX)
        await sign_in_from(http, email, FIREFOX, device=elsewhere["deviceToken"])
        await e2e.sink.wait_for(lambda m: email in m.to and len(new_sign_in_emails(e2e, email)) == 3)


async def test_the_setting_turns_the_new_device_email_off(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, new_device_alerts=False) as quiet, quiet.http() as http:
        email, reference = await registered(quiet, http)
        await sign_in_from(http, email, FIREFOX)
        tokens = await sign_in_from(http, email, CHROME, client="198.51.100.20")
        await asyncio.sleep(1.5)
        assert new_sign_in_emails(quiet, email) == []
        listed = await http.get(f"/customers/{reference}/sessions", headers=bearer(tokens))
        assert len(listed.json()["data"]) == 2  # the sessions are recorded all the same


def token_link(message: Any) -> str:
    return next(link for link in message.links if "/account/not-me" in link)


async def test_this_wasnt_me_ends_every_session_and_leads_to_the_reset_form(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        mine = await sign_in_from(http, email, FIREFOX)
        intruder = await sign_in_from(http, email, CHROME, client="198.51.100.20")
        link = token_link(await e2e.mail_to(email, NEW_SIGN_IN))

        page = await http.get(link)  # a mail scanner's prefetch, or the customer reading: nothing happens
        assert page.status_code == 200 and "Sign out everywhere" in page.text
        assert page.headers["cache-control"] == "no-store"
        for tokens in (mine, intruder):
            assert (await http.get(f"/customers/{reference}", headers=bearer(tokens))).status_code == 200
        listed = await http.get(f"/customers/{reference}/sessions", headers=bearer(mine))
        assert len(listed.json()["data"]) == 2

        pressed = await press_the_button(http, page)
        assert pressed.status_code == 303
        assert pressed.headers["location"] == f"{e2e.settings.public_url}/password/forgotten"
        for tokens in (mine, intruder):
            refused = await http.get(f"/customers/{reference}", headers=bearer(tokens))
            assert (refused.status_code, refused.json()["errors"][0]["code"]) == (401, "001")
            assert (await refresh(http, tokens["refreshToken"])).status_code == 401

        again = await press_the_button(http, page)  # the link works once
        assert again.status_code == 400 and "invalid" in again.text.lower()
        assert (await http.get(link)).status_code == 400
        async with e2e.database.sessions() as session:
            events = (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "sessions_ended"
                    )
                )
            ).all()
        assert [(e.channel, e.details) for e in events] == [("email", {"reason": "not_me"})]
        # the intruder knows the password: it signs in no more, from either device, until a reset
        for device in (mine["deviceToken"], intruder["deviceToken"]):
            headers = {"Content-Type": JSONAPI, "User-Agent": FIREFOX, DEVICE: device}
            stale = await http.post("/access-tokens", json=login_body(email, PASSWORD), headers=headers)
            assert (stale.status_code, stale.json()["errors"][0]["code"]) == (401, "426"), stale.text
        assert (await http.post("/customer-forgotten-password", json=forgotten(email))).status_code == 204
        key = token_from(await e2e.mail_to(email, "reset"))
        assert (await http.patch(f"/customer-restore-password/{key}", json=restore(key))).status_code == 204
        assert not (await stored(e2e, reference)).password_reset_required
        # the new password starts afresh; the old one stays refused as a wrong one
        back = await sign_in_from(http, email, FIREFOX, device=mine["deviceToken"], password=NEW_PASSWORD)
        assert (await http.get(f"/customers/{reference}", headers=bearer(back))).status_code == 200
        old = await http.post("/access-tokens", json=login_body(email, PASSWORD), headers={"Content-Type": JSONAPI})
        assert (old.status_code, old.json()["errors"][0]["code"]) == (401, "003")


async def test_the_not_me_page_says_the_password_stops_working(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        await sign_in_from(http, email, FIREFOX)
        await sign_in_from(http, email, CHROME, client="198.51.100.20")
        link = token_link(await e2e.mail_to(email, NEW_SIGN_IN))
        english = await http.get(link)
        assert "current password stops working" in english.text and "reset link" in english.text
        async with e2e.database.sessions.begin() as session:  # the page speaks the link's customer's language
            await session.execute(
                update(Customer).where(Customer.customer_reference == reference).values(locale="de_DE")
            )
        german = await http.get(link)
        assert "Passwort gilt nicht mehr" in german.text, german.text


async def stored(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        found = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert found is not None
        return found


async def test_tokens_without_a_session_id_work_and_the_check_costs_no_extra_statement(e2e: Stack) -> None:
    """Access tokens issued before `sid` existed keep working until they expire; checking `sid` rides in the
    customer's own query (counted on the API's engine)."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        tokens = await sign_in_from(http, email, FIREFOX)
        async with e2e.database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None
        legacy, claims = AccessTokenIssuer.from_settings(e2e.settings).issue(reference, customer.token_version)
        assert claims.session_id is None

        assert e2e.server is not None
        app: Any = e2e.server.config.app  # the FastAPI app uvicorn serves (create_app)
        engine = app.state.engine
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            answers = []
            for token in (legacy, tokens["accessToken"]):
                statements.clear()
                answer = await http.get(f"/customers/{reference}", headers={"Authorization": f"Bearer {token}"})
                answers.append((answer.status_code, len(statements)))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        (legacy_status, legacy_count), (sid_status, sid_count) = answers
        assert legacy_status == sid_status == 200
        assert sid_count == legacy_count, "the session check must not add a round trip"


async def test_the_back_office_lists_the_sessions_and_ends_one(e2e: Stack) -> None:
    async with e2e.http() as http, e2e.http() as staff_http:
        email, reference = await registered(e2e, http)
        laptop = await sign_in_from(http, email, FIREFOX)
        phone = await sign_in_from(http, email, SAFARI, client="198.51.100.20")
        phone_id = jwt.decode(phone["accessToken"], options={"verify_signature": False})["sid"]
        key = {"Authorization": f"Bearer {await staff_key(e2e, 'sessions', role='support')}"}

        listed = await http.get(f"/backoffice/customers/{reference}/sessions", headers=key)
        assert listed.status_code == 200, listed.text
        assert {d["attributes"]["device"] for d in listed.json()["data"]} == {
            "Firefox on Windows",
            "Mobile Safari on iOS",
        }
        ended = await http.delete(f"/backoffice/customers/{reference}/sessions/{phone_id}", headers=key)
        assert ended.status_code == 204
        assert (await http.get(f"/customers/{reference}", headers=bearer(phone))).status_code == 401
        assert (await refresh(http, phone["refreshToken"])).status_code == 401
        again = await http.delete(f"/backoffice/customers/{reference}/sessions/{phone_id}", headers=key)
        assert (again.status_code, again.json()["errors"][0]["code"]) == (404, "1630")
        unknown = await http.get("/backoffice/customers/DE--999999/sessions", headers=key)
        assert unknown.status_code == 404

        # the web UI: the customer page lists them, and a button ends one
        name, password = await staff_with_password(e2e, role="support")
        assert (await web_sign_in(staff_http, name, password)).status_code == 303
        page = await staff_http.get(f"/backoffice/ui/customers/{reference}")
        assert page.status_code == 200 and "Firefox on Windows" in page.text
        assert "Mobile Safari on iOS" not in page.text
        laptop_id = jwt.decode(laptop["accessToken"], options={"verify_signature": False})["sid"]
        action = f"/backoffice/ui/customers/{reference}/sessions/{laptop_id}/end"
        assert action in page.text
        pressed = await staff_http.post(action, data={"csrf_token": csrf_token(page)})
        assert pressed.status_code == 303
        assert (await http.get(f"/customers/{reference}", headers=bearer(laptop))).status_code == 401
        after = await staff_http.get(f"/backoffice/ui/customers/{reference}")
        assert "Not signed in anywhere." in after.text and "The session is ended" in after.text

        async with e2e.database.sessions() as session:
            events = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.customer_reference == reference, AuditEvent.event == "session_ended")
                    .order_by(AuditEvent.id)
                )
            ).all()
        assert [(e.channel, e.details) for e in events] == [
            ("backoffice", {"sessionId": phone_id}),
            ("backoffice", {"sessionId": laptop_id}),
        ]
        assert events[1].actor == name


async def test_the_deletion_removes_the_session_records(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        tokens = await sign_in_from(http, email, FIREFOX)
        password = {"data": {"type": "customers", "attributes": {"password": PASSWORD}}}  # re-authentication
        deleted = await http.request("DELETE", f"/customers/{reference}", json=password, headers=bearer(tokens))
        assert deleted.status_code == 204, deleted.text
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            async with e2e.database.sessions() as session:
                customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
                assert customer is not None
                left = (
                    await session.scalars(select(CustomerSession).where(CustomerSession.customer_id == customer.id))
                ).all()
            if customer.anonymized_at is not None or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert customer.anonymized_at is not None and left == []
