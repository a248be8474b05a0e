"""Order history: the shop's order system imports orders (CLI or back office); customers read their own.

One import flow serves every entry point. Records are camelCase order objects; each is validated on
its own, so a bad record is rejected with a reason while the others are stored. Orders are upserted by
`orderReference`: importing the same records again changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.db import SessionFactory
from accounts.models import Customer, Order, utcnow

TOTALS = ("grandTotal", "subtotal", "taxTotal", "shippingTotal")
CSV_COLUMNS = (
    "orderReference", "customerReference", "createdAt", "status", "currency", *TOTALS,
    "sku", "name", "quantity", "unitPrice",
)  # fmt: skip
CSV_ORDER_COLUMNS = CSV_COLUMNS[:9]
CURRENCY = re.compile(r"[A-Z]{3}")


class Rejected(ValueError):
    """A record that cannot be stored; the message is the reason the importer sees."""


@dataclass(frozen=True)
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # (index of the record in the import, reason)
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class OrderValues:
    order_reference: str
    customer_reference: str
    created_at: datetime
    status: str
    currency: str
    totals: dict[str, int]
    items: list[dict[str, Any]]


def _text(record: Mapping[str, Any], key: str, max_length: int) -> str:
    value = record.get(key)
    if value is None:
        raise Rejected(f"{key} is missing")
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{key} must be a non-empty string")
    if len(value.strip()) > max_length:
        raise Rejected(f"{key} is longer than {max_length} characters")
    return value.strip()


def _cents(container: Mapping[str, Any], key: str, where: str) -> int:
    value = container.get(key)
    if value is None:
        raise Rejected(f"{where}{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"{where}{key} must be an integer (cents)")
    if value < 0:
        raise Rejected(f"{where}{key} must not be negative")
    return value


def _created_at(record: Mapping[str, Any]) -> datetime:
    raw = _text(record, "createdAt", 64)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise Rejected("createdAt is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise Rejected("createdAt needs a time zone (e.g. Z or +01:00)")
    return value


def _item(item: Any, position: int) -> dict[str, Any]:
    where = f"items[{position}]."
    if not isinstance(item, Mapping):
        raise Rejected(f"items[{position}] must be an object")
    quantity = _cents(item, "quantity", where)
    if quantity < 1:
        raise Rejected(f"{where}quantity must be at least 1")
    unit_price = _cents(item, "unitPrice", where)
    sum_price = _cents(item, "sumPrice", where) if "sumPrice" in item else quantity * unit_price
    return {
        "sku": _text(item, "sku", 255),
        "name": _text(item, "name", 255),
        "quantity": quantity,
        "unitPrice": unit_price,
        "sumPrice": sum_price,
    }


def parse_order(record: Any) -> OrderValues:
    """The record's values, or Rejected with the first problem found."""
    if not isinstance(record, Mapping):
        raise Rejected("an order must be an object")
    currency = _text(record, "currency", 3)
    if not CURRENCY.fullmatch(currency):
        raise Rejected("currency must be three upper-case letters (ISO 4217)")
    totals = record.get("totals")
    if not isinstance(totals, Mapping):
        raise Rejected("totals is missing" if totals is None else "totals must be an object")
    items = record.get("items")
    if not isinstance(items, list) or not items:
        raise Rejected("items must be a non-empty list")
    return OrderValues(
        order_reference=_text(record, "orderReference", 64),
        customer_reference=_text(record, "customerReference", 32),
        created_at=_created_at(record),
        status=_text(record, "status", 32),
        currency=currency,
        totals={key: _cents(totals, key, "totals.") for key in TOTALS},
        items=[_item(item, position) for position, item in enumerate(items)],
    )


async def import_orders(sessions: SessionFactory, records: Sequence[Any]) -> ImportResult:
    """Validate and upsert the records in one transaction; rejections carry the record's index."""
    try:
        return await _import_once(sessions, records)
    except IntegrityError:
        # a concurrent import inserted one of the same references first: the second pass updates it
        return await _import_once(sessions, records)


