"""Database side of an email change: is the new address free, retire superseded links, the switch itself,
and its undo from the old address."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from accounts import anonymization, audit
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import AuditEvent, Customer, OneTimeToken, utcnow
from accounts.refresh_tokens import end_every_session
from activities.lookup import load_customer

EMAIL_CHANGE = "email_change"  # one_time_tokens.purpose of the links sent to the new address
EMAIL_CHANGE_UNDO = "email_change_undo"  # ... and of the undo links sent to the old one
UNDONE = "undone"
UNDO_BLOCKED = "undo_blocked"  # the old address has another account now: sessions ended, support decides


@dataclass
class EmailCheck:
    customer_reference: str
    new_email: str


@dataclass
class EmailCheckResult:
    outcome: str  # available | unchanged (already the account's address) | taken | inactive
    current_email: str
    taken_by: str | None = None  # reference of the account that has the address


@dataclass
class RetireLinks:
    customer_reference: str
    token_hashes: list[str]


@dataclass
class ApplyEmailChange:
    customer_reference: str
    new_email: str
    token_hash: str
    channel: str
    actor: str
    idempotency_key: str


@dataclass
class EmailChangeApplied:
    outcome: str  # changed | taken (someone registered the address meanwhile) | inactive
    taken_by: str | None = None


@dataclass
class UndoEmailChange:
    customer_reference: str
    restore_email: str
    token_hashes: list[str]  # the undo links that die: the one used and those of every later change
    idempotency_key: str


@dataclass
class EmailChangeUndone:
    outcome: str  # undone | undo_blocked (the address has another account now) | inactive


class EmailChangeActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def check_new_email(self, request: EmailCheck) -> EmailCheckResult:
        async with self._sessions() as session:
            customer = await load_customer(session, request.customer_reference)
            if customer.status != "verified":
                return EmailCheckResult("inactive", customer.email)
            if customer.email_key == email_key(request.new_email):
                return EmailCheckResult("unchanged", customer.email)
            owner = await session.scalar(
                select(Customer.customer_reference).where(Customer.email_key == email_key(request.new_email))
            )
        if owner is not None:
            return EmailCheckResult("taken", customer.email, owner)
        return EmailCheckResult("available", customer.email)

    @activity.defn
    async def retire_links(self, request: RetireLinks) -> None:
        """Mark superseded or expired links used, so the database agrees with the workflow that they are dead."""
        if not request.token_hashes:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(OneTimeToken)
                .where(
                    OneTimeToken.token_hash.in_(request.token_hashes),
                    OneTimeToken.purpose == EMAIL_CHANGE,
                    OneTimeToken.used_at.is_(None),
                )
                .values(used_at=utcnow())
            )

    @activity.defn
    async def apply_email_change(self, request: ApplyEmailChange) -> EmailChangeApplied:
        """Switch the address in one transaction: row, used link, every session ended, audit event.

        The unique index on email_key decides a race with a registration of the same address."""
        try:
            async with self._sessions.begin() as session:
                if await audit.recorded(session, request.idempotency_key):
                    return EmailChangeApplied("changed")
                customer = await load_customer(session, request.customer_reference, for_update=True)
                if customer.status != "verified":
                    return EmailChangeApplied("inactive")
                now = utcnow()
                customer.email = request.new_email
                customer.email_key = email_key(request.new_email)
                customer.updated_at = now
                await session.execute(
                    update(OneTimeToken)
                    .where(OneTimeToken.token_hash == request.token_hash, OneTimeToken.purpose == EMAIL_CHANGE)
                    .values(used_at=now)
                )
                # the link came without a session: every one ends, the thief's among them (docs/architecture.md)
                ended = await end_every_session(session, customer, now=now)
                audit.record(
                    session,
                    customer_reference=customer.customer_reference,
                    event="email_changed",
                    channel=request.channel,
                    actor=request.actor,
                    details={"sessionsEnded": ended},
                    idempotency_key=request.idempotency_key,
                )
                await session.flush()
        except IntegrityError:
            async with self._sessions() as session:
                owner = await session.scalar(
                    select(Customer.customer_reference).where(Customer.email_key == email_key(request.new_email))
                )
            return EmailChangeApplied("taken", owner)
        return EmailChangeApplied("changed")

    @activity.defn
    async def undo_email_change(self, request: UndoEmailChange) -> EmailChangeUndone:
        """The old address's link, in one transaction: the address comes back, every session ends, the undo
        links die (and any pending confirmation link), audit event. Once per idempotency key.

        Taken meanwhile by a sign-up that was never confirmed (a thief can start one for any address, to block
        this undo): that sign-up never proved the address and the link's reader just did, so it is displaced
        (an undeliverable address, its links dead, event email_released) and the address comes back.
        Taken by an account that confirmed it: the address stays, but the thief is shut out all the same:
        sessions end and the password stops working (password_reset_required). Support decides who gets the
        address (event email_change_undo_blocked)."""
        async with self._sessions.begin() as session:
            done = await session.scalar(select(AuditEvent).where(AuditEvent.idempotency_key == request.idempotency_key))
            if done is not None:
                return EmailChangeUndone(UNDO_BLOCKED if done.event == "email_change_undo_blocked" else UNDONE)
            customer = await load_customer(session, request.customer_reference, for_update=True)
            if customer.status != "verified":
                return EmailChangeUndone("inactive")
            now = utcnow()
            await session.execute(
                update(OneTimeToken)
                .where(
                    OneTimeToken.customer_id == customer.id,
                    OneTimeToken.used_at.is_(None),
                    (OneTimeToken.token_hash.in_(request.token_hashes) & (OneTimeToken.purpose == EMAIL_CHANGE_UNDO))
                    | (OneTimeToken.purpose == EMAIL_CHANGE),
                )
                .values(used_at=now)
            )
            ended = await end_every_session(session, customer, now=now)
            holder = await session.scalar(
                select(Customer)
                .where(Customer.email_key == email_key(request.restore_email), Customer.id != customer.id)
                .with_for_update()
            )
            if holder is not None and holder.registered_at is None and holder.anonymized_at is None:
                await _release_address(session, holder, to=customer.customer_reference, now=now)
                await session.flush()  # the unique email_key is free before this customer takes it back
                holder = None
            if holder is not None:
                customer.password_reset_required = True
                event = "email_change_undo_blocked"
                outcome, details = UNDO_BLOCKED, {"heldBy": holder.customer_reference}
            else:
                customer.email = request.restore_email
                customer.email_key = email_key(request.restore_email)
                event, outcome, details = "email_change_undone", UNDONE, {}
            customer.password_reset_required = True  # both ways: whoever made the change may know the password
            customer.updated_at = now
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event=event,
                channel="email",
                actor="customer",  # whoever reads the old address's mail
                details={**details, "sessionsEnded": ended},
                idempotency_key=request.idempotency_key,
            )
        return EmailChangeUndone(outcome)


RELEASED_EMAIL_DOMAIN = "released.invalid"  # RFC 2606: can never be delivered


async def _release_address(session: AsyncSession, holder: Customer, *, to: str, now: datetime) -> None:
    """An unconfirmed sign-up gives up an address whose owner proved it: an undeliverable one instead, and its
    links (the verification link sits in that owner's inbox) die. Its registration expires as any other."""
    placeholder = f"{secrets.token_hex(12)}@{RELEASED_EMAIL_DOMAIN}"
    holder.email = holder.email_key = placeholder
    await anonymization.kill_tokens(session, holder.id, now=now)
    audit.record(
        session,
        customer_reference=holder.customer_reference,
        event="email_released",
        channel="email",
        actor="system",
        details={"to": to},  # the reference that proved the address
    )
