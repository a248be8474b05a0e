"""Agent assistance's side effects (workflows/assist.py): its steps in the customer's audit trail, its end.

Every row names the agent as actor (`agent:<name>`, read from the session's row: no payload carries it)
and the customer as subject, under the step's key, so a retried step writes once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from temporalio import activity

from accounts import assists, audit
from accounts.db import SessionFactory
from accounts.models import AgentAssist, utcnow


@dataclass
class AssistStep:
    assist_id: str
    event: str  # assist_started | assist_action
    idempotency_key: str
    details: dict[str, str] = field(default_factory=dict)  # an action: method and route template, no data


@dataclass
class AssistClose:
    assist_id: str
    reason: str  # token_deleted | ended_by_admin | expired
    idempotency_key: str
    ended_by: str | None = None  # who ended it (an agent, an admin); None at expiry


class AssistActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def record_assist_step(self, step: AssistStep) -> bool:
        """One step in the audit trail; False when it was recorded before (a retry)."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, step.idempotency_key):
                return False
            row = await session.scalar(select(AgentAssist).where(AgentAssist.id == step.assist_id))
            if row is None:  # the customer was deleted meanwhile (the row went with them)
                return False
            assists.record_for(session, row, step.event, step.details, step.idempotency_key)
            return True

    @activity.defn
    async def close_assist(self, end: AssistClose) -> bool:
        """End the session (its token dies with it) and audit the end; False when it had ended before."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(AgentAssist).where(AgentAssist.id == end.assist_id))
            if row is None:
                return False
            closed = await assists.close(session, row.id, reason=end.reason, now=utcnow())
            if not await audit.recorded(session, end.idempotency_key):
                details = {"reason": end.reason}
                if end.ended_by is not None:
                    details["ended_by"] = end.ended_by
                assists.record_for(session, row, "assist_ended", details, end.idempotency_key)
            return closed
