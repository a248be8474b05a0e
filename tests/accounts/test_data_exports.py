"""The data export's archive (accounts/data_exports.py), read back from the database on both backends: every
table that holds a customer's data is in it or excluded with a reason (the test enumerates the models, so a
new table fails it), no secret is in it, nobody else's data is, and only the owner opens it.

The archive is built by the activity itself (activities/data_export.py), outside a worker: it needs none."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import pkgutil
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

from conftest import Database, unique_email
from sqlalchemy import Table, select

import accounts
from accounts import data_exports, mfa_secrets
from accounts.anonymization import DELETION_STARTED
from accounts.emails import EmailRenderer
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
    CustomerNote,
    CustomerSession,
    DataExport,
    EmailOutbox,
    MfaMethod,
    OneTimeToken,
    Order,
    Staff,
    utcnow,
)
from accounts.refresh_tokens import RefreshToken
from accounts.settings import Settings
from activities.data_export import DataExportActivities, DeleteExport, PrepareExport

ROOT = Path(__file__).resolve().parents[2]


def secrets_of_a_customer() -> dict[str, str]:
    """Values that must never reach an archive, unique per customer (the token columns are unique)."""
    return {
        "password_hash": f"$argon2id$v=19$m=8192,t=1,p=1$c2FsdA${os.urandom(16).hex()}",
        "totp_secret": f"v1:{os.urandom(20).hex()}",
        "token_hash": os.urandom(32).hex(),
        "refresh_hash": os.urandom(32).hex(),
        "device_hash": os.urandom(32).hex(),
        "guest_key": os.urandom(32).hex(),
        "agent_key_hash": os.urandom(32).hex(),  # the assisting agent's API key (a staff secret)
    }


def customer_tables() -> set[str]:
    """Every table that holds something of a customer's: a foreign key to `customers`, a
    `customer_reference` column, or a foreign key to such a table (cart items through carts)."""
    for module in pkgutil.iter_modules(accounts.__path__):  # every model is declared, wherever it lives
        importlib.import_module(f"accounts.{module.name}")
    tables = Base.metadata.tables
    found = {"customers"}

    def holds(table: Table) -> bool:
        if "customer_reference" in table.columns:
            return True
        return any(fk.column.table.name in found for fk in table.foreign_keys)

    while True:
        more = {name for name, table in tables.items() if name not in found and holds(table)}
        if not more:
            return found
        found |= more


def test_every_table_holding_customer_data_is_exported_or_excluded_with_a_reason() -> None:
    exported = {part.table for part in data_exports.PARTS}
    excluded = set(data_exports.EXCLUDED)
    assert not exported & excluded
    assert all(reason.strip() for reason in data_exports.EXCLUDED.values())
    missing = customer_tables() - exported - excluded
    assert not missing, f"tables with customer data that are neither exported nor excluded: {sorted(missing)}"
    assert not (exported | excluded) - customer_tables(), "an entry names a table that holds no customer data"


def test_columns_that_look_secret_are_left_out_and_every_omission_names_a_real_column() -> None:
    tables = Base.metadata.tables
    for part in data_exports.PARTS:
        columns = set(tables[part.table].columns.keys())
        assert set(part.omitted) <= columns, part.table
        looks_secret = {c for c in columns if any(word in c for word in ("hash", "secret", "token", "password"))}
        looks_secret -= {"password_reset_required"}  # a flag (support forced a reset), the customer's to know
        assert looks_secret <= set(part.omitted), f"{part.table}: {sorted(looks_secret - set(part.omitted))}"


def test_the_docs_list_every_file_of_the_archive_and_every_exclusion() -> None:
    text = (ROOT / "docs" / "data-export.md").read_text()
    for name in data_exports.archive_files():
        assert f"`{name}`" in text, name
    for table in data_exports.EXCLUDED:
        assert f"`{table}`" in text, table


async def a_customer_with_everything(database: Database) -> tuple[Customer, dict[str, str]]:
    """A customer with a row in every exported table, and secrets in the excluded ones (returned too)."""
    secret = secrets_of_a_customer()
    password_hash, device_hash, totp, token_hash = (
        secret[k] for k in ("password_hash", "device_hash", "totp_secret", "token_hash")
    )
    email = unique_email("export")
    reference = f"{database.reference_prefix}X{uuid.uuid4().hex[:8]}"
    now = utcnow()
    async with database.sessions.begin() as session:
        customer = Customer(customer_reference=reference, email=email, email_key=email, first_name="Erika",
                            last_name="Mustermann", locale="de_DE", password_hash=password_hash, channel="api",
                            registered_at=now, guest_cart_key=secret["guest_key"])  # fmt: skip
        session.add(customer)
        await session.flush()
        session.add(Address(uuid=str(uuid.uuid4()), customer_id=customer.id, salutation="Ms", first_name="Erika",
                            last_name="Mustermann", address1="Hauptstraße", address2="1", zip_code="10115",
                            city="Berlin", iso2_code="DE"))  # fmt: skip
        session.add(Order(order_reference=f"ORD-{uuid.uuid4().hex[:8]}", customer_id=customer.id, created_at=now,
                          status="shipped", currency="EUR", totals={"grandTotal": 2599, "subtotal": 2599},
                          items=[{"sku": "tea-1", "name": "Green tea", "quantity": 2, "unitPrice": 1299}]))  # fmt: skip
        cart = Cart(uuid=str(uuid.uuid4()), customer_id=customer.id, name="Shopping cart", currency="EUR",
                    price_mode="GROSS_MODE", store="DE")  # fmt: skip
        session.add(cart)
        await session.flush()
        session.add(CartItem(cart_id=cart.id, sku="tea-1", quantity=3, unit_price=1299))
        group = CustomerGroup(name=f"VIP {uuid.uuid4().hex[:6]}", description="our best customers")
        session.add(group)
        await session.flush()
        session.add(CustomerGroupMember(group_id=group.id, customer_id=customer.id))
        session.add(AuditEvent(customer_reference=reference, event="customer_registered", channel="api",
                               actor="customer", details={}))  # fmt: skip
        session.add(CustomerSession(family_id=uuid.uuid4().hex, customer_id=customer.id, device="Firefox on Windows",
                                    network_prefix="203.0.113.0/24", device_token_hash=device_hash))  # fmt: skip
        session.add(EmailOutbox(idempotency_key=f"k/{uuid.uuid4()}", customer_reference=reference, recipient=email,
                                template="mfa_code", locale="de_DE", status="sent", claimed_by="wf/1"))  # fmt: skip
        session.add(EmailOutbox(idempotency_key=f"k/{uuid.uuid4()}", customer_reference=reference, recipient=email,
                                template="welcome", locale="en_US", status="sent", claimed_by="wf/2"))  # fmt: skip
        session.add(MfaMethod(customer_id=customer.id, type="totp", status="active", secret_encrypted=totp))
        session.add(OneTimeToken(token_hash=token_hash, purpose="email_verification", customer_id=customer.id,
                                 issue_key=f"k/{uuid.uuid4()}", expires_at=now))  # fmt: skip
        refresh = RefreshToken(
            customer_id=customer.id, token_hash=secret["refresh_hash"], family_id="f", expires_at=now
        )
        session.add(refresh)
        session.add(CustomerNote(customer_id=customer.id, author="alice", message="internal: called about a refund"))
        agent = Staff(name=f"agnes-{uuid.uuid4().hex[:8]}", role="agent", api_key_hash=secret["agent_key_hash"])
        session.add(agent)
        await session.flush()
        session.add(AgentAssist(id=uuid.uuid4().hex, customer_id=customer.id, customer_reference=reference,
                                staff_id=agent.id, agent=agent.name, expires_at=now, ended_at=now,
                                ended_reason="token_deleted"))  # fmt: skip
        session.add(DataExport(id=uuid.uuid4().hex, customer_id=customer.id, status="expired", channel="api",
                               requested_at=now - timedelta(days=30), expires_at=now - timedelta(days=23),
                               deleted_at=now - timedelta(days=23)))  # fmt: skip
    return customer, secret


def activities_for(database: Database, tmp_path: Path) -> DataExportActivities:
    settings = Settings(_env_file=None, database_url=database.url, var_dir=tmp_path)  # type: ignore[call-arg]
    renderer = EmailRenderer(settings.templates_dir, default_locale=settings.default_locale)
    return DataExportActivities(database.sessions, renderer, mfa_secrets.SecretBox(os.urandom(32)), settings)


async def prepared(activities: DataExportActivities, customer: Customer) -> str:
    export_id = uuid.uuid4().hex
    now = utcnow()
    request = PrepareExport(customer.customer_reference, export_id, "api", "customer", now, now + timedelta(days=7))
    assert await activities.prepare_data_export(request)
    assert await activities.prepare_data_export(request)  # a retry: the same row, one audit event
    return export_id


async def test_the_archive_holds_every_part_and_no_secret(database: Database, tmp_path: Path) -> None:
    customer, secrets = await a_customer_with_everything(database)
    other, _ = await a_customer_with_everything(database)
    activities = activities_for(database, tmp_path)
    export_id = await prepared(activities, customer)
    async with database.sessions() as session:
        row = await session.get(DataExport, export_id)
    assert row is not None and row.archive_encrypted is not None
    assert b"Erika" not in row.archive_encrypted and b"PK" not in row.archive_encrypted[:16]  # sealed, not a zip

    box = activities._box
    archive = await data_exports.download(database.sessions, box, customer=customer, export_id=export_id, now=utcnow())
    assert archive is not None and len(archive) == row.archive_size
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = set(opened.namelist())
        assert names == set(data_exports.archive_files())
        files = {name: opened.read(name) for name in names}
    everything = b"".join(files.values())
    for name, secret in secrets.items():
        assert secret.encode() not in everything, name
    assert b"called about a refund" not in everything  # support's notes are excluded
    assert other.customer_reference.encode() not in everything and other.email.encode() not in everything

    for part in data_exports.PARTS:
        content = json.loads(files[part.file])
        rows = [content] if part.single else content
        assert rows, f"{part.file} is empty"
        for item in rows:
            assert not set(part.omitted) & set(item), part.file
    profile = json.loads(files["profile.json"])
    assert profile["email"] == customer.email and profile["customer_reference"] == customer.customer_reference
    groups = json.loads(files["groups.json"])
    assert groups[0]["description"] == "our best customers"
    subjects = {e["template"]: e["subject"] for e in json.loads(files["emails.json"])}
    assert subjects["welcome"].startswith("Welcome") and data_exports.MASKED in subjects["mfa_code"]
    # this export's own row is written with the archive: the earlier ones only, without their archives
    assert [e["status"] for e in json.loads(files["data_exports.json"])] == ["expired"]

    orders = list(csv.DictReader(io.StringIO(files["orders.csv"].decode())))
    assert orders[0]["sku"] == "tea-1" and orders[0]["grandTotal"] == "2599" and orders[0]["quantity"] == "2"
    readme = files["README.txt"].decode()
    for name in data_exports.archive_files():
        assert f"- {name}:" in readme
    assert "password_hash" in readme and "one_time_tokens" in readme  # what is left out, and why

    async with database.sessions() as session:
        requested = list(await session.scalars(select(AuditEvent).where(
            AuditEvent.customer_reference == customer.customer_reference,
            AuditEvent.event == data_exports.REQUESTED)))  # fmt: skip
        downloads = await session.scalars(select(AuditEvent).where(
            AuditEvent.customer_reference == customer.customer_reference,
            AuditEvent.event == data_exports.DOWNLOADED))  # fmt: skip
        assert [e.details["exportId"] for e in requested] == [export_id]
        assert [e.details["exportId"] for e in downloads] == [export_id]


async def test_only_the_owner_opens_it_and_not_after_it_was_deleted(database: Database, tmp_path: Path) -> None:
    customer, _ = await a_customer_with_everything(database)
    other, _ = await a_customer_with_everything(database)
    activities = activities_for(database, tmp_path)
    export_id = await prepared(activities, customer)
    box = activities._box
    now = utcnow()
    assert await data_exports.download(database.sessions, box, customer=other, export_id=export_id, now=now) is None
    later = now + timedelta(days=8)  # past its expiry, even before the workflow deleted it
    found = await data_exports.download(database.sessions, box, customer=customer, export_id=export_id, now=later)
    assert found is None
    assert await activities.delete_data_export(DeleteExport(customer.customer_reference, export_id))
    assert not await activities.delete_data_export(DeleteExport(customer.customer_reference, export_id))  # a retry
    assert await data_exports.download(database.sessions, box, customer=customer, export_id=export_id, now=now) is None
    row, _earlier = await data_exports.exports_of(database.sessions, customer.id)
    assert row.id == export_id and row.status == data_exports.EXPIRED and row.deleted_at is not None
    async with database.sessions() as session:
        assert (await session.get(DataExport, export_id)).archive_encrypted is None  # type: ignore[union-attr]
    # a second export lists the first one (its dates, not its archive)
    second = await prepared(activities, customer)
    archive = await data_exports.download(database.sessions, box, customer=customer, export_id=second, now=utcnow())
    assert archive is not None
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert [e["id"] for e in json.loads(opened.read("data_exports.json"))][-1] == export_id


async def test_no_archive_is_stored_once_the_deletion_has_begun(database: Database, tmp_path: Path) -> None:
    customer, _ = await a_customer_with_everything(database)
    async with database.sessions.begin() as session:
        session.add(AuditEvent(customer_reference=customer.customer_reference, event=DELETION_STARTED,
                               channel="api", actor="customer", details={}))  # fmt: skip
    activities = activities_for(database, tmp_path)
    now = utcnow()
    export_id = uuid.uuid4().hex
    request = PrepareExport(customer.customer_reference, export_id, "api", "customer", now, now + timedelta(days=7))
    assert await activities.prepare_data_export(request) is False
    async with database.sessions() as session:
        assert await session.get(DataExport, export_id) is None
