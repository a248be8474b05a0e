"""Two API processes and two worker processes on one PostgreSQL serve one shop, and one worker is
SIGKILLed while registrations are under way: every registration finishes exactly once.

All four are real processes (`accounts api`, `accounts worker`) with one ACCOUNTS_* environment, as
containers would run them. The sign-ups go through both APIs in turn and both workers run the
lifecycles, so each holds some of the runs in its cache (its sticky queue) when worker 1 dies; the other
worker must take those over (after their sticky timeout, 10 s) and finish them. Worker 1 polls the
lifecycles and sign-in queues only (`ACCOUNTS_WORKER_TASK_QUEUES`, queues scaled apart), worker 2 every
queue, and the kill lands while every verification email waits for its next attempt (the SMTP server is
down): so no activity attempt is under way on worker 1. One under way would wait out its 90 s
start-to-close timeout (an email send its 10 s heartbeat timeout); with both polling the email queues, a
retry dispatched to worker 1 at the moment of the kill did so in one run of four, before sends heartbeated.
`bench/two_of_each.py` kills a worker of all four queues at a random moment under 200 sign-ups and
reports what that costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, registration_body, token_from
from sqlalchemy import select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from accounts.access_tokens import SigningKey
from accounts.db import create_engine, session_factory
from accounts.migrate import upgrade_async
from accounts.models import Customer, EmailOutbox
from accounts.settings import Settings
from accounts.task_queues import TaskQueues
from devstack.mailsink import MailSink, ReceivedEmail
from starter.client import registration_id

from .conftest import FAULT_DEFAULTS, _connect, _postgres_database, environment
from .processes import ServiceProcess, TemporalServer

pytestmark = pytest.mark.faults
REGISTRATIONS = 40
PASSWORD = "Vq8#nT2!pLm4-kettle"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


async def mail(sink: MailSink, address: str, subject: str, timeout: float) -> ReceivedEmail:
    return await sink.wait_for(lambda m: address in m.to and subject in m.subject, timeout=timeout)


async def all_retrying(client: Client, workflow_ids: list[str], activity: str, timeout: float = 60) -> None:
    """Until each run's `activity` failed at least once and waits for its next attempt (none runs)."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = 0
        for workflow_id in workflow_ids:
            pending = (await client.get_workflow_handle(workflow_id).describe()).raw_description.pending_activities
            waiting += any(
                p.activity_type.name == activity
                and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                and p.attempt >= 2
                for p in pending
            )
        if waiting == len(workflow_ids):
            return
        assert time.monotonic() < deadline, f"only {waiting} of {len(workflow_ids)} runs wait to retry {activity}"
        await asyncio.sleep(0.3)


