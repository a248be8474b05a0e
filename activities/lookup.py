"""The customer an activity works on. A missing customer fails the activity for good: retrying
cannot make it appear (the database was reset, or the reference is wrong)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from accounts.models import Customer


async def load_customer(session: AsyncSession, customer_reference: str, *, for_update: bool = False) -> Customer:
    statement = select(Customer).where(Customer.customer_reference == customer_reference)
    customer = await session.scalar(statement.with_for_update() if for_update else statement)
    if customer is None:
        raise ApplicationError(
            f"customer {customer_reference} does not exist", type="NoSuchCustomer", non_retryable=True
        )
    return customer
