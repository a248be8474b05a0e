"""PATCH /customers/{ref} end to end over HTTP: profile fields, preferences, audit, authorization, bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import select
from test_login_http import PASSWORD, registered, sign_in

from accounts.models import AuditEvent

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def signed_in(stack: Stack, http: httpx.AsyncClient) -> tuple[str, str, dict[str, str]]:
    """A verified customer: email, reference and the Authorization header of a fresh sign-in."""
    email, reference = await registered(stack, http)
    token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
    return email, reference, {"Authorization": f"Bearer {token}"}


def profile(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "customers", "attributes": attributes}}


async def audit_trail(stack: Stack, reference: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event == "profile_updated")
            .order_by(AuditEvent.id)
        )
        return list(rows)


async def test_patch_changes_the_profile_and_records_which_fields_never_their_values(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        before = (await http.get(f"/customers/{reference}", headers=bearer)).json()["data"]["attributes"]
        assert before["preferredShippingMethod"] is None

        changes = {
            "salutation": "Dr",
            "firstName": "  Augusta ",
            "lastName": "King",
            "gender": "Male",  # registered as Female
            "dateOfBirth": "1815-12-10",
            "phone": "+44 20 7946 0958",
            "company": "Analytical Engines Ltd",
            "preferredShippingMethod": "express",
        }
        response = await http.patch(f"/customers/{reference}", json=profile(**changes), headers=bearer)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/vnd.api+json")
        data = response.json()["data"]
        assert (data["type"], data["id"]) == ("customers", reference)
        assert data["links"]["self"] == f"{e2e.api_url}/customers/{reference}"
        after = data["attributes"]
        assert after == {
            **before,
            **changes,
            "firstName": "Augusta",  # surrounding whitespace dropped, as at registration
            "updatedAt": after["updatedAt"],
        }
        assert datetime.fromisoformat(after["updatedAt"]) > datetime.fromisoformat(before["updatedAt"])
        assert after["createdAt"] == before["createdAt"]
        assert (await http.get(f"/customers/{reference}", headers=bearer)).json()["data"]["attributes"] == after

        # the same values again: nothing changed, nothing recorded, updatedAt stays
        same = await http.patch(f"/customers/{reference}", json=profile(**changes), headers=bearer)
        assert same.status_code == 200 and same.json()["data"]["attributes"] == after

        # null clears an optional attribute
        cleared = await http.patch(
            f"/customers/{reference}", json=profile(phone=None, preferredShippingMethod=None), headers=bearer
        )
        assert cleared.status_code == 200
        assert cleared.json()["data"]["attributes"]["phone"] is None
        assert cleared.json()["data"]["attributes"]["preferredShippingMethod"] is None

    events = await audit_trail(e2e, reference)
    assert [(e.channel, e.actor) for e in events] == [("api", reference), ("api", reference)]
    assert sorted(events[0].details["fields"]) == sorted(changes)
    assert sorted(events[1].details["fields"]) == ["phone", "preferredShippingMethod"]
    recorded = json.dumps([e.details for e in events])
    for value in ("Augusta", "King", "1815", "7946", "Analytical", "express", "Male", email):
        assert value not in recorded


async def test_the_locale_is_normalized_refused_when_unsupported_and_picks_later_emails(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        german = await http.patch(f"/customers/{reference}", json=profile(locale="de"), headers=bearer)
        assert german.status_code == 200 and german.json()["data"]["attributes"]["locale"] == "de_DE"
        assert (await audit_trail(e2e, reference))[-1].details == {"fields": ["locale"]}

        french = await http.patch(f"/customers/{reference}", json=profile(locale="fr_FR"), headers=bearer)
        assert (french.status_code, french.json()["errors"]) == (
            422,
            [{"status": 422, "code": "901", "detail": "locale => The value you selected is not a valid choice."}],
        )
        mine = (await http.get(f"/customers/{reference}", headers=bearer)).json()["data"]["attributes"]
        assert mine["locale"] == "de_DE"

        forgotten = {"data": {"type": "customer-forgotten-password", "attributes": {"email": email}}}
        assert (await http.post("/customer-forgotten-password", json=forgotten)).status_code == 204
        await e2e.mail_to(email, "zurücksetzen")

        english = await http.patch(f"/customers/{reference}", json=profile(locale="en-us"), headers=bearer)
        assert english.json()["data"]["attributes"]["locale"] == "en_US"


async def test_passwords_in_a_patch_are_ignored_and_a_new_email_waits_for_its_confirmation(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        body = profile(
            firstName="Ada",
            lastName="Lovelace",
            email="someone-else@example.com",
            # with a new email, password (and confirmPassword, when sent) is the current one: re-authentication
            password=PASSWORD,
            newPassword="Brand-new#passphrase-9",
            confirmPassword=PASSWORD,
        )
        response = await http.patch(f"/customers/{reference}", json=body, headers=bearer)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["attributes"]["email"] == email  # unchanged until the link is used
        assert response.json()["data"]["attributes"]["lastName"] == "Lovelace"
        # the access token still works (no password change bumped the token version)
        assert (await http.get(f"/customers/{reference}", headers=bearer)).status_code == 200
        assert (await sign_in(http, email, PASSWORD)).status_code == 201
        assert (await sign_in(http, email, "Brand-new#passphrase-9")).status_code == 401
    assert [e.details for e in await audit_trail(e2e, reference)] == [{"fields": ["lastName"]}]


async def test_a_customer_can_never_read_or_change_another_customers_profile(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, ref_a, bearer_a = await signed_in(e2e, http)
        _, ref_b, bearer_b = await signed_in(e2e, http)
        b_before = (await http.get(f"/customers/{ref_b}", headers=bearer_b)).json()

        read = await http.get(f"/customers/{ref_b}", headers=bearer_a)
        changed = await http.patch(f"/customers/{ref_b}", json=profile(firstName="Mallory"), headers=bearer_a)
        # refused before the body is even validated: nothing about B's account shows through
        invalid = await http.patch(f"/customers/{ref_b}", json=profile(firstName=42), headers=bearer_a)
        unknown = await http.patch("/customers/DE--999999", json=profile(firstName="Mallory"), headers=bearer_a)
        for answer in (read, changed, invalid, unknown):
            assert (answer.status_code, answer.json()["errors"]) == (
                403,
                [{"status": 403, "code": "411", "detail": "Unauthorized request."}],
            )
        anonymous = await http.patch(f"/customers/{ref_b}", json=profile(firstName="Mallory"))
        assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (403, "002")

        assert (await http.get(f"/customers/{ref_b}", headers=bearer_b)).json() == b_before
    assert await audit_trail(e2e, ref_b) == []
    assert await audit_trail(e2e, ref_a) == []


BAD_PATCHES: list[tuple[str, Any, int, str | None, str]] = [
    # Glue's envelope check, before the schema: 400 without a code
    ("malformed JSON", b'{"data": {"type": "customers", "attributes": {', 400, None, "Post data is invalid."),
    ("no data", {}, 400, None, "Post data is invalid."),
    ("wrong type", {"data": {"type": "addresses", "attributes": {"firstName": "X"}}}, 400, None, "Invalid type."),
    ("bad salutation", profile(salutation="King"), 422, "901", "salutation => The value you selected is not"),
    ("firstName a number", profile(firstName=42), 422, "901", "firstName => This value should be of type string."),
    ("firstName null", profile(firstName=None), 422, "901", "firstName => This value should not be null."),
    ("blank lastName", profile(lastName="   "), 422, "901", "lastName => This value should not be blank."),
    ("overlong lastName", profile(lastName="x" * 101), 422, "901", "lastName => This value is too long."),
    ("control characters", profile(firstName="Ha\x00ns\x1b[31m"), 422, "901", "firstName => This value contains"),
    ("bad gender", profile(gender="Robot"), 400, "414", "Gender is not valid."),
    ("gender with a valid name", profile(firstName="Changed", gender="Robot"), 400, "414", "Gender is not valid."),
    ("birth date in the future", profile(dateOfBirth="2999-01-01"), 422, "901", "dateOfBirth => This value should"),
    ("birth date not a date", profile(dateOfBirth="yesterday"), 422, "901", "dateOfBirth => This value is not"),
    ("overlong company", profile(company="x" * 256), 422, "901", "company => This value is too long."),
    ("unsupported locale", profile(locale="xx"), 422, "901", "locale => The value you selected is not a valid"),
    ("locale null", profile(locale=None), 422, "901", "locale => This value should not be null."),
    ("overlong shipping method", profile(preferredShippingMethod="x" * 65), 422, "901", "preferredShippingMethod =>"),
    ("shipping method a list", profile(preferredShippingMethod=["dhl"]), 422, "901", "preferredShippingMethod =>"),
    (
        "passwords differ",
        profile(password="Brand-new#passphrase-9", confirmPassword="Brand-new#passphrase-0"),
        422,
        "406",
        "Value in",
    ),
    ("short password", profile(password="short", confirmPassword="short"), 422, "901", "password => This value is too"),
]


async def test_bad_input_gets_the_documented_error_and_writes_nothing(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        before = (await http.get(f"/customers/{reference}", headers=bearer)).json()
        for case, body, status, code, detail in BAD_PATCHES:
            if isinstance(body, bytes):
                answer = await http.patch(
                    f"/customers/{reference}", content=body, headers={**bearer, "Content-Type": "application/json"}
                )
            else:
                answer = await http.patch(f"/customers/{reference}", json=body, headers=bearer)
            assert answer.status_code == status, (case, answer.text)
            errors = answer.json()["errors"]
            assert errors[0].get("code") == code, (case, errors)
            assert any(e["detail"].startswith(detail) for e in errors), (case, errors)
        assert (await http.get(f"/customers/{reference}", headers=bearer)).json() == before
    assert await audit_trail(e2e, reference) == []
