"""Atomic failed-login counting: the bound on password verifications per lockout window.

Before a password is verified, `reserve` takes one attempt for each subject (customer, client IP,
known device) with a single conditional UPDATE: below the threshold, inside the window, not locked.
However many requests race, at most `max_failures` reservations succeed per window, so at most that
many verifications happen. A successful login gives its reservation back.

Windows end by the database clock (`window_ends_at`). A failure that reaches the threshold locks the
subject: `lock` here (client IPs, unknown addresses, devices, staff: no workflow hears of them), or a
customer's lockout workflow (it escalates, emails, and support can lift it). Until then the threshold
itself blocks.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError

from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import LoginThrottle, utcnow


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: timedelta
    lock_duration: timedelta


@dataclass(frozen=True)
class Reservation:
    subject: str
    attempts: int  # including this one
    window_ends_at: datetime
    opened_window: bool  # the first attempt of a new window: the lockout workflow must hear of it

    def crossed(self, policy: ThrottlePolicy) -> bool:
        return self.attempts == policy.max_failures

    def refusal_after(self, policy: ThrottlePolicy) -> Blocked | None:
        """What `reserve` answers the next attempt once this one reached the threshold (the lock pending),
        as `_retry_after` says it; None below the threshold."""
        if not self.crossed(policy):
            return None
        if not policy.lock_duration:
            return Blocked(self.subject, self.window_ends_at - utcnow())
        return Blocked(self.subject, policy.lock_duration)

    @property
    def kind(self) -> str:
        """customer | email | ip: what the subject counts failures of (its prefix, see the *_subject functions)."""
        return self.subject.partition(":")[0]


class Blocked(Exception):
    def __init__(self, subject: str, retry_after: timedelta) -> None:
        super().__init__(f"{subject} is blocked")
        self.subject = subject
        self.retry_after = retry_after


def customer_subject(customer_reference: str) -> str:
    return f"customer:{customer_reference}"


def keyed_subject(kind: str, value: str, secret: str) -> str:
    """A subject that names its value by a keyed hash: workflow ids and rows hold no address or name,
    and nobody without the secret can enumerate them back."""
    return f"{kind}:" + hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def email_subject(email: str, secret: str) -> str:
    """Failures for an address without an account are counted too, so that the answers (401s, then
    429s) are the same whether or not the address has an account."""
    return keyed_subject("email", email_key(email), secret)


def ip_subject(ip: str, secret: str) -> str:
    return keyed_subject("ip", ip, secret)


async def reserve(sessions: SessionFactory, subject: str, policy: ThrottlePolicy) -> Reservation:
    """Take one attempt, or raise Blocked. A count of zero, or a window past its end by the database
    clock, means no window is open: this one opens it.

    At the threshold a subject stays blocked until it is locked (`lock`, or its workflow's activity) and
    the lock ends; if no lock ever comes (Temporal down), it goes free one lock duration after its window.
    """
    table = LoginThrottle
    # A blocked subject is refused by one read: no write transaction, which is what a flood of refusals
    # would otherwise queue on (SQLite has one writer; PostgreSQL would take the row lock for nothing).
    async with sessions() as session:
        existing = await session.scalar(select(table).where(table.subject == subject))
    if existing is not None and _blocks(existing, policy, utcnow()):
        raise Blocked(subject, _retry_after(existing, policy, utcnow()))
    for _ in range(3):
        now = utcnow()
        not_locked = or_(table.locked_until.is_(None), table.locked_until <= now)
        # A count of zero, or a window past its end by the database clock, starts a new window.
        fresh = or_(table.attempts == 0, table.window_ends_at <= now)
        async with sessions.begin() as session:
            row = (
                await session.execute(
                    update(table)
                    .where(
                        table.subject == subject,
                        not_locked,
                        # below the threshold, or it was reached and no lock followed for a lock duration
                        or_(table.attempts < policy.max_failures, table.window_ends_at <= now - policy.lock_duration),
                    )
                    .values(
                        attempts=case((fresh, 1), else_=table.attempts + 1),
                        window_ends_at=case((fresh, now + policy.window), else_=table.window_ends_at),
                    )
                    .returning(table.attempts, table.window_ends_at)
                )
            ).one_or_none()
            if row is not None:
                return Reservation(subject, row.attempts, row.window_ends_at, opened_window=row.attempts == 1)
            existing = await session.scalar(select(table).where(table.subject == subject))
            if existing is not None:
                if _blocks(existing, policy, now):
                    raise Blocked(subject, _retry_after(existing, policy, now))
                # Not blocked: the row appeared between the UPDATE and this read (another request's first
                # attempt committed it) or was released meanwhile. Go round again rather than refuse.
                continue
        try:
            async with sessions.begin() as session:
                session.add(LoginThrottle(subject=subject, attempts=1, window_ends_at=now + policy.window))
            return Reservation(subject, 1, now + policy.window, opened_window=True)
        except IntegrityError:
            continue  # another request created the row first: go round once more
    raise Blocked(subject, policy.lock_duration)


async def release(sessions: SessionFactory, reservation: Reservation, *, forget_failures: bool) -> None:
    """Give back a reservation that was no failure; a customer's successful login also clears its count."""
    table = LoginThrottle
    values = {"attempts": 0} if forget_failures else {"attempts": table.attempts - 1}
    async with sessions.begin() as session:
        await session.execute(
            update(table).where(table.subject == reservation.subject, table.attempts > 0).values(**values)
        )


async def lock(sessions: SessionFactory, reservation: Reservation, policy: ThrottlePolicy) -> datetime:
    """Lock a subject whose failure reached the threshold, for one lock duration from now, by the database
    clock alone; returns when the lock ends. Its window ends with it: the next attempt after the lock opens
    a fresh one."""
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.subject == reservation.subject)
            .values(locked_until=now + policy.lock_duration, window_ends_at=now)
        )
    return now + policy.lock_duration


def _blocks(row: LoginThrottle, policy: ThrottlePolicy, now: datetime) -> bool:
    """The negation of reserve's UPDATE condition: locked, or at the threshold with its lock still pending."""
    if row.locked_until is not None and row.locked_until > now:
        return True
    return row.attempts >= policy.max_failures and row.window_ends_at > now - policy.lock_duration


def _retry_after(row: LoginThrottle, policy: ThrottlePolicy, now: datetime) -> timedelta:
    if row.locked_until is not None and row.locked_until > now:
        return row.locked_until - now
    if not policy.lock_duration:  # a plain bound per window (no lock follows): free when the window ends
        return row.window_ends_at - now
    return policy.lock_duration  # threshold reached, the lock is being applied
