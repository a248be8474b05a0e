"""A customer's copy of their data (right of access and portability): what the archive holds, and its rows.

The archive is one zip: a JSON file per kind of data the service holds on the customer, the orders once
more as CSV (the columns `accounts orders import` reads), and a README that explains each file. `PARTS`
says which table goes to which file and which columns are left out (and why); `EXCLUDED` names the
tables that hold something of the customer's and are not in the archive (and why). A table that is in
neither fails tests/accounts/test_data_exports.py, so a new table cannot be forgotten.

The zip rests in `data_exports.archive_encrypted`, sealed with the key of the secrets at rest
(accounts/mfa_secrets.SecretBox, bound to "data-export:{id}"), until `expires_at`; only the signed-in
owner reads it back (`download`), each download audited. The workflow (workflows/data_export.py) then
deletes it (`expire`); the row stays as the record that an export was made.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from accounts import audit
from accounts.anonymization import deletion_started
from accounts.db import SessionFactory
from accounts.locks import lock_customer
from accounts.mfa_secrets import SecretBox
from accounts.models import (
    Address,
    AgentAssist,
    AuditEvent,
    Base,
    Cart,
    CartItem,
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerSession,
    DataExport,
    EmailOutbox,
    MfaMethod,
    Order,
)
from accounts.orders import CSV_COLUMNS, TOTALS

READY = "ready"
EXPIRED = "expired"
REQUESTED = "data_export_requested"
DOWNLOADED = "data_export_downloaded"
DELETED = "data_export_deleted"
ORDERS_CSV = "orders.csv"
README = "README.txt"
# an email subject that held a one-time value shows it masked (the value itself is kept nowhere)
MASKED = "******"

# a customer's email subject, rendered again from its template (the outbox keeps no body)
SubjectOf = Callable[[str, str], str]


@dataclass(frozen=True)
class Part:
    """One file of the archive: the rows of `table` that belong to the customer, every column but `omitted`."""

    table: str
    file: str
    about: str
    omitted: Mapping[str, str] = field(default_factory=dict)  # column -> why it is not in the archive
    single: bool = False  # one object (the profile), not a list


SECRET = "a secret (it signs in or proves who you are): never handed out"  # noqa: S105
INTERNAL = "an internal key or counter, meaningless outside this service"

PARTS: tuple[Part, ...] = (
    Part(
        "customers",
        "profile.json",
        "Your account: name, email address, language, status dates, default addresses (their ids).",
        {
            "password_hash": SECRET,
            "email_key": "the address in its normal form, for comparisons: the address itself is `email`",
            "guest_cart_key": "the hash of a guest cart id (a bearer credential), cleared once converted",
            "token_version": INTERNAL,
        },
        single=True,
    ),
    Part("addresses", "addresses.json", "Your postal addresses."),
    Part("orders", "orders.json", "Your orders with their totals and items (amounts in cents)."),
    Part("carts", "carts.json", "Your shopping carts.", {"guest_key": "the hash of a guest id (a bearer credential)"}),
    Part("cart_items", "cart_items.json", "The items in your carts (`cart_id` is the cart's `id`)."),
    Part(
        "customer_group_members",
        "groups.json",
        "The customer groups you belong to, with their names and descriptions.",
    ),
    Part(
        "audit_events",
        "audit_events.json",
        "What happened to your account, when, through which channel and by whom (staff by name).",
        {"idempotency_key": INTERNAL},
    ),
    Part(
        "customer_sessions",
        "sessions.json",
        "Where you are or were signed in: the device, the network prefix (never the full address), times.",
        {"device_token_hash": SECRET},
    ),
    Part(
        "email_outbox",
        "emails.json",
        "The emails sent to you: template, subject, address, language, status, times (no bodies are kept).",
        {"claimed_by": INTERNAL, "idempotency_key": INTERNAL},
    ),
    Part(
        "mfa_methods",
        "mfa_methods.json",
        "Your two-step sign-in methods and their state.",
        {"secret_encrypted": SECRET, "last_used_step": INTERNAL},
    ),
    Part(
        "agent_assists",
        "assistance.json",
        "When customer support acted for you in the storefront: the agent, start, end, why it ended.",
        {"staff_id": INTERNAL},
    ),
    Part(
        "data_exports",
        "data_exports.json",
        "Your earlier data exports (when asked, until when downloadable); their archives are not repeated.",
        {"archive_encrypted": "the earlier archives themselves: this one holds the same data, newer"},
    ),
)

# Tables holding something of a customer's that the archive leaves out, and why.
EXCLUDED: Mapping[str, str] = {
    "one_time_tokens": f"hashes of emailed one-time links: {SECRET}",
    "device_tokens": f"hashes of device tokens: {SECRET}; the devices are in sessions.json",
    "refresh_tokens": f"hashes of refresh tokens: {SECRET}; the sign-ins are in sessions.json",
    "mfa_codes": f"hashes of emailed sign-in codes: {SECRET}",
    "mfa_recovery_codes": f"hashes of recovery codes: {SECRET}",
    "pending_credentials": f"password hashes on their way to the account, deleted within minutes: {SECRET}",
    "customer_notes": "support's internal notes; none is shown to the customer (notes have no visibility)",
}


def archive_files() -> dict[str, str]:
    """Every file of the archive and what it holds (the README, and docs/data-export.md, list them)."""
    files = {README: "This file."}
    for part in PARTS:
        files[part.file] = part.about
        if part.table == "orders":
            files[ORDERS_CSV] = "Your orders once more as CSV, one line per item (the shop's order import format)."
    return files


def _part_rows(customer: Customer) -> dict[str, Select[Any]]:
    """The customer's rows of each part's table."""
    carts = select(Cart.id).where(Cart.customer_id == customer.id)
    reference = customer.customer_reference
    return {
        "customers": select(Customer).where(Customer.id == customer.id),
        "addresses": select(Address).where(Address.customer_id == customer.id).order_by(Address.id),
        "orders": select(Order).where(Order.customer_id == customer.id).order_by(Order.created_at, Order.id),
        "carts": select(Cart).where(Cart.customer_id == customer.id).order_by(Cart.id),
        "cart_items": select(CartItem).where(CartItem.cart_id.in_(carts)).order_by(CartItem.id),
        "customer_group_members": select(CustomerGroupMember).where(CustomerGroupMember.customer_id == customer.id),
        "audit_events": select(AuditEvent).where(AuditEvent.customer_reference == reference).order_by(AuditEvent.id),
        "customer_sessions": select(CustomerSession)
        .where(CustomerSession.customer_id == customer.id)
        .order_by(CustomerSession.created_at),
        "email_outbox": select(EmailOutbox).where(EmailOutbox.customer_reference == reference).order_by(EmailOutbox.id),
        "mfa_methods": select(MfaMethod).where(MfaMethod.customer_id == customer.id).order_by(MfaMethod.id),
        "agent_assists": select(AgentAssist)
        .where(AgentAssist.customer_id == customer.id)
        .order_by(AgentAssist.started_at),
        "data_exports": select(DataExport)
        .where(DataExport.customer_id == customer.id)
        .order_by(DataExport.requested_at),
    }


def _plain(row: Base, omitted: Mapping[str, str]) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns if column.key not in omitted}


def _json(value: Any) -> bytes:
    def encode(item: Any) -> str:
        if isinstance(item, datetime | date):
            return item.isoformat()
        raise TypeError(f"{type(item).__name__} in an export")

    return json.dumps(value, default=encode, ensure_ascii=False, indent=2).encode("utf-8")


async def _groups(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [row["group_id"] for row in rows]
    found = {g.id: g for g in await session.scalars(select(CustomerGroup).where(CustomerGroup.id.in_(ids)))}
    return [{**row, "name": found[row["group_id"]].name, "description": found[row["group_id"]].description}
            for row in rows if row["group_id"] in found]  # fmt: skip


def _orders_csv(orders: Sequence[dict[str, Any]], customer_reference: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for order in orders:
        head = [order["order_reference"], customer_reference, order["created_at"].isoformat(), order["status"],
                order["currency"], *(order["totals"].get(key, "") for key in TOTALS)]  # fmt: skip
        for item in order["items"] or [{}]:
            writer.writerow([*head, *(item.get(key, "") for key in ("sku", "name", "quantity", "unitPrice"))])
    return buffer.getvalue().encode("utf-8")


def readme(customer_reference: str, made_at: datetime) -> str:
    lines = [
        f"Your data as this shop's customer accounts service holds it (customer {customer_reference}),",
        f"made {made_at.isoformat()}. Times are UTC (ISO 8601); amounts are integer cents.",
        "",
        "Files:",
    ]
    omissions = {part.file: part.omitted for part in PARTS}
    for name, about in archive_files().items():
        lines.append(f"- {name}: {about}")
        lines += [f"    left out: {column}: {why}" for column, why in omissions.get(name, {}).items()]
    lines += ["", "Not in this archive:"]
    lines += [f"- {table}: {why}" for table, why in EXCLUDED.items()]
    return "\n".join(lines) + "\n"


async def build_archive(
    session: AsyncSession, customer: Customer, *, made_at: datetime, subject_of: SubjectOf
) -> bytes:
    """The zip of everything in PARTS for this customer (a read; nothing is written)."""
    selects = _part_rows(customer)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(README, readme(customer.customer_reference, made_at))
        for part in PARTS:
            rows = [_plain(row, part.omitted) for row in await session.scalars(selects[part.table])]
            if part.table == "customer_group_members":
                rows = await _groups(session, rows)
            if part.table == "email_outbox":
                rows = [{**row, "subject": subject_of(row["template"], row["locale"])} for row in rows]
            if part.table == "orders":
                archive.writestr(ORDERS_CSV, _orders_csv(rows, customer.customer_reference))
            archive.writestr(part.file, _json(rows[0] if part.single and rows else rows))
    return buffer.getvalue()


def download_path(customer_reference: str, export_id: str) -> str:
    """The download route (api/routes/data_exports.py), which the emailed link names: it needs the owner's sign-in."""
    return f"/customers/{customer_reference}/data-exports/{export_id}"


