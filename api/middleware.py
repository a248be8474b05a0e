"""Request guards that run before any route: a body size limit, a path check (the log redaction rule is
accounts.logs)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts.logs import RedactTokens, install_log_redaction, redact
from api.jsonapi import GlueError, send_errors

# the redaction rule lives in accounts.logs
__all__ = ["BodySizeLimit", "PathCheck", "RedactTokens", "install_log_redaction", "redact"]


class BodySizeLimit:
    """Refuses bodies over the limit with a Glue error before they are read into memory.

    `uploads` names the POST paths that take a file (a customer.csv) and their own, larger limit.
    A declared Content-Length is checked up front. A chunked body is counted as it arrives; at the limit
    the refusal is sent at once and the route only learns that the client left. (Raising instead does not
    work: FastAPI turns any exception met while it reads a body into its own 400.)"""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}  # POST paths that take a file, and their own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope["path"], self.max_bytes) if scope["method"] == "POST" else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = answered = False

        async def limited() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not answered:
                        await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            nonlocal answered
            if not refused:  # the route's answer to a body it never got whole is not sent
                answered = True
                await send(message)

        await self.app(scope, limited, unless_refused)

    async def _refuse(self, send: Send, limit: int) -> None:
        error = GlueError(413, "901", f"data => The request body exceeds {limit} bytes.")
        await send_errors(send, error)


NOT_FOUND = GlueError(404, "404", "Not Found")


class PathCheck:
    """A path with a control character (`%00` decoded) names nothing: 404 before any route, for every path
    parameter at once (PostgreSQL refuses a NUL in a query, which would otherwise answer 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(ord(c) < 0x20 or ord(c) == 0x7F for c in scope["path"]):
            await send_errors(send, NOT_FOUND)
            return
        await self.app(scope, receive, send)
