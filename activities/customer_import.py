"""The customer import's work on the file and the database: index the stored file, then one batch at a time
check its rows and upsert them in one transaction (keyed by customer_reference, as Spryker's importer).

A batch is idempotent: each customer it writes gets one `imported` audit event keyed by the import and the
reference, so a batch retried after its commit (a worker killed before it reported) finds its own rows and
answers as the first attempt did, writing nothing twice. Plaintext passwords are hashed here (argon2id) and
never leave the activity; bcrypt and argon2 hashes are stored as they are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts import audit, import_files, metrics
from accounts.customer_csv import CustomerRow, Record, RowError, Scan, check_row, read_batch, rejected_csv_row, scan
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.import_files import (
    ImportFileChanged,
    batch_bytes,
    batch_digests,
    read_index,
    write_index,
    write_rejected,
)
from accounts.models import AuditEvent, Customer, ReferenceCounter, utcnow
from accounts.passwords import PasswordHasher, PasswordPolicy, is_stored_hash, user_inputs
from accounts.profile import SignUp, customer_columns
from accounts.references import CUSTOMER_COUNTER
from accounts.settings import Settings
from activities.heartbeats import heartbeating

IMPORT_CHANNEL = "import"
IMPORTED = "imported"
ERRORS_KEPT = 50  # per batch, and per import in the workflow: Spryker's report shows 50 too
HEARTBEAT_EVERY = 50  # rows
HEARTBEAT_SECONDS = 5.0  # while a file is scanned (the workflow's heartbeat timeout is 30 s)
PROFILE_FIELDS = ("email", "salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company")
CUSTOMERS = cast(Table, Customer.__table__)
AUDIT_EVENTS = cast(Table, AuditEvent.__table__)
EMAIL_TAKEN = "This email is already used by another customer."


@dataclass
class IndexInput:
    import_id: str
    sha256: str
    delimiter: str
    batch_size: int


@dataclass
class Indexed:
    rows: int
    batches: int


@dataclass
class BatchInput:
    import_id: str
    sha256: str
    delimiter: str
    batch: int
    dry_run: bool


@dataclass
class BatchResult:
    rows_read: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)  # the batch's first ERRORS_KEPT
    # customers created unverified: each gets a registration lifecycle (channel import)
    to_verify: list[str] = field(default_factory=list)
    without_password: list[str] = field(default_factory=list)  # of to_verify: their link sets a password too
    last_line: int = 0


def import_key(import_id: str, customer_reference: str) -> str:
    return f"{IMPORTED}:{import_id}:{customer_reference}"


class CustomerImportActivities:
    def __init__(self, sessions: SessionFactory, settings: Settings, hasher: PasswordHasher) -> None:
        self._sessions = sessions
        self._settings = settings
        self._hasher = hasher
        self._policy = PasswordPolicy.from_settings(settings)

    @activity.defn
    async def index_customer_import(self, request: IndexInput) -> Indexed:
        """Check the stored file against the import's SHA-256, find its batches, keep each batch's SHA-256."""
        var_dir = self._settings.var_dir
        path = import_files.file_path(var_dir, request.import_id)
        found = await heartbeating(
            asyncio.to_thread(scan, path, request.delimiter, request.batch_size), HEARTBEAT_SECONDS
        )
        found.digests = await heartbeating(self._digests(request.import_id, request.sha256, found), HEARTBEAT_SECONDS)
        write_index(var_dir, request.import_id, found)
        return Indexed(found.rows, len(found.batches))

    @activity.defn
    async def import_customer_batch(self, request: BatchInput) -> BatchResult:
        var_dir = self._settings.var_dir
        index = read_index(var_dir, request.import_id)
        if not index.digests:  # indexed before batches had digests: take them now, from the verified file
            index.digests = await self._digests(request.import_id, request.sha256, index)
            write_index(var_dir, request.import_id, index)
        try:
            data = await asyncio.to_thread(batch_bytes, var_dir, request.import_id, index, request.batch)
        except ImportFileChanged as error:
            raise ApplicationError(str(error), type="ImportFileChanged", non_retryable=True) from None
        line = index.batches[request.batch][1]
        batch = read_batch(data, request.delimiter, line)
        result = BatchResult(rows_read=len(batch), last_line=batch[-1].line if batch else line)
        rejected: list[list[str]] = []
        rows: list[tuple[Record, CustomerRow]] = []
        for record in batch:
            checked = check_row(record, index.header, self._settings.locales)
            if isinstance(checked, CustomerRow) and record.line in index.duplicates:
                checked = RowError(record.line, *index.duplicates[record.line])
            if isinstance(checked, RowError):
                _reject(result, rejected, record, checked)
            else:
                rows.append((record, checked))
        async with self._sessions() as session:
            await self._upsert(session, request, rows, result, rejected)
            if not request.dry_run:  # a dry run checks against the database and writes nothing
                await session.commit()
        if not request.dry_run:
            for outcome in ("created", "updated", "unchanged", "rejected"):
                metrics.IMPORT_ROWS.labels(outcome).inc(getattr(result, outcome))
        result.errors = sorted(result.errors, key=lambda error: error.line)[:ERRORS_KEPT]
        rejected.sort(key=lambda fields: int(fields[-3]))  # in file order, as the errors
        write_rejected(var_dir, request.import_id, request.batch, rejected)
        return result

    @activity.defn
    async def discard_customer_import_file(self, import_id: str) -> None:
        """The uploaded file, once the import is over (done, cancelled or a dry run): nothing reads it again."""
        import_files.discard(self._settings.var_dir, import_id)

    def _refused_password(self, row: CustomerRow) -> RowError | None:
        """A plaintext password in the file must pass the policy every sign-up passes (a shop's hashes are
        taken as they are: nobody can check what they hide). Refused, the row can be imported again
        without it, and that customer sets a password through the link."""
        if row.password is None or is_stored_hash(row.password):
            return None
        found = self._policy.violations(row.password, user_inputs=user_inputs(row.email, row.first_name, row.last_name))
        return RowError(row.line, "password", " ".join(v.detail for v in found)) if found else None

    async def _digests(self, import_id: str, sha256: str, index: Scan) -> list[str]:
        """Each batch's SHA-256, from the file checked whole. Another file under its name fails the import for
        good; a missing one is retried (a volume not mounted yet on this worker)."""
        starts = [offset for offset, _ in index.batches]
        try:
            digests = await asyncio.to_thread(batch_digests, self._settings.var_dir, import_id, sha256, starts)
        except ImportFileChanged as error:
            raise ApplicationError(str(error), type="ImportFileChanged", non_retryable=True) from None
        return digests

    async def _upsert(
        self,
        session: AsyncSession,
        request: BatchInput,
        rows: list[tuple[Record, CustomerRow]],
        result: BatchResult,
        rejected: list[list[str]],
    ) -> None:
        """New customers and their audit events go in as two bulk INSERTs (one statement each, as the
        benchmark's floor); existing ones are updated one by one, their rows locked against a concurrent
        profile edit (PostgreSQL; SQLite's one writer serializes the transaction anyway)."""
        references = [row.customer_reference for _, row in rows]
        emails = [email_key(row.email) for _, row in rows]
        # one query finds the rows to update and the addresses taken (a fresh import finds none of either)
        found = list(
            await session.scalars(
                select(Customer)
                .where(or_(Customer.customer_reference.in_(references), Customer.email_key.in_(emails)))
                .with_for_update()
            )
        )
        by_reference = {c.customer_reference: c for c in found}
        by_email = {c.email_key: c.customer_reference for c in found}
        # An earlier attempt of this batch can only have imported references that exist now
        keys = [import_key(request.import_id, reference) for reference in references if reference in by_reference]
        earlier = {
            key: details.get("outcome")
            for key, details in (
                await session.execute(
                    select(AuditEvent.idempotency_key, AuditEvent.details).where(AuditEvent.idempotency_key.in_(keys))
                )
                if keys
                else []
            )
        }
        new_customers: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        largest = 0
        for position, (record, row) in enumerate(rows):
            if position % HEARTBEAT_EVERY == 0:
                activity.heartbeat(record.line)
            key = import_key(request.import_id, row.customer_reference)
            outcome = earlier.get(key)  # this batch ran before (and committed): answer as it did
            if outcome is None:
                owner = by_email.get(emails[position])
                if owner is not None and owner != row.customer_reference:
                    _reject(result, rejected, record, RowError(row.line, "email", EMAIL_TAKEN))
                    continue
                existing = by_reference.get(row.customer_reference)
                if existing is not None and existing.anonymized_at is not None:
                    message = "This customer was deleted (anonymized); use another customer_reference."
                    _reject(result, rejected, record, RowError(row.line, "customer_reference", message))
                    continue
                # a plaintext password is checked where it is used: a new customer, or one without a password
                refused = self._refused_password(row) if existing is None or existing.password_hash is None else None
                if refused is not None:
                    _reject(result, rejected, record, refused)
                    continue
                if existing is None:
                    outcome = "created"
                    if not request.dry_run:
                        new_customers.append(await self._columns(row))
                        events.append(_event(request, row, key, {"outcome": outcome}))
                else:
                    changed = await self._update(existing, row, dry_run=request.dry_run)
                    outcome = "updated" if changed else "unchanged"
                    if changed and not request.dry_run:
                        events.append(_event(request, row, key, {"outcome": outcome, "fields": changed}))
            largest = max(largest, row.reference_number)
            if outcome == "created":
                result.created += 1
                if row.registered_at is None:
                    result.to_verify.append(row.customer_reference)
                    if row.password is None:
                        result.without_password.append(row.customer_reference)
            elif outcome == "updated":
                result.updated += 1
            else:
                result.unchanged += 1
        if request.dry_run:
            return
        # Core INSERTs of the tables: the ORM's bulk insert splits a batch wherever the columns left NULL
        # change (a row without a password after one with), down to a statement per row
        if new_customers:
            await session.execute(insert(CUSTOMERS), new_customers)
        if events:
            await session.execute(insert(AUDIT_EVENTS), events)
        if largest:
            # later sign-ups must never be handed an imported number
            await session.execute(
                update(ReferenceCounter)
                .where(ReferenceCounter.name == CUSTOMER_COUNTER)
                .values(value=case((ReferenceCounter.value < largest, largest), else_=ReferenceCounter.value))
            )
        await session.flush()

    async def _columns(self, row: CustomerRow) -> dict[str, Any]:
        sign_up = SignUp(
            email=row.email,
            locale=row.locale or self._settings.default_locale,
            channel=IMPORT_CHANNEL,
            salutation=row.salutation,
            first_name=row.first_name,
            last_name=row.last_name,
            gender=row.gender,
            date_of_birth=row.date_of_birth,
            phone=row.phone,
            company=row.company,
        )
        password_hash = await self._password_hash(row.password)
        return customer_columns(
            sign_up, customer_reference=row.customer_reference, password_hash=password_hash,
            registered_at=row.registered_at,
        )  # fmt: skip

    async def _update(self, customer: Customer, row: CustomerRow, *, dry_run: bool) -> list[str]:
        """Spryker's update of an existing reference: the profile fields; a password only where none is set.
        Returns the fields it changed (none: the row was unchanged)."""
        wanted: dict[str, Any] = {name: getattr(row, name) for name in PROFILE_FIELDS}
        if row.locale is not None:
            wanted["locale"] = row.locale
        changed = [name for name, value in wanted.items() if getattr(customer, name) != value]
        set_password = customer.password_hash is None and row.password is not None
        if set_password:
            changed.append("password")
        if not changed or dry_run:
            return changed
        for name in changed:
            if name != "password":
                setattr(customer, name, wanted[name])
        if "email" in changed:
            customer.email_key = email_key(row.email)
        if set_password:
            customer.password_hash = await self._password_hash(row.password)
        customer.updated_at = utcnow()
        return changed

    async def _password_hash(self, password: str | None) -> str | None:
        if password is None:
            return None
        if is_stored_hash(password):
            return password
        return await self._hasher.hash_async(password)


def _event(request: BatchInput, row: CustomerRow, key: str, details: dict[str, Any]) -> dict[str, Any]:
    return audit.entry(
        customer_reference=row.customer_reference,
        event=IMPORTED,
        channel=IMPORT_CHANNEL,
        actor=request.import_id,
        details={"import": request.import_id, **details},
        idempotency_key=key,
    )


def _reject(result: BatchResult, rejected: list[list[str]], record: Record, error: RowError) -> None:
    result.rejected += 1
    result.errors.append(error)  # cut to ERRORS_KEPT once the batch is done
    rejected.append(rejected_csv_row(record, error))
