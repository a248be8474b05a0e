"""Fault-test harness: every part a real process or server that a test can break and bring back.

- a Temporal dev server (`temporal server start-dev`, file persistence), one for the package, that a
  test can stop and start again on the same port;
- the worker as a subprocess (`python worker.py`, configured by ACCOUNTS_* variables only) on a fresh
  task queue, that a test can SIGKILL and start again;
- the SMTP sink (devstack.mailsink) on a fixed port, stopped and started again on that port;
- a PostgreSQL database of its own per test (or a SQLite file), with a TCP proxy in front of it that a
  test can cut and restore; the worker always connects through the proxy, the API when asked;
- the API in-process (uvicorn), connected to Temporal on its own as in production.

At the end a test asserts what the issue asks for: every lifecycle finished (workflow result), exactly one
email per step (outbox rows against the Message-IDs the sink received), one audit row per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from conftest import PG_ADMIN_DSN, TEST_DEFAULTS, _postgres_available, free_port
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from accounts.db import SessionFactory, create_engine, session_factory
from accounts.migrate import upgrade_async
from accounts.models import AuditEvent, Customer, EmailOutbox, OneTimeToken
from accounts.settings import Settings
from accounts.temporal import data_converter
from api.app import create_app
from devstack.mailsink import MailSink, ReceivedEmail
from starter.client import registration_id
from starter.passwords import reset_id
from workflows.anonymization import anonymization_id
from workflows.email_change import email_change_id
from workflows.lockout import lockout_workflow_id

from .processes import SmtpGate, TcpProxy, TemporalServer, WorkerProcess

# Short lifecycles, so locks lift, windows close and lockout runs end within a test.
FAULT_DEFAULTS: dict[str, Any] = {
    **TEST_DEFAULTS,
    "lockout_max_failures": 3,
    "lockout_window": timedelta(seconds=15),
    "lockout_duration": timedelta(seconds=15),
    "lockout_escalation_period": timedelta(seconds=18),
    # a confirmed email change waits this long for the old address's undo before its run closes
    "email_change_undo_lifetime": timedelta(seconds=5),
}


# each lifecycle's workflow id for a customer, as the code derives it (one place for each rule)
LIFECYCLES: dict[str, Callable[[str], str]] = {
    "registration": registration_id,
    "password-reset": reset_id,
    "email-change": email_change_id,
    "lockout": lockout_workflow_id,
    "anonymization": anonymization_id,
}


def environment(values: dict[str, Any]) -> dict[str, str]:
    """Settings as the ACCOUNTS_* variables a process reads at start."""
    out = {}
    for name, value in values.items():
        text = str(value.total_seconds()) if isinstance(value, timedelta) else str(value)
        out[f"ACCOUNTS_{name.upper()}"] = text
    return out


@dataclass
class Harness:
    settings: Settings  # the API's; the worker runs with the same values (and its own database URL)
    client: Client
    temporal: TemporalServer
    worker: WorkerProcess
    sink: MailSink
    proxy: TcpProxy | None
    sessions: SessionFactory  # the test's own view of the database, never through the proxy
    api_url: str
    engine: AsyncEngine
    database_name: str | None  # PostgreSQL's; None for SQLite
    smtp_gate: SmtpGate  # the worker sends through it to the sink

    def log(self, message: str) -> None:
        """Progress on stdout (pytest shows it for a failed test): where a slow or stuck fault test was."""
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    def http(self, timeout: float = 30) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=timeout)

    async def mail_to(self, address: str, subject_contains: str, timeout: float = 30) -> ReceivedEmail:
        return await self.sink.wait_for(
            lambda m: address.lower() in (t.lower() for t in m.to) and subject_contains.lower() in m.subject.lower(),
            timeout=timeout,
        )

    # --- faults -----------------------------------------------------------------------------------

    async def kill_worker(self) -> None:
        self.log(f"SIGKILL worker {self.worker.generation} (pid {self.worker.pid})")
        self.worker.kill()

    async def start_worker(self) -> None:
        self.worker.start()
        await self.worker.polling(self.client, self.settings.task_queue)
        self.log(f"worker {self.worker.generation} (pid {self.worker.pid}) polls")

    async def stop_sink(self) -> None:
        self.log("SMTP sink stopped")
        await self.sink.stop()

    async def start_sink(self) -> None:
        await self.sink.start()
        self.log(f"SMTP sink listens again on {self.sink.port}")

    def cut_database(self, *, silently: bool = False) -> None:
        assert self.proxy is not None, "this harness runs without a database proxy (SQLite)"
        self.log(f"database cut at the proxy{' (silently)' if silently else ''}")
        self.proxy.cut(silently=silently)

    def restore_database(self) -> None:
        assert self.proxy is not None
        self.log("database reachable again")
        self.proxy.restore()

    @contextlib.asynccontextmanager
    async def backup(self) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        """Copy the PostgreSQL database now; the callable yielded puts that copy back in its place, as
        restoring last night's backup does, while Temporal keeps every run it has."""
        assert self.database_name is not None and self.proxy is not None, "backups need PostgreSQL"
        live, copy, proxy = self.database_name, f"{self.database_name}_backup", self.proxy

        async def offline(statements: list[str]) -> None:
            proxy.cut()  # the API's and the worker's connections go; the test's own pool too
            await self.engine.dispose()
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                for statement in statements:
                    for attempt in range(50):  # a dropped connection's backend may take a moment to exit
                        try:
                            await admin.execute(statement)
                            break
                        except asyncpg.ObjectInUseError:
                            if attempt == 49:
                                raise
                            await asyncio.sleep(0.1)
            finally:
                await admin.close()
                proxy.restore()

        async def restore() -> None:
            await offline([f'DROP DATABASE "{live}" WITH (FORCE)', f'CREATE DATABASE "{live}" TEMPLATE "{copy}"'])
            self.log("database restored from the backup")

        await offline([f'CREATE DATABASE "{copy}" TEMPLATE "{live}"'])
        self.log("database backed up")
        try:
            yield restore
        finally:
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
            await admin.close()

    # --- what happened ----------------------------------------------------------------------------

    async def pending_activities(self, workflow_id: str) -> list[tuple[str, int, int]]:
        """(activity type, attempt, state) of each activity the workflow's current run waits for; none
        when no such workflow exists (yet)."""
        try:
            described = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return []
            raise
        return [(p.activity_type.name, p.attempt, p.state) for p in described.raw_description.pending_activities]

    async def wait_for_activities(self, workflow_ids: dict[str, str], *, retrying: bool, timeout: float = 60) -> None:
        """Wait until each workflow's named activity is pending, all at the same moment. `retrying`: it
        failed at least once and waits for its next attempt (scheduled, not running), so a kill lands
        between attempts; otherwise: an attempt runs right now."""
        wanted = (
            PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            if retrying
            else PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        )
        deadline = asyncio.get_running_loop().time() + timeout
        missing: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            missing = {}
            for workflow_id, activity in workflow_ids.items():
                pending = await self.pending_activities(workflow_id)
                if not any(
                    name == activity and state == wanted and (attempt >= 2 or not retrying)
                    for name, attempt, state in pending
                ):
                    missing[workflow_id] = (activity, pending)
            if not missing:
                self.log(f"{'retrying' if retrying else 'running'}: {sorted(workflow_ids.values())}")
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"these activities were not {'retrying' if retrying else 'running'}: {missing}")

    async def quiescent(self, reference: str, timeout: float = 30) -> None:
        """Wait until none of the customer's lifecycles has an activity pending: an email that arrived
        is also marked sent, so a fault applied now hits the next step and no earlier one."""
        ids = [workflow_id(reference) for workflow_id in LIFECYCLES.values()]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            busy = {}
            for workflow_id in ids:
                if pending := await self.pending_activities(workflow_id):
                    busy[workflow_id] = pending
            if not busy:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{reference}'s lifecycles stayed busy: {busy}")
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def row_locked(self, reference: str) -> AsyncIterator[None]:
        """Hold the customer row locked (SELECT ... FOR UPDATE, PostgreSQL): an activity that locks it
        waits, mid-attempt, until the block ends."""
        async with self.sessions.begin() as session:
            await session.execute(select(Customer.id).where(Customer.customer_reference == reference).with_for_update())
            yield

    async def result(self, workflow_id: str, timeout: float = 60) -> Any:
        handle = self.client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.result(), timeout)

    async def status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        return (await self.client.get_workflow_handle(workflow_id).describe()).status

    async def audit_counts(self, references: list[str]) -> Counter[tuple[str, str]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(AuditEvent.customer_reference, AuditEvent.event).where(
                    AuditEvent.customer_reference.in_(references)
                )
            )
            return Counter((ref, event) for ref, event in rows.all())

    async def delivery_problems(self, references: list[str], *, repeats_allowed: bool = False) -> list[str]:
        """Every outbox row of these customers sent, its Message-ID received exactly once, and no other
        email to their addresses: one email per step, whatever crashed on the way. `repeats_allowed`:
        the same Message-ID may arrive more than once (SMTP is at-least-once; a receiver drops repeats),
        but each step still has one Message-ID."""
        async with self.sessions() as session:
            rows = list(
                await session.scalars(select(EmailOutbox).where(EmailOutbox.customer_reference.in_(references)))
            )
            keys = [row.idempotency_key for row in rows]
            issued = dict(
                (await session.execute(select(OneTimeToken.issue_key, OneTimeToken.token_hash).where(
                    OneTimeToken.issue_key.in_(keys)
                ))).all()
            )  # fmt: skip
        domain = self.settings.mail_from.rsplit("@", 1)[-1].strip(" >")
        problems = []
        received = self.sink.messages
        for row in rows:
            if row.status != "sent":
                problems.append(f"{row.idempotency_key}: outbox status {row.status!r}")
            key = row.idempotency_key
            message_key = f"{key}/{issued[key][:16]}" if key in issued else key
            message_id = f"<{hashlib.sha256(message_key.encode()).hexdigest()[:32]}@{domain}>"
            count = sum(1 for m in received if _header(m, "Message-ID") == message_id)
            if count != 1 and not (repeats_allowed and count > 1):
                problems.append(f"{key} ({row.template}): {count} emails with its Message-ID")
        for recipient in {row.recipient.lower() for row in rows}:
            expected = sum(1 for row in rows if row.recipient.lower() == recipient)
            got = [m for m in received if recipient in (t.lower() for t in m.to)]
            distinct = {_header(m, "Message-ID") for m in got} if repeats_allowed else got
            if len(distinct) != expected:
                subjects = [m.subject for m in got]
                problems.append(f"{recipient}: {len(distinct)} emails for {expected} outbox rows: {subjects}")
        return problems


