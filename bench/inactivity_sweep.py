"""Benchmark: the inactivity sweep over N customers, customers examined per second next to the floor.

    .venv/bin/python bench/inactivity_sweep.py [--customers N] [--database postgres|sqlite] [--page-size P]

The system runs as deployed: the worker (`accounts worker`) is a child process of this one, which holds the
Temporal dev server, the SMTP sink and a fresh migrated database. N customers are written straight into
`customers` (every 10th signed in yesterday, every 10th from the 5th on has an open order, the rest last
signed in three years ago: 80% inactive). The worker creates the `inactivity-sweep` Schedule at start;
the bench triggers it (as `temporal schedule trigger` does) and waits for the sweep to finish:

    sweep        inactive customers examined (and a lifecycle started for each) per second, from the
                 trigger until the sweep's last run completed; the lifecycles it started run meanwhile
                 on the same worker (their first step, then the reminder on the bulk email queue)
    floor        the same rows read by the sweep's own query (accounts/inactivity.candidates: keyset by
                 id, the same page size), page after page with nothing else: before the sweep, twice, the
                 faster counts
    again        a second sweep right after: the stage the lifecycles wrote keeps their customers out;
                 one whose first step has not run yet is examined again, and its start joins the running
                 lifecycle (USE_EXISTING): Temporal lists as many runs after it as before

Not a test: it asserts only that each step answers as it should.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from processes import BenchFailure, child, services  # bench/processes.py, beside this
from sqlalchemy import insert, select
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleDescription
from temporalio.service import RPCError

from accounts import inactivity
from accounts.db import create_engine, session_factory
from accounts.email_address import email_key
from accounts.models import Customer, Order
from accounts.settings import Settings
from accounts.temporal import connect
from starter.schedules import INACTIVITY_SWEEP
from workflows.inactivity import InactivitySweepWorkflow, SweepResult

OPEN = "confirmed"  # one of ACCOUNTS_INACTIVE_OPEN_ORDER_STATUSES' defaults
INSERT_BATCH = 2000
TIMEOUT = 3600.0


@dataclass
class Report:
    customers: int
    inactive: int
    database: str
    page_size: int
    sweep_seconds: float
    examined: int
    started: int
    lifecycles: int  # InactivityWorkflow runs Temporal lists once the sweep is done
    lifecycles_after: int  # ... and after the second sweep (a start of a running one joins it: no new run)
    floor_seconds: float
    floor_rows: int
    again_seconds: float
    again_examined: int
    again_started: int
    reminded: int  # customers standing `reminded` when the sweep ended


async def fill(url: str, count: int) -> int:
    """N customers, 80% of them inactive; returns how many are."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    inactive = 0
    try:
        for at in range(0, count, INSERT_BATCH):
            customers = []
            for n in range(at, min(at + INSERT_BATCH, count)):
                email = f"sweep-{tag}-{n}@example.com"
                active = n % 10 == 0
                inactive += not active and n % 10 != 5
                signed_in = now - (timedelta(days=1) if active else timedelta(days=3 * 365))
                customers.append({
                    "customer_reference": f"SW-{tag}-{n}", "email": email, "email_key": email_key(email),
                    "locale": "en_US", "channel": "api", "registered_at": signed_in - timedelta(days=30),
                    "last_signed_in_at": signed_in, "created_at": signed_in, "updated_at": signed_in,
                })  # fmt: skip
            async with engine.begin() as connection:
                ids = (await connection.execute(insert(Customer).returning(Customer.id), customers)).scalars().all()
                orders = [
                    {"order_reference": f"SW-{tag}-{at + i}", "customer_id": customer_id, "created_at": now,
                     "status": OPEN, "currency": "EUR", "totals": {"grandTotal": 100}, "items": []}
                    for i, customer_id in enumerate(ids) if (at + i) % 10 == 5
                ]  # fmt: skip
                await connection.execute(insert(Order), orders)
    finally:
        await engine.dispose()
    return inactive


async def floor(url: str, settings: Settings) -> tuple[float, int]:
    """Seconds to page through the sweep's candidates with its own query, and how many rows it read."""
    assert settings.inactive_remind_after is not None
    engine = create_engine(url)
    sessions = session_factory(engine)
    cutoff = datetime.now(UTC) - settings.inactive_remind_after
    try:
        started = time.perf_counter()
        cursor = rows = 0
        while True:
            async with sessions() as session:
                page = await inactivity.candidates(
                    session,
                    after_id=cursor,
                    inactive_before=cutoff,
                    open_statuses=settings.inactive_open_order_statuses,
                    limit=settings.inactive_sweep_page_size,
                )
            rows += len(page)
            if len(page) < settings.inactive_sweep_page_size:
                return time.perf_counter() - started, rows
            cursor = page[-1].id
    finally:
        await engine.dispose()


def started_sweeps(described: ScheduleDescription) -> set[str]:
    return {
        action.action.workflow_id
        for action in described.info.recent_actions
        if isinstance(action.action, ScheduleActionExecutionStartWorkflow)
    }


async def sweep_once(client: Client) -> tuple[float, SweepResult]:
    """Trigger the Schedule, wait for the sweep it starts (through its continue-as-new runs)."""
    schedule = client.get_schedule_handle(INACTIVITY_SWEEP)
    before = started_sweeps(await schedule.describe())
    started = time.perf_counter()
    await schedule.trigger()
    while not (fresh := started_sweeps(await schedule.describe()) - before):
        if time.perf_counter() - started > 30:
            raise BenchFailure("the schedule started no sweep within 30 s of the trigger")
        await asyncio.sleep(0.05)
    result = await client.get_workflow_handle_for(InactivitySweepWorkflow.run, fresh.pop()).result()
    return time.perf_counter() - started, result