async def _import_once(sessions: SessionFactory, records: Sequence[Any]) -> ImportResult:
    rejected: list[tuple[int, str]] = []
    valid: list[tuple[int, OrderValues]] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        try:
            values = parse_order(record)
        except Rejected as reason:
            rejected.append((index, str(reason)))
            continue
        if values.order_reference in seen:
            rejected.append((index, f"orderReference {values.order_reference} appears more than once"))
            continue
        seen.add(values.order_reference)
        valid.append((index, values))

    created = updated = unchanged = 0
    async with sessions.begin() as session:
        customers = await _customer_ids(session, {v.customer_reference for _, v in valid})
        existing = await _orders_by_reference(session, [v.order_reference for _, v in valid])
        for index, values in valid:
            customer_id = customers.get(values.customer_reference)
            if customer_id is None:
                rejected.append((index, f"unknown customer {values.customer_reference}"))
                continue
            fields = {
                "customer_id": customer_id,
                "created_at": values.created_at,
                "status": values.status,
                "currency": values.currency,
                "totals": values.totals,
                "items": values.items,
            }
            order = existing.get(values.order_reference)
            if order is None:
                session.add(Order(order_reference=values.order_reference, imported_at=utcnow(), **fields))
                created += 1
            elif all(getattr(order, name) == value for name, value in fields.items()):
                unchanged += 1
            else:
                for name, value in fields.items():
                    setattr(order, name, value)
                order.imported_at = utcnow()
                updated += 1
    return ImportResult(created, updated, unchanged, sorted(rejected))


async def _customer_ids(session: AsyncSession, references: set[str]) -> dict[str, int]:
    if not references:
        return {}
    rows = await session.execute(
        select(Customer.customer_reference, Customer.id).where(Customer.customer_reference.in_(references))
    )
    return {reference: customer_id for reference, customer_id in rows}


async def _orders_by_reference(session: AsyncSession, references: list[str]) -> dict[str, Order]:
    if not references:
        return {}
    rows = await session.scalars(select(Order).where(Order.order_reference.in_(references)).with_for_update())
    return {order.order_reference: order for order in rows}


async def list_orders(session: AsyncSession, *, customer_id: int, offset: int, limit: int) -> tuple[list[Order], int]:
    """One page of the customer's orders, newest first, and how many there are in all."""
    total = await session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == customer_id))
    rows = await session.scalars(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(rows), int(total or 0)


async def find_order(session: AsyncSession, *, customer_id: int, order_reference: str) -> Order | None:
    """The order, if it is this customer's; someone else's is as unknown as a made-up reference."""
    return await session.scalar(
        select(Order).where(Order.order_reference == order_reference, Order.customer_id == customer_id)
    )


# --- import files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersFile:
    """Records read from a file, where each came from ("line 3", "order 0"), and orders refused while reading."""

    records: list[Any]
    locations: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)


def read_orders_file(path: Path) -> OrdersFile:
    """A .json list of order objects, or a .csv with one row per order item. ValueError if unreadable."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path.name} is not valid JSON: {error}") from None
        if not isinstance(records, list):
            raise ValueError(f"{path.name} must hold a JSON list of orders")
        return OrdersFile(records, [f"order {index}" for index in range(len(records))])
    if path.suffix.lower() == ".csv":
        return _orders_from_csv(text)
    raise ValueError(f"{path.name}: expected a .json or .csv file")


def _number(value: str) -> int | str:
    # amounts stay strings when they are not whole numbers, so validation names the column
    return int(value) if re.fullmatch(r"-?\d+", value.strip()) else value


def _orders_from_csv(text: str) -> OrdersFile:
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in CSV_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"CSV columns missing: {', '.join(missing)}")
    groups: dict[str, tuple[int, dict[str, Any]]] = {}
    conflicts: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        cells = {column: (row.get(column) or "").strip() for column in CSV_COLUMNS}
        header = {column: cells[column] for column in CSV_ORDER_COLUMNS}
        item = {key: _number(cells[key]) if key in ("quantity", "unitPrice") else cells[key] for key in CSV_COLUMNS[9:]}
        reference = cells["orderReference"]
        if reference not in groups:
            groups[reference] = (line, {**header, "items": []})
        first_line, first_header = groups[reference]
        differing = [column for column in CSV_ORDER_COLUMNS if first_header[column] != header[column]]
        if differing and reference not in conflicts:
            conflicts[reference] = f"line {line} disagrees with line {first_line} on {', '.join(differing)}"
        first_header["items"].append(item)

    records: list[Any] = []
    locations: list[str] = []
    rejected: list[tuple[str, str]] = []
    for reference, (line, header) in groups.items():
        if reference in conflicts:
            rejected.append((f"line {line}", conflicts[reference]))
            continue
        record = {key: value for key, value in header.items() if key not in TOTALS and value != ""}
        record["totals"] = {key: _number(header[key]) for key in TOTALS if header[key] != ""}
        record["items"] = [{k: v for k, v in item.items() if v != ""} for item in header["items"]]
        records.append(record)
        locations.append(f"line {line}")
    return OrdersFile(records, locations, rejected)
