"""Audit trail: one row per thing that happened to a customer, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import AuditEvent


def entry(
    *,
    customer_reference: str,
    event: str,
    channel: str,
    actor: str,
    details: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """An audit row's columns: `record` adds one to a session; a bulk writer inserts many at once."""
    return {
        "customer_reference": customer_reference,
        "event": event,
        "channel": channel,
        "actor": actor,
        "details": details or {},
        "idempotency_key": idempotency_key,
    }


def record(
    session: AsyncSession,
    *,
    customer_reference: str,
    event: str,
    channel: str,
    actor: str,
    details: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            **entry(
                customer_reference=customer_reference,
                event=event,
                channel=channel,
                actor=actor,
                details=details,
                idempotency_key=idempotency_key,
            )
        )
    )


async def recorded(session: AsyncSession, idempotency_key: str) -> bool:
    """Whether the step with this key already happened: activities check it to stay idempotent."""
    found = await session.scalar(select(AuditEvent.id).where(AuditEvent.idempotency_key == idempotency_key))
    return found is not None
