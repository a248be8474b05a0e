"""SQLAlchemy models: the tables every lifecycle reads and writes.

Status is derived, never stored twice: anonymized when `anonymized_at` is set, verified when
`registered_at` is set, otherwise unverified.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), date: Date()}


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_reference: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(255))
    # accounts.email_address.email_key(email): the unique index that makes "one account per address" hold under races
    email_key: Mapped[str] = mapped_column(String(255), unique=True)
    salutation: Mapped[str | None] = mapped_column(String(8))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(8))
    date_of_birth: Mapped[date | None]
    phone: Mapped[str | None] = mapped_column(String(255))
    company: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    registered_at: Mapped[datetime | None]
    anonymized_at: Mapped[datetime | None]
    token_version: Mapped[int] = mapped_column(default=0)
    # set by a back-office "force reset": the current password no longer signs in
    password_reset_required: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    preferred_shipping_method: Mapped[str | None] = mapped_column(String(64))
    # accounts/inactivity.py: the last password sign-in or session refresh (moved at most once a day, so
    # active customers' sign-ins write nothing more), and where the customer stands in the inactivity lifecycle
    # (None, reminded, warned, kept, retired, exempt) since when
    last_signed_in_at: Mapped[datetime | None] = mapped_column(index=True)
    inactivity_stage: Mapped[str | None] = mapped_column(String(16))
    inactivity_since: Mapped[datetime | None]
    # checkout sign-up: SHA-256 of the guest's X-Anonymous-Customer-Unique-Id, whose cart becomes this
    # customer's when the account is activated (by any proof); cleared then, so it converts once
    guest_cart_key: Mapped[str | None] = mapped_column(String(64))
    # addresses.customer_id points back here: use_alter (with named constraints) breaks the cycle so the
    # tables can still be ordered; deleting an address clears a default that points at it.
    default_billing_address_id: Mapped[int | None] = mapped_column(
        ForeignKey("addresses.id", ondelete="SET NULL", use_alter=True, name="fk_customers_default_billing_address")
    )
    default_shipping_address_id: Mapped[int | None] = mapped_column(
        ForeignKey("addresses.id", ondelete="SET NULL", use_alter=True, name="fk_customers_default_shipping_address")
    )

    @property
    def status(self) -> str:
        if self.anonymized_at is not None:
            return "anonymized"
        return "verified" if self.registered_at is not None else "unverified"


class ReferenceCounter(Base):
    """One row per counter; customer references come from an atomic UPDATE ... RETURNING on it."""

    __tablename__ = "reference_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class OneTimeToken(Base):
    """Single-use tokens sent by email. Only the SHA-256 of the token is stored; exactly one of customer_id
    and staff_id is set (a staff member's: the staff lock email's link)."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (
        CheckConstraint("(customer_id IS NULL) <> (staff_id IS NULL)", name="ck_one_time_tokens_one_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE", name="fk_one_time_tokens_staff_id_staff"), index=True
    )
    # the lifecycle step that minted it: a retried activity finds its own token again
    issue_key: Mapped[str] = mapped_column(String(200), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailOutbox(Base):
    """One row per email the system decided to send, keyed by its idempotency key.

    No body is kept: bodies carry one-time links, and no plaintext token may rest in the database.
    """

    __tablename__ = "email_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    customer_reference: Mapped[str | None] = mapped_column(String(32), index=True)
    recipient: Mapped[str] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    # sending (handover under way) | sent | failed (to retry) | bounced (refused for good)
    status: Mapped[str] = mapped_column(String(16))
    # the activity (workflow id / activity id) that claimed the key: only it may retry a "sending" row
    claimed_by: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # a bounce: the receiving server's permanent refusal (addresses in its text masked)
    smtp_code: Mapped[int | None]
    smtp_reply: Mapped[str | None] = mapped_column(String(200))


class AuditEvent(Base):
    """Who did what to which customer, from which channel."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_reference: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Failed-login counting for one lockout subject ("customer:DE--1", "ip:<keyed hash>", "device:<hash>").

    The login path reserves an attempt with one conditional UPDATE before it verifies a password, so
    however many requests race, no more than the threshold are verified per window. Windows end by the
    database clock; a customer's lockout workflow sets and lifts that customer's locks, every other
    subject is locked by the login path itself (accounts/throttle.lock).
    """

    __tablename__ = "login_throttles"

    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    attempts: Mapped[int] = mapped_column(default=0)
    window_ends_at: Mapped[datetime] = mapped_column(index=True)
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RequestCount(Base):
    """One fixed window of a request budget (accounts.rate_limits): "ip:register:<keyed hash>",
    "all:sign-in", "address:reset:<keyed hash>". Counted by one conditional UPDATE, so the bound holds
    across API processes; rows whose window ended are deleted by the throttle-cleanup schedule."""

    __tablename__ = "request_counts"

    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    window_ends_at: Mapped[datetime] = mapped_column(index=True)


class DeviceToken(Base):
    """A client that signed in to one account before (OWASP's device cookie). Only the SHA-256 of the
    token is stored; exactly one of customer_id and staff_id is set."""

    __tablename__ = "device_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class CustomerSession(Base):
    """One sign-in (a refresh-token family, `refresh_tokens.family_id`) as the customer sees it: from which
    device, since when, last used when (a refresh). Personal data: the network prefix (/24, /48, never the
    address) rests here and nowhere else; the anonymization deletes the rows (accounts/anonymization.py)."""

    __tablename__ = "customer_sessions"

    family_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the access token's `sid`
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    device: Mapped[str] = mapped_column(String(100))  # "Firefox on Windows" (accounts/customer_sessions.py)
    network_prefix: Mapped[str | None] = mapped_column(String(64))
    # the SHA-256 of the device token this sign-in presented or was given (accounts/device_tokens.py)
    device_token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingCredential(Base):
    """A password hash (and, for a sign-up, the profile) on its way to the customer row, so that no
    workflow payload carries it: the entry point stores it, the workflow carries only the id, and the
    activity that applies it reads and deletes it. Abandoned rows are deleted after `expires_at`."""

    __tablename__ = "pending_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random (uuid4 hex)
    customer_reference: Mapped[str | None] = mapped_column(String(32), index=True)  # None for a sign-up
    password_hash: Mapped[str | None] = mapped_column(Text)
    replaces_hash: Mapped[str | None] = mapped_column(Text)  # a rehash: the write is conditional on it
    sign_up: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a registration's profile until its row exists
    # a sign-up whose address proved taken: the owner's reference, for the create step's retry
    owner_reference: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Staff(Base):
    """Back-office users. API keys are shown once and stored as keyed SHA-256 (old rows argon2: accounts.staff)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | support | agent
    api_key_hash: Mapped[str] = mapped_column(String(255))
    # argon2 hash of the web UI password; None until one is set (`accounts staff set-password`)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # where the staff lock email goes (`accounts staff set-email`); None: no lock email
    email: Mapped[str | None] = mapped_column(String(255))
    # web sessions (signed cookies) issued before this moment are dead: set by signing out
    sessions_revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class AgentAssist(Base):
    """One agent assistance session (workflow `assist:{ref}:{id}`, accounts/assists.py): an agent acting for
    a customer with an impersonation token whose `sid` is this row's id. The token is good while the row
    is neither ended nor expired (api/auth.py checks it in the query that reads the customer)."""

    __tablename__ = "agent_assists"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random (uuid4 hex); the token's `sid`
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    customer_reference: Mapped[str] = mapped_column(String(32))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str] = mapped_column(String(100))  # the staff member's name, as the audit names them
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # token_deleted (DELETE of the token) | ended_by_admin | expired | not_started (Temporal refused it)
    ended_reason: Mapped[str | None] = mapped_column(String(32))


class Address(Base):
    """A customer's postal address. `uuid` is its id in the Glue API; the integer id never leaves the database.

    Which address is the default for billing and for shipping is kept on the customer row, so a customer
    has at most one of each by construction (rules in accounts.addresses).
    """

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    salutation: Mapped[str] = mapped_column(String(8))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    address1: Mapped[str] = mapped_column(String(255))
    address2: Mapped[str] = mapped_column(String(255))
    address3: Mapped[str | None] = mapped_column(String(255))
    zip_code: Mapped[str] = mapped_column(String(15))
    city: Mapped[str] = mapped_column(String(255))
    country: Mapped[str | None] = mapped_column(String(255))
    iso2_code: Mapped[str] = mapped_column(String(2))
    company: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(Base):
    """A customer's past order, written by the shop's order system (accounts.orders) and only read here.

    Amounts are integer cents. Customers are anonymized, never deleted, so the order outlives the
    personal data and needs no ON DELETE rule.
    """

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_reference: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    # when the shop placed the order, not when it arrived here
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    totals: Mapped[dict[str, int]] = mapped_column(JSON)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class Cart(Base):
    """A shopping cart: a guest's (keyed by the hash of their X-Anonymous-Customer-Unique-Id) or a customer's.

    The anonymous id works like a bearer credential for the guest's cart, so only its SHA-256 is stored
    (and handed to workflows). A guest cart becomes a customer's cart by one conditional UPDATE that sets
    `customer_id` and clears `guest_key`, which is what makes a conversion happen at most once.
    """

    __tablename__ = "carts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    # unique: a guest has one live cart (NULLs, i.e. customers' carts, never collide)
    guest_key: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    price_mode: Mapped[str] = mapped_column(String(16))
    store: Mapped[str] = mapped_column(String(16))
    is_default: Mapped[bool] = mapped_column(default=True)
    # set when a guest cart became a customer's (checkout sign-up) or was merged into one (sign-in)
    converted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CartItem(Base):
    """One line of a cart; a second add of the same SKU raises the quantity (so a merge sums lines)."""

    __tablename__ = "cart_items"
    __table_args__ = (UniqueConstraint("cart_id", "sku", name="uq_cart_items_cart_sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[int]
    unit_price: Mapped[int] = mapped_column(default=0)  # cents, in the cart's currency
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerNote(Base):
    """A back-office note on a customer: who wrote it, what, when. Notes are never edited."""

    __tablename__ = "customer_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    author: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerGroup(Base):
    """A customer group as in Spryker's back office: name unique (max 70), description (max 255)."""

    __tablename__ = "customer_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(70), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerGroupMember(Base):
    __tablename__ = "customer_group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("customer_groups.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class MfaMethod(Base):
    """One multi-factor method (`email`, `totp`) of a customer or a staff member (exactly one of the two
    ids is set): `pending` from activation until a code verifies it (or `expires_at` passes), then `active`.
    accounts/mfa.py holds the rules; this row is their state."""

    __tablename__ = "mfa_methods"
    __table_args__ = (
        UniqueConstraint("customer_id", "type", name="uq_mfa_methods_customer_type"),
        UniqueConstraint("staff_id", "type", name="uq_mfa_methods_staff_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | active
    # totp: the shared secret, AES-256-GCM under ACCOUNTS_MFA_ENCRYPTION_KEY (accounts/mfa_secrets.py)
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    # totp: the RFC 6238 time step of the last code accepted; a code of that step or an earlier one is a replay
    last_used_step: Mapped[int | None] = mapped_column(Integer)
    # totp and recovery codes: attempts granted since the last success; at the limit, none until locked_until
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # activated with the current password: its codes then stand in for the password where a stolen token
    # must not be enough (a new email, a deletion: starter/reauth.py); a method a bearer token alone
    # activated guards protected requests but proves nothing about who holds the token
    proves_identity: Mapped[bool] = mapped_column(default=False, server_default=false())
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]  # a pending activation's end
    activated_at: Mapped[datetime | None]


class MfaCode(Base):
    """An emailed one-time code. The API reserves the row; the email activity derives the code and writes
    its keyed hash (so no workflow history holds it). Dead once used, expired, out of attempts, or ended."""

    __tablename__ = "mfa_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # the method that sent it: email
    code_hash: Mapped[str | None] = mapped_column(String(64))  # None until the email activity has run
    attempts_left: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class MfaRecoveryCode(Base):
    """One of a customer's ten recovery codes, shown once, as its keyed hash; `used_at` ends it."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class DataExport(Base):
    """A customer's copy of their data (workflows/data_export.py, accounts/data_exports.py): the zip archive
    AES-256-GCM encrypted (accounts/mfa_secrets.SecretBox, bound to the export's id), downloadable by the
    signed-in owner until `expires_at`; then the archive is deleted and the row stays as the record."""

    __tablename__ = "data_exports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the workflow id's last part
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # ready | expired
    channel: Mapped[str] = mapped_column(String(16))  # who asked: api (the customer) | backoffice
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    archive_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once expired
    archive_size: Mapped[int] = mapped_column(default=0)  # bytes of the zip before encryption
    deleted_at: Mapped[datetime | None]
