"""Liveness and readiness: what `/health/live` and `/health/ready` answer, in the API and in the worker.

Live means the process answers at all (its event loop runs): nothing else is checked, so an outage of a
dependency never gets a process restarted. Ready means it can do its work now: the database answers a
`SELECT 1` and the Temporal frontend its gRPC health check (the worker: and its worker is running), each
within READY_TIMEOUT, all checked at once. Not ready answers `503` with `Retry-After` and one error per
dependency down, in the API's error format (`{"errors": [{"status", "code", "detail"}]}`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

READY_TIMEOUT = 2.0  # seconds per check: a probe's own timeout should allow 3 s
RETRY_AFTER_SECONDS = 5  # as the API's other 503s (api/guard.py)
Check = Callable[[], Awaitable[object]]


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def temporal_check(client: Client) -> Check:
    async def check() -> None:
        if not await client.service_client.check_health(timeout=timedelta(seconds=READY_TIMEOUT)):
            raise RuntimeError("the frontend answers NOT_SERVING")

    return check


@dataclass(frozen=True)
class Readiness:
    failures: dict[str, str]  # dependency -> why (an exception's type, never its message: it may hold a URL)
    checked: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.failures

    def body(self) -> dict[str, Any]:
        if self.ready:
            return {"status": "ok", "checks": dict.fromkeys(self.checked, "ok")}
        return {
            "errors": [
                {"status": 503, "code": "503", "detail": f"{name} is unavailable ({why})."}
                for name, why in self.failures.items()
            ]
        }

    def headers(self) -> dict[str, str]:
        return {} if self.ready else {"Retry-After": str(RETRY_AFTER_SECONDS)}


async def readiness(checks: Mapping[str, Check]) -> Readiness:
    async def run(check: Check) -> str | None:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await check()
        except TimeoutError:
            return f"no answer within {READY_TIMEOUT:g} s"
        except Exception as error:
            return type(error).__name__
        return None

    results = await asyncio.gather(*(run(check) for check in checks.values()))
    failures = {name: why for name, why in zip(checks, results, strict=True) if why is not None}
    return Readiness(failures, tuple(checks))


LIVE: dict[str, str] = {"status": "ok"}
