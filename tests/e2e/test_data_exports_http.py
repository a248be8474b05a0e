"""Data export over HTTP (this service's extension; workflows/data_export.py): the request, the once-per-
interval refusal, the download by the owner (a zip read back), the refusals for another customer, the
expiry, the back office's action and the audit trail. Both databases, the dev server, the SMTP sink."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import select
from test_backoffice_http import staff_key
from test_backoffice_web import csrf_token, staff_with_password, web_sign_in
from test_login_http import JSONAPI, registered, sign_in

from accounts import data_exports
from accounts.models import AuditEvent, DataExport

pytestmark = pytest.mark.e2e
READY = "ready to download"
LIFETIME = timedelta(seconds=4)  # the dev server's timers are real: the expiry in seconds
BODY = {"data": {"type": "data-exports", "attributes": {}}}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, data_export_expires_after=LIFETIME) as built:
        yield built


async def signed_in(stack: Stack, http: httpx.AsyncClient) -> tuple[str, str, dict[str, str]]:
    email, reference = await registered(stack, http)
    answer = await sign_in(http, email)
    assert answer.status_code == 201, answer.text
    return email, reference, {"Authorization": f"Bearer {answer.json()['data']['attributes']['accessToken']}"}


async def events(stack: Stack, reference: str, event: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.customer_reference == reference, AuditEvent.event == event)
        return list(await session.scalars(query.order_by(AuditEvent.id)))


async def requested(http: httpx.AsyncClient, reference: str, token: dict[str, str]) -> httpx.Response:
    return await http.post(
        f"/customers/{reference}/data-exports", json=BODY, headers={**token, "Content-Type": JSONAPI}
    )


def error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["errors"][0]["code"]


async def test_the_owner_asks_once_a_day_downloads_the_archive_and_every_download_is_audited(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, token = await signed_in(e2e, http)
        first = await requested(http, reference, token)
        assert first.status_code == 202, first.text
        export_id = first.json()["data"]["id"]
        assert first.json()["data"]["attributes"] == {"status": "preparing"}
        message = await e2e.mail_to(email, READY)
        link = f"{e2e.settings.public_url}/customers/{reference}/data-exports/{export_id}"
        assert link in message.text

        wrong_type = {"data": {"type": "customers", "attributes": {}}}
        refused = await http.post(f"/customers/{reference}/data-exports", json=wrong_type, headers=token)
        assert refused.status_code == 400 and refused.json()["errors"][0]["detail"] == "Invalid type."
        again = await http.post(f"/customers/{reference}/data-exports", headers=token)  # the body may be left out
        assert error(again) == (429, "1641")
        assert 86_000 < int(again.headers["Retry-After"]) <= 86_400

        listed = await http.get(f"/customers/{reference}/data-exports", headers=token)
        assert listed.status_code == 200
        [item] = listed.json()["data"]
        assert (item["type"], item["id"], item["attributes"]["status"]) == ("data-exports", export_id, "ready")
        assert item["links"]["self"].endswith(f"/customers/{reference}/data-exports/{export_id}")

        for _ in range(2):
            download = await http.get(f"/customers/{reference}/data-exports/{export_id}", headers=token)
            assert download.status_code == 200, download.text
            assert download.headers["content-type"] == "application/zip"
            assert "attachment" in download.headers["content-disposition"]
            assert download.headers["cache-control"] == "no-store"
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            assert set(archive.namelist()) == set(data_exports.archive_files())
            profile = json.loads(archive.read("profile.json"))
            assert profile["email"] == email and "password_hash" not in profile
            sessions = json.loads(archive.read("sessions.json"))
            assert sessions, "the sign-in is listed"
            subjects = [e["subject"] for e in json.loads(archive.read("emails.json"))]
            assert any("confirm" in s.lower() for s in subjects)
            assert "orderReference" in archive.read("orders.csv").decode()
            readme = archive.read("README.txt").decode()
            assert all(f"- {name}:" in readme for name in data_exports.archive_files())

    [asked] = await events(e2e, reference, data_exports.REQUESTED)
    assert (asked.channel, asked.actor, asked.details["exportId"]) == ("api", "customer", export_id)
    downloads = await events(e2e, reference, data_exports.DOWNLOADED)
    assert [d.details["exportId"] for d in downloads] == [export_id, export_id]


async def test_another_customer_gets_nothing_and_the_archive_dies_at_its_expiry(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference, token = await signed_in(e2e, http)
        _, other_reference, other_token = await signed_in(e2e, http)
        export_id = (await requested(http, reference, token)).json()["data"]["id"]
        await e2e.mail_to(email, READY)
        path = f"/customers/{reference}/data-exports/{export_id}"
        assert error(await http.get(path, headers=other_token)) == (403, "411")
        assert error(await http.get(f"/customers/{reference}/data-exports", headers=other_token)) == (403, "411")
        assert error(await requested(http, reference, other_token)) == (403, "411")
        theirs = f"/customers/{other_reference}/data-exports/{export_id}"
        assert error(await http.get(theirs, headers=other_token)) == (404, "1640")
        assert error(await http.get(f"/customers/{reference}/data-exports/nope", headers=token)) == (404, "1640")
        # PostgreSQL refuses a NUL in a string: no path of ours (api/middleware.PathCheck), not a 500
        assert error(await http.get(f"/customers/{reference}/data-exports/%00", headers=token)) == (404, "404")
        assert error(await http.get(f"/customers/{reference}/data-exports/{'z' * 32}", headers=token)) == (404, "1640")
        assert (await http.get(path)).status_code == 403  # no token: the link alone opens nothing

        async with asyncio.timeout(30):  # the workflow's timer: LIFETIME after the request
            while (await http.get(path, headers=token)).status_code == 200:
                await asyncio.sleep(0.5)
        assert error(await http.get(path, headers=token)) == (404, "1640")
        async with asyncio.timeout(30):
            while not await events(e2e, reference, data_exports.DELETED):
                await asyncio.sleep(0.2)
        [item] = (await http.get(f"/customers/{reference}/data-exports", headers=token)).json()["data"]
        assert (item["attributes"]["status"], item["attributes"]["size"]) == ("expired", None)
        async with e2e.database.sessions() as session:
            row = await session.get(DataExport, export_id)
        assert row is not None and row.archive_encrypted is None
    assert not await events(e2e, other_reference, data_exports.DOWNLOADED)


async def test_support_starts_an_export_for_the_customer_and_a_deletion_takes_it_away(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e, e2e.http() as http:
        email, reference, token = await signed_in(e2e, http)
        key = {"Authorization": f"Bearer {await staff_key(e2e, 'exports', role='support')}"}
        started = await http.post(f"/backoffice/customers/{reference}/data-exports", headers=key)
        assert started.status_code == 202, started.text
        export_id = started.json()["data"]["id"]
        await e2e.mail_to(email, READY)
        [asked] = await events(e2e, reference, data_exports.REQUESTED)
        assert asked.channel == "backoffice" and asked.actor.startswith("exports-")
        # support's export does not spend the customer's own
        assert (await requested(http, reference, token)).status_code == 202
        unknown = await http.post("/backoffice/customers/DE--999999/data-exports", headers=key)
        assert unknown.status_code == 404

        # the web UI's button on the customer page starts the same
        async with e2e.http() as staff_http:
            name, password = await staff_with_password(e2e, role="support")
            assert (await web_sign_in(staff_http, name, password)).status_code == 303
            page = await staff_http.get(f"/backoffice/ui/customers/{reference}")
            action = f"/backoffice/ui/customers/{reference}/data-export"
            assert action in page.text
            pressed = await staff_http.post(action, data={"csrf_token": csrf_token(page)})
            assert pressed.status_code == 303
            after = await staff_http.get(f"/backoffice/ui/customers/{reference}")
            assert "the download link goes to the customer" in after.text
        async with asyncio.timeout(30):
            while len(await events(e2e, reference, data_exports.REQUESTED)) < 3:
                await asyncio.sleep(0.2)
        assert name in {e.actor for e in await events(e2e, reference, data_exports.REQUESTED)}

        await e2e.accounts.deletions.delete(reference, channel="api", actor="customer")
        async with e2e.database.sessions() as session:
            assert await session.get(DataExport, export_id) is None
        gone = await http.post(f"/backoffice/customers/{reference}/data-exports", headers=key)
        assert gone.status_code == 409
