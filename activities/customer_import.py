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
from pathlib import Path
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts import audit
from accounts.customer_csv import CustomerRow, Record, RowError, check_row, read_batch, rejected_csv_row, scan
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.import_files import ImportFileChanged, read_index, verified_path, write_index, write_rejected
from accounts.models import AuditEvent, Customer, ReferenceCounter, utcnow
from accounts.passwords import PasswordHasher, is_stored_hash
from accounts.references import CUSTOMER_COUNTER
from accounts.settings import Settings

IMPORT_CHANNEL = "import"
IMPORTED = "imported"
ERRORS_KEPT = 50  # per batch, and per import in the workflow: Spryker's report shows 50 too
HEARTBEAT_EVERY = 50  # rows
PROFILE_FIELDS = ("email", "salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company")
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

    @activity.defn
    async def index_customer_import(self, request: IndexInput) -> Indexed:
        path = self._file(request.import_id, request.sha256)
        found = await asyncio.to_thread(scan, path, request.delimiter, request.batch_size)
        write_index(self._settings.var_dir, request.import_id, found)
        return Indexed(found.rows, len(found.batches))

    @activity.defn
    async def import_customer_batch(self, request: BatchInput) -> BatchResult:
        var_dir = self._settings.var_dir
        path = self._file(request.import_id, request.sha256)
        index = read_index(var_dir, request.import_id)
        offset, line = index.batches[request.batch]
        batch = await asyncio.to_thread(
            read_batch, path, request.delimiter, index.header, offset, line, index.batch_size
        )
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
        result.errors = sorted(result.errors, key=lambda error: error.line)[:ERRORS_KEPT]
        rejected.sort(key=lambda fields: int(fields[-3]))  # in file order, as the errors
        write_rejected(var_dir, request.import_id, request.batch, rejected)
        return result

    def _file(self, import_id: str, sha256: str) -> Path:
        """The stored file, checked against its hash. Another file under its name fails the import for good;
        a missing one is retried (a volume not mounted yet on this worker)."""
        try:
            return verified_path(self._settings.var_dir, import_id, sha256)
        except ImportFileChanged as error:
            raise ApplicationError(str(error), type="ImportFileChanged", non_retryable=True) from None

    async def _upsert(
        self,
        session: AsyncSession,
        request: BatchInput,
        rows: list[tuple[Record, CustomerRow]],
        result: BatchResult,
        rejected: list[list[str]],
    ) -> None:
        references = [row.customer_reference for _, row in rows]
        by_reference = {
            c.customer_reference: c
            for c in await session.scalars(select(Customer).where(Customer.customer_reference.in_(references)))
        }
        by_email = {
            c.email_key: c
            for c in await session.scalars(
                select(Customer).where(Customer.email_key.in_([email_key(row.email) for _, row in rows]))
            )
        }
        keys = [import_key(request.import_id, reference) for reference in references]
        earlier = {
            event.idempotency_key: event.details.get("outcome")
            for event in await session.scalars(select(AuditEvent).where(AuditEvent.idempotency_key.in_(keys)))
        }
        largest = 0
        for position, (record, row) in enumerate(rows):
            if position % HEARTBEAT_EVERY == 0:
                activity.heartbeat(record.line)
            key = import_key(request.import_id, row.customer_reference)
            outcome = earlier.get(key)  # this batch ran before (and committed): answer as it did
            if outcome is None:
                owner = by_email.get(email_key(row.email))
                if owner is not None and owner.customer_reference != row.customer_reference:
                    _reject(result, rejected, record, RowError(row.line, "email", EMAIL_TAKEN))
                    continue
                existing = by_reference.get(row.customer_reference)
                if existing is not None and existing.anonymized_at is not None:
                    message = "This customer was deleted (anonymized); use another customer_reference."
                    _reject(result, rejected, record, RowError(row.line, "customer_reference", message))
                    continue
                if existing is None:
                    outcome = await self._create(session, request, row, key)
                else:
                    outcome = await self._update(session, request, existing, row, key)
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
        if largest and not request.dry_run:
            # later sign-ups must never be handed an imported number
            await session.execute(
                update(ReferenceCounter)
                .where(ReferenceCounter.name == CUSTOMER_COUNTER)
                .values(value=case((ReferenceCounter.value < largest, largest), else_=ReferenceCounter.value))
            )
        await session.flush()

    async def _create(self, session: AsyncSession, request: BatchInput, row: CustomerRow, key: str) -> str:
        if request.dry_run:
            return "created"
        session.add(
            Customer(
                customer_reference=row.customer_reference,
                email=row.email,
                email_key=email_key(row.email),
                salutation=row.salutation,
                first_name=row.first_name,
                last_name=row.last_name,
                gender=row.gender,
                date_of_birth=row.date_of_birth,
                phone=row.phone,
                company=row.company,
                locale=row.locale or self._settings.default_locale,
                password_hash=await self._password_hash(row.password),
                channel=IMPORT_CHANNEL,
                registered_at=row.registered_at,
            )
        )
        self._audit(session, request, row, key, {"outcome": "created"})
        return "created"

    async def _update(
        self, session: AsyncSession, request: BatchInput, customer: Customer, row: CustomerRow, key: str
    ) -> str:
        """Spryker's update of an existing reference: the profile fields; a password only where none is set."""
        wanted: dict[str, Any] = {name: getattr(row, name) for name in PROFILE_FIELDS}
        if row.locale is not None:
            wanted["locale"] = row.locale
        changed = [name for name, value in wanted.items() if getattr(customer, name) != value]
        set_password = customer.password_hash is None and row.password is not None
        if not changed and not set_password:
            return "unchanged"
        if request.dry_run:
            return "updated"
        for name in changed:
            setattr(customer, name, wanted[name])
        if "email" in changed:
            customer.email_key = email_key(row.email)
        if set_password:
            customer.password_hash = await self._password_hash(row.password)
            changed.append("password")
        customer.updated_at = utcnow()
        self._audit(session, request, row, key, {"outcome": "updated", "fields": changed})
        return "updated"

    async def _password_hash(self, password: str | None) -> str | None:
        if password is None:
            return None
        if is_stored_hash(password):
            return password
        return await self._hasher.hash_async(password)

    @staticmethod
    def _audit(session: AsyncSession, request: BatchInput, row: CustomerRow, key: str, details: dict[str, Any]) -> None:
        audit.record(
            session,
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
