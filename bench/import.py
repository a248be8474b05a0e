"""Benchmark: a customer.csv import's rows per second next to the floor, its emails, the worker's memory.

    .venv/bin/python bench/import.py [--rows N] [--database sqlite|postgres] [--emails-per-second R]

The system runs as in production, in separate processes: the worker (`accounts worker`) and the API
(`accounts api`) are child processes of this one, which holds the Temporal dev server, the SMTP sink,
a fresh migrated database and the load client. The client generates N rows in Spryker's customer.csv
shape (a quarter unverified, so a registration with its verification email each; half with bcrypt
`$2y$` hashes, stored as they are; the rest without a password) and uploads them with
`POST /backoffice/imports` as an admin, then polls `GET /backoffice/imports/{id}`:

    import        rows written per second, from the upload until every row is written
    emails        the time until every verification email of the import is queued (its registration
                  started), bounded by ACCOUNTS_IMPORT_EMAILS_PER_SECOND (set from --emails-per-second)
    worker RSS    the worker's resident memory while the import runs, and its peak (VmHWM)

In the same run, the floor: the same N rows bulk inserted into the same `customers` table, as many rows
per transaction as the import's batch (--batch-size), with no workflow, no API, no validation; taken
before and after the import (other rows of its own), the faster of the two counts. Not a test: it asserts only
that each step answers as it should.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from processes import BenchFailure, child, memory, services, until_serving  # bench/processes.py, beside this
from sqlalchemy import insert, or_, select, update

from accounts import audit
from accounts.db import create_engine, session_factory
from accounts.email_address import email_key
from accounts.models import AuditEvent, Customer, ReferenceCounter
from accounts.references import CUSTOMER_COUNTER
from accounts.settings import Settings
from accounts.staff import StaffDirectory

HEADER = [
    "customer_reference", "locale_name", "phone", "email", "salutation", "first_name", "last_name", "company",
    "gender", "date_of_birth", "password", "registered",
]  # fmt: skip
HASHES = 64  # distinct bcrypt hashes, reused: they are stored as they are, so their cost is not the import's
POLL_SECONDS = 0.25
TIMEOUT = 3600.0


@dataclass
class Row:
    reference: str
    email: str
    salutation: str
    first_name: str
    last_name: str
    gender: str
    date_of_birth: str
    password: str
    registered: str


def generate(count: int, tag: str) -> Iterator[Row]:
    """Every 4th row unverified, every 2nd with a bcrypt hash (so a quarter of the unverified have one)."""
    hashes = [
        bcrypt.hashpw(f"pw-{n}".encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$") for n in range(HASHES)
    ]
    for n in range(1, count + 1):
        yield Row(
            reference=f"{tag}-{n}",
            email=f"{tag.lower()}-{n}@example.com",
            salutation=("Mr", "Ms", "Mrs", "Dr")[n % 4],
            first_name="Bench",
            last_name=f"Customer {n}",
            gender=("Male", "Female")[n % 2],
            date_of_birth=f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}",
            password=hashes[n % HASHES] if n % 2 == 0 else "",
            registered="" if n % 4 == 0 else "2016-01-01",
        )


def customer_csv(rows: list[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for r in rows:
        writer.writerow([r.reference, "en_US", "", r.email, r.salutation, r.first_name, r.last_name, "", r.gender,
                         r.date_of_birth, r.password, r.registered])  # fmt: skip
    return out.getvalue().encode()


# --- the floor --------------------------------------------------------------------------------------


def customer_values(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as `customers` columns (unverified ones without registered_at), built before any clock starts."""
    now = datetime.now(UTC)
    return [
        {"customer_reference": r.reference, "email": r.email, "email_key": email_key(r.email),
         "salutation": r.salutation, "first_name": r.first_name, "last_name": r.last_name, "gender": r.gender,
         "date_of_birth": date.fromisoformat(r.date_of_birth), "locale": "en_US", "password_hash": r.password or None,
         "channel": "import", "registered_at": now if r.registered else None, "created_at": now, "updated_at": now}
        for r in rows
    ]  # fmt: skip


