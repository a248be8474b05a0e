"""The back office: what staff may do to customers, and who may do it.

One module behind every staff entry point (the `/backoffice` JSON API, the web UI, the CLI):

- `PERMISSIONS` maps each action to the roles allowed to take it; `authorize` is the one check, and every
  `BackOffice` method that changes or reveals something runs it first, so an entry point cannot forget it.
- Lists and exports read the database; a customer's status is derived there (anonymized, locked by a
  current lock in `login_throttles`, verified, unverified), so filtering and paging happen in SQL.
- Lifecycle status is read live from Temporal (runs listed by the `CustomerReference` search attribute,
  running ones queried), never copied into the database; when Temporal cannot be reached the rest of the
  customer's page still renders and the lifecycle says "unavailable".
- Lifecycle actions go through `starter.AccountsClient` (workflows do the writes); notes, groups, profile
  and address edits are plain writes here. Every action records an audit event with the staff member's
  name as actor and channel `backoffice`.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Select, String, and_, case, delete, func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from accounts import addresses, audit, orders
from accounts.addresses import CustomerAddress
from accounts.db import SessionFactory
from accounts.locales import normalize_locale
from accounts.locks import lock_customer
from accounts.models import (
    AuditEvent,
    Customer,
    CustomerGroup,
    CustomerGroupMember,
    CustomerNote,
    LoginThrottle,
    Order,
    utcnow,
)
from accounts.profile import apply_profile_edits
from accounts.settings import Settings
from accounts.staff import ROLES, StaffMember, row_id
from accounts.temporal import LIFECYCLE_STAGE, ui_url
from accounts.throttle import customer_subject
from starter.client import AccountsClient, Registration
from starter.errors import EmailTaken, RegistrationNotFound
from workflows.email_change import AWAITING_CONFIRMATION, EmailChangeWorkflow
from workflows.lockout import LockoutWindowWorkflow
from workflows.password_reset import PasswordResetWorkflow
from workflows.registration import WAITING_STAGES, Activation, RegistrationWorkflow, Resent

CHANNEL = "backoffice"
CUSTOMER_STATUSES = ("verified", "unverified", "locked", "anonymized")
SORT_FIELDS = ("created_at", "email", "last_name", "customer_reference", "registered_at")
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # far beyond any list; keeps the OFFSET inside what SQLite and PostgreSQL accept
GROUP_NAME_MAX = 70
GROUP_DESCRIPTION_MAX = 255
NOTE_MAX = 5000
GROUP_SEPARATOR = "; "  # how a row's groups share one CSV cell
CSV_COLUMNS = (
    "customerReference", "email", "firstName", "lastName", "status", "channel", "createdAt", "registeredAt", "groups",
)  # fmt: skip
PROFILE_FIELDS = (
    "salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company", "locale",
    "preferred_shipping_method",
)  # fmt: skip
SALUTATIONS = ("Mr", "Mrs", "Ms", "Dr")
GENDERS = ("Male", "Female")
RECENT_ORDERS = 20
LIFECYCLE_RUNS = 50
# A back-office page must not hang on an unreachable cluster or a query to a run whose worker is down.
TEMPORAL_TIMEOUT = timedelta(seconds=3)

# --- who may do what ------------------------------------------------------------------------------------

_EVERYONE = frozenset(ROLES)
_ADMIN = frozenset({"admin"})
PERMISSIONS: dict[str, frozenset[str]] = {
    "customers.list": _EVERYONE,
    "customers.view": _EVERYONE,
    "customers.events": _EVERYONE,
    "customers.create": _EVERYONE,
    "customers.edit": _EVERYONE,  # profile, addresses and default addresses
    "customers.verify": _EVERYONE,
    "customers.resend_verification": _EVERYONE,
    "customers.unlock": _EVERYONE,
    "customers.send_password_token": _EVERYONE,
    "notes.list": _EVERYONE,
    "notes.add": _EVERYONE,
    "groups.list": _EVERYONE,
    "groups.assign": _EVERYONE,  # assign and unassign
    "customers.delete": _ADMIN,
    "customers.set_password": _ADMIN,
    "customers.force_password_reset": _ADMIN,
    "customers.export": _ADMIN,
    "groups.manage": _ADMIN,  # create, rename, describe, delete
    "orders.import": _ADMIN,
}


def allowed(role: str, action: str) -> bool:
    """Whether a staff role may take the action (a KeyError for an action nobody declared)."""
    return role in PERMISSIONS[action]


def authorize(staff: StaffMember, action: str) -> None:
    if not allowed(staff.role, action):
        needed = " or ".join(sorted(PERMISSIONS[action]))
        raise Forbidden(f"{action} needs the {needed} role; {staff.name} is {staff.role}")


def cli_staff(agent: str) -> StaffMember:
    """The actor of a CLI command. Whoever runs the CLI holds the database credentials, so has every role;
    id 0 names no staff row (notes then carry the author's name only)."""
    return StaffMember(0, agent, "admin")


# --- errors ---------------------------------------------------------------------------------------------


class BackOfficeError(ValueError):
    """Base of the back office's refusals; nothing was changed when one is raised."""


class InvalidInput(BackOfficeError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class Forbidden(BackOfficeError):
    pass


class CustomerNotFound(BackOfficeError):
    def __init__(self, customer_reference: str) -> None:
        super().__init__(f"no customer {customer_reference}")


class GroupNotFound(BackOfficeError):
    def __init__(self, group: str | int) -> None:
        super().__init__(f"no customer group {group}")


class AddressNotFound(BackOfficeError):
    pass


class Conflict(BackOfficeError):
    """The request is valid but the state refuses it (a taken name, an anonymized customer)."""


class GroupNameTaken(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"a customer group named {name!r} exists")


class EmailInUse(Conflict):
    def __init__(self) -> None:
        super().__init__("this email address already has an account")


class CustomerAnonymized(Conflict):
    def __init__(self, customer_reference: str) -> None:
        super().__init__(f"{customer_reference} is anonymized")


# --- what the back office shows ------------------------------------------------------------------------


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
class Note:
    id: int
    author: str
    message: str
    created_at: datetime


@dataclass
class Group:
    id: int
    name: str
    description: str | None
    members: int


@dataclass
class LifecycleRun:
    kind: str  # registration | password-reset | password-change | lockout | anonymization | email-change
    workflow_id: str
    run_id: str
    status: str  # running | completed | failed | canceled | terminated | timed_out | continued_as_new
    stage: str | None
    deadlines: dict[str, datetime]
    pending_actions: list[str]  # what the run waits for right now
    ui_url: str
    started_at: datetime | None = None
    closed_at: datetime | None = None


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


@dataclass
class ProfileEdit:
    customer: Customer
    changed: list[str]  # the fields whose value changed, in PROFILE_FIELDS' names; [] when nothing did


@dataclass
class CustomerDraft:
    """A customer created by staff: no password (the customer sets one through an emailed link)."""

    email: str
    first_name: str
    last_name: str
    salutation: str | None = None
    gender: str | None = None
    date_of_birth: date | None = None
    phone: str | None = None
    company: str | None = None
    locale: str | None = None


@dataclass
class CreatedCustomer:
    customer_reference: str
    created_at: datetime
    workflow_id: str
    password_token_sent: bool


# --- the use cases --------------------------------------------------------------------------------------


class BackOffice:
    def __init__(self, sessions: SessionFactory, accounts: AccountsClient, settings: Settings) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._settings = settings

    # customers: list, export, detail

    async def list_customers(self, f: CustomerFilter, staff: StaffMember | None = None) -> CustomerPage:
        if staff is not None:
            authorize(staff, "customers.list")
        async with self._sessions() as session:
            statement = _filtered(f, utcnow())
            # the count needs no order: sorting every match only to count it cost more than the page itself
            total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
            rows = (await session.execute(statement.offset((f.page - 1) * f.per_page).limit(f.per_page))).all()
            return CustomerPage(await _rows(session, rows), int(total or 0), f.page, f.per_page)

    async def export_csv(self, f: CustomerFilter, staff: StaffMember | None = None) -> str:
        """Every matching customer (not one page), one row each, under a header row.

        Cells starting like a spreadsheet formula get a leading apostrophe: names are typed by customers,
        and an export is opened in spreadsheet programs."""
        if staff is not None:
            authorize(staff, "customers.export")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        async with self._sessions() as session:
            rows = (await session.execute(_filtered(f, utcnow()))).all()
            for row in await _rows(session, rows):
                writer.writerow({key: _csv_safe(value) for key, value in row.csv_row().items()})
        return out.getvalue()

    async def customer_detail(self, customer_reference: str, staff: StaffMember | None = None) -> CustomerDetail | None:
        if staff is not None:
            authorize(staff, "customers.view")
        async with self._sessions() as session:
            customer = await _customer(session, customer_reference)
            if customer is None:
                return None
            locked_until = await _locked_until(session, customer_reference)
            address_book = await addresses.list_addresses(session, customer_id=customer.id)
            recent, orders_total = await orders.list_orders(
                session, customer_id=customer.id, offset=0, limit=RECENT_ORDERS
            )
            notes = await _notes(session, customer.id)
            groups = await _groups(session, customer_id=customer.id)
        lifecycle, lifecycle_status = await self.lifecycle(customer_reference)
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
        )

    async def events(self, customer_reference: str, staff: StaffMember | None = None) -> list[AuditEvent]:
        """The customer's audit trail, newest first. CustomerNotFound for an unknown reference."""
        if staff is not None:
            authorize(staff, "customers.events")
        async with self._sessions() as session:
            await _require_customer(session, customer_reference)
            rows = await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.customer_reference == customer_reference)
                .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            )
            return list(rows)

    # the live lifecycle

    async def lifecycle(self, customer_reference: str) -> tuple[list[LifecycleRun], str]:
        """The customer's workflow runs, newest first, and "ok", or ([], "unavailable") without Temporal."""
        try:
            runs = await asyncio.wait_for(self._runs(customer_reference), 3 * TEMPORAL_TIMEOUT.total_seconds())
        except (RPCError, RuntimeError, TimeoutError, OSError):
            return [], "unavailable"
        return runs, "ok"

    async def _runs(self, customer_reference: str) -> list[LifecycleRun]:
        if '"' in customer_reference or "\\" in customer_reference:
            return []  # no reference has them; they would only break the query
        client = self._accounts.temporal
        executions = [
            execution
            async for execution in client.list_workflows(
                f'CustomerReference = "{customer_reference}"', limit=LIFECYCLE_RUNS, rpc_timeout=TEMPORAL_TIMEOUT
            )
        ]
        executions.sort(key=lambda e: e.start_time, reverse=True)
        return list(await asyncio.gather(*(self._run(client, execution) for execution in executions)))

    async def _run(self, client: Client, execution: WorkflowExecution) -> LifecycleRun:
        kind = execution.id.split(":", 1)[0]
        status = execution.status.name.lower() if execution.status is not None else "unknown"
        run = LifecycleRun(
            kind=kind,
            workflow_id=execution.id,
            run_id=execution.run_id,
            status=status,
            stage=execution.typed_search_attributes.get(LIFECYCLE_STAGE),
            deadlines={},
            pending_actions=[],
            ui_url=ui_url(self._settings, execution.id, execution.run_id),
            started_at=execution.start_time,
            closed_at=execution.close_time,
        )
        if execution.status == WorkflowExecutionStatus.RUNNING:
            try:
                await _query_running(client, execution, run)
            except (RPCError, RuntimeError, TimeoutError):
                run.pending_actions = ["(the run did not answer: is a worker running?)"]
            except Exception:  # a failed query or an answer of another shape: one run must not break the page
                run.pending_actions = ["(the run's status could not be read)"]
        return run

    # customers: create, edit, addresses

    async def create_customer(
        self, draft: CustomerDraft, staff: StaffMember, *, send_password_token: bool = False
    ) -> CreatedCustomer:
        """Start a registration with channel `backoffice` and no password; its workflow sends the
        verification email. With send_password_token the customer also gets a "set your password" link,
        which verifies the address too when used first."""
        authorize(staff, "customers.create")
        registration = self._registration(draft)
        async with self._sessions() as session:
            # staff need no anti-enumeration answer, and the owner needs no "already registered" email
            taken = await session.scalar(select(Customer.id).where(Customer.email_key == registration.email.lower()))
        if taken is not None:
            raise EmailInUse()
        try:
            registered = await self._accounts.register(registration)
        except EmailTaken:  # lost a race with another sign-up of the address
            raise EmailInUse() from None
        await self._record(registered.customer_reference, "customer_created", staff)
        if send_password_token:
            await self.send_password_token(registered.customer_reference, staff)
        return CreatedCustomer(registered.customer_reference, registered.created_at, registered.workflow_id,
                               send_password_token)  # fmt: skip

    def _registration(self, draft: CustomerDraft) -> Registration:
        email = draft.email.strip()
        if len(email) > 100:
            raise InvalidInput("email", "must have 100 characters or less")
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            raise InvalidInput("email", "is not a valid email address") from None
        profile = self._checked_profile(
            {
                "first_name": draft.first_name,
                "last_name": draft.last_name,
                "salutation": draft.salutation,
                "gender": draft.gender,
                "date_of_birth": draft.date_of_birth,
                "phone": draft.phone,
                "company": draft.company,
            }
        )
        locale = self._locale(draft.locale) if draft.locale else self._settings.default_locale
        return Registration(email=email, channel=CHANNEL, locale=locale, **profile)

    async def update_profile(self, customer_reference: str, edits: Mapping[str, Any], staff: StaffMember) -> Customer:
        """Change profile fields (names as in PROFILE_FIELDS); only real changes are written and recorded,
        with the changed fields' names (never their values) in the audit event."""
        return (await self.edit_profile(customer_reference, edits, staff)).customer

    async def edit_profile(self, customer_reference: str, edits: Mapping[str, Any], staff: StaffMember) -> ProfileEdit:
        """`update_profile`, also saying which fields really changed (those the audit event names)."""
        authorize(staff, "customers.edit")
        checked = self._checked_profile(edits)
        async with self._sessions.begin() as session:
            customer = await _writable_customer(session, customer_reference)
            changed = await apply_profile_edits(session, customer, checked, channel=CHANNEL, actor=staff.name)
            return ProfileEdit(customer, changed)

    def _checked_profile(self, edits: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(edits) - set(PROFILE_FIELDS))
        if unknown:
            raise InvalidInput(unknown[0], f"is not a profile field (one of {', '.join(PROFILE_FIELDS)})")
        checked: dict[str, Any] = {}
        for name, value in edits.items():
            if isinstance(value, str):
                value = value.strip() or None
            if name in ("first_name", "last_name"):
                if value is None:
                    raise InvalidInput(name, "must not be blank")
                _max_length(name, value, 100)
            elif name == "salutation" and value is not None and value not in SALUTATIONS:
                raise InvalidInput(name, f"must be one of {', '.join(SALUTATIONS)}")
            elif name == "gender" and value is not None and value not in GENDERS:
                raise InvalidInput(name, f"must be one of {', '.join(GENDERS)}")
            elif name == "date_of_birth" and value is not None:
                if not isinstance(value, date) or value >= date.today():
                    raise InvalidInput(name, "must be a date in the past")
            elif name == "locale":
                if value is None:
                    raise InvalidInput(name, "must not be blank")
                value = self._locale(value)
            elif name in ("phone", "company"):
                _max_length(name, value, 255)
            elif name == "preferred_shipping_method":
                _max_length(name, value, 64)
            if value is not None and name != "date_of_birth" and not isinstance(value, str):
                raise InvalidInput(name, "must be text")
            checked[name] = value
        return checked

    def _locale(self, value: str) -> str:
        locale = normalize_locale(value, self._settings.locales, "")
        if not locale:
            raise InvalidInput("locale", f"must be one of {', '.join(self._settings.locales)}")
        return locale

    async def add_address(
        self,
        customer_reference: str,
        values: Mapping[str, object],
        staff: StaffMember,
        *,
        default_billing: bool = False,
        default_shipping: bool = False,
    ) -> CustomerAddress:
        """Values are address fields (accounts.addresses.EDITABLE_FIELDS), checked by the caller's schema;
        the address book's default rules are accounts.addresses'."""
        authorize(staff, "customers.edit")
        try:
            async with self._sessions.begin() as session:
                customer = await _writable_customer(session, customer_reference)
                return await addresses.add_address(
                    session, customer_id=customer.id, values=values, default_billing=default_billing,
                    default_shipping=default_shipping, channel=CHANNEL, actor=staff.name,
                )  # fmt: skip
        except ValueError as error:
            if isinstance(error, BackOfficeError):
                raise
            raise InvalidInput("address", str(error)) from None

    async def update_address(
        self,
        customer_reference: str,
        address_uuid: str,
        staff: StaffMember,
        *,
        values: Mapping[str, object] | None = None,
        default_billing: bool = False,
        default_shipping: bool = False,
    ) -> CustomerAddress:
        """Make the address a default (true moves that default here; false changes nothing) and/or change it."""
        authorize(staff, "customers.edit")
        try:
            async with self._sessions.begin() as session:
                customer = await _writable_customer(session, customer_reference)
                entry = await addresses.update_address(
                    session, customer_id=customer.id, address_uuid=address_uuid, values=values or {},
                    default_billing=default_billing, default_shipping=default_shipping, channel=CHANNEL,
                    actor=staff.name,
                )  # fmt: skip
        except ValueError as error:
            if isinstance(error, BackOfficeError):
                raise
            raise InvalidInput("address", str(error)) from None
        if entry is None:
            raise AddressNotFound(f"{customer_reference} has no address {address_uuid}")
        return entry

    # lifecycle actions (the workflows write; these add who asked)

    async def verify_manually(self, customer_reference: str, staff: StaffMember, reason: str) -> Activation:
        authorize(staff, "customers.verify")
        return await self._accounts.verify_manually(customer_reference, agent=staff.name, reason=reason)

    async def resend_verification(self, customer_reference: str, staff: StaffMember) -> Resent:
        authorize(staff, "customers.resend_verification")
        resent = await self._accounts.resend_verification(customer_reference)
        await self._record(customer_reference, "verification_resent", staff)
        return resent

    async def unlock(self, customer_reference: str, staff: StaffMember, reason: str) -> datetime:
        """Lift a sign-in lock; returns when it would have ended. NotLocked when there is none."""
        authorize(staff, "customers.unlock")
        if await self._accounts.customer_by_reference(customer_reference) is None:
            raise CustomerNotFound(customer_reference)
        unlocked = await self._accounts.logins.unlock(customer_reference, agent=staff.name, reason=reason)
        return unlocked.was_locked_until

    async def send_password_token(self, customer_reference: str, staff: StaffMember) -> None:
        authorize(staff, "customers.send_password_token")
        await self._accounts.passwords.send_set_password_link(customer_reference, agent=staff.name)
        await self._record(customer_reference, "password_token_sent", staff)

    async def set_password(self, customer_reference: str, staff: StaffMember, password: str) -> None:
        authorize(staff, "customers.set_password")
        await self._accounts.passwords.set_by_support(customer_reference, password, agent=staff.name)

    async def force_password_reset(self, customer_reference: str, staff: StaffMember) -> None:
        authorize(staff, "customers.force_password_reset")
        await self._accounts.passwords.force_reset(customer_reference, agent=staff.name)

    async def delete_customer(self, customer_reference: str, staff: StaffMember) -> None:
        """Anonymize (the deletion workflow); notes and group memberships go with the personal data."""
        authorize(staff, "customers.delete")
        try:
            await self._accounts.deletions.delete(customer_reference, channel=CHANNEL, actor=staff.name)
        except RegistrationNotFound:
            raise CustomerNotFound(customer_reference) from None

    # notes

    async def add_note(self, customer_reference: str, staff: StaffMember, message: str) -> Note:
        authorize(staff, "notes.add")
        text = message.strip() if isinstance(message, str) else ""
        if not text:
            raise InvalidInput("message", "must not be blank")
        if len(text) > NOTE_MAX:
            raise InvalidInput("message", f"must have {NOTE_MAX} characters or less")
        async with self._sessions.begin() as session:
            customer = await _writable_customer(session, customer_reference)
            note = CustomerNote(
                customer_id=customer.id, staff_id=staff.id or None, author=staff.name, message=text, created_at=utcnow()
            )
            session.add(note)
            await session.flush()
            # the note's id, not its text: notes may hold personal data, and they go at anonymization
            self._audit(session, customer_reference, "note_added", staff, {"noteId": note.id})
            return Note(note.id, note.author, note.message, note.created_at)

    async def notes(self, customer_reference: str, staff: StaffMember | None = None) -> list[Note]:
        """Newest first."""
        if staff is not None:
            authorize(staff, "notes.list")
        async with self._sessions() as session:
            customer = await _require_customer(session, customer_reference)
            return await _notes(session, customer.id)

    # customer groups

    async def list_groups(self, staff: StaffMember | None = None) -> list[Group]:
        """By name."""
        if staff is not None:
            authorize(staff, "groups.list")
        async with self._sessions() as session:
            return await _groups(session)

    async def group(self, name_or_id: str | int, staff: StaffMember | None = None) -> Group:
        if staff is not None:
            authorize(staff, "groups.list")
        async with self._sessions() as session:
            row = await _group_row(session, name_or_id)
            return (await _groups(session, group_id=row.id))[0]

    async def create_group(self, name: str, description: str | None, staff: StaffMember) -> Group:
        authorize(staff, "groups.manage")
        name, description = _group_name(name), _group_description(description)
        try:
            async with self._sessions.begin() as session:
                if await session.scalar(select(CustomerGroup.id).where(CustomerGroup.name == name)) is not None:
                    raise GroupNameTaken(name)
                row = CustomerGroup(name=name, description=description)
                session.add(row)
                await session.flush()
                self._audit(session, _group_subject(row.id), "group_created", staff, {"name": name})
        except IntegrityError:  # created concurrently
            raise GroupNameTaken(name) from None
        return Group(row.id, row.name, row.description, 0)

    async def update_group(
        self,
        name_or_id: str | int,
        staff: StaffMember,
        *,
        new_name: str | None = None,
        description: str | None = None,
        clear_description: bool = False,
    ) -> Group:
        """Rename and/or describe; description None leaves it as it is, clear_description removes it."""
        authorize(staff, "groups.manage")
        checked_name = _group_name(new_name) if new_name is not None else None
        checked_description = _group_description(description) if description is not None else None
        try:
            async with self._sessions.begin() as session:
                row = await _group_row(session, name_or_id, for_update=True)
                changed: dict[str, Any] = {}
                if checked_name is not None and checked_name != row.name:
                    taken = await session.scalar(
                        select(CustomerGroup.id).where(CustomerGroup.name == checked_name, CustomerGroup.id != row.id)
                    )
                    if taken is not None:
                        raise GroupNameTaken(checked_name)
                    changed["name"] = {"from": row.name, "to": checked_name}
                    row.name = checked_name
                if clear_description:
                    checked_description = None
                if (checked_description is not None or clear_description) and checked_description != row.description:
                    changed["description"] = True
                    row.description = checked_description
                if changed:
                    row.updated_at = utcnow()
                    await session.flush()
                    self._audit(session, _group_subject(row.id), "group_updated", staff, changed)
                group_id = row.id
        except IntegrityError:
            raise GroupNameTaken(checked_name or "") from None
        return await self.group(group_id)

    async def delete_group(self, name_or_id: str | int, staff: StaffMember) -> None:
        """Members lose the membership; the customers stay."""
        authorize(staff, "groups.manage")
        async with self._sessions.begin() as session:
            row = await _group_row(session, name_or_id, for_update=True)
            members = await session.scalar(
                select(func.count()).select_from(CustomerGroupMember).where(CustomerGroupMember.group_id == row.id)
            )
            await session.execute(delete(CustomerGroupMember).where(CustomerGroupMember.group_id == row.id))
            await session.delete(row)
            details = {"name": row.name, "members": int(members or 0)}
            self._audit(session, _group_subject(row.id), "group_deleted", staff, details)

    async def assign(self, customer_reference: str, group: str | int, staff: StaffMember) -> bool:
        """False when the customer was a member already (nothing written)."""
        authorize(staff, "groups.assign")
        try:
            async with self._sessions.begin() as session:
                customer = await _writable_customer(session, customer_reference)
                row = await _group_row(session, group)
                member = await session.get(CustomerGroupMember, (row.id, customer.id))
                if member is not None:
                    return False
                session.add(CustomerGroupMember(group_id=row.id, customer_id=customer.id, assigned_at=utcnow()))
                await session.flush()
                self._audit(
                    session, customer_reference, "group_assigned", staff, {"group": row.name, "groupId": row.id}
                )
        except IntegrityError:  # assigned concurrently
            return False
        return True

    async def unassign(self, customer_reference: str, group: str | int, staff: StaffMember) -> bool:
        """False when the customer was no member (nothing written)."""
        authorize(staff, "groups.assign")
        async with self._sessions.begin() as session:
            customer = await _require_customer(session, customer_reference)
            row = await _group_row(session, group)
            result = await session.execute(
                delete(CustomerGroupMember).where(
                    CustomerGroupMember.group_id == row.id, CustomerGroupMember.customer_id == customer.id
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            self._audit(session, customer_reference, "group_unassigned", staff, {"group": row.name, "groupId": row.id})
        return True

    # audit

    def _audit(
        self, session: AsyncSession, subject: str, event: str, staff: StaffMember, details: dict[str, Any] | None = None
    ) -> None:
        audit.record(session, customer_reference=subject, event=event, channel=CHANNEL, actor=staff.name,
                     details=details)  # fmt: skip

    async def _record(self, subject: str, event: str, staff: StaffMember) -> None:
        async with self._sessions.begin() as session:
            self._audit(session, subject, event, staff)


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


def _filtered(f: CustomerFilter, now: datetime) -> Select[Customer, str]:
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
        full_name = func.lower(func.coalesce(Customer.first_name, "") + " " + func.coalesce(Customer.last_name, ""))
        statement = statement.where(
            or_(
                Customer.email_key.contains(term, autoescape=True),
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


async def _rows(session: AsyncSession, rows: Sequence[Any]) -> list[CustomerRow]:
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


async def _customer(session: AsyncSession, customer_reference: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))


async def _require_customer(session: AsyncSession, customer_reference: str) -> Customer:
    customer = await _customer(session, customer_reference)
    if customer is None:
        raise CustomerNotFound(customer_reference)
    return customer


async def _writable_customer(session: AsyncSession, customer_reference: str) -> Customer:
    """The customer's row, locked for this transaction; anonymized customers take no new data."""
    customer = await _require_customer(session, customer_reference)
    customer = await lock_customer(session, customer_id=customer.id)
    if customer.anonymized_at is not None:
        raise CustomerAnonymized(customer_reference)
    return customer


async def _locked_until(session: AsyncSession, customer_reference: str) -> datetime | None:
    until = await session.scalar(
        select(LoginThrottle.locked_until).where(LoginThrottle.subject == customer_subject(customer_reference))
    )
    return until if until is not None and until > utcnow() else None


def _status(customer: Customer, locked_until: datetime | None) -> str:
    if customer.anonymized_at is None and locked_until is not None:
        return "locked"
    return customer.status


async def _notes(session: AsyncSession, customer_id: int) -> list[Note]:
    rows = await session.scalars(
        select(CustomerNote)
        .where(CustomerNote.customer_id == customer_id)
        .order_by(CustomerNote.created_at.desc(), CustomerNote.id.desc())
    )
    return [Note(row.id, row.author, row.message, row.created_at) for row in rows]


async def _groups(session: AsyncSession, *, customer_id: int | None = None, group_id: int | None = None) -> list[Group]:
    """Groups by name with their member counts: all, the customer's, or one."""
    members = (
        select(CustomerGroupMember.group_id, func.count().label("members"))
        .group_by(CustomerGroupMember.group_id)
        .subquery()
    )
    statement = select(CustomerGroup, func.coalesce(members.c.members, 0)).outerjoin(
        members, members.c.group_id == CustomerGroup.id
    )
    if customer_id is not None:
        statement = statement.where(
            CustomerGroup.id.in_(
                select(CustomerGroupMember.group_id).where(CustomerGroupMember.customer_id == customer_id)
            )
        )
    if group_id is not None:
        statement = statement.where(CustomerGroup.id == group_id)
    rows = await session.execute(statement.order_by(CustomerGroup.name))
    return [Group(group.id, group.name, group.description, int(count)) for group, count in rows]


async def _group_row(session: AsyncSession, name_or_id: str | int, *, for_update: bool = False) -> CustomerGroup:
    as_id = row_id(str(name_or_id).strip())  # None for a name, and for an id no row can have
    condition = CustomerGroup.name == str(name_or_id).strip()
    if as_id is not None:
        condition = or_(CustomerGroup.id == as_id, condition)
    statement = select(CustomerGroup).where(condition).order_by(CustomerGroup.id)
    row = await session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        raise GroupNotFound(name_or_id)
    return row


def _group_subject(group_id: int) -> str:
    """Group changes are filed in the audit trail under `group:<id>` (no customer's reference looks like it)."""
    return f"group:{group_id}"


def _group_name(name: str | None) -> str:
    value = (name or "").strip() if isinstance(name, str) or name is None else ""
    if not value:
        raise InvalidInput("name", "must not be blank")
    if len(value) > GROUP_NAME_MAX:
        raise InvalidInput("name", f"must have {GROUP_NAME_MAX} characters or less")
    return value


def _group_description(description: str | None) -> str | None:
    if description is None:
        return None
    value = description.strip()
    if len(value) > GROUP_DESCRIPTION_MAX:
        raise InvalidInput("description", f"must have {GROUP_DESCRIPTION_MAX} characters or less")
    return value or None


def _max_length(name: str, value: object, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise InvalidInput(name, f"must have {limit} characters or less")


def _csv_safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def _query_running(client: Client, execution: WorkflowExecution, run: LifecycleRun) -> None:
    """Stage, deadlines and what the run waits for, from its own `status` query."""
    if run.kind == "registration":
        registration = await client.get_workflow_handle_for(RegistrationWorkflow.run, execution.id).query(
            RegistrationWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = registration.stage
        if registration.stage in WAITING_STAGES:
            run.deadlines = {"reminder": registration.reminder_at, "expiry": registration.expires_at}
            if registration.stage != "awaiting_verification":
                run.deadlines.pop("reminder")
            if registration.next_resend_at is not None:
                run.deadlines["next_resend"] = registration.next_resend_at
            run.pending_actions = ["confirm (email link)", "verify manually"]
            if registration.resends_left > 0:
                run.pending_actions.append("resend")
    elif run.kind == "password-reset":
        reset = await client.get_workflow_handle_for(PasswordResetWorkflow.run, execution.id).query(
            PasswordResetWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = reset.stage
        if reset.completion is None:
            run.pending_actions = ["new password (email link)", "resend"]
            if reset.sent_at:
                run.deadlines = {"last_link_sent": reset.sent_at[-1]}
    elif run.kind == "email-change":
        change = await client.get_workflow_handle_for(EmailChangeWorkflow.run, execution.id).query(
            EmailChangeWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = change.stage
        if change.stage == AWAITING_CONFIRMATION:
            if change.expires_at is not None:
                run.deadlines = {"link_expiry": change.expires_at}
            address = f" ({change.pending_email})" if change.pending_email else ""
            run.pending_actions = [f"confirmation of the new address{address}"]
    elif run.kind == "lockout":
        lockout = await client.get_workflow_handle_for(LockoutWindowWorkflow.run, execution.id).query(
            LockoutWindowWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = lockout.stage
        if lockout.window_ends_at is not None:
            run.deadlines["window_ends"] = lockout.window_ends_at
        if lockout.locked_until is not None:
            run.deadlines["locked_until"] = lockout.locked_until
            run.pending_actions = ["unlock (support)", "password reset"]


__all__ = [
    "CSV_COLUMNS",
    "CUSTOMER_STATUSES",
    "PERMISSIONS",
    "SORT_FIELDS",
    "BackOffice",
    "BackOfficeError",
    "Conflict",
    "CreatedCustomer",
    "CustomerDetail",
    "CustomerDraft",
    "CustomerFilter",
    "CustomerNotFound",
    "CustomerPage",
    "CustomerRow",
    "Forbidden",
    "Group",
    "GroupNotFound",
    "InvalidInput",
    "LifecycleRun",
    "Note",
    "ProfileEdit",
    "allowed",
    "authorize",
    "cli_staff",
]
