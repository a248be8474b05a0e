"""What the worker process shows ops: its /metrics (its own counters and Temporal's SDK metrics), its
/health/live and /health/ready (database, Temporal, its workers running), and tracing when it is on.

worker.py connects with `runtime` and `interceptors` and runs its workers inside `serving(...)`. With
ACCOUNTS_WORKER_METRICS_PORT unset nothing listens and the runtime is Temporal's default one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, Interceptor
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from accounts.health import Check, database_check, temporal_check
from accounts.metrics import TemporalSdkMetrics, registry
from accounts.ops_server import OpsServer, serving
from accounts.settings import Settings
from accounts.tracing import Tracing

DRAIN_SECONDS = 1.0  # the SDK's metric buffer is emptied at least this often, between scrapes too


def workers_check(workers: Sequence[Worker]) -> Check:
    async def check() -> None:
        stopped = [w.task_queue for w in workers if not w.is_running or w.is_shutdown]
        if stopped:
            raise RuntimeError(f"not polling: {', '.join(stopped)}")

    return check


class WorkerOps:
    def __init__(self, settings: Settings, *, tracing: Tracing | None = None) -> None:
        self._settings = settings
        self.tracing = tracing or Tracing(settings, service="shop-accounts-worker")
        self.sdk_metrics = TemporalSdkMetrics() if settings.worker_metrics_port is not None else None
        # the SDK core's own log lines (Rust) go through Python's logging, so they are formatted and
        # redacted as every other line (accounts/logs.py) instead of printed raw to stderr
        forwarded = LoggingConfig(
            filter=LoggingConfig.default.filter,
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
        metrics = self.sdk_metrics.buffer if self.sdk_metrics is not None else None
        self.runtime = Runtime(telemetry=TelemetryConfig(logging=forwarded, metrics=metrics))

    @property
    def interceptors(self) -> list[Interceptor]:
        return list(self.tracing.interceptors)

    @contextlib.asynccontextmanager
    async def serving(self, engine: AsyncEngine, client: Client, *workers: Worker) -> AsyncIterator[OpsServer | None]:
        try:
            if self.sdk_metrics is None or self._settings.worker_metrics_port is None:
                yield None
                return
            checks = {
                "database": database_check(engine),
                "temporal": temporal_check(client),
                "worker": workers_check(workers),
            }
            drain = asyncio.get_running_loop().create_task(self._drain(self.sdk_metrics))
            try:
                host, port = self._settings.metrics_host, self._settings.worker_metrics_port
                async with serving("worker", host, port, registry(self.sdk_metrics), checks) as ops:
                    yield ops
            finally:
                drain.cancel()
        finally:
            self.tracing.shutdown()  # what was traced is exported before the process ends

    @staticmethod
    async def _drain(sdk_metrics: TemporalSdkMetrics) -> None:
        while True:
            await asyncio.sleep(DRAIN_SECONDS)
            sdk_metrics.drain()
