"""Benchmark: the back-office customer list over many customers, next to the plainest page query.

    .venv/bin/python bench/backoffice_list.py [--customers N] [--count C] [--database sqlite|postgres]

A fresh migrated database is filled with N customers (a mix of verified, unverified, locked and
anonymized ones, 10 % in a group), then `backoffice.BackOffice.list_customers` serves C pages
for each kind of request the list page makes (default order, a status filter, a search, a group
filter, a late page sorted by name). The floor is the least any paged list must do on the same
database and connection pool: `SELECT * FROM customers ORDER BY created_at DESC, id DESC LIMIT 20`
plus `SELECT count(*)`. The CSV export of every customer is timed once. The lifecycle is not read
(that is one Temporal call per detail page, not per list row), so no Temporal server is started.
Not a test: it asserts only that each answer has rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

from processes import database  # bench/processes.py, beside this script
from registration import Measurement, measure, percentile  # bench/registration.py, beside this script
from sqlalchemy import func, insert, select
from temporalio.client import Client

from accounts.db import SessionFactory, create_engine, session_factory
from accounts.models import Customer, CustomerGroup, CustomerGroupMember, LoginThrottle
from accounts.settings import Settings
from accounts.throttle import customer_subject
from backoffice import BackOffice, CustomerFilter
from starter import AccountsClient

SURNAMES = ["Smith", "Müller", "Hopper", "Lovelace", "Byron", "Turing", "Noether", "Curie", "Meitner", "Franklin"]
GIVEN = ["Ada", "Grace", "Alan", "Emmy", "Marie", "Lise", "Rosalind", "Katherine", "Dorothy", "Hedy"]
BATCH = 2000


async def seed(sessions: SessionFactory, size: int) -> None:
    """size customers; every 4th unverified, every 50th anonymized, every 40th locked, every 10th in VIP."""
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        group = CustomerGroup(name="VIP", created_at=now, updated_at=now)
        session.add(group)
        await session.flush()
        group_id = group.id
    for start in range(0, size, BATCH):
        rows = []
        for n in range(start, min(start + BATCH, size)):
            email = f"{GIVEN[n % 10].lower()}.{SURNAMES[(n // 10) % 10].lower()}.{n}@example.com"
            created = now - timedelta(minutes=size - n)
            rows.append(
                {
                    "customer_reference": f"DE--{n + 1}",
                    "email": email,
                    "email_key": email,
                    "salutation": "Ms",
                    "first_name": GIVEN[n % 10],
                    "last_name": SURNAMES[(n // 10) % 10],
                    "locale": "en_US",
                    "channel": "api",
                    "registered_at": None if n % 4 == 0 else created + timedelta(minutes=1),
                    "anonymized_at": created + timedelta(days=1) if n % 50 == 1 else None,
                    "token_version": 0,
                    "password_reset_required": False,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        async with sessions.begin() as session:
            await session.execute(insert(Customer), rows)
            ids = (
                await session.execute(
                    select(Customer.id, Customer.customer_reference).where(
                        Customer.customer_reference.in_([r["customer_reference"] for r in rows])
                    )
                )
            ).all()
            members = [{"group_id": group_id, "customer_id": i, "assigned_at": now} for i, _ in ids if i % 10 == 0]
            if members:
                await session.execute(insert(CustomerGroupMember), members)
            locks = [
                {
                    "subject": customer_subject(reference),
                    "attempts": 9,
                    "window_ends_at": now + timedelta(minutes=15),
                    "locked_until": now + timedelta(hours=1),
                    "updated_at": now,
                }
                for i, reference in ids
                if i % 40 == 3
            ]
            if locks:
                await session.execute(insert(LoginThrottle), locks)


class Pages:
    def __init__(self, back_office: BackOffice, f: CustomerFilter) -> None:
        self._back_office = back_office
        self._filter = f

    async def __call__(self, lane: int, item: int) -> None:
        page = await self._back_office.list_customers(self._filter)
        if not page.rows:
            raise RuntimeError(f"no rows for {self._filter}")


class FloorPages:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def __call__(self, lane: int, item: int) -> None:
        async with self._sessions() as session:
            await session.scalar(select(func.count()).select_from(Customer))
            rows = (
                await session.scalars(
                    select(Customer).order_by(Customer.created_at.desc(), Customer.id.desc()).limit(20)
                )
            ).all()
        if not rows:
            raise RuntimeError("no rows")


CASES: list[tuple[str, CustomerFilter]] = [
    ("list, newest first", CustomerFilter()),
    ("status = locked", CustomerFilter(status="locked")),
    ("status = unverified", CustomerFilter(status="unverified")),
    ("search 'hopper'", CustomerFilter(search="hopper")),
    ("group = VIP", CustomerFilter(group="VIP")),
    ("sort by name, page 50", CustomerFilter(sort="last_name", page=50)),
]


async def bench(size: int, count: int, database_kind: str) -> tuple[list[Measurement], Measurement, float, int]:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(database(database_kind))
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        sessions = session_factory(engine)
        print(f"seeding {size} customers ...", file=sys.stderr)
        await seed(sessions, size)
        # the list never calls Temporal: a lazy client that is never used stands in for the connection
        client = await Client.connect(settings.temporal_target, lazy=True)
        back_office = BackOffice(sessions, AccountsClient(client, settings, sessions), settings)
        await measure("warm-up", 5, 1, FloorPages(sessions))
        await measure("warm-up", 5, 1, Pages(back_office, CustomerFilter()))
        print(f"{count} pages of each kind ...", file=sys.stderr)
        floor = await measure("floor: ORDER BY created_at LIMIT 20 + count", count, 1, FloorPages(sessions))
        results = []
        for name, f in CASES:
            results.append(await measure(name, count, 1, Pages(back_office, f)))
        started = time.perf_counter()
        csv_text = await back_office.export_csv(CustomerFilter())
        export_seconds = time.perf_counter() - started
        return results, floor, export_seconds, csv_text.count("\n") - 1


def render(
    size: int, count: int, kind: str, results: list[Measurement], floor: Measurement, export: float, rows: int
) -> str:
    lines = [
        f"machine: {platform.machine()}, Python {platform.python_version()}, SQLAlchemy {version('sqlalchemy')}, "
        f"database {kind}, {size} customers, {count} pages per kind, one client",
        "",
        f"{'':48} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs floor':>9}",
    ]
    for m in [floor, *results]:
        ratio = m.per_second / floor.per_second
        lines.append(
            f"{m.name:48} {m.per_second:8.1f} {percentile(m.latencies, 0.5) * 1000:8.1f} "
            f"{percentile(m.latencies, 0.99) * 1000:8.1f} {ratio:8.2f}x"
        )
    lines += ["", f"CSV export of every customer: {rows} rows in {export:.2f} s ({rows / export:,.0f} rows/s)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--count", type=int, default=50, help="pages per kind of request")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args: Any = parser.parse_args()
    results, floor, export, rows = asyncio.run(bench(args.customers, args.count, args.database))
    print(render(args.customers, args.count, args.database, results, floor, export, rows))


if __name__ == "__main__":
    main()
