"""The customer import (customer.csv) on the time-skipping server, SQLite and PostgreSQL, the real SMTP sink."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SPRYKER_PASSWORD as PASSWORD
from conftest import StackFactory, csv_bytes, prefix, row, spryker_hash, token_from, unique_email
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from accounts.customer_csv import COLUMNS
from accounts.import_files import imports_dir
from accounts.models import AuditEvent, Customer, EmailOutbox, ReferenceCounter
from accounts.references import CUSTOMER_COUNTER
from accounts.settings import Settings
from accounts.staff import StaffMember
from backoffice import BackOffice, Forbidden, InvalidImportFile
from starter import AccountsClient
from starter.imports import Imports
from workflows.customer_import import ROUND_LIMIT, import_workflow_id

ADMIN = StaffMember(1, "admin-anna", "admin")
SUPPORT = StaffMember(2, "support-sam", "support")


async def customer(stack: Any, reference: str) -> Customer | None:
    async with stack.database.sessions() as session:
        return await session.scalar(select(Customer).where(Customer.customer_reference == reference))


async def verification_emails(stack: Any, reference: str) -> int:
    async with stack.database.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(EmailOutbox)
                .where(EmailOutbox.customer_reference == reference, EmailOutbox.template == "verify")
            )
            or 0
        )


async def imported_events(stack: Any, import_id: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        return list(await session.scalars(select(AuditEvent).where(AuditEvent.actor == import_id)))


async def progress_of(imports: Imports, import_id: str) -> Any:
    """The progress query, asked again when it timed out (the API answers 503 then): a busy worker, or a run
    that continues as new every round, whose next run has not taken its first task yet."""
    while True:
        try:
            return await imports.progress(import_id)
        except RPCError as error:  # the server's deadline, or the client's own ("Timeout expired")
            if error.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise
            await asyncio.sleep(0.2)


def stored_files(stack: Any) -> set[str]:
    directory = imports_dir(stack.settings.var_dir)
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


async def test_spryker_rows_import_sign_in_with_bcrypt_verify_and_a_rerun_changes_nothing(
    stack: StackFactory, time_skipping: Any, database: Any
) -> None:
    async with stack(time_skipping, database) as s:
        p = prefix()
        emails = [unique_email("imported") for _ in range(4)]
        rows = [
            row(f"{p}1", emails[0], password=spryker_hash()),  # verified, bcrypt: signs in
            row(f"{p}7", emails[1], password=spryker_hash(), registered="", salutation="Mrs", gender="Female"),
            row(f"{p}3", emails[2], registered="", locale_name="en_US"),  # unverified, no password
            row(f"{p}4", emails[3], password="a plaintext Pass 9!"),  # verified, hashed here
        ]
        content = csv_bytes(rows)
        office = BackOffice(s.database.sessions, s.accounts, s.settings)
        started = await office.start_import(content, filename="customer.csv", staff=ADMIN)
        assert started.rows == 4 and started.workflow_id == import_workflow_id(started.import_id)
        report = await s.accounts.imports.wait(started.import_id)
        assert (report.state, report.rows_created, report.rows_written, report.rows_rejected) == ("completed", 4, 4, 0)
        assert (report.emails_started, report.emails_queued) == (2, 0)
        # the upload (personal data, hashes) is gone once the import is over; the report's index stays
        files = stored_files(s)
        assert f"{started.import_id}.csv" not in files and f"{started.import_id}.index.json" in files

        first = await customer(s, f"{p}1")
        assert first is not None and first.status == "verified" and str(first.password_hash).startswith("$2y$10$")
        assert (first.locale, first.channel, str(first.date_of_birth)) == ("de_DE", "import", "1980-12-31")
        plaintext = await customer(s, f"{p}4")
        assert plaintext is not None and str(plaintext.password_hash).startswith("$argon2id$")
        assert len(await imported_events(s, started.import_id)) == 4  # one `imported` event per customer
        async with s.database.sessions() as session:
            counter = await session.get(ReferenceCounter, CUSTOMER_COUNTER)
        assert counter is not None and counter.value >= 7  # sign-ups never get an imported number

        # the bcrypt customer signs in with the shop's password, then holds an argon2id hash
        await s.accounts.logins.authenticate(emails[0], PASSWORD, client_ip="198.51.100.4")
        async with asyncio.timeout(20):
            while not (await customer(s, f"{p}1")).password_hash.startswith("$argon2id$"):  # type: ignore[union-attr]
                await asyncio.sleep(0.1)

        # each unverified row gets one verification email and can confirm
        verify = await s.mail_to(emails[1])
        assert (await s.accounts.confirm_email(token_from(verify))).outcome == "activated"
        assert (await customer(s, f"{p}7")).status == "verified"  # type: ignore[union-attr]
        # ... one without a password gets one link that sets the password and verifies the address
        link = await s.mail_to(emails[2])
        await s.accounts.passwords.complete_reset(token_from(link), "Chosen-at-Import 77!")
        async with asyncio.timeout(20):
            while (await customer(s, f"{p}3")).status != "verified":  # type: ignore[union-attr]
                await asyncio.sleep(0.1)
        assert str((await customer(s, f"{p}3")).password_hash).startswith("$argon2id$")  # type: ignore[union-attr]
        await s.accounts.logins.authenticate(emails[2], "Chosen-at-Import 77!", client_ip="198.51.100.4")
        assert [await verification_emails(s, f"{p}{n}") for n in (7, 3, 1, 4)] == [1, 0, 0, 0]
        received = [m for m in s.sink.messages if emails[2] in m.to]
        assert len([m for m in received if any("token=" in link for link in m.links)]) == 1  # then notices only
        # the same file again: nothing changes, nothing is sent
        again = await s.accounts.imports.start(content)
        report = await s.accounts.imports.wait(again.import_id)
        assert (report.rows_created, report.rows_updated, report.rows_written, report.emails_started) == (0, 0, 0, 0)
        assert await imported_events(s, again.import_id) == []
        assert [await verification_emails(s, f"{p}{n}") for n in (7, 3)] == [1, 0]


async def test_a_changed_row_updates_the_profile_and_row_errors_are_reported_with_line_and_column(
    stack: StackFactory, time_skipping: Any, database: Any
) -> None:
    async with stack(time_skipping, database) as s:
        p = prefix()
        taken, other = unique_email("taken"), unique_email("other")
        first = await s.accounts.imports.start(csv_bytes([row(f"{p}1", taken), row(f"{p}9", other)]))
        await s.accounts.imports.wait(first.import_id)
        fresh = [unique_email("row") for _ in range(6)]
        rows = [
            row(f"{p}1", taken, last_name="Hopkin-Smith"),  # line 2: an update of the profile
            row(f"{p}2", fresh[0]),  # line 3
            row(f"{p}3", fresh[0].upper()),  # line 4: the same email again
            row(f"{p}4", fresh[1], salutation="Herr", password="Plain-text-from-the-old-shop-1"),  # line 5
            row("DE--X", fresh[2]),  # line 6: no number
            row(f"{p}5", other),  # line 7: another customer's email
            row(f"{p}6", fresh[3], date_of_birth="31.12.1980"),  # line 8
        ]
        started = await s.accounts.imports.start(csv_bytes(rows))
        report = await s.accounts.imports.wait(started.import_id)
        assert (report.rows_created, report.rows_updated, report.rows_rejected) == (1, 1, 5)
        assert [(e.line, e.column) for e in report.errors] == [
            (4, "email"), (5, "salutation"), (6, "customer_reference"), (7, "email"), (8, "date_of_birth"),
        ]  # fmt: skip
        assert report.errors[3].message == "This email is already used by another customer."
        assert (await customer(s, f"{p}1")).last_name == "Hopkin-Smith"  # type: ignore[union-attr]
        for reference in (f"{p}3", f"{p}4", f"{p}5", f"{p}6", "DE--X"):
            assert await customer(s, reference) is None
        rejected = list(csv.DictReader(io.StringIO(await s.accounts.imports.rejected_csv(started.import_id))))
        assert [r["error_line"] for r in rejected] == ["4", "5", "6", "7", "8"]
        assert rejected[1]["salutation"] == "Herr" and "Mr, Mrs, Ms, Dr" in rejected[1]["error_message"]
        assert rejected[1]["password"] == ""  # a password never reaches the downloadable file


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "lacks the required column gender"),
        ("wrong delimiter", "seems to use ';' as its delimiter"),
        ("not utf-8", "is not UTF-8"),
        ("empty", "the file is empty"),
        ("header only", "a header but no rows"),
        ("1 MB field", "longer than 1 MB"),
        ("open quote", "never closed"),
    ],
)
async def test_a_bad_file_is_refused_whole_and_nothing_is_written(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any, case: str, message: str
) -> None:
    async with stack(time_skipping, sqlite_database) as s:
        email = unique_email("refused")
        good = [row(f"{prefix()}1", email)]
        content = {
            "missing column": csv_bytes(good, columns=tuple(c for c in COLUMNS if c != "gender")),
            "wrong delimiter": csv_bytes(good, delimiter=";"),
            "not utf-8": csv_bytes(good).replace(b"Hopkin", "Höpkin".encode("latin-1")),
            "empty": b"",
            "header only": csv_bytes([]),
            "1 MB field": csv_bytes([row(f"{prefix()}1", email, company="x" * (1024 * 1024 + 1))]),
            "open quote": csv_bytes(good) + b'DE--9,"unclosed,\r\n',
        }[case]
        before = stored_files(s)
        office = BackOffice(s.database.sessions, s.accounts, s.settings)
        with pytest.raises(InvalidImportFile, match=message):
            await office.start_import(content, filename="customer.csv", staff=ADMIN)
        assert stored_files(s) == before
        async with s.database.sessions() as session:
            assert await session.scalar(select(Customer.id).where(Customer.email_key == email)) is None


async def test_a_support_member_may_not_import(sqlite_database: Any, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_database.url, var_dir=tmp_path)  # type: ignore[call-arg]
    client = await Client.connect("127.0.0.1:1", lazy=True)  # refused before any call
    office = BackOffice(sqlite_database.sessions, AccountsClient(client, settings, sqlite_database.sessions), settings)
    for attempt in (
        office.start_import(csv_bytes([row(f"{prefix()}1", unique_email())]), filename="c.csv", staff=SUPPORT),
        office.list_imports(SUPPORT),
        office.import_progress("imp_0123456789abcdef", SUPPORT),
        office.cancel_import("imp_0123456789abcdef", SUPPORT),
        office.rejected_rows_csv("imp_0123456789abcdef", SUPPORT),
    ):
        with pytest.raises(Forbidden, match="import_customers needs the admin role"):
            await attempt
    assert not imports_dir(tmp_path).exists()


async def test_a_dry_run_checks_every_row_and_writes_nothing(
    stack: StackFactory, time_skipping: Any, database: Any
) -> None:
    async with stack(time_skipping, database) as s:
        p = prefix()
        rows = [row(f"{p}1", unique_email(), registered=""), row(f"{p}2", unique_email(), gender="Other")]
        started = await s.accounts.imports.start(csv_bytes(rows), dry_run=True)
        report = await s.accounts.imports.wait(started.import_id)
        assert (report.dry_run, report.rows_created, report.rows_written, report.rows_rejected) == (True, 1, 0, 1)
        assert report.errors[0].column == "gender" and report.emails_started == 0
        assert await customer(s, f"{p}1") is None and await imported_events(s, started.import_id) == []
        assert s.worker is not None
        await s.worker.shutdown()  # a finished import's report is its result: readable without a worker
        assert (await s.accounts.imports.progress(started.import_id)).rows_rejected == 1


async def test_batches_continue_as_new_and_a_restarted_worker_finishes_with_every_row_once(
    stack: StackFactory, dev_server: Any, database: Any
) -> None:
    # the dev server: the time-skipping one never hands a stopped worker's sticky task to the next worker
    async with stack(dev_server, database) as s:
        imports = Imports(s.client, s.settings, s.accounts.imports._timings, batch_size=3, history_limit=25)
        p = prefix()
        hashed = spryker_hash()
        rows = [
            row(f"{p}{n}", unique_email("batch"), password=hashed, registered="" if n % 4 == 0 else "2020-01-01")
            for n in range(1, 31)
        ]
        started = await imports.start(csv_bytes(rows))
        handle = s.client.get_workflow_handle(started.workflow_id)
        async with asyncio.timeout(30):
            while (await imports.progress(started.import_id)).rows_read < 9:
                await asyncio.sleep(0.05)
        await s.restart_worker()  # mid-import: the running batch finishes or is retried
        report = await imports.wait(started.import_id)
        assert (report.rows_read, report.rows_created, report.rows_rejected) == (30, 30, 0)
        assert (report.emails_started, report.emails_queued) == (7, 0)
        first_event = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
        assert first_event.continued_execution_run_id, "the import never continued as new"
        events = await imported_events(s, started.import_id)
        assert sorted(e.customer_reference for e in events) == sorted(r["customer_reference"] for r in rows)
        for n in (4, 8, 28):
            await s.mail_to(rows[n - 1]["email"])
            assert await verification_emails(s, f"{p}{n}") == 1


async def test_cancel_stops_reading_and_keeps_the_rows_written(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    async with stack(time_skipping, sqlite_database) as s:
        imports = Imports(s.client, s.settings, s.accounts.imports._timings, batch_size=2)
        p = prefix()
        rows = [row(f"{p}{n}", unique_email("cancel")) for n in range(1, 41)]
        started = await imports.start(csv_bytes(rows))
        async with asyncio.timeout(30):
            while (await imports.progress(started.import_id)).rows_read < 4:
                await asyncio.sleep(0.02)
        office = BackOffice(s.database.sessions, s.accounts, s.settings)
        office._accounts.imports = imports
        cancelled = await office.cancel_import(started.import_id, ADMIN)
        assert cancelled.state == "cancelled" and cancelled.rows_read < 40
        assert cancelled.stopped_at_line == rows.index(rows[cancelled.rows_read - 1]) + 2
        written = [r for r in rows if await customer(s, r["customer_reference"]) is not None]
        assert len(written) == cancelled.rows_written == cancelled.rows_read


@pytest.mark.parametrize("history_limit", [4000, 30], ids=["one run", "continued as new"])
async def test_verification_lifecycles_start_at_the_configured_rate_and_the_queue_shows(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any, history_limit: int
) -> None:
    """The bound holds across continue-as-new too (the time of the next round is carried over)."""
    async with stack(time_skipping, sqlite_database, import_emails_per_second=2) as s:
        imports = Imports(s.client, s.settings, s.accounts.imports._timings, history_limit=history_limit)
        p, hashed = prefix(), spryker_hash()
        rows = [row(f"{p}{n}", unique_email("rate"), registered="", password=hashed) for n in range(1, 7)]
        started = await imports.start(csv_bytes(rows))
        queued_seen = 0
        async with asyncio.timeout(60):
            while (progress := await progress_of(imports, started.import_id)).state == "running":
                queued_seen = max(queued_seen, progress.emails_queued)
                await asyncio.sleep(0.05)
        assert (progress.emails_started, progress.emails_queued) == (6, 0)
        # (a run that continues as new every round may answer no query before the next one takes over)
        assert queued_seen >= 3 or history_limit < 4000
        starts = sorted(
            [
                (await s.client.get_workflow_handle(f"registration:{r['customer_reference']}").describe()).start_time
                for r in rows
            ]
        )
        # 2 per second: six starts span at least two seconds (workflow time), never more than 2 in one
        assert (starts[-1] - starts[0]).total_seconds() >= 2
        assert all((starts[i + 2] - starts[i]).total_seconds() >= 0.9 for i in range(len(starts) - 2))
        for r in rows:
            await s.mail_to(r["email"])


async def test_a_customer_imported_without_a_password_gets_one_link_and_no_reminder(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    """A verification reminder would activate an account that has no password: the set-password link is the
    one link; past the reminder time nothing more is sent, and the registration still expires."""
    timings = {"verification_reminder_after": timedelta(seconds=1), "verification_expires_after": timedelta(seconds=4)}
    async with stack(time_skipping, sqlite_database, **timings) as s:
        p = prefix()
        email = unique_email("nopassword")
        started = await s.accounts.imports.start(csv_bytes([row(f"{p}1", email, registered="")]))
        await s.accounts.imports.wait(started.import_id)
        await s.mail_to(email)  # the set-password link
        handle = s.client.get_workflow_handle(f"registration:{p}1")
        assert (await handle.result())["outcome"] == "expired"
        async with s.database.sessions() as session:
            templates = list(
                await session.scalars(select(EmailOutbox.template).where(EmailOutbox.customer_reference == f"{p}1"))
            )
        assert templates == ["set_password"]


async def test_a_high_email_rate_starts_the_registrations_in_bounded_rounds(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    """At 1,000 emails a second a round used to start 1,000 registrations in one workflow activation, too
    heavy for a loaded worker (the deadlock detector fired and the run's eviction hung): rounds now start
    at most ROUND_LIMIT, the rate still counted from each round's start."""
    async with stack(time_skipping, sqlite_database, import_emails_per_second=1000) as s:
        p, hashed = prefix(), spryker_hash()
        rows = [row(f"{p}{n}", unique_email("round"), registered="", password=hashed) for n in range(1, 251)]
        started = await s.accounts.imports.start(csv_bytes(rows))
        report = await s.accounts.imports.wait(started.import_id)
        assert report.emails_started == 250
        history = await s.client.get_workflow_handle(started.workflow_id).fetch_history()
        per_task, rounds = 0, []
        for event in history.events:
            if event.HasField("workflow_task_completed_event_attributes"):
                rounds.append(per_task)
                per_task = 0
            elif event.HasField("start_child_workflow_execution_initiated_event_attributes"):
                per_task += 1
        rounds.append(per_task)
        starting = [n for n in rounds if n]
        assert sum(starting) == 250 and max(starting) <= ROUND_LIMIT and len(starting) >= 3, starting
