"""Audit trail: one row per thing that happened to a customer, written in the same transaction as the change.

While an agent acts for a customer (an impersonation token, issue 18), the request runs `acting_for`:
every row written about that customer names the agent as actor (`agent:<name>`) and the assistance
session in its details, whatever the code that writes it passed as actor. One rule in one place, so no
route can forget it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import AuditEvent

AGENT_ACTOR_PREFIX = "agent:"


@dataclass(frozen=True)
class ActingAgent:
    agent: str  # the staff member's name
    customer_reference: str  # the customer they act for (the audit rows' subject)
    assist_id: str  # the assistance session (agent_assists.id)

    @property
    def actor(self) -> str:
        return AGENT_ACTOR_PREFIX + self.agent


_ACTING: contextvars.ContextVar[ActingAgent | None] = contextvars.ContextVar("acting_agent", default=None)


def acting_for(acting: ActingAgent | None) -> None:
    """The rest of this request (its task) acts as `acting` (None: as whoever the code names)."""
    _ACTING.set(acting)


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
    acting = _ACTING.get()
    if acting is not None and acting.customer_reference == customer_reference:
        actor, details = acting.actor, {**(details or {}), "assist": acting.assist_id}
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
