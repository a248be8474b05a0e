"""The client address the per-IP counters see, and a warning when a proxy's X-Forwarded-For is being ignored.

The ASGI server applies `X-Forwarded-For` only from the peers in `ACCOUNTS_FORWARDED_ALLOW_IPS`
(`api.serving.uvicorn_config`); from any other peer the header is ignored, so a client cannot choose
its address. A request that carries the header although the server did not apply it (the client
address is none of the header's entries) most likely came through a proxy that is not listed: then
every customer would share the proxy's address in the per-IP counts, and `ForwardedForCheck` logs
one warning line saying so (once per process).
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from accounts.rate_limits import client_network

log = logging.getLogger("accounts.api")


def client_of(request: Request) -> str:
    """The client's address as per-IP counting names it (IPv6 grouped by ACCOUNTS_CLIENT_IPV6_PREFIX)."""
    host = request.client.host if request.client else "unknown"
    return client_network(host, request.app.state.settings.client_ipv6_prefix)


class ForwardedForCheck:
    def __init__(self, app: ASGIApp, *, forwarded_allow_ips: str) -> None:
        self.app = app
        self._trusted = forwarded_allow_ips
        self.warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.warned:
            self._check(scope)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        forwarded = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        if not forwarded:
            return
        entries = {_host(entry) for value in forwarded for entry in value.split(",")}
        client = scope.get("client")
        peer = client[0] if client else None
        if peer is None or peer in entries:
            return  # the server applied the header: the client address is one of its entries
        self.warned = True
        log.warning(
            "a request from %s carries X-Forwarded-For, which is ignored: that peer is not in"
            " ACCOUNTS_FORWARDED_ALLOW_IPS (%s). If it is your reverse proxy, add it, or every client"
            " shares its address in the per-IP limits and lockouts",
            peer,
            self._trusted,
        )


def _host(entry: str) -> str:
    """The address of one X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`."""
    entry = entry.strip()
    if entry.startswith("[") and "]" in entry:
        return entry[1 : entry.index("]")]
    if entry.count(":") == 1:
        return entry.rsplit(":", 1)[0]
    return entry
