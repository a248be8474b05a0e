"""What every back-office area shares: the sessions, the client and the settings, the audit record of a
staff action (channel `backoffice`, the staff member's name as actor) and the customer lookups.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import audit
from accounts.db import SessionFactory
from accounts.locks import lock_customer
from accounts.models import Customer
from accounts.settings import Settings
from accounts.staff import StaffMember
from backoffice.permissions import CustomerAnonymized, CustomerNotFound
from starter.client import AccountsClient

CHANNEL = "backoffice"


class Area:
    """The base of each area's use cases; `backoffice.BackOffice` is composed of them."""

    def __init__(self, sessions: SessionFactory, accounts: AccountsClient, settings: Settings) -> None:
        self._sessions = sessions
        self._accounts = accounts
        self._settings = settings

    # audit

    def _audit(
        self, session: AsyncSession, subject: str, event: str, staff: StaffMember, details: dict[str, Any] | None = None
    ) -> None:
        audit.record(session, customer_reference=subject, event=event, channel=CHANNEL, actor=staff.name,
                     details=details)  # fmt: skip

    async def _record(self, subject: str, event: str, staff: StaffMember) -> None:
        async with self._sessions.begin() as session:
            self._audit(session, subject, event, staff)


async def find_customer(session: AsyncSession, customer_reference: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))


async def require_customer(session: AsyncSession, customer_reference: str) -> Customer:
    customer = await find_customer(session, customer_reference)
    if customer is None:
        raise CustomerNotFound(customer_reference)
    return customer


async def writable_customer(session: AsyncSession, customer_reference: str) -> Customer:
    """The customer's row, locked for this transaction; anonymized customers take no new data."""
    customer = await require_customer(session, customer_reference)
    customer = await lock_customer(session, customer_id=customer.id)
    if customer.anonymized_at is not None:
        raise CustomerAnonymized(customer_reference)
    return customer
