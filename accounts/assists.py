"""Agent assistance (issue 18): an agent acting for a customer, and the agents' customer search.

One assistance session is one `agent_assists` row and one workflow `assist:{ref}:{id}` (workflows/assist.py).
Its impersonation token (accounts/access_tokens.py: `act` names the agent, `sid` the row) is good while the
row is neither ended nor past `expires_at`: api/auth.py asks `assist_live` in the query that reads the
customer, so ending the session (DELETE of the token, an admin in the back office) kills the token at once.
There is no refresh: nothing of a session outlives ACCOUNTS_AGENT_IMPERSONATION_TTL.

What an impersonation token must never do (change the password or the email, delete the account, manage
MFA) is refused by one guard, `api.auth.InPerson`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from accounts import audit
from accounts.models import AgentAssist, Customer, Staff

CHANNEL = "agent"  # the audit channel of what an assistance session does

MAX_QUERY = 100  # characters of a search query: a prefix longer than any name or address finds nothing anyway


def assist_live(assist_id: Any, now: datetime) -> ColumnElement[bool]:
    """Whether the assistance session (a column or a value) is neither ended nor expired, and its agent is
    still enabled and not signed out since it began (disabling a member, or their sign-out everywhere,
    ends what they were doing for customers too, for good: enabling them again revives nothing)."""
    return exists().where(
        AgentAssist.id == assist_id,
        AgentAssist.ended_at.is_(None),
        AgentAssist.expires_at > now,
        Staff.id == AgentAssist.staff_id,
        Staff.disabled_at.is_(None),
        or_(Staff.sessions_revoked_at.is_(None), Staff.sessions_revoked_at < AgentAssist.started_at),
    )


async def live_assists(session: AsyncSession, customer_id: int, now: datetime) -> list[AgentAssist]:
    """The customer's running assistance sessions (those whose token works), newest first."""
    rows = await session.scalars(
        select(AgentAssist)
        .where(AgentAssist.customer_id == customer_id, assist_live(AgentAssist.id, now))
        .order_by(AgentAssist.started_at.desc(), AgentAssist.id)
    )
    return list(rows)


async def close(session: AsyncSession, assist_id: str, *, reason: str, now: datetime) -> bool:
    """End the session (one conditional UPDATE: the first end wins); False when it had ended before."""
    ended = await session.execute(
        update(AgentAssist)
        .where(AgentAssist.id == assist_id, AgentAssist.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason),
        execution_options={"synchronize_session": False},
    )
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def record_for(
    session: AsyncSession, row: AgentAssist, event: str, details: dict[str, str], idempotency_key: str | None = None
) -> None:
    """An audit event of the session's: the agent as actor, the customer as subject, the session in details."""
    audit.record(
        session,
        customer_reference=row.customer_reference,
        event=event,
        channel=CHANNEL,
        actor=audit.AGENT_ACTOR_PREFIX + row.agent,
        details={"assist": row.id, **details},
        idempotency_key=idempotency_key,
    )


@dataclass(frozen=True)
class FoundCustomer:
    customer_reference: str
    email: str
    first_name: str | None
    last_name: str | None


def _prefix(column: Any, text: str) -> ColumnElement[bool]:
    # LIKE with its wildcards escaped: "50%" looks for that text, not for everything starting with "50"
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"{escaped}%", escape="\\")


async def search_customers(
    session: AsyncSession, query: str, *, offset: int, limit: int
) -> tuple[list[FoundCustomer], int]:
    """Customers whose email, first name or last name starts with `query` (case-insensitive), by reference;
    anonymized ones never. Returns one page and the number of all matches."""
    text = query.strip()[:MAX_QUERY]
    condition = and_(
        Customer.anonymized_at.is_(None),
        or_(_prefix(Customer.email, text), _prefix(Customer.first_name, text), _prefix(Customer.last_name, text)),
    )
    total = await session.scalar(select(func.count()).select_from(Customer).where(condition)) or 0
    rows = await session.execute(
        select(Customer.customer_reference, Customer.email, Customer.first_name, Customer.last_name)
        .where(condition)
        .order_by(Customer.id)
        .offset(offset)
        .limit(limit)
    )
    return [FoundCustomer(*row) for row in rows], total
