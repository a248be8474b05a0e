"""The worker's memory while registrations wait for their confirmation (bench/registration.py --waiting N).

N registrations are opened the quickest real way: an import of N unverified customers (bcrypt hashes,
stored as they are, so no argon2), whose registration lifecycles (channel `import`) each send their
verification link and then wait, as a storefront sign-up's does, for a confirmation that never comes.
The worker (`accounts worker`, a process of its own) is sampled each tenth of the way by the links that
reached the SMTP sink, and once more after a pause with all N waiting: flat means the lifecycles wait in
Temporal's history, not in the worker (which caches at most `max_cached_workflows` runs).
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
from processes import BenchFailure, child, memory, services, until_serving  # bench/processes.py, beside this

from accounts.db import create_engine, session_factory
from accounts.settings import Settings
from accounts.staff import StaffDirectory
from devstack.mailsink import MailSink

HEADER = "customer_reference,locale_name,phone,email,salutation,first_name,last_name,company,gender,date_of_birth"
TIMEOUT = 3600.0
PAUSE = 20.0  # seconds with every registration waiting, before the last sample


@dataclass
class Waiting:
    count: int
    seconds: float  # until every verification link was sent
    rss_before: int  # KiB
    samples: list[tuple[int, int]] = field(default_factory=list)  # (registrations waiting, worker RSS KiB)
    rss_after_pause: int = 0
    peak: int = 0


def customer_csv(count: int, tag: str) -> bytes:
    password = bcrypt.hashpw(b"waiting bench", bcrypt.gensalt(4)).decode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*HEADER.split(","), "password", "registered"])
    for n in range(1, count + 1):
        writer.writerow([f"{tag}-{n}", "en_US", "", f"{tag.lower()}-{n}@example.com", "Ms", "Wait", f"Customer {n}",
                         "", "Female", "1980-01-01", password, ""])  # fmt: skip
    return out.getvalue().encode()


async def waiting_rss(database_kind: str, count: int) -> Waiting:
    tag = f"WAIT{uuid.uuid4().hex[:6].upper()}"
    with tempfile.TemporaryDirectory(prefix="accounts-bench-waiting-") as directory:
        work = Path(directory)
        rate = {"ACCOUNTS_IMPORT_EMAILS_PER_SECOND": "1000", "ACCOUNTS_BULK_EMAIL_SENDS_PER_SECOND": "1000"}
        async with services(database_kind, work, **rate) as s:
            engine = create_engine(s.url)
            staff = StaffDirectory.from_settings(session_factory(engine), Settings(_env_file=None, database_url=s.url))  # type: ignore[call-arg]
            _, key = await staff.create(f"bench-{tag}", "admin")
            await engine.dispose()
            with child("worker", ["worker"], s.env, work) as worker, child("api", ["api"], s.env, work) as api:
                await until_serving(s.api_url, api, work)
                await asyncio.sleep(2)  # the worker connects and polls
                rss_before, _ = memory(worker.pid)
                result = Waiting(count, 0.0, rss_before)
                async with httpx.AsyncClient(base_url=s.api_url, timeout=60) as http:
                    started = time.perf_counter()
                    answer = await http.post(
                        "/backoffice/imports",
                        headers={"Authorization": f"Bearer {key}"},
                        files={"file": ("customer.csv", customer_csv(count, tag), "text/csv")},
                    )
                    if answer.status_code != 202:
                        raise BenchFailure(f"POST /backoffice/imports: {answer.status_code} {answer.text[:300]}")
                    step = max(1, count // 10)
                    links = Links(s.sink)
                    while (sent := links.count()) < count:
                        if worker.poll() is not None:
                            raise BenchFailure(f"the worker exited: see {work / 'worker.log'}")
                        if time.perf_counter() - started > TIMEOUT:
                            raise BenchFailure(f"only {sent} of {count} links within {TIMEOUT} s")
                        if sent >= step * (len(result.samples) + 1):
                            result.samples.append((sent, memory(worker.pid)[0]))
                            print(f"{sent} registrations waiting ...", file=sys.stderr)
                        await asyncio.sleep(0.2)
                    result.seconds = time.perf_counter() - started
                    result.samples.append((count, memory(worker.pid)[0]))
                    await asyncio.sleep(PAUSE)
                    result.rss_after_pause, result.peak = memory(worker.pid)
    return result


class Links:
    """Verification links the sink received so far, each message looked at once."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink
        self._seen = 0
        self._links = 0

    def count(self) -> int:
        messages = self._sink.messages
        for message in messages[self._seen :]:
            self._links += any("/register/confirm?" in link for link in message.links)
        self._seen = len(messages)
        return self._links


def render_waiting(w: Waiting) -> str:
    steps = ", ".join(f"{n} {rss / 1024:.0f}" for n, rss in w.samples)
    return "\n".join([
        f"{w.count} registrations waiting for confirmation (opened by an import, all links sent in {w.seconds:.0f} s)",
        f"worker RSS MiB: before {w.rss_before / 1024:.0f}; by registrations waiting {steps}; "
        f"{PAUSE:.0f} s later {w.rss_after_pause / 1024:.0f}; peak {w.peak / 1024:.0f} (goal: under 300 and flat)",
    ])  # fmt: skip