async def bench(count: int, database_kind: str, page_size: int) -> Report:
    with tempfile.TemporaryDirectory(prefix="accounts-bench-sweep-") as directory:
        work = Path(directory)
        timings = {
            "ACCOUNTS_INACTIVE_REMIND_AFTER": "P23M",
            "ACCOUNTS_INACTIVE_WARN_AFTER": "P23M14D",
            "ACCOUNTS_INACTIVE_RETIRE_AFTER": "P2Y",
            "ACCOUNTS_INACTIVE_SWEEP_PAGE_SIZE": str(page_size),
        }
        async with services(database_kind, work, **timings) as s:
            settings = Settings(  # what the worker reads from s.env, for this process's client and floor
                _env_file=None,  # type: ignore[call-arg]
                database_url=s.url,
                temporal_address=s.temporal_target,
                task_queue=s.env["ACCOUNTS_TASK_QUEUE"],
                var_dir=Path(s.env["ACCOUNTS_VAR_DIR"]),  # the payload key the worker generates there
                **{name.removeprefix("ACCOUNTS_").lower(): value for name, value in timings.items()},  # type: ignore[arg-type]
            )
            print(f"writing {count} customers ...", file=sys.stderr)
            inactive = await fill(s.url, count)
            floor_seconds, floor_rows = min([await floor(s.url, settings) for _ in range(2)])
            if floor_rows != inactive:
                raise BenchFailure(f"the floor read {floor_rows} candidates, not the {inactive} inactive")
            print(f"floor: {floor_rows / floor_seconds:.0f} customers/s", file=sys.stderr)
            client = await connect(settings)
            with child("worker", ["worker"], s.env, work) as worker:
                for _ in range(300):  # the worker creates the schedule at start
                    if worker.poll() is not None:
                        raise BenchFailure(f"the worker exited with {worker.returncode}: see {work / 'worker.log'}")
                    try:
                        await client.get_schedule_handle(INACTIVITY_SWEEP).describe()
                        break
                    except RPCError:  # not created yet
                        await asyncio.sleep(0.1)
                print(f"sweeping {inactive} inactive customers ...", file=sys.stderr)
                sweep_seconds, result = await sweep_once(client)
                query = f'WorkflowType = "InactivityWorkflow" AND TaskQueue = "{settings.task_queue}"'
                lifecycles = (await client.count_workflows(query)).count
                again_seconds, again = await sweep_once(client)
                await asyncio.sleep(2)  # visibility lags a start by a moment
                lifecycles_after = (await client.count_workflows(query)).count
            engine = create_engine(s.url)
            async with session_factory(engine)() as session:
                reminded = len(
                    (await session.scalars(select(Customer.id).where(Customer.inactivity_stage == "reminded"))).all()
                )
            await engine.dispose()
    if (result.examined, result.started) != (inactive, inactive):
        raise BenchFailure(f"the sweep examined {result.examined} and started {result.started}, not {inactive}")
    return Report(
        count, inactive, database_kind, page_size, sweep_seconds, result.examined, result.started, lifecycles,
        lifecycles_after, floor_seconds, floor_rows, again_seconds, again.examined, again.started, reminded,
    )  # fmt: skip


def render(r: Report) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rate, floor_rate = r.examined / r.sweep_seconds, r.floor_rows / r.floor_seconds
    return "\n".join([
        f"machine: nproc {cpus}, Python {platform.python_version()}, temporalio {version('temporalio')}, "
        f"database {r.database}",
        f"{r.customers} customers, {r.inactive} inactive (the rest signed in yesterday or with an open order); "
        f"ACCOUNTS_INACTIVE_SWEEP_PAGE_SIZE={r.page_size}",
        "",
        f"{'':<44}{'customers':>10}{'wall s':>9}{'per s':>9}",
        f"{'sweep (schedule, worker, lifecycles started)':<44}{r.examined:>10}{r.sweep_seconds:>9.2f}{rate:>9.0f}",
        f"{'floor (the same query, paged, nothing else)':<44}{r.floor_rows:>10}{r.floor_seconds:>9.2f}"
        f"{floor_rate:>9.0f}",
        "",
        f"sweep / floor: {rate / floor_rate:.3f}x customers per second",
        f"workflows: the sweep started {r.started}; Temporal lists {r.lifecycles} InactivityWorkflow runs; "
        f"{r.reminded} customers stood reminded when it ended",
        f"a second sweep right after: {r.again_examined} examined (lifecycles whose first step had not run yet), "
        f"{r.again_started} starts, {r.again_seconds:.2f} s; then Temporal lists {r.lifecycles_after} runs",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--page-size", type=int, default=500, help="ACCOUNTS_INACTIVE_SWEEP_PAGE_SIZE")
    args = parser.parse_args()
    if args.customers < 10:
        parser.error("--customers must be at least 10")
    try:
        report = asyncio.run(bench(args.customers, args.database, args.page_size))
    except (BenchFailure, TimeoutError) as failure:
        sys.exit(f"bench failed: {failure}")
    print(render(report))


if __name__ == "__main__":
    main()
