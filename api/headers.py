"""The one rule for response headers that protect pages and tokens (an ASGI middleware, so a new route
cannot forget them).

- Every HTML answer (the storefront pages of email links, the back office, their error pages) gets a
  Content-Security-Policy without scripts, with styles only inline (the templates' `<style>` blocks and
  `style=` attributes), forms only to this site and never inside a frame (`frame-ancestors 'none'`,
  and `X-Frame-Options` for old browsers), and `Referrer-Policy: no-referrer` (links carry tokens).
- The API documentation pages (`/docs`, `/redoc`) get a policy of their own that lets their CDN scripts run.
- Every answer gets `X-Content-Type-Options: nosniff`.
- Every answer of a path whose last segment names tokens (`/access-tokens`, `/refresh-tokens`, the OAuth
  `/token`, a future `/agent-access-tokens`) gets `Cache-Control: no-store`: it may carry a token.
"""

from __future__ import annotations

import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# FastAPI's API documentation (Swagger UI, ReDoc) loads its scripts and styles from a CDN and starts them
# inline: it gets those and nothing more. It shows no personal data and carries no token in its URL.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.jsdelivr.net; connect-src 'self'; worker-src blob:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
TOKEN_PATH = re.compile(r"(?:^|/)[a-z-]*tokens?/?$")


def is_token_path(path: str) -> bool:
    return TOKEN_PATH.search(path) is not None


class SecurityHeaders:
    def __init__(self, app: ASGIApp, docs_paths: tuple[str | None, ...] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token_path = is_token_path(scope["path"])
        docs = scope["path"] in self.docs_paths

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if headers.get("content-type", "").startswith("text/html"):
                    headers.update(HTML_HEADERS)
                    if docs:
                        headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
                if token_path:
                    headers["Cache-Control"] = "no-store"
                    headers["Pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, with_headers)
