"""`bench/login.py --spray`: what a spray of failed sign-ins costs, per attempt.

    .venv/bin/python bench/login.py --spray [--spray-size N] [--database sqlite|postgres]

The worker and the API run as child processes, as with --processes (bench/login_processes.py).
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

Run through bench/login.py, whose command line it is (and the spray client's: --spray-client); not a
script itself.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from login_common import JSONAPI, SCRIPT, logs_on_failure  # bench/login_common.py, beside this one
from processes import BenchFailure, child, until_serving  # bench/processes.py, beside this one
from registration import (  # bench/registration.py, beside this one
    STEP_TIMEOUT,
    percentile,
)
from sqlalchemy import delete, func, insert, select
from temporalio.client import Client

from accounts.db import create_engine, session_factory
from accounts.email_address import email_key
from accounts.models import Customer as CustomerRow
from accounts.models import LoginThrottle, RequestCount
from accounts.passwords import PasswordHasher
from accounts.settings import Settings

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
            [sys.executable, SCRIPT, "--spray-client", api_url, str(plan_file)],
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
