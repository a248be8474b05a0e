"""The customer an activity works on. A missing customer fails the activity for good: retrying
cannot make it appear (the database was reset, or the reference is wrong)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from accounts.locks import locked_customer
from accounts.models import Customer


async def load_customer(session: AsyncSession, customer_reference: str, *, for_update: bool = False) -> Customer:
    """`for_update`: the row locked until the transaction ends, on SQLite too (accounts.locks: SQLite
    ignores FOR UPDATE), and read again under the lock, so a decision on it sees concurrent writes."""
    which = Customer.customer_reference == customer_reference
    if for_update:
        customer = await locked_customer(session, which)
    else:
        customer = await session.scalar(select(Customer).where(which))
    if customer is None:
        raise ApplicationError(
            f"customer {customer_reference} does not exist", type="NoSuchCustomer", non_retryable=True
        )
    return customer
