"""The request guard around small ASGI apps served by uvicorn over real HTTP: the deadline bounds the wait for
a response to start, never a response that has started."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import uvicorn
from conftest import free_port
from sqlalchemy import exc as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from starlette.types import Receive, Scope, Send

from api.guard import RequestGuard

DEADLINE = timedelta(seconds=0.5)


@contextlib.asynccontextmanager
async def served(app: RequestGuard) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        await task


async def test_a_response_that_does_not_start_in_time_is_cancelled_and_answered_503() -> None:
    cancelled = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with served(RequestGuard(slow, DEADLINE)) as http:
        started = time.monotonic()
        answer = await http.get("/")
        waited = time.monotonic() - started
    assert (answer.status_code, answer.json()["errors"][0]["code"], answer.headers["retry-after"]) == (503, "503", "5")
    assert 0.5 <= waited < 2
    assert cancelled.is_set()


async def test_a_stream_that_started_in_time_is_never_cut() -> None:
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for n in range(6):  # 1.2 s in all, well past the 0.5 s deadline
            await asyncio.sleep(0.2)
            await send({"type": "http.response.body", "body": f"{n}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"end\n"})

    async with served(RequestGuard(streaming, DEADLINE)) as http:
        answer = await http.get("/", headers={"X-Request-Id": "stream-1"})
    assert answer.status_code == 200
    assert answer.text == "0\n1\n2\n3\n4\n5\nend\n"
    assert answer.headers["x-request-id"] == "stream-1"


def as_sqlalchemy_raises(driver_error: Exception) -> Exception:
    """The exception SQLAlchemy raises for `driver_error` from asyncpg: its adapter's error (raised from
    asyncpg's), wrapped in SQLAlchemy's DBAPIError subclass (raised from the adapter's)."""
    dialect = asyncpg_dialect()
    dbapi = dialect.import_dbapi()
    try:
        try:
            raise driver_error
        except Exception as raised:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, raised)
    except Exception as adapted:
        wrapped = sa.DBAPIError.instance("SELECT 1", {}, adapted, dbapi.Error, dialect=dialect)
        wrapped.__cause__ = adapted
        return wrapped
    raise AssertionError("the adapter raises")


async def test_asyncpg_out_of_step_at_a_server_restart_answers_503_a_statement_error_500() -> None:
    """A backend's FATAL read before its EOF leaves asyncpg's protocol out of step for the instant of a server
    restart; the next checkout replaces that connection, so the client is told to try again."""
    out_of_step = asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    refused = asyncpg.UniqueViolationError("duplicate key value violates unique constraint")

    def raising(error: Exception) -> RequestGuard:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raise as_sqlalchemy_raises(error)

        return RequestGuard(app, DEADLINE)

    async with served(raising(out_of_step)) as http:
        answer = await http.get("/")
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
    async with served(raising(refused)) as http:
        answer = await http.get("/")
    assert answer.status_code == 500  # not an outage: a bug, logged with its traceback
