"""The API process's memory of sign-in refusals (accounts/refusals.py, api/refusals.py), over HTTP: a flood on a
locked account costs the database nothing, answers as the database would, lets a known device through,
and lets go of a lock lifted elsewhere within ACCOUNTS_LOCKOUT_REFUSAL_MEMORY."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import Database, Stack, StackFactory, free_port, token_from
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import event
from test_login_http import JSONAPI, PASSWORD, login_body, registered, sign_in

from accounts.db import create_engine
from api.app import create_app
from api.serving import uvicorn_config
from starter import NotLocked

pytestmark = pytest.mark.e2e
THRESHOLD = 4
MAX_BYTES = 2048  # ACCOUNTS_MAX_REQUEST_BYTES of the flooded API
DEVICE = "X-Device-Token"
BUDGETS = {"rate_limit_per_ip": 100_000, "rate_limit_global": 100_000}  # counted, as in production


class Statements:
    """Every SQL statement the API's engine runs, heard by an event listener on the engine it was handed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement)

    def mentioning(self, table: str) -> int:
        return sum(table in statement for statement in self.seen)


@asynccontextmanager
async def watched_api(
    built: Stack, log_level: str = "warning", **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Statements, FastAPI]]:
    """The API under uvicorn (as `accounts api` serves it) on an engine whose statements are counted."""
    engine = create_engine(built.settings.database_url)
    statements = Statements()
    event.listen(engine.sync_engine, "before_cursor_execute", statements)
    port = free_port()
    settings = built.settings.model_copy(update=overrides)
    app = create_app(settings, temporal_client=built.client, engine=engine)
    server = uvicorn.Server(
        uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level=log_level, lifespan="on")
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http, statements, app
    finally:
        server.should_exit = True
        await task
        await engine.dispose()


JSON = {"Content-Type": JSONAPI}


