"""Sign-in refusals at the edge: POST /access-tokens answered from the API process's memory of refusals.

An attempt without a device token on an account (or from a client network) that the database refused a
moment ago is answered here, before FastAPI parses it, before the request budget and before any database
read: the rule, its keys and its expiry are `Logins.untrusted_attempt` (accounts/refusals.py), and the
answer is the route's own (`access_tokens.blocked_answer`). Every other request goes on unchanged, the
body handed on as it came; an untrusted attempt keeps its place among its account's few on their way to
the database until the sign-in has reserved, and one that finds every place taken is refused here too,
so a burst on one account is answered at once instead of spending its budget or waiting. An
attempt with a device token on a remembered account costs one read of the token: the account's own goes
on to the database path (the owner is never refused from memory), a made-up one is refused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextvars import ContextVar
from typing import Any

from fastapi import Request
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts.metrics import HTTP_DURATION, HTTP_REQUESTS, SIGN_INS_BLOCKED
from api.client_address import client_of
from api.guard import RETRY_AFTER_SECONDS, UNAVAILABLE, assign_request_id
from api.headers import headers_of, is_token_path
from api.jsonapi import GlueError, error_messages, send_errors
from api.routes.access_tokens import blocked_answer, presented_device_token
from starter import LoginBlocked

PATH = "/access-tokens"
SUMMARY_INTERVAL = 10.0  # seconds from a burst's first refusal to the line that counts them

log = logging.getLogger("api.refusals")
# set only while the answer's head is sent (where uvicorn writes the access-log line), then reset
_from_memory: ContextVar[bool] = ContextVar("answered_from_memory", default=False)


class RefusalTally:
    """Sign-ins refused from memory, counted instead of logged one by one: an attacker who sends 10,000 a
    second would write 10,000 lines a second. The first refusal after a quiet spell starts the count;
    SUMMARY_INTERVAL later one warning says how many there were, and the next refusal starts again."""

    def __init__(self, interval: float = SUMMARY_INTERVAL) -> None:
        self._interval = interval
        self._count = 0
        self._since = 0.0

    def count(self) -> None:
        if self._count == 0:
            self._since = time.monotonic()
            asyncio.get_running_loop().call_later(self._interval, self.flush)
        self._count += 1

    def flush(self) -> None:
        if self._count:
            log.warning(
                "%d sign-in attempts refused from memory in the last %.0f s (not in the access log one by one)",
                self._count,
                time.monotonic() - self._since,
            )
        self._count = 0


class QuietRefusals(logging.Filter):
    """Leaves the access-log line of a sign-in refused from memory out (RefusalTally counts it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _from_memory.get()


def install_quiet_refusals() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietRefusals) for f in logger.filters):
        logger.filters.insert(0, QuietRefusals())  # first: a line left out costs no redaction either


_tally = RefusalTally()
# the answer's headers as every other answer of a token path gets them (api.headers), and its request id
ANSWER_HEADERS = {n.decode(): v.decode() for n, v in headers_of(html=False, token_path=is_token_path(PATH))}


# the HTTP metrics of the answers given here, outside api.observability.RequestMetrics (which is inside)
_HTTP = {status: (HTTP_REQUESTS.labels("POST", PATH, str(status)), HTTP_DURATION.labels("POST", PATH, str(status)))
         for status in (429, 503)}  # fmt: skip


def _observe(status: int, started: float) -> None:
    count, duration = _HTTP[status]
    count.inc()
    duration.observe(time.perf_counter() - started)


async def _refuse(scope: Scope, send: Send, blocked: LoginBlocked, started: float) -> None:
    answer = blocked_answer(blocked)
    headers = {**answer.headers, **ANSWER_HEADERS, "X-Request-Id": assign_request_id(scope)}
    _observe(429, started)
    await _send_quietly(send, error_messages(answer.errors[0], headers))
    _tally.count()
    SIGN_INS_BLOCKED.inc()  # the route's refusals are counted by Logins.authenticate


