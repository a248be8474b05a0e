"""How the API is served: one uvicorn configuration for `accounts api`, `accounts dev` and the tests.

uvicorn rewrites the client address from `X-Forwarded-For` only when the connecting peer is in
`ACCOUNTS_FORWARDED_ALLOW_IPS`; any other peer's header is ignored (api.client_address warns once).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from accounts.settings import Settings


def uvicorn_config(app: FastAPI, settings: Settings, **options: Any) -> uvicorn.Config:
    options.setdefault("host", settings.api_host)
    options.setdefault("port", settings.api_port)
    if settings.log_format == "json":  # uvicorn's lines go to the root's JSON handler (accounts.logs.configure_logging)
        options.setdefault("log_config", None)
    return uvicorn.Config(app, proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips, **options)