def _owner(export_id: str) -> str:
    return f"data-export:{export_id}"


async def store(
    sessions: SessionFactory,
    box: SecretBox,
    *,
    customer: Customer,
    export_id: str,
    channel: str,
    actor: str,
    requested_at: datetime,
    expires_at: datetime,
    subject_of: SubjectOf,
) -> bool:
    """Build, seal and store the archive, and audit the request, in one transaction; a second call (the
    activity's retry) finds the row and does nothing. False when the account's deletion has begun: under
    the customer's row lock, so no archive is stored after (or beside) the deletion's scrub."""
    async with sessions.begin() as session:
        if await session.get(DataExport, export_id) is not None:
            return True
        customer = await lock_customer(session, customer_id=customer.id)
        if customer.anonymized_at is not None or await deletion_started(session, customer.customer_reference):
            return False
        archive = await build_archive(session, customer, made_at=requested_at, subject_of=subject_of)
        session.add(
            DataExport(
                id=export_id,
                customer_id=customer.id,
                status=READY,
                channel=channel,
                requested_at=requested_at,
                expires_at=expires_at,
                archive_encrypted=box.seal_bytes(archive, _owner(export_id)),
                archive_size=len(archive),
            )
        )
        audit.record(session, customer_reference=customer.customer_reference, event=REQUESTED, channel=channel,
                     actor=actor, details={"exportId": export_id, "expiresAt": expires_at.isoformat()},
                     idempotency_key=f"{REQUESTED}:{export_id}")  # fmt: skip
    return True