async def floor(url: str, rows: list[Row], batch: int) -> float:
    """Seconds to bulk insert the rows (as customers, unverified ones without registered_at), `batch` per
    transaction (the import's ACCOUNTS_IMPORT_BATCH_SIZE), one transaction after the other."""
    engine = create_engine(url)
    values = customer_values(rows)
    try:
        started = time.perf_counter()
        for at in range(0, len(values), batch):
            async with engine.begin() as connection:
                await connection.execute(insert(Customer), values[at : at + batch])
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def own_writes(url: str, rows: list[Row], batch: int) -> float:
    """Seconds for the import's own statements alone, `batch` rows per transaction as a batch writes them:
    the lookup of existing references and addresses, the customers' INSERT (the floor's whole work), the
    audit events' INSERT (one `imported` event per customer, the batch's idempotency record) and the
    reference counter's UPDATE. Their columns are built before the clock starts: no parsing, no checks, no
    workflow. What the import cannot get below, whatever the rest costs."""
    engine = create_engine(url)
    customers = customer_values(rows)
    events = [
        audit.entry(customer_reference=r.reference, event="imported", channel="import", actor="bench",
                    details={"import": "bench", "outcome": "created"}, idempotency_key=f"imported:bench:{r.reference}")
        for r in rows
    ]  # fmt: skip
    try:
        started = time.perf_counter()
        for at in range(0, len(rows), batch):
            part = customers[at : at + batch]
            async with engine.begin() as connection:
                references = [c["customer_reference"] for c in part]
                keys = [c["email_key"] for c in part]
                found = or_(Customer.customer_reference.in_(references), Customer.email_key.in_(keys))
                (await connection.execute(select(Customer).where(found).with_for_update())).all()
                await connection.execute(insert(Customer), part)
                await connection.execute(insert(AuditEvent), events[at : at + batch])
                await connection.execute(
                    update(ReferenceCounter).where(ReferenceCounter.name == CUSTOMER_COUNTER).values(value=len(rows))
                )
        return time.perf_counter() - started
    finally:
        await engine.dispose()


@dataclass
class Report:
    rows: int
    database: str
    emails_per_second: float
    unverified: int
    import_seconds: float  # upload until every row is written
    emails_seconds: float | None  # upload until every registration started (None: --rows-only)
    floor_seconds: float
    rejected: int
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (rows read, RSS KiB)
    rss_before: int = 0
    peak_rss: int = 0
    batch_size: int = 500
    concurrent: int = 1
    retries: int = 0  # progress reads answered 503 (the worker too busy for the query), asked again
    writes_seconds: float = 0.0  # the import's own statements alone (own_writes)


@contextlib.asynccontextmanager
async def system(
    database_kind: str, emails_per_second: float, work: Path, *, batch_size: int = 500, concurrent: int = 2
) -> AsyncIterator[dict[str, Any]]:
    """A fresh migrated database, the Temporal dev server, the SMTP sink, and the children's environment."""
    async with services(
        database_kind,
        work,
        ACCOUNTS_IMPORT_EMAILS_PER_SECOND=str(emails_per_second),
        # the bulk email queue's rate (its verification links go there): the same bound as the starts
        ACCOUNTS_BULK_EMAIL_SENDS_PER_SECOND=str(emails_per_second),
        ACCOUNTS_IMPORT_BATCH_SIZE=str(batch_size),
        ACCOUNTS_IMPORT_CONCURRENT_BATCHES=str(concurrent),
    ) as s:
        yield {"url": s.url, "env": s.env, "api_url": s.api_url}


