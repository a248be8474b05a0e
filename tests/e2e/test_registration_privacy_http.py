"""`ACCOUNTS_REGISTRATION_REVEALS_ACCOUNTS=false` over HTTP: a sign-up with an address that has an account
answers as a new one does (201, the same document), with a reference that names no account and is never
handed out again; only the owner's "already registered" email tells the difference. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, registration_body, unique_email
from sqlalchemy import select
from test_login_http import PASSWORD, registered, sign_in

from accounts.models import Customer

pytestmark = pytest.mark.e2e
JSONAPI = {"Content-Type": "application/vnd.api+json"}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, registration_reveals_accounts=False) as built:
        yield built


def shape(answer: httpx.Response) -> tuple[int, str, list[str], str]:
    data = answer.json()["data"]
    return answer.status_code, data["type"], sorted(data["attributes"]), data["links"]["self"].rsplit("/", 1)[0]


async def test_a_taken_address_gets_the_answer_of_a_new_one_and_a_reference_that_leads_nowhere(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, owner = await registered(e2e, http)
        fresh = await http.post("/customers", json=registration_body(unique_email(), PASSWORD), headers=JSONAPI)
        taken = await http.post("/customers", json=registration_body(email.upper(), PASSWORD), headers=JSONAPI)
        assert taken.status_code == 201, taken.text
        assert shape(taken) == shape(fresh)
        decoy = taken.json()["data"]["id"]
        assert decoy not in (owner, fresh.json()["data"]["id"]) and decoy.startswith(e2e.database.reference_prefix)
        assert taken.json()["data"]["attributes"]["email"] == email.upper()  # echoed, as for a new address
        await e2e.mail_to(email, "someone tried to register")  # only the owner learns what happened
        checkout = {**JSONAPI, "X-Anonymous-Customer-Unique-Id": f"visitor-{decoy}"}  # the checkout sign-up
        at_checkout = await http.post("/customers", json=registration_body(email, PASSWORD), headers=checkout)
        assert shape(at_checkout) == shape(fresh), at_checkout.text

        # the reference answers exactly as another customer's does, with a token and without one
        token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        other = fresh.json()["data"]["id"]
        for path in ("/customers/{}", "/customers/{}/addresses", "/customers/{}/carts"):
            for headers in ({"Authorization": f"Bearer {token}"}, {}):
                at_decoy = await http.get(path.format(decoy), headers=headers)
                at_other = await http.get(path.format(other), headers=headers)
                assert (at_decoy.status_code, at_decoy.json()) == (at_other.status_code, at_other.json()), path
                assert at_decoy.status_code in (401, 403), path

        # it belongs to no account, now or later: the next sign-up gets a reference of its own
        later = await http.post("/customers", json=registration_body(unique_email(), PASSWORD), headers=JSONAPI)
        assert later.status_code == 201 and later.json()["data"]["id"] != decoy
    async with e2e.database.sessions() as session:
        assert await session.scalar(select(Customer.id).where(Customer.customer_reference == decoy)) is None
        owners = (await session.scalars(select(Customer.customer_reference).where(Customer.email_key == email))).all()
    assert owners == [owner]  # no second account


async def test_by_default_a_taken_address_is_refused_as_spryker_does(
    stack: StackFactory, dev_server: Any, sqlite_database: Database
) -> None:
    async with stack(dev_server, sqlite_database, api=True) as e2e, e2e.http() as http:
        email, _ = await registered(e2e, http, confirm=False)
        taken = await http.post("/customers", json=registration_body(email, PASSWORD), headers=JSONAPI)
    assert (taken.status_code, taken.json()["errors"][0]["code"]) == (422, "400")