async def test_two_apis_and_two_workers_finish_every_registration_once_while_a_worker_is_killed(
    temporal_server: tuple[TemporalServer, Client], tmp_path: Path
) -> None:
    started = time.monotonic()
    server, _ = temporal_server
    sink = MailSink("127.0.0.1", free_port())
    await sink.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(sink.stop)
        base, host, port, name = await stack.enter_async_context(_postgres_database())
        url = f"{base}{host}:{port}/{name}"
        await upgrade_async(url)
        key_path = tmp_path / "jwt-private.pem"
        SigningKey.load_or_create(key_path)  # every API process reads the same key (compose's jwt-key job)
        api_ports = [free_port(), free_port()]
        values: dict[str, Any] = {
            **FAULT_DEFAULTS,
            "database_url": url,
            "temporal_address": server.address,
            "task_queue": f"two-{uuid.uuid4()}",
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_timeout": 5,
            "public_url": f"http://127.0.0.1:{api_ports[0]}",
            "customer_reference_prefix": f"TW{uuid.uuid4().hex[:6].upper()}-",
            "var_dir": tmp_path / "var",
            "jwt_private_key_path": key_path,
            "api_host": "127.0.0.1",
        }
        shared = environment(values)
        # a client that reads what the processes write: their payload key (var_dir's, made once by whoever
        # needs it first), not the fixture's readiness client, which decodes nothing
        client = await _connect(server.address, Settings(_env_file=None, **values))  # type: ignore[call-arg]
        polled = ['["lifecycles","signin"]', '["lifecycles","signin","email","bulk-email"]']
        workers = [
            ServiceProcess(
                f"worker {n}",
                ["accounts", "worker"],
                {**shared, "ACCOUNTS_WORKER_TASK_QUEUES": queues},
                tmp_path,
                tmp_path / f"worker-{n}.log",
            )
            for n, queues in enumerate(polled, 1)
        ]
        apis = [
            ServiceProcess(
                f"api {n}",
                ["accounts", "api"],
                {**shared, "ACCOUNTS_API_PORT": str(p)},
                tmp_path,
                tmp_path / f"api-{n}.log",
            )
            for n, p in enumerate(api_ports, 1)
        ]
        for process in (*workers, *apis):
            process.start()
            stack.callback(process.kill)
        queues = TaskQueues(values["task_queue"])
        try:
            await asyncio.gather(
                workers[0].polling(client, queues.lifecycles),
                *(workers[1].polling(client, queue) for queue in (queues.lifecycles, queues.email, queues.bulk_email)),
                *(api.listening(p) for api, p in zip(apis, api_ports, strict=True)),
            )
            log(f"two workers poll, two APIs listen ({time.monotonic() - started:.1f} s)")

            await sink.stop()  # every verification email fails now and waits for its next attempt
            emails = [f"two-{uuid.uuid4().hex[:8]}-{n}@example.com" for n in range(REGISTRATIONS)]
            https = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in api_ports]
            for http in https:
                stack.push_async_callback(http.aclose)
            gate = asyncio.Semaphore(8)

            async def register(n: int, email: str) -> str:
                async with gate:
                    created = await https[n % 2].post("/customers", json=registration_body(email, PASSWORD))
                assert created.status_code == 201, created.text
                return str(created.json()["data"]["id"])

            references = await asyncio.gather(*(register(n, email) for n, email in enumerate(emails)))
            ids = [registration_id(reference) for reference in references]
            await all_retrying(client, ids, "send_token_link")
            log(f"{REGISTRATIONS} registrations wait for SMTP; SIGKILL worker 1 (pid {workers[0].pid})")
            workers[0].kill()
            await sink.start()

            try:
                links = [await mail(sink, email, "confirm", timeout=30) for email in emails]
            except TimeoutError:
                for email, workflow_id in zip(emails, ids, strict=True):
                    if not sink.to(email):
                        described = await client.get_workflow_handle(workflow_id).describe()
                        for p in described.raw_description.pending_activities:
                            log(f"no link for {workflow_id}: {p.activity_type.name} state {p.state}"
                                f" attempt {p.attempt} on {p.last_worker_identity}")  # fmt: skip
                raise
            log(f"every verification email arrived ({time.monotonic() - started:.1f} s)")

            unavailable = 0

            async def confirm(n: int) -> None:
                nonlocal unavailable
                body = {
                    "data": {"type": "customer-confirmation", "attributes": {"registrationKey": token_from(links[n])}}
                }
                async with gate:
                    answer = await https[(n + 1) % 2].post("/customer-confirmation", json=body)  # the other API
                    if answer.status_code == 503:
                        # A run the dead worker had cached waits for its sticky timeout (10 s) before the other
                        # worker takes it: a confirmation that waits as long answers 503 at the request bound
                        # while it goes on. The client tries again after Retry-After, and learns that its
                        # link was used (by its own first try: the result below says verified).
                        unavailable += 1
                        await asyncio.sleep(float(answer.headers["Retry-After"]))
                        answer = await https[n % 2].post("/customer-confirmation", json=body)
                        assert answer.status_code in (204, 422), answer.text
                        return
                assert answer.status_code == 204, answer.text

            await asyncio.gather(*(confirm(n) for n in range(REGISTRATIONS)))
            results = await asyncio.gather(*(asyncio.wait_for(client.get_workflow_handle(i).result(), 60) for i in ids))
            for email in emails:
                await mail(sink, email, "Welcome", timeout=30)
            log(f"every registration verified and welcomed ({time.monotonic() - started:.1f} s; {unavailable} 503s)")
            assert workers[1].returncode is None, workers[1].log_tail()
        except BaseException:
            for process in (*workers, *apis):
                print(f"--- {process.name} ---\n{process.log_tail()}")
            raise

        assert [result["outcome"] for result in results] == ["verified"] * REGISTRATIONS
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        async with session_factory(engine)() as session:
            customers = list(await session.scalars(select(Customer).where(Customer.email_key.in_(emails))))
            outbox = list(
                await session.scalars(select(EmailOutbox).where(EmailOutbox.customer_reference.in_(references)))
            )
        assert sorted(c.customer_reference for c in customers) == sorted(references)  # one row each
        assert all(c.registered_at is not None for c in customers)
        assert Counter(row.template for row in outbox if row.status == "sent") == {
            "verify": REGISTRATIONS,
            "welcome": REGISTRATIONS,
        }
        assert len(outbox) == 2 * REGISTRATIONS
        received = Counter(to for m in sink.messages for to in m.to if to in emails)
        assert received == dict.fromkeys(emails, 2)  # the link and the welcome, nothing twice
        # SIGTERM: graceful ends (uvicorn re-raises the signal once it has shut down)
        assert await asyncio.gather(*(api.stop() for api in apis), workers[1].stop()) == [-signal.SIGTERM] * 2 + [0]
    log(f"done in {time.monotonic() - started:.1f} s")
