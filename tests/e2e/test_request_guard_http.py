"""What every request gets on a bad day, over real HTTP: a bounded wait, 503 for an outage, a Glue 500 with
a request id for anything else, and clear 4xx answers for numbers, bodies and forms the API cannot take."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import PG_ADMIN_DSN, Database, StackFactory, registration_body, token_from, unique_email
from faults.processes import TcpProxy
from sqlalchemy import make_url, select
from test_backoffice_http import staff_key
from test_login_http import PASSWORD, login_body
from test_profile_http import signed_in

from accounts.models import Customer
from api.guard import UNAVAILABLE
from api.routes.orders import MAX_OFFSET
from devstack.mailsink import MailSink
from starter.client import registration_id
from workflows.registration import RegistrationWorkflow

pytestmark = pytest.mark.e2e
JSONAPI = "application/vnd.api+json"
OUTAGE = {"errors": [{"status": 503, "code": "503", "detail": UNAVAILABLE}]}


def confirmation_body(key: str) -> dict[str, Any]:
    return {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": key}}}


async def test_a_wait_for_a_lifecycle_ends_at_the_request_timeout_and_the_lifecycle_finishes_anyway(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """No worker: the registration's update cannot be answered. The request answers 503 at the bound; once
    a worker runs again, the registration the request started completes without it."""
    async with stack(dev_server, database, api=True, request_timeout=timedelta(seconds=1)) as e2e:
        assert e2e.worker is not None
        await e2e.worker.shutdown()
        email = unique_email("deadline")
        async with e2e.http() as http:
            started = time.monotonic()
            response = await http.post("/customers", json=registration_body(email, PASSWORD))
            waited = time.monotonic() - started
            assert (response.status_code, response.json()) == (503, OUTAGE)
            assert response.headers["retry-after"] == "5"
            assert response.headers["x-request-id"]
            assert 1 <= waited < 3

            await e2e.restart_worker()
            key = token_from(await e2e.mail_to(email, "confirm", timeout=30))
            assert (await http.post("/customer-confirmation", json=confirmation_body(key))).status_code == 204
        async with database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.email_key == email))
        assert customer is not None and customer.registered_at is not None


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    target = make_url(PG_ADMIN_DSN)
    hop = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await hop.start()
    yield hop
    await hop.stop()


async def test_a_database_outage_answers_503_with_retry_after_never_500(
    stack: StackFactory, dev_server: Any, postgres_database: Database, proxy: TcpProxy
) -> None:
    url = make_url(postgres_database.url).set(host="127.0.0.1", port=proxy.port)
    # the API reaches PostgreSQL through the proxy; the worker keeps its direct connection
    behind = dataclasses.replace(postgres_database, url=url.render_as_string(hide_password=False))
    async with stack(dev_server, behind, api=True, request_timeout=timedelta(seconds=30)) as e2e, e2e.http() as http:
        email, reference, bearer = await signed_in(e2e, http)
        assert (await http.get(f"/customers/{reference}", headers=bearer)).status_code == 200

        proxy.cut()
        answers = [
            await http.get(f"/customers/{reference}", headers=bearer),
            await http.post("/access-tokens", json=login_body(email, PASSWORD)),
            await http.post("/customers", json=registration_body(unique_email("outage"), PASSWORD)),
        ]
        assert [(a.status_code, a.json(), a.headers.get("retry-after")) for a in answers] == [(503, OUTAGE, "5")] * 3

        proxy.cut(silently=True)  # connects hang: the connect timeout answers, long before the 30 s bound
        started = time.monotonic()
        hung = await http.get(f"/customers/{reference}", headers=bearer)
        assert (hung.status_code, hung.json()) == (503, OUTAGE)
        assert time.monotonic() - started < 15

        proxy.restore()
        again = await http.get(f"/customers/{reference}", headers=bearer)
        assert again.status_code == 200, again.text
        assert again.json()["data"]["attributes"]["email"] == email


async def test_a_wait_for_an_email_on_a_silent_smtp_server_ends_at_the_bound_and_the_email_follows(
    stack: StackFactory, dev_server: Any, sqlite_database: Database, sink: MailSink
) -> None:
    """A resend answers once its link went out. With an SMTP server that accepts and never answers, the
    support call answers 503 at the bound; when SMTP is back, the link arrives and activates."""
    smtp = TcpProxy("127.0.0.1", sink.port)
    await smtp.start()
    overrides = {"smtp_port": smtp.port, "smtp_timeout": 2.0, "verification_resend_min_interval": timedelta(0)}
    try:
        async with (
            stack(dev_server, sqlite_database, api=True, request_timeout=timedelta(seconds=1), **overrides) as e2e,
            e2e.http() as http,
        ):
            email = unique_email("smtp")
            created = await http.post("/customers", json=registration_body(email, PASSWORD))
            assert created.status_code == 201, created.text
            reference = created.json()["data"]["id"]
            first = token_from(await e2e.mail_to(email, "confirm"))
            registration = e2e.client.get_workflow_handle(registration_id(reference))
            while (await registration.query(RegistrationWorkflow.status)).links_sent < 1:
                await asyncio.sleep(0.05)  # the SMTP session ends after the sink has the message

            smtp.cut(silently=True)  # an SMTP server that accepts and never answers
            staff = {"Authorization": f"Bearer {await staff_key(e2e, 'smtp')}"}
            path = f"/backoffice/customers/{reference}/resend-verification"
            started = time.monotonic()
            resend = await http.post(path, headers=staff)
            assert (resend.status_code, resend.json()) == (503, OUTAGE)
            assert time.monotonic() - started < 3

            smtp.restore()  # the stuck attempt's connection is reset; the activity's next attempt gets through
            resent = await sink.wait_for(
                lambda m: email in m.to and any("token=" in link for link in m.links) and token_from(m) != first,
                timeout=30,
            )
            second = token_from(resent)
            assert (await http.post("/customer-confirmation", json=confirmation_body(second))).status_code == 204
    finally:
        await smtp.stop()


async def test_an_unexpected_failure_answers_a_glue_500_that_names_the_logged_request_id(
    stack: StackFactory, dev_server: Any, sqlite_database: Database, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The API is handed a database nobody migrated (a deployment mistake, not an outage): no table exists."""
    broken = dataclasses.replace(sqlite_database, url=f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}")
    caplog.set_level(logging.WARNING, logger="api.requests")
    async with stack(dev_server, broken, api=True) as e2e, e2e.http() as http:
        traced = await http.post(
            "/access-tokens", json=login_body(unique_email(), PASSWORD), headers={"X-Request-Id": "shop-7f3a.42"}
        )
        untraced = await http.post("/access-tokens", json=login_body(unique_email(), PASSWORD))
        insane = await http.post(
            "/access-tokens", json=login_body(unique_email(), PASSWORD), headers={"X-Request-Id": "a b\tc" * 40}
        )
    assert traced.status_code == 500
    assert traced.headers["content-type"].startswith(JSONAPI)
    assert traced.json() == {
        "errors": [{"status": 500, "code": "500", "detail": "Internal error. Reference: shop-7f3a.42"}]
    }
    assert traced.headers["x-request-id"] == "shop-7f3a.42"
    for answer in (untraced, insane):
        generated = answer.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        assert answer.json()["errors"][0]["detail"] == f"Internal error. Reference: {generated}"
    logged = [r for r in caplog.records if r.name == "api.requests" and "shop-7f3a.42" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None and "no such table" in str(logged[0].exc_info[1])


async def test_numbers_beyond_any_column_are_a_glue_error_not_an_overflow(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e, e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        orders = f"/customers/{reference}/orders"
        for params in ({"page[offset]": 2**63}, {"page[offset]": MAX_OFFSET + 1}, {"page[limit]": 2**63}):
            refused = await http.get(orders, params=params, headers=bearer)
            assert refused.status_code == 422, (params, refused.text)
            assert refused.json()["errors"][0]["code"] == "901"
            assert refused.json()["errors"][0]["detail"].startswith(f"{next(iter(params))} => ")
        farthest = await http.get(orders, params={"page[offset]": MAX_OFFSET}, headers=bearer)
        assert (farthest.status_code, farthest.json()["data"]) == (200, [])


async def test_a_chunked_body_over_the_limit_answers_413_like_a_declared_one(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async def chunked(body: bytes) -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    too_large = b'{"data": "' + b"x" * 3000 + b'"}'
    async with stack(dev_server, database, api=True, max_request_bytes=1024) as e2e, e2e.http() as http:
        refused = await http.post("/customers", content=chunked(too_large), headers={"Content-Type": JSONAPI})
        declared = await http.post("/customers", content=too_large, headers={"Content-Type": JSONAPI})
        email = unique_email("chunked")
        body = registration_body(email, PASSWORD)
        accepted = await http.post(
            "/customers", content=chunked(json.dumps(body).encode()), headers={"Content-Type": JSONAPI}
        )
    assert "content-length" not in refused.request.headers
    expected = {"errors": [{"status": 413, "code": "901", "detail": "data => The request body exceeds 1024 bytes."}]}
    assert (refused.status_code, refused.json()) == (413, expected)
    assert (declared.status_code, declared.json()) == (413, expected)
    assert accepted.status_code == 201, accepted.text


async def test_the_oauth_endpoint_answers_oauth_errors_for_a_body_that_is_no_form(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e, e2e.http() as http:
        form = {"grant_type": "password", "username": unique_email(), "password": PASSWORD}
        as_json = await http.post("/token", json=form)
        too_long = await http.post("/token", data={"grant_type": "x" * 33})
        empty = await http.post("/token", data={})
    for answer in (as_json, too_long, empty):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert answer.json()["error_description"]
        assert answer.headers["cache-control"] == "no-store"
    assert "application/x-www-form-urlencoded" in as_json.json()["error_description"]
    assert "grant_type" in too_long.json()["error_description"]