async def expire(sessions: SessionFactory, *, customer_reference: str, export_id: str, now: datetime) -> bool:
    """Delete the archive (the row stays, `expired`); False when it was gone already."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(DataExport)
            .where(DataExport.id == export_id, DataExport.archive_encrypted.is_not(None))
            .values(archive_encrypted=None, status=EXPIRED, deleted_at=now)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        audit.record(session, customer_reference=customer_reference, event=DELETED, channel="system",
                     actor="system", details={"exportId": export_id},
                     idempotency_key=f"{DELETED}:{export_id}")  # fmt: skip
    return True


async def exports_of(sessions: SessionFactory, customer_id: int) -> list[DataExport]:
    """The customer's exports, the newest first (the archives not loaded)."""
    async with sessions() as session:
        rows = await session.scalars(
            select(DataExport)
            .where(DataExport.customer_id == customer_id)
            .order_by(DataExport.requested_at.desc())
            .options(defer(DataExport.archive_encrypted))
        )
        return list(rows)


async def download(
    sessions: SessionFactory, box: SecretBox, *, customer: Customer, export_id: str, now: datetime
) -> bytes | None:
    """The customer's own archive, opened, with the download audited; None when there is no such live one."""
    async with sessions.begin() as session:
        row = await session.scalar(
            select(DataExport).where(
                DataExport.id == export_id,
                DataExport.customer_id == customer.id,
                DataExport.archive_encrypted.is_not(None),
                DataExport.expires_at > now,
            )
        )
        if row is None or row.archive_encrypted is None:
            return None
        archive = box.open_bytes(row.archive_encrypted, _owner(export_id))
        audit.record(session, customer_reference=customer.customer_reference, event=DOWNLOADED, channel="api",
                     actor="customer", details={"exportId": export_id})  # fmt: skip
    return archive
