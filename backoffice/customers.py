"""Finding customers and reading one: the list (filtered, searched, sorted and paged in SQL, a customer's
status derived there: anonymized, locked by a current lock in `login_throttles`, verified, unverified),
a customer's page (which still renders when Temporal cannot be reached) and the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import addresses, inactivity, mfa, orders
from accounts.addresses import CustomerAddress
from accounts.email_address import ascii_domain, email_key
from accounts.inactivity import Standing
from accounts.models import AuditEvent, Customer, CustomerGroup, CustomerGroupMember, LoginThrottle, Order, utcnow
from accounts.staff import StaffMember
from accounts.throttle import customer_subject
from backoffice.base import Area, find_customer, require_customer
from backoffice.groups_notes import GROUP_NAME_MAX, Group, Note, read_groups, read_notes
from backoffice.inactivity import inactivity_timeline
from backoffice.lifecycles import LifecycleRun, read_lifecycle
from backoffice.permissions import InvalidInput, authorize

CUSTOMER_STATUSES = ("verified", "unverified", "locked", "anonymized")
SORT_FIELDS = ("created_at", "email", "last_name", "customer_reference", "registered_at")
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # far beyond any list; keeps the OFFSET inside what SQLite and PostgreSQL accept
GROUP_SEPARATOR = "; "  # how a row's groups share one CSV cell
CSV_COLUMNS = (
    "customerReference", "email", "firstName", "lastName", "status", "channel", "createdAt", "registeredAt", "groups",
)  # fmt: skip
RECENT_ORDERS = 20


@dataclass
class CustomerFilter:
    status: str | None = None
    group: str | None = None  # a group's name
    search: str | None = None  # part of the email, a name, or the reference
    sort: str = "-created_at"  # a SORT_FIELDS name; "-" in front: descending
    page: int = 1
    per_page: int = 20

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in CUSTOMER_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(CUSTOMER_STATUSES)}")
        if self.sort.lstrip("-") not in SORT_FIELDS or self.sort.startswith("--"):
            raise InvalidInput("sort", f"must be one of {', '.join(SORT_FIELDS)}, with '-' in front for descending")
        if isinstance(self.page, bool) or not isinstance(self.page, int) or not 1 <= self.page <= MAX_PAGE:
            raise InvalidInput("page", f"must be a whole number from 1 to {MAX_PAGE}")
        if isinstance(self.per_page, bool) or not isinstance(self.per_page, int) or not 1 <= self.per_page <= 100:
            raise InvalidInput("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}")
        self.search = (self.search or "").strip() or None
        if self.search is not None and len(self.search) > 255:
            raise InvalidInput("search", "must have 255 characters or less")
        self.group = (self.group or "").strip() or None
        if self.group is not None and len(self.group) > GROUP_NAME_MAX:
            raise InvalidInput("group", f"must have {GROUP_NAME_MAX} characters or less")


@dataclass
class CustomerRow:
    customer_reference: str
    email: str
    first_name: str | None
    last_name: str | None
    status: str
    channel: str
    created_at: datetime
    registered_at: datetime | None
    groups: list[str]

    def csv_row(self) -> dict[str, str]:
        return {
            "customerReference": self.customer_reference,
            "email": self.email,
            "firstName": self.first_name or "",
            "lastName": self.last_name or "",
            "status": self.status,
            "channel": self.channel,
            "createdAt": self.created_at.isoformat(),
            "registeredAt": self.registered_at.isoformat() if self.registered_at else "",
            "groups": GROUP_SEPARATOR.join(self.groups),
        }


@dataclass
class CustomerPage:
    rows: list[CustomerRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass
class CustomerDetail:
    customer: Customer
    status: str
    locked_until: datetime | None
    addresses: list[CustomerAddress]
    orders: list[Order]  # the newest RECENT_ORDERS
    orders_total: int
    notes: list[Note]  # newest first
    groups: list[Group]
    lifecycle: list[LifecycleRun]  # newest first
    lifecycle_status: str  # ok | unavailable (Temporal could not be asked)
    mfa: list[tuple[str, str]] = field(default_factory=list)  # (type, Glue status) of each method set up
    inactivity: Standing | None = None  # where the customer stands in the inactivity lifecycle


class Customers(Area):
    async def list_customers(self, f: CustomerFilter, staff: StaffMember | None = None) -> CustomerPage:
        if staff is not None:
            authorize(staff, "customers.list")
        async with self._sessions() as session:
            statement = filtered(f, utcnow())
            # the count needs no order: sorting every match only to count it cost more than the page itself
            total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
            rows = (await session.execute(statement.offset((f.page - 1) * f.per_page).limit(f.per_page))).all()
            return CustomerPage(await customer_rows(session, rows), int(total or 0), f.page, f.per_page)

    async def customer_detail(self, customer_reference: str, staff: StaffMember | None = None) -> CustomerDetail | None:
        if staff is not None:
            authorize(staff, "customers.view")
        async with self._sessions() as session:
            customer = await find_customer(session, customer_reference)
            if customer is None:
                return None
            locked_until = await _locked_until(session, customer_reference)
            address_book = await addresses.list_addresses(session, customer_id=customer.id)
            recent, orders_total = await orders.list_orders(
                session, customer_id=customer.id, offset=0, limit=RECENT_ORDERS
            )
            notes = await read_notes(session, customer.id)
            groups = await read_groups(session, customer_id=customer.id)
            methods = await mfa.methods(session, customer.id, utcnow())
        lifecycle, lifecycle_status = await read_lifecycle(self._accounts, self._settings, customer_reference)
        return CustomerDetail(
            customer=customer,
            status=_status(customer, locked_until),
            locked_until=locked_until,
            addresses=address_book,
            orders=recent,
            orders_total=orders_total,
            notes=notes,
            groups=groups,
            lifecycle=lifecycle,
            lifecycle_status=lifecycle_status,
            mfa=[(kind, mfa.GLUE_STATUS[row.status]) for kind, row in sorted(methods.items())],
            inactivity=inactivity.standing(customer, inactivity_timeline(self._settings)),
        )

    async def events(self, customer_reference: str, staff: StaffMember | None = None) -> list[AuditEvent]:
        """The customer's audit trail, newest first. CustomerNotFound for an unknown reference."""
        if staff is not None:
            authorize(staff, "customers.events")
        async with self._sessions() as session:
            await require_customer(session, customer_reference)
            rows = await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.customer_reference == customer_reference)
                .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            )
            return list(rows)


