"""Sign-in refusals at the edge: POST /access-tokens answered from the API process's memory of refusals.

An attempt without a device token on an account (or from a client network) that the database refused a
moment ago is answered here, before FastAPI parses it, before the request budget and before any database
read: the rule, its keys and its expiry are `Logins.untrusted_attempt` (accounts/refusals.py), and the
answer is the route's own (`access_tokens.blocked_answer`). Every other request goes on unchanged, the
body handed on as it came; an untrusted attempt keeps its place in its account's line until the sign-in
has reserved, so a burst on one account waits here, holding nothing, instead of spending its budget. An
attempt with a device token on a remembered account costs one read of the token: the account's own goes
on to the database path (the owner is never refused from memory), a made-up one is refused here.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts.metrics import SIGN_INS_BLOCKED
from api.client_address import client_of
from api.jsonapi import send_errors
from api.routes.access_tokens import blocked_answer, presented_device_token
from starter import LoginBlocked

PATH = "/access-tokens"


class RefuseRemembered:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:  # bounded: BodySizeLimit, outside, answers 413 past ACCOUNTS_MAX_REQUEST_BYTES
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        request = Request(scope)
        username, attribute = _sign_in_of(b"".join(m.get("body", b"") for m in messages))
        if username is None:
            await self.app(scope, replay, send)  # the route answers it (Glue's envelope and schema errors)
            return
        logins = request.app.state.accounts.logins
        if device_token := presented_device_token(request, attribute):  # a known device: the database decides
            refusal = await logins.refused_despite_token(username, client_of(request), device_token)
            if refusal is None:
                await self.app(scope, replay, send)
            else:
                SIGN_INS_BLOCKED.inc()
                answer = blocked_answer(refusal)
                await send_errors(send, answer.errors[0], answer.headers)
            return
        admitted = False
        try:
            async with logins.untrusted_attempt(username, client_of(request)):
                admitted = True
                await self.app(scope, replay, send)
        except LoginBlocked as blocked:
            if admitted:  # the route answers its own refusals; this one came from elsewhere
                raise
            SIGN_INS_BLOCKED.inc()  # the route's are counted by Logins.authenticate
            answer = blocked_answer(blocked)
            await send_errors(send, answer.errors[0], answer.headers)


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
