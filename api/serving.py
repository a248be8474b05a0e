"""How the API is served: one uvicorn configuration for `accounts api`, `accounts dev` and the tests.

uvicorn rewrites the client address from `X-Forwarded-For` only when the connecting peer is in
`ACCOUNTS_FORWARDED_ALLOW_IPS`; any other peer's header is ignored (api.client_address warns once).
"""

from __future__ import annotations

import gc
from typing import Any

import uvicorn
from fastapi import FastAPI

from accounts.settings import Settings


def uvicorn_config(app: FastAPI, settings: Settings, **options: Any) -> uvicorn.Config:
    options.setdefault("host", settings.api_host)
    options.setdefault("port", settings.api_port)
    if settings.log_format == "json":  # uvicorn's lines go to the root's JSON handler (accounts.logs.configure_logging)
        options.setdefault("log_config", None)
    # reset_contextvars: each request starts from the server's context, never a copy of the previous one's
    # (a pipelined request is started from within the previous answer's last send)
    return uvicorn.Config(
        app, proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips, reset_contextvars=True, **options
    )


def serve(settings: Settings) -> None:
    """`accounts api`: one process (run more of them, behind a load balancer, to use more cores)."""
    uvicorn.Server(uvicorn_config(process_app(settings), settings)).run()


def process_app(settings: Settings) -> FastAPI:
    """The app of one serving process. Everything imported and built so far lives as long as the process:
    frozen out of the collector's sight, a full collection no longer walks it (without it, one burst of
    200 refused sign-ins in twelve took 117 ms instead of some 35, bench/login.py --processes)."""
    from api.app import create_app  # the app's modules import this one (api.client_address names it)

    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app