# --- queries ----------------------------------------------------------------------------------------------


def _lock_subject() -> ColumnElement[str]:
    return literal("customer:", String) + Customer.customer_reference  # accounts.throttle.customer_subject


def _locked(now: datetime) -> ColumnElement[bool]:
    return and_(LoginThrottle.locked_until.is_not(None), LoginThrottle.locked_until > now)


def _status_column(now: datetime) -> ColumnElement[str]:
    return case(
        (Customer.anonymized_at.is_not(None), "anonymized"),
        (_locked(now), "locked"),
        (Customer.registered_at.is_not(None), "verified"),
        else_="unverified",
    )


def filtered(f: CustomerFilter, now: datetime) -> Select[Customer, str]:
    status = _status_column(now)
    statement = select(Customer, status.label("status")).outerjoin(
        LoginThrottle, LoginThrottle.subject == _lock_subject()
    )
    if f.status is not None:
        statement = statement.where(status == f.status)
    if f.group is not None:
        statement = statement.where(
            select(CustomerGroupMember.customer_id)
            .join(CustomerGroup, CustomerGroup.id == CustomerGroupMember.group_id)
            .where(CustomerGroupMember.customer_id == Customer.id, CustomerGroup.name == f.group)
            .exists()
        )
    if f.search is not None:
        term = f.search.lower()
        # addresses compare by their key (an IDN domain in its xn-- form); a bare domain is searched both ways
        keys = {email_key(f.search)} | ({ascii_domain(f.search.strip())} if "@" not in f.search else set())
        full_name = func.lower(func.coalesce(Customer.first_name, "") + " " + func.coalesce(Customer.last_name, ""))
        statement = statement.where(
            or_(
                *(Customer.email_key.contains(key, autoescape=True) for key in sorted(keys)),
                func.lower(Customer.customer_reference).contains(term, autoescape=True),
                full_name.contains(term, autoescape=True),  # "first last": finds either name alone too
            )
        )
    descending = f.sort.startswith("-")
    column: Any = {
        "created_at": Customer.created_at,
        "email": Customer.email_key,
        "last_name": func.lower(Customer.last_name),
        "customer_reference": Customer.customer_reference,
        "registered_at": Customer.registered_at,
    }[f.sort.lstrip("-")]
    # missing names and dates last either way, on SQLite and PostgreSQL alike; the id breaks ties
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    return statement.order_by(order, Customer.id.desc() if descending else Customer.id.asc())


async def customer_rows(session: AsyncSession, rows: Sequence[Any]) -> list[CustomerRow]:
    ids = [row[0].id for row in rows]
    names: dict[int, list[str]] = {customer_id: [] for customer_id in ids}
    if ids:
        memberships = await session.execute(
            select(CustomerGroupMember.customer_id, CustomerGroup.name)
            .join(CustomerGroup, CustomerGroup.id == CustomerGroupMember.group_id)
            .where(CustomerGroupMember.customer_id.in_(ids))
            .order_by(CustomerGroup.name)
        )
        for customer_id, name in memberships:
            names[customer_id].append(name)
    return [
        CustomerRow(
            customer_reference=customer.customer_reference,
            email=customer.email,
            first_name=customer.first_name,
            last_name=customer.last_name,
            status=status,
            channel=customer.channel,
            created_at=customer.created_at,
            registered_at=customer.registered_at,
            groups=names[customer.id],
        )
        for customer, status in rows
    ]


async def _locked_until(session: AsyncSession, customer_reference: str) -> datetime | None:
    until = await session.scalar(
        select(LoginThrottle.locked_until).where(LoginThrottle.subject == customer_subject(customer_reference))
    )
    return until if until is not None and until > utcnow() else None


def _status(customer: Customer, locked_until: datetime | None) -> str:
    if customer.anonymized_at is None and locked_until is not None:
        return "locked"
    return customer.status
