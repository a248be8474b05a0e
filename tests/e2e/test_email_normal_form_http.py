"""One account per mailbox, however its address is spelled (`accounts.email_address.email_key`): an address
with an internationalized domain registered as `xn--`, then used as `bücher.de` (and in capitals) by every
entry point over HTTP: registration, sign-in, forgotten password, email change, back-office search and the
CSV import. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, registration_body, token_from
from test_backoffice_http import staff_key
from test_import_http import ImportFile, progress, until_done, upload
from test_login_http import PASSWORD, sign_in

pytestmark = pytest.mark.e2e
JSONAPI = {"Content-Type": "application/vnd.api+json"}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def registered_at_an_idn_domain(e2e: Stack, http: httpx.AsyncClient) -> tuple[str, str, str]:
    """An active account at `…@xn--bcher-kva.de`; returns its address, the same one spelled in Unicode
    and capitals, and its reference."""
    local = f"anna-{uuid.uuid4().hex[:8]}"
    stored = f"{local}@xn--bcher-kva.de"
    created = await http.post("/customers", json=registration_body(stored, PASSWORD), headers=JSONAPI)
    assert created.status_code == 201, created.text
    key = token_from(await e2e.mail_to(stored, "confirm"))
    confirmation = {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": key}}}
    assert (await http.post("/customer-confirmation", json=confirmation, headers=JSONAPI)).status_code == 204
    return stored, f"{local.capitalize()}@BÜCHER.de", created.json()["data"]["id"]


async def test_an_idn_address_is_one_account_in_either_spelling(e2e: Stack) -> None:
    async with e2e.http() as http:
        stored, unicode, reference = await registered_at_an_idn_domain(e2e, http)

        again = await http.post("/customers", json=registration_body(unicode, PASSWORD), headers=JSONAPI)
        assert (again.status_code, again.json()["errors"][0]["code"]) == (422, "400"), again.text

        assert (await sign_in(http, unicode)).status_code == 201

        forgotten = {"data": {"type": "customer-forgotten-password", "attributes": {"email": unicode}}}
        assert (await http.post("/customer-forgotten-password", json=forgotten, headers=JSONAPI)).status_code == 204
        await e2e.mail_to(stored, "reset")  # the account's own address got the link

        admin = {"Authorization": f"Bearer {await staff_key(e2e, 'searcher', 'admin')}"}
        for term in (unicode, "bücher.de"):
            found = await http.get("/backoffice/customers", params={"q": term, "perPage": 100}, headers=admin)
            assert found.status_code == 200, found.text
            assert reference in [row["id"] for row in found.json()["data"]], term


async def test_an_email_change_to_the_own_address_in_another_spelling_changes_nothing(e2e: Stack) -> None:
    async with e2e.http() as http:
        stored, unicode, reference = await registered_at_an_idn_domain(e2e, http)
        token = (await sign_in(http, stored)).json()["data"]["attributes"]["accessToken"]
        body = {"data": {"type": "customers", "attributes": {"email": unicode}}}
        changed = await http.patch(
            f"/customers/{reference}", json=body, headers={**JSONAPI, "Authorization": f"Bearer {token}"}
        )
        assert changed.status_code == 200, changed.text
    assert await e2e.accounts.email_changes.status(reference) is None  # no email change was started


async def test_the_import_finds_the_account_and_the_duplicate_row_in_either_spelling(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, unicode, _ = await registered_at_an_idn_domain(e2e, http)
        f = ImportFile()
        other = f"bob-{f.tag}@müller.de"
        f.add(1, email=unicode).add(2, email=other).add(3, email=f"BOB-{f.tag}@xn--mller-kva.de")
        admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
        started = await http.post("/backoffice/imports", headers=admin, **upload(f.content(), dryRun="true"))
        assert started.status_code == 202, started.text
        done = await until_done(lambda: progress(http, admin, started.json()["data"]["id"]))
    # line 2: another customer's address (by its other spelling); line 4: line 3's address again
    assert [(e["line"], e["column"]) for e in done["errors"]] == [(2, "email"), (4, "email")], done


async def test_an_email_change_to_another_accounts_address_in_another_spelling_finds_it_taken(e2e: Stack) -> None:
    async with e2e.http() as http:
        stored, unicode, _ = await registered_at_an_idn_domain(e2e, http)
        other, _, other_reference = await registered_at_an_idn_domain(e2e, http)
        token = (await sign_in(http, other)).json()["data"]["attributes"]["accessToken"]
        body = {"data": {"type": "customers", "attributes": {"email": unicode, "password": PASSWORD}}}
        changed = await http.patch(
            f"/customers/{other_reference}", json=body, headers={**JSONAPI, "Authorization": f"Bearer {token}"}
        )
        assert changed.status_code == 200, changed.text
    await e2e.mail_to(stored, "someone tried to register")  # the owner is told; no second account at the address
