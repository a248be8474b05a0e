"""Database writes of the registration lifecycle. Each is keyed by customer and step, so a retry is harmless."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts import anonymization, audit, carts, metrics, pending_credentials
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer, PendingCredential, utcnow
from accounts.profile import SignUp, customer_columns
from activities.lookup import load_customer

EMAIL_VERIFICATION = "email_verification"


@dataclass(kw_only=True)
class NewCustomer(SignUp):
    """The registration's input. Since issue 15 it carries the reference, the channel and `pending_id`
    only (the other SignUp fields empty): the profile and the argon2 hash wait in `pending_credentials`
    for create_customer. Runs started before carry the sign-up and the hash here (never the password)."""

    customer_reference: str
    password_hash: str | None = None
    pending_id: str | None = None

    @classmethod
    def pending(cls, customer_reference: str, channel: str, pending_id: str) -> NewCustomer:
        return cls(email="", locale="", channel=channel, customer_reference=customer_reference, pending_id=pending_id)


@dataclass
class CustomerCreated:
    created: bool
    customer_reference: str
    # set when the address already belongs to another account: that owner is told, no account is made
    existing_customer_reference: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class ActivationInput:
    customer_reference: str
    channel: str
    method: str  # link | manual
    actor: str
    reason: str | None = None


@dataclass
class Activated:
    registered_at: datetime


@dataclass
class ExpiryInput:
    customer_reference: str
    channel: str
    action: str  # keep | anonymize
    idempotency_key: str | None = None  # None in histories recorded before keys were per lifecycle


@dataclass
class Rehash:
    customer_reference: str
    # runs started before issue 15 carry both hashes; since then the pending credential holds them
    old_hash: str | None = None
    new_hash: str | None = None
    credential_id: str | None = None


async def activate(session: AsyncSession, customer: Customer, *, now: datetime) -> bool:
    """Make an unverified account active: the one place for it, whichever proof of the address arrived
    (the verification link, support, or a reset or set-password link). The checkout guest cart becomes
    the customer's in the same transaction, and its key is cleared, so it converts exactly once.
    False when the account was active already.

    `customer` must be locked by the caller (load_customer(..., for_update=True)): a decision on a row
    read without the lock let a reset activate a second time over a concurrent verification link."""
    if customer.registered_at is not None:
        return False
    customer.registered_at = now
    await anonymization.kill_tokens(session, customer.id, now=now, purpose=EMAIL_VERIFICATION)
    if customer.guest_cart_key:
        await carts.convert_guest_cart(session, guest_key=customer.guest_cart_key, customer_id=customer.id, now=now)
        customer.guest_cart_key = None
    return True


class CustomerActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def create_customer(self, new: NewCustomer) -> CustomerCreated:
        if new.pending_id is not None:
            return await self._create_from_pending(new.customer_reference, new.pending_id)
        # a run started before issue 15: the sign-up and the hash are in the input
        try:
            async with self._sessions.begin() as session:
                customer = self._insert(session, new, new.customer_reference, new.password_hash)
                await session.flush()
            return CustomerCreated(True, new.customer_reference, None, customer.created_at, customer.updated_at)
        except IntegrityError:
            pass
        # Either a retry of this very step (our row exists) or the address belongs to someone else.
        ours = await self._ours(new.customer_reference)
        if ours is not None:
            return ours
        async with self._sessions() as session:
            owner = await session.scalar(select(Customer).where(Customer.email_key == email_key(new.email)))
        if owner is None:  # the owner was anonymized between our insert and this read: try again
            raise RuntimeError("email uniqueness conflict vanished; retrying")
        return CustomerCreated(False, new.customer_reference, owner.customer_reference)

    async def _create_from_pending(self, reference: str, pending_id: str) -> CustomerCreated:
        """The row from the pending sign-up, which goes in the same transaction: created, nothing of it is
        left; the address taken, the row keeps only the owner's reference (for a retry) until it expires."""
        try:
            async with self._sessions.begin() as session:
                pending = await pending_credentials.pending(session, pending_id)
                if pending is None or pending.sign_up is None:
                    return await self._created_before(session, reference, pending)
                sign_up = pending_credentials.sign_up_from(pending.sign_up)
                customer = self._insert(session, sign_up, reference, pending.password_hash)
                await pending_credentials.consume(session, pending)
                await session.flush()
            return CustomerCreated(True, reference, None, customer.created_at, customer.updated_at)
        except IntegrityError:
            pass
        async with self._sessions.begin() as session:
            ours = await self._ours(reference)
            pending = await pending_credentials.pending(session, pending_id)
            if ours is not None or pending is None or pending.sign_up is None:
                return ours or await self._created_before(session, reference, pending)
            owner = await session.scalar(
                select(Customer).where(Customer.email_key == email_key(str(pending.sign_up["email"])))
            )
            if owner is None:  # the owner was anonymized between our insert and this read: try again
                raise RuntimeError("email uniqueness conflict vanished; retrying")
            pending.sign_up, pending.password_hash = None, None  # nothing personal waits any longer
            pending.owner_reference = owner.customer_reference
        return CustomerCreated(False, reference, owner.customer_reference)

    async def _created_before(
        self, session: AsyncSession, reference: str, pending: PendingCredential | None
    ) -> CustomerCreated:
        """A retry of a create that committed: the row is ours, or the address was taken."""
        ours = await self._ours(reference)
        if ours is not None:
            return ours
        if pending is not None and pending.owner_reference is not None:
            return CustomerCreated(False, reference, pending.owner_reference)
        raise ApplicationError(
            f"the sign-up of {reference} is no longer pending (older than ACCOUNTS_PENDING_CREDENTIAL_LIFETIME)",
            type="PendingCredentialGone",
            non_retryable=True,
        )

    async def _ours(self, reference: str) -> CustomerCreated | None:
        async with self._sessions() as session:
            ours = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        return None if ours is None else CustomerCreated(True, reference, None, ours.created_at, ours.updated_at)

    @staticmethod
    def _insert(session: AsyncSession, sign_up: SignUp, reference: str, password_hash: str | None) -> Customer:
        customer = Customer(**customer_columns(sign_up, customer_reference=reference, password_hash=password_hash))
        session.add(customer)
        audit.record(
            session,
            customer_reference=reference,
            event="registration_started",
            channel=sign_up.channel,
            actor=reference,
        )
        return customer

    @activity.defn
    async def activate_customer(self, request: ActivationInput) -> Activated:
        activated = False
        async with self._sessions.begin() as session:
            customer = await load_customer(session, request.customer_reference, for_update=True)
            if customer.anonymized_at is not None:  # an activation still in flight when the account went
                raise ApplicationError(
                    f"customer {request.customer_reference} is anonymized",
                    type="CustomerAnonymized",
                    non_retryable=True,
                )
            if await activate(session, customer, now=utcnow()):
                activated = True
                audit.record(
                    session,
                    customer_reference=customer.customer_reference,
                    event="email_verified" if request.method == "link" else "verified_manually",
                    channel=request.channel,
                    actor=request.actor,
                    details={"reason": request.reason} if request.reason else {},
                )
            assert customer.registered_at is not None
        if activated:  # committed: a retry finds the account active and counts nothing
            metrics.REGISTRATIONS_VERIFIED.inc()
        return Activated(customer.registered_at)

    @activity.defn
    async def replace_password_hash(self, rehash: Rehash) -> bool:
        async with self._sessions.begin() as session:
            old_hash, new_hash = rehash.old_hash, rehash.new_hash
            if rehash.credential_id is not None:
                pending = await pending_credentials.pending(session, rehash.credential_id)
                if pending is None:  # applied by an earlier attempt, or expired: the next sign-in tries again
                    return False
                old_hash, new_hash = pending.replaces_hash, pending.password_hash
                await pending_credentials.consume(session, pending)
            if old_hash is None or new_hash is None:
                return False
            result = await session.execute(
                update(Customer)
                .where(
                    Customer.customer_reference == rehash.customer_reference,
                    Customer.password_hash == old_hash,
                )
                .values(password_hash=new_hash)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @activity.defn
    async def expire_registration(self, request: ExpiryInput) -> None:
        key = request.idempotency_key or f"registration-expired:{request.customer_reference}"
        async with self._sessions.begin() as session:
            customer = await load_customer(session, request.customer_reference, for_update=True)
            if customer.registered_at is not None or customer.anonymized_at is not None:
                return
            if await audit.recorded(session, key):  # a retry after a committed attempt ("keep" leaves the row)
                return
            now = utcnow()
            await anonymization.kill_tokens(session, customer.id, now=now)
            anonymize = request.action == "anonymize"
            if anonymize:
                await anonymization.scrub(session, customer, now=now)
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event="registration_expired",
                channel=request.channel,
                actor="system",
                details={"action": request.action},
                idempotency_key=key,
            )
        metrics.REGISTRATIONS_EXPIRED.inc()  # committed; a retry finds its audit key and returns above