async def bench(
    count: int, database_kind: str, emails_per_second: float, batch_size: int, concurrent: int, rows_only: bool
) -> Report:
    tag = f"BEN{uuid.uuid4().hex[:6].upper()}"
    rows = list(generate(count, tag))
    floor_rows = list(generate(count, f"FLR{tag[3:]}"))
    content = customer_csv(rows)
    unverified = sum(1 for r in rows if not r.registered)
    with tempfile.TemporaryDirectory(prefix="accounts-bench-import-") as directory:
        work = Path(directory)
        async with system(database_kind, emails_per_second, work, batch_size=batch_size, concurrent=concurrent) as s:
            print(f"floor: bulk insert of {count} rows ...", file=sys.stderr)
            floor_before = await floor(s["url"], floor_rows[: count // 2], batch_size) * 2
            print(f"floor: {count / floor_before:.0f} rows/s", file=sys.stderr)
            settings = Settings(_env_file=None, database_url=s["url"])  # type: ignore[call-arg]
            engine = create_engine(s["url"])
            directory_ = StaffDirectory.from_settings(session_factory(engine), settings)
            _, key = await directory_.create(f"bench-{tag}", "admin")
            await engine.dispose()
            with child("worker", ["worker"], s["env"], work) as worker, child("api", ["api"], s["env"], work) as api:
                await until_serving(s["api_url"], api, work)
                await asyncio.sleep(2)  # the worker connects and polls
                rss_before, _ = memory(worker.pid)
                print(f"importing {count} rows ({len(content) / 1e6:.1f} MB) ...", file=sys.stderr)
                report = await run_import(s["api_url"], key, content, worker, api, work, rows_only)
                _, peak = memory(worker.pid)
            # the floor: the same table of the same database, the worker and the API stopped
            print(f"floor: bulk insert of {count} rows ...", file=sys.stderr)
            floor_seconds = min(floor_before, await floor(s["url"], floor_rows[count // 2 :], batch_size) * 2)
            print(f"the import's own statements alone, {count} rows ...", file=sys.stderr)
            writes_seconds = await own_writes(s["url"], list(generate(count, f"OWN{tag[3:]}")), batch_size)
    return Report(count, database_kind, emails_per_second, unverified, report["written"], report["emails"],
                  floor_seconds, report["rejected"], report["samples"], rss_before, peak, batch_size, concurrent,
                  report["retries"], writes_seconds)  # fmt: skip


async def run_import(
    api_url: str,
    key: str,
    content: bytes,
    worker: subprocess.Popen[bytes],
    api: subprocess.Popen[bytes],
    logs: Path,
    rows_only: bool,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    samples: list[tuple[int, int]] = []
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        started = time.perf_counter()
        response = await http.post("/backoffice/imports", headers=headers,
                                   files={"file": ("customer.csv", content, "text/csv")})  # fmt: skip
        if response.status_code != 202:
            raise BenchFailure(f"POST /backoffice/imports: {response.status_code} {response.text[:500]}")
        import_id = response.json()["data"]["id"]
        written_at = None
        retries = 0
        while True:
            for process, name in ((worker, "worker"), (api, "api")):
                if process.poll() is not None:
                    raise BenchFailure(f"the {name} exited with {process.returncode}: see {logs / (name + '.log')}")
            answer = await http.get(f"/backoffice/imports/{import_id}", headers=headers)
            if answer.status_code == 503:  # the worker did not answer the progress query in time: ask again
                retries += 1
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            if answer.status_code != 200:
                raise BenchFailure(f"GET /backoffice/imports/{import_id}: {answer.status_code} {answer.text[:300]}")
            p = answer.json()["data"]["attributes"]
            now = time.perf_counter() - started
            samples.append((p["rowsRead"], memory(worker.pid)[0]))
            if written_at is None and p["rowsTotal"] and p["rowsRead"] >= p["rowsTotal"]:
                written_at = now
                print(f"every row written after {now:.2f} s; {p['emailsQueued']} emails queued", file=sys.stderr)
                if rows_only:  # the emails take unverified / rate seconds more: not waited for
                    return {"written": now, "emails": None, "rejected": p["rowsRejected"], "samples": samples,
                            "retries": retries, "started": p["emailsStarted"]}  # fmt: skip
            if p["state"] != "running":
                if p["state"] != "completed":
                    raise BenchFailure(f"the import ended {p['state']}: {p}")
                if p["rowsRejected"]:
                    raise BenchFailure(f"{p['rowsRejected']} rows rejected: {p['errors'][:3]}")
                return {"written": written_at or now, "emails": now, "rejected": p["rowsRejected"], "samples": samples,
                        "retries": retries}  # fmt: skip
            if now > TIMEOUT:
                raise BenchFailure(f"the import did not finish within {TIMEOUT} s: {p}")
            await asyncio.sleep(POLL_SECONDS)


# --- output -----------------------------------------------------------------------------------------


def render(r: Report) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rate = r.rows / r.import_seconds
    floor_rate = r.rows / r.floor_seconds
    writes_rate = r.rows / r.writes_seconds
    steps = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        at = next((rss for read, rss in r.rss_samples if read >= r.rows * fraction), r.rss_samples[-1][1])
        steps.append(f"{int(fraction * 100)}% {at / 1024:.0f}")
    return "\n".join([
        f"machine: nproc {cpus}, Python {platform.python_version()}, temporalio {version('temporalio')}, "
        f"database {r.database}",
        f"{r.rows} rows ({r.unverified} unverified, {r.rows // 2} with bcrypt hashes); "
        f"ACCOUNTS_IMPORT_EMAILS_PER_SECOND={r.emails_per_second:g}, ACCOUNTS_IMPORT_BATCH_SIZE={r.batch_size}, "
        f"ACCOUNTS_IMPORT_CONCURRENT_BATCHES={r.concurrent}",
        "",
        f"{'':<34}{'rows':>8}{'wall s':>9}{'rows/s':>9}",
        f"{'import (API + workflow + worker)':<34}{r.rows:>8}{r.import_seconds:>9.2f}{rate:>9.0f}",
        f"{f'floor (bulk insert, {r.batch_size}/tx)':<34}{r.rows:>8}{r.floor_seconds:>9.2f}{floor_rate:>9.0f}",
        f"{'the import statements alone':<34}{r.rows:>8}{r.writes_seconds:>9.2f}{writes_rate:>9.0f}",
        "",
        f"import / floor: {rate / floor_rate:.2f}x rows per second (goal: at least 0.5x)",
        f"the import's statements alone / floor: {writes_rate / floor_rate:.2f}x (the most any import could reach)",
        (
            f"every verification email queued: {r.emails_seconds:.1f} s after the upload "
            f"({r.unverified} registrations; the bound alone needs {r.unverified / r.emails_per_second:.1f} s)"
            if r.emails_seconds is not None
            else f"verification emails: not waited for (--rows-only); the bound alone needs "
            f"{r.unverified / r.emails_per_second:.0f} s for {r.unverified}"
        ),
        f"worker RSS MiB: before {r.rss_before / 1024:.0f}; by rows read {', '.join(steps)}; "
        f"peak {r.peak_rss / 1024:.0f}",
        f"progress reads answered 503 and asked again: {r.retries}",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated customer.csv")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--emails-per-second", type=float, default=10.0,
                        help="ACCOUNTS_IMPORT_EMAILS_PER_SECOND for the run (production default: 10)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=2000, help="ACCOUNTS_IMPORT_BATCH_SIZE (and the floor's)")
    parser.add_argument("--concurrent-batches", type=int, default=2, help="ACCOUNTS_IMPORT_CONCURRENT_BATCHES")
    parser.add_argument(
        "--rows-only", action="store_true", help="stop once every row is written (the emails take unverified / rate s)"
    )
    args = parser.parse_args()
    if args.rows < 4 or args.emails_per_second <= 0:
        parser.error("--rows must be at least 4 and --emails-per-second positive")
    try:
        report = asyncio.run(
            bench(
                args.rows,
                args.database,
                args.emails_per_second,
                args.batch_size,
                args.concurrent_batches,
                args.rows_only,
            )
        )
    except (BenchFailure, TimeoutError) as failure:
        sys.exit(f"bench failed: {failure}")
    print(render(report))


if __name__ == "__main__":
    main()
