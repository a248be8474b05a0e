"""The operations listener of a process: `/metrics` (Prometheus text), `/health/live` and `/health/ready`.

The API serves it beside its public port (ACCOUNTS_API_METRICS_PORT: business counters are nobody's
business on the internet), the worker as its only HTTP endpoint (ACCOUNTS_WORKER_METRICS_PORT). Port 0
takes a free port (`port` says which one). It runs on the process's own event loop (uvicorn, no signal
handlers of its own, no access log: a scrape every 15 s is no news).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from accounts.health import LIVE, Check, readiness

log = logging.getLogger("accounts.ops")


def ops_app(registry: CollectorRegistry, checks: Mapping[str, Check]) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(await asyncio.to_thread(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)

    async def live(_: Request) -> Response:
        return JSONResponse(LIVE)

    async def ready(_: Request) -> Response:
        found = await readiness(checks)
        return JSONResponse(found.body(), status_code=200 if found.ready else 503, headers=found.headers())

    return Starlette(routes=[Route("/metrics", metrics), Route("/health/live", live), Route("/health/ready", ready)])


class _QuietH11(H11Protocol):
    """No access line per scrape or probe. (Config(access_log=False) would not do: it empties uvicorn's
    access logger for the whole process, the API's own lines included.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the process's own handlers stop it, not uvicorn's
        yield


class OpsServer:
    def __init__(self, server: _Server, task: asyncio.Task[None]) -> None:
        self._server = server
        self._task = task

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task


@contextlib.asynccontextmanager
async def serving(
    what: str, host: str, port: int, registry: CollectorRegistry, checks: Mapping[str, Check]
) -> AsyncIterator[OpsServer]:
    """Serve until the block ends; a port that cannot be bound raises here (SystemExit from uvicorn)."""
    # log_config=None: the process's logging stays as it is (uvicorn's own would be reset otherwise)
    config = uvicorn.Config(
        ops_app(registry, checks), host=host, port=port, log_config=None, lifespan="off", http=_QuietH11
    )
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # uvicorn exits when the port is taken
            raise SystemExit(f"the {what} metrics listener on {host}:{port} did not start")
        await asyncio.sleep(0.01)
    ops = OpsServer(server, task)
    log.info("%s metrics and health on http://%s:%d (/metrics, /health/live, /health/ready)", what, host, ops.port)
    try:
        yield ops
    finally:
        await ops.stop()
