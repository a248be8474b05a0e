"""Per-customer row locks for writes that read before they decide (address defaults, profile changes)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import Customer


async def lock_customer(session: AsyncSession, *, customer_id: int) -> Customer:
    """The customer's row, locked until the transaction ends, and read again under the lock."""
    customer = await locked_customer(session, Customer.id == customer_id)
    if customer is None:
        raise LookupError(f"customer id {customer_id} does not exist")
    return customer


async def locked_customer(session: AsyncSession, which: ColumnElement[bool]) -> Customer | None:
    """The row `which` names, locked until the transaction ends and read once under the lock (None when
    there is no such row)."""
    await take_customer_lock(session, which)
    return await session.scalar(select(Customer).where(which).execution_options(populate_existing=True))


async def take_customer_lock(session: AsyncSession, which: ColumnElement[bool]) -> None:
    """Lock the row `which` names until the transaction ends, reading nothing (a caller that needs the row
    reads it after this, as lock_customer does).

    A write that changes nothing, rather than SELECT ... FOR UPDATE: SQLite ignores FOR UPDATE, and its
    driver runs reads outside a transaction until the first write, so only a write makes later reads
    of the same transaction current. On PostgreSQL it takes the row lock; on SQLite the database lock.
    `updated_at` is named so that its onupdate default does not fire.
    """
    await session.execute(
        update(Customer)
        .where(which)
        .values(updated_at=Customer.updated_at)
        .execution_options(synchronize_session=False)
    )