def sign_in_request(email: str, password: str) -> bytes:
    body = json.dumps(login_body(email, password)).encode()
    head = f"POST /access-tokens HTTP/1.1\r\nHost: x\r\nContent-Type: {JSONAPI}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def pipelined(http: httpx.AsyncClient, requests: list[bytes], wait: float = 10) -> list[int]:
    """The statuses of `requests` written at once on one new connection to `http`'s server (HTTP/1.1
    pipelining, which httpx does not do); a request the server leaves unanswered ends the list."""
    reader, writer = await asyncio.open_connection(http.base_url.host, http.base_url.port)
    statuses: list[int] = []
    try:
        writer.write(b"".join(requests))
        await writer.drain()
        async with asyncio.timeout(wait):
            for _ in requests:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                statuses.append(int(head.split(" ", 2)[1]))
                fields = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
                await reader.readexactly(int(fields.get("content-length", "0")))
    except (TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
    return statuses


def refused_in_metrics() -> float:
    labels = {"method": "POST", "route": "/access-tokens", "status": "429"}
    return REGISTRY.get_sample_value("accounts_http_requests_total", labels) or 0.0


async def one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body  # httpx sends an async iterable chunked, without Content-Length


class AccessLines(logging.Handler):
    """The access log's lines, as uvicorn writes them (after the logger's filters)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record)

    def statuses(self, request: str) -> list[int]:
        """The statuses of the lines for `request` ("METHOD path"), in order."""
        method, path = request.split(" ")
        return [int(str(r.args[-1])) for r in self.lines if isinstance(r.args, tuple) and r.args[1:3] == (method, path)]


async def lock(http: httpx.AsyncClient, email: str) -> httpx.Response:
    """Threshold-many wrong passwords (the last one's threshold is remembered), then a refusal."""
    for _ in range(THRESHOLD):
        assert (await sign_in(http, email, "wrong password!")).status_code == 401
    refused = await sign_in(http, email, "wrong password!")
    assert refused.status_code == 429, refused.text
    return refused


async def test_a_flood_on_a_locked_account_is_answered_without_the_database(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": 60, **BUDGETS}
    access_log = AccessLines()
    async with (
        stack(dev_server, database, **settings) as built,
        watched_api(built, log_level="info", max_request_bytes=MAX_BYTES) as (http, statements, _),
        watched_api(
            built, log_level="info", lockout_refusal_memory=timedelta(0), request_timeout=timedelta(seconds=1)
        ) as (other_process, _, _),
    ):
        logging.getLogger("uvicorn.access").addHandler(access_log)
        try:
            email, _ = await registered(built, http)
            # requests the route refuses before any reservation (no password: 422) take no place among the
            # account's few: as many as the threshold beside the owner's attempt leave it its answer
            *unchecked, owner = await asyncio.gather(
                *(http.post("/access-tokens", json=login_body(email, None), headers=JSON) for _ in range(THRESHOLD)),
                sign_in(http, email),
            )
            assert [a.status_code for a in unchecked] == [422] * THRESHOLD and owner.status_code == 201, owner.text
            access_log.lines.clear()
            await lock(http, email)
            by_database = await sign_in(other_process, email, "guess")  # an API process that remembers nothing
            assert by_database.status_code == 429
            # the database's answers have a line each (the 429: the other process's); lock()'s refusal, from
            # memory, has none
            assert access_log.statuses("POST /access-tokens") == [401] * THRESHOLD + [429]

            statements.seen.clear()
            access_log.lines.clear()
            counted = refused_in_metrics()
            flood = await asyncio.gather(*(sign_in(http, email, f"guess {n}") for n in range(40)))
            assert refused_in_metrics() - counted == 40  # in the HTTP metrics all the same
            right = await sign_in(http, email.upper())  # the right password, typed differently: the same address
            assert statements.seen == []  # no budget, no customer, no throttle read
            # nor a line each in the access log (an attacker's 10,000 a second would be 10,000 lines)
            assert access_log.statuses("POST /access-tokens") == []

            # answered before every other middleware, it carries what they would have added
            traced = await http.post(
                "/access-tokens",
                json=login_body(email, "guess"),
                headers={"Content-Type": JSONAPI, "X-Request-Id": "trace-42"},
            )
            assert traced.status_code == 429 and statements.seen == []
            assert traced.headers["X-Request-Id"] == "trace-42" and flood[0].headers["X-Request-Id"]
            for answer in (traced, flood[0]):
                assert answer.headers["X-Content-Type-Options"] == "nosniff"
                assert answer.headers["Cache-Control"] == "no-store"
            # it reads no body it cannot bound: one over the limit, or chunked, goes on unread to the stack
            padded = login_body(email, "x" * MAX_BYTES)
            too_large = await http.post("/access-tokens", json=padded, headers={"Content-Type": JSONAPI})
            assert too_large.status_code == 413, too_large.text  # BodySizeLimit's answer
            chunked = await http.post(
                "/access-tokens", content=one_chunk(json.dumps(login_body(email, "guess")).encode()),
                headers={"Content-Type": JSONAPI},
            )  # fmt: skip
            assert "content-length" not in chunked.request.headers
            assert chunked.status_code == 429  # by the route, which asks the memory too
            assert access_log.statuses("POST /access-tokens") == [413, 429]  # the two that went the whole way

            # pipelined behind a refusal from memory, the next request keeps its line (a copy of the
            # refusal's context would have hidden it, and any number after it)
            answers = await pipelined(
                http, [sign_in_request(email, "guess"), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"]
            )
            assert answers == [429, 200] and access_log.statuses("GET /health")[-1:] == [200]

            # a body that does not come is answered within ACCOUNTS_REQUEST_TIMEOUT, as anywhere else
            started = time.monotonic()
            slow = await pipelined(other_process, [sign_in_request(email, "guess")[:-10]], wait=5)
            assert slow == [503] and time.monotonic() - started < 3
        finally:
            logging.getLogger("uvicorn.access").removeHandler(access_log)

    for answer in [*flood, right]:
        assert answer.status_code == 429
        assert answer.json() == by_database.json()  # Glue's 4401, the same minutes
        assert abs(int(answer.headers["Retry-After"]) - int(by_database.headers["Retry-After"])) <= 1


async def test_a_burst_on_one_account_reaches_the_database_a_few_times_only(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": 60, **BUDGETS}
    async with stack(dev_server, database, **settings) as built, watched_api(built) as (http, statements, _):
        email, _ = await registered(built, http)
        statements.seen.clear()
        burst = await asyncio.gather(*(sign_in(http, email, f"guess {n}") for n in range(60)))
        customer_reads = statements.mentioning("FROM customers")
        budget_counts = statements.mentioning("request_counts")

    statuses = sorted(answer.status_code for answer in burst)
    assert statuses == [401] * THRESHOLD + [429] * (60 - THRESHOLD)
    # at most the threshold of attempts is on its way to the database at once; the rest are refused at
    # once, from memory (before: all 60 read the customer)
    assert customer_reads <= 2 * THRESHOLD, customer_reads
    assert budget_counts <= 2 * 2 * 2 * THRESHOLD, budget_counts  # per IP and global, read and update


async def test_a_known_device_is_not_refused_by_the_memory(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": 60, **BUDGETS}
    async with stack(dev_server, database, **settings) as built, watched_api(built) as (http, statements, _):
        email, _ = await registered(built, http)
        device_token = (await sign_in(http, email)).headers[DEVICE]
        refused = await lock(http, email)
        assert (await sign_in(http, email)).status_code == 429  # remembered

        # made-up tokens are no way past the memory: one read of the token each, nothing else
        statements.seen.clear()
        headers = {"Content-Type": JSONAPI}
        made_up = await asyncio.gather(
            *(
                http.post("/access-tokens", json=login_body(email, "guess"), headers={**headers, DEVICE: f"{n:043d}"})
                for n in range(20)
            )
        )
        assert [answer.json() for answer in made_up] == [refused.json()] * 20
        assert len(statements.seen) == 20 and statements.mentioning("device_tokens") == 20, statements.seen

        owner = await http.post(
            "/access-tokens", json=login_body(email, PASSWORD), headers={"Content-Type": JSONAPI, DEVICE: device_token}
        )
        assert owner.status_code == 201, owner.text
        body = login_body(email, PASSWORD)
        body["data"]["attributes"]["deviceToken"] = device_token
        assert (await http.post("/access-tokens", json=body, headers={"Content-Type": JSONAPI})).status_code == 201
        right_password = await http.post(
            "/access-tokens", json=login_body(email, PASSWORD), headers={"Content-Type": JSONAPI, DEVICE: "x" * 43}
        )
        assert right_password.status_code == 429  # a token that is none of the account's is no way around the lock


async def test_a_lock_lifted_by_support_is_honoured_once_the_memory_lets_go(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    hold = 1.0
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": hold}
    async with stack(dev_server, database, **settings) as built, watched_api(built) as (http, statements, _):
        email, reference = await registered(built, http)
        await lock(http, email)
        statements.seen.clear()
        assert (await sign_in(http, email)).status_code == 429
        assert statements.seen == []  # answered from memory

        # support lifts the lock from another process (the stack's own client: not this API's memory)
        for _ in range(100):
            try:
                await built.accounts.logins.unlock(reference, agent="support@shop.test", reason="owner called")
                break
            except NotLocked:  # the lockout workflow is still applying the lock
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the lock was never applied")
        lifted = time.monotonic()
        while (answer := await sign_in(http, email)).status_code == 429 and time.monotonic() - lifted < hold + 5:
            await asyncio.sleep(0.1)
        waited = time.monotonic() - lifted

    assert answer.status_code == 201, answer.text
    assert waited <= hold + 1, waited


async def test_a_lock_lifted_through_this_api_process_is_honoured_at_once(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": 600}  # far longer than the test
    async with stack(dev_server, database, **settings) as built, watched_api(built) as (http, _, app):
        email, reference = await registered(built, http)
        await lock(http, email)
        assert (await sign_in(http, email)).status_code == 429  # remembered
        logins = app.state.accounts.logins  # the API's own: the back office unlocks through it
        for _ in range(100):
            try:
                await logins.unlock(reference, agent="support@shop.test", reason="owner called")
                break
            except NotLocked:
                await asyncio.sleep(0.1)
        assert (await sign_in(http, email)).status_code == 201

        await lock(http, email)
        forgotten = {"data": {"type": "customer-forgotten-password", "attributes": {"email": email}}}
        assert (await http.post("/customer-forgotten-password", json=forgotten)).status_code == 204
        key = token_from(await built.mail_to(email, "reset"))
        new = "Zr7!new-kettle-password"
        attributes = {"restorePasswordKey": key, "password": new, "confirmPassword": new}
        restored = await http.patch(
            f"/customer-restore-password/{key}",
            json={"data": {"type": "customer-restore-password", "id": key, "attributes": attributes}},
        )
        assert restored.status_code == 204
        assert (await sign_in(http, email, new)).status_code == 201  # the reset cleared the lockout, here at once


async def test_the_right_password_at_the_threshold_is_not_remembered_as_a_block(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    settings = {"lockout_max_failures": THRESHOLD, "lockout_refusal_memory": 600}
    async with stack(dev_server, database, **settings) as built, watched_api(built) as (http, _, _):
        email, _ = await registered(built, http)
        for _ in range(THRESHOLD - 1):
            assert (await sign_in(http, email, "wrong password!")).status_code == 401
        assert (await sign_in(http, email)).status_code == 201  # reached the threshold, and was the owner
        assert (await sign_in(http, email)).status_code == 201  # so nothing blocks the next one
