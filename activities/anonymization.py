"""Database side of account deletion: the one transaction that turns a customer into an anonymous row."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts import anonymization, audit
from accounts.db import SessionFactory
from accounts.models import Address, Customer, LoginThrottle, utcnow
from accounts.refresh_tokens import RefreshToken
from accounts.throttle import customer_subject


@dataclass
class Anonymize:
    customer_reference: str
    channel: str
    actor: str
    idempotency_key: str


class AnonymizationActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def anonymize_customer(self, request: Anonymize) -> None:
        """Scrub the row, drop addresses, kill one-time and refresh tokens, forget the lockout count and
        record `customer_anonymized`: all or nothing, once per idempotency key. Orders are not touched."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            customer = await session.scalar(
                select(Customer).where(Customer.customer_reference == request.customer_reference).with_for_update()
            )
            if customer is None:
                raise ApplicationError(
                    f"customer {request.customer_reference} does not exist", type="NoSuchCustomer", non_retryable=True
                )
            now = utcnow()
            # An expired registration may have scrubbed the row already: a second scrub would only churn it.
            if customer.anonymized_at is None:
                await anonymization.scrub(session, customer, now=now)
            customer.default_billing_address_id = None
            customer.default_shipping_address_id = None
            customer.preferred_shipping_method = None
            customer.updated_at = now
            await session.flush()  # the defaults go before the addresses they point at
            await session.execute(delete(Address).where(Address.customer_id == customer.id))
            await anonymization.kill_tokens(session, customer.id, now=now)
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.customer_id == customer.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.execute(
                delete(LoginThrottle).where(LoginThrottle.subject == customer_subject(customer.customer_reference))
            )
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event="customer_anonymized",
                channel=request.channel,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
            )