async def _send_quietly(send: Send, messages: list[Message]) -> None:
    """The head with `_from_memory` set (its access-log line is left out), the body after it is reset:
    uvicorn starts a pipelined next request from within the last send, in a copy of this context."""
    head, *rest = messages
    token = _from_memory.set(True)
    try:
        await send(head)
    finally:
        _from_memory.reset(token)
    for message in rest:
        await send(message)


class RefuseRemembered:
    """Outermost (create_app puts it around FastAPI's own stack): a sign-in refused from memory costs no
    other middleware. So it bounds what it reads itself (a body without a declared length, one sent
    chunked, or one longer than ACCOUNTS_MAX_REQUEST_BYTES goes on as it came, and BodySizeLimit inside
    answers it; a body slower than ACCOUNTS_REQUEST_TIMEOUT is answered 503, as the guard inside would),
    and anything unexpected while it decides hands the request on to the stack inside, whose guard has
    the last word."""

    def __init__(self, app: ASGIApp, owner: Starlette, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.owner = owner  # the application whose state holds the sign-ins
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers") or ()
        declared = next((value for name, value in headers if name == b"content-length"), b"")
        chunked = any(name == b"transfer-encoding" for name, _ in headers)
        if chunked or not declared.isdigit() or int(declared) > self.max_bytes:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        read = 0
        try:
            async with asyncio.timeout(self.read_timeout):
                while read <= self.max_bytes:  # the declared length bounds it; counted all the same
                    message = await receive()
                    messages.append(message)
                    read += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        break
        except TimeoutError:
            _observe(503, started)
            await self._unavailable(scope, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        if read > self.max_bytes or messages[-1].get("more_body", False):  # more than declared: inside, 413
            await self.app(scope, replay, send)
            return
        scope.setdefault("app", self.owner)  # Starlette sets it too, inside
        request = Request(scope)
        async with contextlib.AsyncExitStack() as place:
            try:
                refusal, placed = await self._refusal(request, b"".join(m.get("body", b"") for m in messages), place)
            except Exception:  # the memory only spares work: the stack inside decides, and answers any outage
                log.warning("the refusal memory could not decide on a sign-in; the database path will", exc_info=True)
                refusal, placed = None, False
            if refusal is None:
                if placed:  # an untrusted attempt, admitted: the refusals queued behind it answer first
                    await asyncio.sleep(0)
                await self.app(scope, replay, send)  # it holds its place until it has reserved
            else:
                await _refuse(scope, send, refusal, started)

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        """The guard's answer to a request that outlived ACCOUNTS_REQUEST_TIMEOUT (here: its body did)."""
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **ANSWER_HEADERS, "X-Request-Id": assign_request_id(scope)}
        await send_errors(send, GlueError(503, "503", UNAVAILABLE), headers)

    async def _refusal(
        self, request: Request, body: bytes, place: contextlib.AsyncExitStack
    ) -> tuple[LoginBlocked | None, bool]:
        """The refusal from memory of this sign-in, or None; and whether it took a place (an untrusted
        attempt that is not refused takes one, held in `place`, among its account's few)."""
        username, attribute = _sign_in_of(body)
        if username is None:
            return None, False  # the route answers it (Glue's envelope and schema errors)
        logins = request.app.state.accounts.logins
        if device_token := presented_device_token(request, attribute):  # a known device: the database decides
            return await logins.refused_despite_token(username, client_of(request), device_token), False
        try:
            await place.enter_async_context(logins.untrusted_attempt(username, client_of(request)))
        except LoginBlocked as blocked:
            return blocked, False
        return None, True


def _sign_in_of(body: bytes) -> tuple[str | None, str | None]:
    """The username and deviceToken attribute of a Glue access-tokens document with a password; (None, None)
    for anything else, which the route answers (Glue's envelope and schema errors) as it would without
    the memory: only an attempt the route could check takes a place among its account's few."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or data.get("type") != "access-tokens":
        return None, None
    attributes = data.get("attributes")
    if not isinstance(attributes, dict) or not isinstance(username := attributes.get("username"), str):
        return None, None
    if not isinstance(password := attributes.get("password"), str) or not password:
        return None, None
    device_token = attributes.get("deviceToken")
    return username, device_token if isinstance(device_token, str) else None
