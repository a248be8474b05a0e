"""`bench/login.py --processes`: the lockout attack as in production, and alone.

    .venv/bin/python bench/login.py --processes [--database sqlite|postgres]

The worker (`accounts worker`) and the API (`accounts api`) are child processes, and so is the attack
client (bench/login.py with --attack-client). The owner signs in once first, for a device token; then 200
wrong passwords from 200 loopback addresses hit the account at once, and while they do the owner signs in
with that token:

    verifications   the 401 answers (each one verification; a 429 is refused before any) and the
                    account's count in login_throttles, against the threshold
    rejected        the 429 answers' latencies, as the attack client saw them
    owner           the known device's sign-in during the attack: its status (201) and latency

Run through bench/login.py, whose command line it is; not a script itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import rawhttp  # bench/rawhttp.py, beside this one
from login_common import (  # bench/login_common.py, beside this one
    ATTACK_SIZE,
    HEADERS,
    IP_MAX_FAILURES,
    SCRIPT,
    attack_addresses,
    logs_on_failure,
    register,
    row,
    sign_in,
    sign_in_document,
)
from processes import BenchFailure, child, free_port, until_serving  # bench/processes.py, beside this one
from registration import (  # bench/registration.py, beside this one
    STEP_TIMEOUT,
    _expect,
    percentile,
)
from sqlalchemy import func, select

from accounts.db import create_engine, session_factory
from accounts.models import LoginThrottle
from accounts.settings import Settings
from devstack.mailsink import MailSink

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
                    [sys.executable, SCRIPT, *args],
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
