"""The one rule for response headers that protect pages and tokens (an ASGI middleware, so a new route
cannot forget them).

- Every HTML answer (the storefront pages of email links, the back office, their error pages) gets a
  Content-Security-Policy without scripts, with styles only inline (the templates' `<style>` blocks and
  `style=` attributes), forms only to this site and never inside a frame (`frame-ancestors 'none'`,
  and `X-Frame-Options` for old browsers), and `Referrer-Policy: no-referrer` (links carry tokens).
- The API documentation pages (`/docs`, `/redoc`) get a policy of their own that lets their CDN scripts run.
- Every answer gets `X-Content-Type-Options: nosniff`.
- Every answer of a path whose last segment names tokens (`/access-tokens`, `/refresh-tokens`, the OAuth
  `/token`, a future `/agent-access-tokens`) gets `Cache-Control: no-store`: it may carry a token; so does
  every `/multi-factor-auth-*` answer (a TOTP activation carries its secret and the recovery codes).
"""

from __future__ import annotations

import re

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
TOKEN_PATH = re.compile(r"(?:^|/)(?:[a-z-]*tokens?|multi-factor-auth-[a-z-]+)/?$")

Raw = list[tuple[bytes, bytes]]


def _raw(headers: dict[str, str]) -> Raw:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


NOSNIFF = _raw({"X-Content-Type-Options": "nosniff"})
HTML = _raw(HTML_HEADERS)
DOCS_HTML = _raw({**HTML_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY})
NO_STORE = _raw({"Cache-Control": "no-store", "Pragma": "no-cache"})


def is_token_path(path: str) -> bool:
    return TOKEN_PATH.search(path) is not None


def headers_of(*, html: bool, docs: bool = False, token_path: bool = False) -> Raw:
    """The rule: the headers an answer gets, by what it is (an HTML page, the API docs) and its path."""
    return NOSNIFF + ((DOCS_HTML if docs else HTML) if html else []) + (NO_STORE if token_path else [])


def set_headers(message: Message, added: Raw) -> None:
    """Put `added` (lower-case names) into a response start message, replacing same-named ones: one pass
    over the list (Starlette's MutableHeaders searches it once per header set, on every answer)."""
    names = {name for name, _ in added}
    kept = [(name, value) for name, value in message.get("headers", ()) if name.lower() not in names]
    message["headers"] = kept + added


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
                html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in message.get("headers", ())
                )
                set_headers(message, headers_of(html=html, docs=docs, token_path=token_path))
            await send(message)

        await self.app(scope, receive, with_headers)