def _header(message: ReceivedEmail, name: str) -> str | None:
    return next((v for k, v in message.headers.items() if k.lower() == name.lower()), None)


# --- fixtures ---------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="package")
async def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[TemporalServer, Client]]:
    server = TemporalServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        client = await _connect(server.address)
        await server.ready(client)
        yield server, client
    finally:
        await server.stop()


async def _connect(address: str, settings: Settings | None = None, timeout: float = 60) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            # without settings: a readiness check, which reads no payload
            plain = Settings(_env_file=None, payload_encryption=False)  # type: ignore[call-arg]
            return await Client.connect(address, data_converter=data_converter(settings or plain))
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def _postgres_database() -> AsyncIterator[tuple[str, str, int, str]]:
    """A fresh PostgreSQL database: (SQLAlchemy URL base without the name, host, port, name)."""
    if not await _postgres_available():
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"ACCOUNTS_TEST_REQUIRE_POSTGRES is set but no PostgreSQL answers at {PG_ADMIN_DSN}")
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_DSN}")
    name = f"accounts_faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parsed = httpx.URL(PG_ADMIN_DSN)
        yield f"postgresql+asyncpg://{parsed.userinfo.decode()}@", parsed.host, parsed.port or 5432, name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


HarnessFactory = Callable[..., contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture
def harness(temporal_server: tuple[TemporalServer, Client], tmp_path: Path) -> HarnessFactory:
    @contextlib.asynccontextmanager
    async def build(
        *, database: str = "postgres", api_through_proxy: bool = False, **overrides: Any
    ) -> AsyncIterator[Harness]:
        server, _ = temporal_server
        api_port = free_port()
        sink = MailSink("127.0.0.1", free_port())
        await sink.start()
        gate = SmtpGate(sink.port)
        await gate.start()
        proxy = None
        name: str | None = None
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(sink.stop)
            stack.push_async_callback(gate.stop)
            if database == "postgres":
                base, host, port, name = await stack.enter_async_context(_postgres_database())
                proxy = TcpProxy(host, port)
                await proxy.start()
                stack.push_async_callback(proxy.stop)
                direct_url = f"{base}{host}:{port}/{name}"
                proxied_url = f"{base}127.0.0.1:{proxy.port}/{name}"
            else:
                direct_url = proxied_url = f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}"
            await upgrade_async(direct_url)
            values: dict[str, Any] = {
                "temporal_address": server.address,
                "task_queue": f"faults-{uuid.uuid4()}",
                "smtp_host": "127.0.0.1",
                "smtp_port": gate.port,
                "smtp_timeout": 5,
                "public_url": f"http://127.0.0.1:{api_port}",
                "customer_reference_prefix": f"F{uuid.uuid4().hex[:6].upper()}-",
                "var_dir": tmp_path / "var",
                **{**FAULT_DEFAULTS, **overrides},
            }
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=proxied_url if api_through_proxy else direct_url,
                **values,
            )
            worker = WorkerProcess(environment({**values, "database_url": proxied_url}), tmp_path / "worker.log")
            stack.push_async_callback(worker.stop)
            client = await _connect(server.address, settings)
            engine = create_engine(direct_url)
            stack.push_async_callback(engine.dispose)
            uvicorn_server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings),
                    host="127.0.0.1",
                    port=api_port,
                    log_level="warning",
                    timeout_graceful_shutdown=3,  # a request stuck on a fault must not hold the teardown
                )
            )
            serving = asyncio.get_running_loop().create_task(uvicorn_server.serve())

            async def stop_api() -> None:
                uvicorn_server.should_exit = True
                await serving

            stack.push_async_callback(stop_api)
            while not uvicorn_server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.02)
            built = Harness(
                settings,
                client,
                server,
                worker,
                sink,
                proxy,
                session_factory(engine),
                f"http://127.0.0.1:{api_port}",
                engine,
                name,
                gate,
            )
            await built.start_worker()
            try:
                yield built
            except BaseException:
                print(f"--- worker log ---\n{worker.log_tail()}")
                raise

    return build
