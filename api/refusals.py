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

from api.client_address import client_of
from api.guard import assign_request_id
from api.headers import headers_of, is_token_path
from api.jsonapi import send_errors
from api.routes.access_tokens import blocked_answer, presented_device_token
from starter import LoginBlocked

PATH = "/access-tokens"
SUMMARY_INTERVAL = 10.0  # seconds between two lines that count the refusals left out of the access log

log = logging.getLogger("api.refusals")
_from_memory: ContextVar[bool] = ContextVar("answered_from_memory", default=False)


class QuietRefusals(logging.Filter):
    """Keeps sign-ins refused from memory out of the access log, one line each: an attacker who sends
    10,000 a second would write 10,000 lines a second. They are counted instead, and the count is logged
    at most every SUMMARY_INTERVAL seconds (with the next refusal after it). The access log is written
    inside the answer's `send`, in the request's own context, where `_from_memory` says which it was."""

    def __init__(self, interval: float = SUMMARY_INTERVAL) -> None:
        super().__init__()
        self._interval = interval
        self._count = 0
        self._since = time.monotonic()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _from_memory.get():
            return True
        self._count += 1
        now = time.monotonic()
        if now - self._since >= self._interval:
            log.warning(
                "%d sign-in attempts refused from memory in the last %.0f s (not in the access log one by one)",
                self._count,
                now - self._since,
            )
            self._count, self._since = 0, now
        return False


def install_quiet_refusals() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietRefusals) for f in logger.filters):
        logger.filters.insert(0, QuietRefusals())  # first: a line left out costs no redaction either


# the answer's headers as every other answer of a token path gets them (api.headers), and its request id
ANSWER_HEADERS = {n.decode(): v.decode() for n, v in headers_of(html=False, token_path=is_token_path(PATH))}


async def _refuse(scope: Scope, send: Send, blocked: LoginBlocked) -> None:
    answer = blocked_answer(blocked)
    _from_memory.set(True)  # this request's context only: the access log leaves it out (QuietRefusals)
    headers = {**answer.headers, **ANSWER_HEADERS, "X-Request-Id": assign_request_id(scope)}
    await send_errors(send, answer.errors[0], headers)


class RefuseRemembered:
    """Outermost (create_app puts it around FastAPI's own stack): a sign-in refused from memory costs no
    other middleware. So it bounds what it reads itself (a body with no declared length, or a longer one
    than ACCOUNTS_MAX_REQUEST_BYTES, goes on unread, and BodySizeLimit inside answers it), and anything
    unexpected while it decides hands the request on to the stack inside, whose guard has the last word."""

    def __init__(self, app: ASGIApp, owner: Starlette, max_bytes: int) -> None:
        self.app = app
        self.owner = owner  # the application whose state holds the sign-ins (scope["app"] is set inside)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope.get("headers") or () if name == b"content-length"), b"")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:  # at most the declared length: the server delivers no more
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        scope.setdefault("app", self.owner)
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
                await _refuse(scope, send, refusal)

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
    """The username and deviceToken attribute of a Glue access-tokens document; (None, None) for anything
    else, which the route answers (Glue's envelope and schema errors)."""
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
    device_token = attributes.get("deviceToken")
    return username, device_token if isinstance(device_token, str) else None
