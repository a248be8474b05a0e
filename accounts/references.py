"""Customer references (DE--1, DE--2, ...), allocated race-free by one atomic UPDATE ... RETURNING."""

from __future__ import annotations

from sqlalchemy import update

from accounts.db import SessionFactory
from accounts.models import ReferenceCounter

CUSTOMER_COUNTER = "customer"


async def allocate_customer_reference(sessions: SessionFactory, *, prefix: str, skip: int = 0) -> str:
    """The next reference, or one `skip` further on: the numbers skipped are never handed out."""
    async with sessions.begin() as session:
        value = (
            await session.execute(
                update(ReferenceCounter)
                .where(ReferenceCounter.name == CUSTOMER_COUNTER)
                .values(value=ReferenceCounter.value + 1 + skip)
                .returning(ReferenceCounter.value)
            )
        ).scalar_one()
    return f"{prefix}{value}"
