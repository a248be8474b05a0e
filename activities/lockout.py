"""Database side of lockout windows: set and lift locks, close windows. Idempotent under retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, update
from temporalio import activity

from accounts import audit
from accounts.db import SessionFactory
from accounts.models import LoginThrottle, utcnow


@dataclass
class SetLock:
    subject: str
    locked_until: datetime
    customer_reference: str | None
    idempotency_key: str


@dataclass
class LiftLock:
    subject: str
    customer_reference: str | None
    lifted_by: str  # "timer" or the support agent
    idempotency_key: str


class LockoutActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def set_lock(self, request: SetLock) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.subject == request.subject)
                .values(locked_until=request.locked_until)
            )
            if request.customer_reference and not await audit.recorded(session, f"{request.idempotency_key}/set"):
                audit.record(
                    session,
                    customer_reference=request.customer_reference,
                    event="account_locked",
                    channel="storefront",
                    actor="system",
                    details={"locked_until": request.locked_until.isoformat()},
                    idempotency_key=f"{request.idempotency_key}/set",
                )

    @activity.defn
    async def lift_lock(self, request: LiftLock) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.subject == request.subject)
                .values(locked_until=None, attempts=0, window_ends_at=utcnow())
            )
            if request.customer_reference and not await audit.recorded(session, f"{request.idempotency_key}/lift"):
                audit.record(
                    session,
                    customer_reference=request.customer_reference,
                    event="account_unlocked",
                    channel="storefront" if request.lifted_by in ("timer", "password-reset") else "backoffice",
                    actor="system" if request.lifted_by == "timer" else request.lifted_by,
                    idempotency_key=f"{request.idempotency_key}/lift",
                )

    @activity.defn
    async def close_window(self, subject: str) -> None:
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                update(LoginThrottle)
                .where(
                    LoginThrottle.subject == subject,
                    or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
                )
                .values(attempts=0)
            )
