"""What the email outbox says about one customer's mail: how much went out, how much bounced, and the last bounce.

Support reads it in `accounts status`; the bounces themselves are audit events (`email_bounced`) too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import EmailOutbox


@dataclass(frozen=True)
class LastBounce:
    template: str
    smtp_code: int | None


@dataclass(frozen=True)
class Deliveries:
    sent: int
    bounced: int
    last_bounce: LastBounce | None

    def line(self) -> str:
        """`emails: 2 sent, 1 bounced (last: verify, 550)`."""
        text = f"emails: {self.sent} sent, {self.bounced} bounced"
        if self.last_bounce is not None:
            text += f" (last: {self.last_bounce.template}, {self.last_bounce.smtp_code or 'no code'})"
        return text


async def deliveries(session: AsyncSession, customer_reference: str) -> Deliveries:
    by_status = await session.execute(
        select(EmailOutbox.status, func.count())
        .where(EmailOutbox.customer_reference == customer_reference)
        .group_by(EmailOutbox.status)
    )
    counts = {status: count for status, count in by_status.tuples()}
    last = (
        await session.execute(
            select(EmailOutbox.template, EmailOutbox.smtp_code)
            .where(EmailOutbox.customer_reference == customer_reference, EmailOutbox.status == "bounced")
            .order_by(EmailOutbox.id.desc())
            .limit(1)
        )
    ).first()
    return Deliveries(
        sent=counts.get("sent", 0),
        bounced=counts.get("bounced", 0),
        last_bounce=LastBounce(last.template, last.smtp_code) if last is not None else None,
    )
