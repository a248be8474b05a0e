"""The whole system in the bench's own process: a fresh database, a Temporal dev server, an SMTP sink, one
worker and the API under uvicorn, for the benches that measure one request path rather than the deployment
(bench/login.py's sign-ins). bench/processes.py runs the parts as deployed, each a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from processes import BenchFailure, database, free_port, temporal_binary  # bench/processes.py, beside this one
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from accounts.db import SessionFactory, create_engine, session_factory
from accounts.settings import Settings
from accounts.temporal import SEARCH_ATTRIBUTES, data_converter, dev_server_arguments
from api.app import create_app
from devstack.mailsink import MailSink
from worker import WorkerGroup, build_worker


@contextlib.asynccontextmanager
async def running(worker: Worker | WorkerGroup) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        yield
    finally:
        if worker.is_running:
            await worker.shutdown()
        with contextlib.suppress(Exception):
            await task


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise BenchFailure("uvicorn stopped before it started serving")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class BenchStack:
    settings: Settings
    client: Client
    sessions: SessionFactory
    sink: MailSink
    app: FastAPI
    api_url: str


async def bench_stack(stack: contextlib.AsyncExitStack, database_kind: str, run: str, **overrides: Any) -> BenchStack:
    """The whole system on `stack`: a fresh database, a Temporal dev server, an SMTP sink, one worker and
    the API under uvicorn (shared by every benchmark here)."""
    url = await stack.enter_async_context(database(database_kind))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_extra_args=dev_server_arguments(),
    )
    stack.push_async_callback(env.shutdown)
    sink = await stack.enter_async_context(MailSink("127.0.0.1", 0))
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        task_queue=f"accounts-bench-{run}",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        public_url=f"http://127.0.0.1:{port}",
        # one client machine plays every customer: the request budgets (accounts.rate_limits) would
        # measure themselves; a benchmark of them passes its own values. The email queues' rate limits
        # (the SMTP provider's, ACCOUNTS_EMAIL_SENDS_PER_SECOND) likewise: this measures the engine
        **{
            "rate_limit_per_ip": 0,
            "rate_limit_global": 0,
            "address_requests_per_hour": 0,
            "email_sends_per_second": 1000.0,
            "bulk_email_sends_per_second": 1000.0,
            **overrides,
        },
    )
    config: dict[str, Any] = dict(env.client.config())
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    engine = create_engine(url)
    stack.push_async_callback(engine.dispose)
    sessions = session_factory(engine)
    await stack.enter_async_context(running(build_worker(client, settings, sessions)))
    app = create_app(settings, temporal_client=client)
    api_url = await stack.enter_async_context(serving(app, port))
    return BenchStack(settings, client, sessions, sink, app, api_url)
