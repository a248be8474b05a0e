"""The outermost request guard: an id for every request, one deadline, and the last word on failures.

- Every request gets an id (a sane incoming `X-Request-Id`, else a new one), echoed in the response
  header `X-Request-Id` and named in every log line about the request.
- The handler has `ACCOUNTS_REQUEST_TIMEOUT` to *start* its response; past it, it is cancelled and the
  client gets `503` with `Retry-After`. Cancelling a wait for a workflow's update does not cancel the
  workflow: the lifecycle the request started goes on by itself. A response that has started (a stream,
  a background task after the answer) is never cut.
- An outage (the database or Temporal unreachable) answers `503` with `Retry-After`; anything else
  unexpected answers a Glue-shaped `500` naming the request id, and is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sqlite3
from datetime import timedelta

import asyncpg
from sqlalchemy import exc as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.service import RPCError

from accounts.logs import bind_request, redact, unbind_request
from api.headers import set_headers
from api.jsonapi import GlueError, send_errors

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "The service is temporarily unavailable. Please try again."
_SANE_ID = re.compile(r"[A-Za-z0-9._:@=+/-]{1,128}")
_SQLITE_ERROR = 1  # SQLITE_ERROR: a bad statement or a missing table, not an outage

# Temporal unreachable or its call cut; a connect refused or timed out (OSError, TimeoutError among them);
# the pool exhausted; a connection lost mid-request; PostgreSQL refusing connections for now; asyncpg's
# protocol out of step (InternalClientError: a backend's FATAL read before its EOF, the instant of a server
# restart, accounts.db.checked_out_alive), whose connection the next checkout replaces
_OUTAGES = (
    RPCError,
    RPCTimeoutOrCancelledError,
    OSError,
    sa.TimeoutError,
    sa.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,
)

logger = logging.getLogger("api.requests")


def unavailable(exc: BaseException) -> bool:
    """True for failures that say "a service is away, try again", not "this request is wrong"."""
    if isinstance(exc, _OUTAGES):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(unavailable(inner) for inner in exc.exceptions)
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.DBAPIError) and exc.orig is not None and unavailable(exc.orig):
        return True  # orig: the driver's error as SQLAlchemy's asyncpg adapter raised it (from asyncpg's own)
    if isinstance(exc, sa.OperationalError):
        # SQLite reports "no such table" as an OperationalError too: that is a broken deployment, a 500
        return not (isinstance(exc.orig, sqlite3.Error) and exc.orig.sqlite_errorcode == _SQLITE_ERROR)
    return isinstance(exc.__cause__, BaseException) and unavailable(exc.__cause__)


def request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


def assign_request_id(scope: Scope) -> str:
    """The request's id: the one it already has (api.refusals, outside, may have given it), else a sane
    incoming `X-Request-Id`, else a new one; kept in the scope's state."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        incoming = next((value for name, value in scope.get("headers") or () if name == b"x-request-id"), b"")
        text = incoming.decode("latin-1")
        state["request_id"] = text if _SANE_ID.fullmatch(text) else secrets.token_hex(16)
    return str(state["request_id"])


class RequestGuard:
    def __init__(self, app: ASGIApp, timeout: timedelta) -> None:
        self.app = app
        self.seconds = timeout.total_seconds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = assign_request_id(scope)
        bound = bind_request(rid)  # every log line of this request's task names it (accounts/logs.py)
        try:
            await self._guarded(scope, receive, send, rid)
        finally:
            unbind_request(bound)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                set_headers(message, [(b"x-request-id", rid.encode("latin-1"))])
            await send(message)

        async def send_in_time(message: Message) -> None:
            if message["type"] == "http.response.start" and not deadline.expired():
                deadline.reschedule(None)  # from here on the response belongs to the client: never cut
            await send_with_id(message)

        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                await self.app(scope, receive, send_in_time)
        except Exception as exc:  # the last word: nothing answers a bare 500
            # A cancelled wait may surface as TimeoutError or as the library's own error (Temporal's client
            # raises WorkflowUpdateRPCTimeoutOrCancelledError): the deadline says which it was.
            if deadline.expired() and not started:
                logger.warning("request %s: %s answered 503 after %ss (deadline)", rid, _what(scope), self.seconds)
                await _answer(send_with_id, 503, UNAVAILABLE)
            else:
                await self._failed(scope, exc, started, send_with_id)

    async def _failed(self, scope: Scope, exc: Exception, started: bool, send: Send) -> None:
        rid = request_id(scope)
        if unavailable(exc):
            logger.warning("request %s: %s answered 503: %s", rid, _what(scope), type(exc).__name__)
            if not started:
                await _answer(send, 503, UNAVAILABLE)
            return
        logger.error("request %s: %s failed", rid, _what(scope), exc_info=exc)
        if not started:  # once the answer has started, the server closes the connection
            await _answer(send, 500, f"Internal error. Reference: {rid}")


def _what(scope: Scope) -> str:
    return f"{scope.get('method', '?')} {redact(str(scope.get('path', '')))}"


async def _answer(send: Send, status: int, detail: str) -> None:
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    await send_errors(send, GlueError(status, str(status), detail), retry)
