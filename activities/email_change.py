"""Database side of an email change: is the new address free, retire superseded links, and the switch itself."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from temporalio import activity

from accounts import audit
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer, OneTimeToken, utcnow
from activities.lookup import load_customer

EMAIL_CHANGE = "email_change"  # one_time_tokens.purpose of the links sent to the new address


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
        """Switch the address in one transaction: row, used link, audit event. Sessions and tokens stay valid.

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
                audit.record(
                    session,
                    customer_reference=customer.customer_reference,
                    event="email_changed",
                    channel=request.channel,
                    actor=request.actor,
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
