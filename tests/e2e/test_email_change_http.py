"""Email change over HTTP: PATCH /customers/{ref} with a new email, the link to the new address, the answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, press_the_button, token_from, unique_email
from sqlalchemy import func, select
from test_login_http import PASSWORD, sign_in
from test_profile_http import profile, signed_in

from accounts.models import AuditEvent, Customer, OneTimeToken

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def confirmation(key: str) -> dict[str, Any]:
    return {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}


async def stored_email(stack: Stack, reference: str) -> str:
    async with stack.database.sessions() as session:
        return str(await session.scalar(select(Customer.email).where(Customer.customer_reference == reference)))


async def test_a_new_email_is_used_only_after_the_link_sent_to_it_was_opened(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        new_email = unique_email("new")
        response = await http.patch(
            f"/customers/{reference}", json=profile(email=new_email, password=PASSWORD), headers=bearer
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["attributes"]["email"] == email

        link = await e2e.mail_to(new_email, "confirm your new email")
        assert link.links[0].startswith(f"{e2e.api_url}/email-change/confirm?token=")
        page = await http.get("/email-change/confirm", params={"token": token_from(link)})
        assert page.status_code == 200 and "Use this email address</button>" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert await stored_email(e2e, reference) == email  # opening the link (a mail scanner may) changes nothing
        changed = await press_the_button(http, page)
        assert changed.status_code == 200 and "Your email address was changed" in changed.text

        # the link came without a session: every session ended, the one that asked too
        account = await http.get(f"/customers/{reference}", headers=bearer)
        assert (account.status_code, account.json()["errors"][0]["code"]) == (401, "001")
        await e2e.mail_to(email, "was changed")
        signed = await sign_in(http, new_email)
        assert signed.status_code == 201
        bearer = {"Authorization": f"Bearer {signed.json()['data']['attributes']['accessToken']}"}
        account = await http.get(f"/customers/{reference}", headers=bearer)
        assert account.status_code == 200 and account.json()["data"]["attributes"]["email"] == new_email
        assert (await sign_in(http, email)).status_code == 401

        again = await http.get("/email-change/confirm", params={"token": token_from(link)})
        assert again.status_code == 400 and "invalid" in again.text
        pressed = await http.post("/email-change/confirm", data={"token": token_from(link)})
        assert pressed.status_code == 400 and "invalid" in pressed.text


async def test_the_api_confirmation_refuses_an_unknown_and_a_superseded_key(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        unknown = await http.post("/customer-email-change-confirmation", json=confirmation("x" * 43))
        assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (422, "423")

        first, second = unique_email("first"), unique_email("second")
        await http.patch(f"/customers/{reference}", json=profile(email=first, password=PASSWORD), headers=bearer)
        first_key = token_from(await e2e.mail_to(first, "confirm your new email"))
        await http.patch(f"/customers/{reference}", json=profile(email=second, password=PASSWORD), headers=bearer)
        second_key = token_from(await e2e.mail_to(second, "confirm your new email"))

        superseded = await http.post("/customer-email-change-confirmation", json=confirmation(first_key))
        assert (superseded.status_code, superseded.json()["errors"][0]["code"]) == (422, "423")
        assert await stored_email(e2e, reference) == email
        confirmed = await http.post("/customer-email-change-confirmation", json=confirmation(second_key))
        assert confirmed.status_code == 204, confirmed.text
        assert await stored_email(e2e, reference) == second


async def test_a_taken_address_gets_the_same_answer_as_a_free_one(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        other_email, other_reference, _ = await signed_in(e2e, http)
        free = await http.patch(
            f"/customers/{reference}", json=profile(email=unique_email("free"), password=PASSWORD), headers=bearer
        )
        taken = await http.patch(f"/customers/{reference}", json=profile(email=other_email, password=PASSWORD),
                                 headers=bearer)  # fmt: skip
        assert taken.status_code == free.status_code == 200

        def without_times(document: dict[str, Any]) -> dict[str, Any]:
            attributes = {k: v for k, v in document["data"]["attributes"].items() if k != "updatedAt"}
            return {**document["data"], "attributes": attributes}

        assert without_times(taken.json()) == without_times(free.json())
        await e2e.mail_to(other_email, "someone tried")
        assert await stored_email(e2e, reference) == email
        assert await stored_email(e2e, other_reference) == other_email


async def test_bad_input_is_refused_and_writes_nothing(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"email": "not-an-address", "lastName": "Changed"}, 422, "416"),
            ({"email": "a" * 95 + "@x.org", "lastName": "Changed"}, 422, "417"),
            ({"email": None}, 422, "901"),
            ({"email": 42}, 422, "901"),
        ]
        for attributes, status, code in cases:
            response = await http.patch(f"/customers/{reference}", json=profile(**attributes), headers=bearer)
            assert (response.status_code, response.json()["errors"][0]["code"]) == (status, code), attributes
        account = (await http.get(f"/customers/{reference}", headers=bearer)).json()["data"]["attributes"]
        assert (account["email"], account["lastName"]) == (email, "Byron")
        async with e2e.database.sessions() as session:
            links = await session.scalar(select(func.count()).select_from(OneTimeToken).join(Customer).where(
                OneTimeToken.purpose == "email_change", Customer.customer_reference == reference))  # fmt: skip
            events = await session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.customer_reference == reference, AuditEvent.event == "profile_updated"))  # fmt: skip
        assert (links, events) == (0, 0)


async def test_nobody_changes_another_customers_email(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, _, bearer_a = await signed_in(e2e, http)
        email_b, ref_b, _ = await signed_in(e2e, http)
        response = await http.patch(
            f"/customers/{ref_b}", json=profile(email=unique_email("thief"), password=PASSWORD), headers=bearer_a
        )
        assert (response.status_code, response.json()["errors"][0]["code"]) == (403, "411")
        anonymous = await http.patch(f"/customers/{ref_b}", json=profile(email=unique_email("thief")))
        assert anonymous.status_code == 403
        assert await stored_email(e2e, ref_b) == email_b
        assert (await sign_in(http, email_b, PASSWORD)).status_code == 201


async def test_too_many_requests_get_429_and_write_nothing(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, email_change_requests_per_hour=1) as e2e, e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        first = await http.patch(
            f"/customers/{reference}", json=profile(email=unique_email("one"), password=PASSWORD), headers=bearer
        )
        assert first.status_code == 200
        second = await http.patch(
            f"/customers/{reference}",
            json=profile(email=unique_email("two"), password=PASSWORD, lastName="Changed"),
            headers=bearer,
        )
        assert (second.status_code, second.json()["errors"][0]["code"]) == (429, "429")
        assert "Please wait" in second.json()["errors"][0]["detail"]
        account = (await http.get(f"/customers/{reference}", headers=bearer)).json()["data"]["attributes"]
        assert (account["email"], account["lastName"]) == (email, "Byron")
