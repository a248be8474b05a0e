"""Inactive accounts: who has not signed in for long, where each customer stands, and the sign-in's part.

A customer's standing is two columns of `customers`, written by the inactivity lifecycle's activities
(workflows/inactivity.py), by a sign-in and by support's exemption:

    inactivity_stage  None (nothing under way) | reminded | warned | kept | retired | exempt
    inactivity_since  when the stage was entered

A sign-in moves `last_signed_in_at` (indexed: the sweep's query) when it is a day old or older, or when
the customer stands reminded, warned or kept, and then clears that stage in the same UPDATE; a sign-in of
an active customer writes nothing more than it did. It tells the lifecycle (a signal) only when the stage
it read says one runs, so sign-ins cost Temporal nothing otherwise. Each lifecycle step moves the stage
with one conditional UPDATE (`advance`), which also re-checks everything the sweep checked: a sign-in,
an exemption, a deletion or an open order that came meanwhile ends the lifecycle even when its signal
was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from accounts.models import Customer, Order

REMINDED = "reminded"
WARNED = "warned"
KEPT = "kept"
RETIRED = "retired"
EXEMPT = "exempt"
RUNNING = (REMINDED, WARNED)  # a lifecycle is under way: a sign-in or an exemption tells it
CLEARED_BY_SIGN_IN = (REMINDED, WARNED, KEPT)
SIGN_IN_PRECISION = timedelta(days=1)  # how stale `last_signed_in_at` may get before a sign-in moves it


def needs_sign_in_write(last_signed_in_at: datetime | None, stage: str | None, now: datetime) -> bool:
    """Whether a sign-in must write: its time is a day old (or none), or it ends (or meets) a standing."""
    if stage in CLEARED_BY_SIGN_IN or stage == RETIRED:
        return True
    return last_signed_in_at is None or now - last_signed_in_at >= SIGN_IN_PRECISION


async def record_sign_in(session: AsyncSession, customer_id: int, now: datetime) -> bool:
    """In the sign-in's transaction (the customer's row locked): the sign-in's time, and a reminded, warned
    or kept standing ends. False, writing nothing, when the customer stands retired: their deletion was
    decided and is on its way, so the sign-in is refused (a session the scrub would take moments later)."""
    result = await session.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.inactivity_stage.is_distinct_from(RETIRED))
        .values(
            last_signed_in_at=now,
            inactivity_stage=_cleared(),
            inactivity_since=_cleared_since(now),
        ),
        execution_options={"synchronize_session": False},
    )
    return _rowcount(result) == 1


def _cleared() -> Any:
    return case((Customer.inactivity_stage.in_(CLEARED_BY_SIGN_IN), None), else_=Customer.inactivity_stage)


def _cleared_since(now: datetime) -> Any:
    return case((Customer.inactivity_stage.in_(CLEARED_BY_SIGN_IN), now), else_=Customer.inactivity_since)


def open_order(statuses: list[str]) -> ColumnElement[bool]:
    return exists().where(Order.customer_id == Customer.id, Order.status.in_(statuses))


def inactive(inactive_before: datetime, open_statuses: list[str]) -> ColumnElement[bool]:
    """A verified, not anonymized customer with no sign-in since `inactive_before` (one who never signed
    in: whose row was created before it; an imported customer's at the import) and no open order."""
    never = Customer.last_signed_in_at.is_(None) & (Customer.created_at < inactive_before)
    condition = (
        Customer.registered_at.is_not(None)
        & Customer.anonymized_at.is_(None)
        & ((Customer.last_signed_in_at < inactive_before) | never)
    )
    return condition & ~open_order(open_statuses) if open_statuses else condition


@dataclass
class Candidate:
    id: int
    customer_reference: str


async def candidates(
    session: AsyncSession, *, after_id: int, inactive_before: datetime, open_statuses: list[str], limit: int
) -> list[Candidate]:
    """The next page of customers the sweep starts a lifecycle for (keyset by id: each page one indexed
    query however far the sweep went): inactive and standing nowhere yet."""
    rows = await session.execute(
        select(Customer.id, Customer.customer_reference)
        .where(
            Customer.id > after_id,
            Customer.inactivity_stage.is_(None),
            inactive(inactive_before, open_statuses),
        )
        .order_by(Customer.id)
        .limit(limit)
    )
    return [Candidate(row.id, row.customer_reference) for row in rows]


async def advance(
    session: AsyncSession,
    customer_reference: str,
    *,
    from_stage: str | None,
    to_stage: str,
    inactive_before: datetime,
    open_statuses: list[str],
    now: datetime,
) -> bool:
    """Move the customer from `from_stage` to `to_stage` if they still are where the lifecycle left them
    (no sign-in since `inactive_before`, no exemption, no deletion, no open order); False ends it."""
    stage = Customer.inactivity_stage
    result = await session.execute(
        update(Customer)
        .where(
            Customer.customer_reference == customer_reference,
            stage.is_(None) if from_stage is None else stage == from_stage,
            inactive(inactive_before, open_statuses),
        )
        .values(inactivity_stage=to_stage, inactivity_since=now),
        execution_options={"synchronize_session": False},
    )
    return _rowcount(result) == 1


async def release(session: AsyncSession, customer_reference: str, now: datetime) -> None:
    """The lifecycle ends: a reminded or warned stage it leaves behind (a step found an open order or a
    deletion) is cleared, so the standing shows no lifecycle that no longer runs and a later sweep can
    start one afresh. Kept, retired and exempt stay."""
    await session.execute(
        update(Customer)
        .where(Customer.customer_reference == customer_reference, Customer.inactivity_stage.in_(RUNNING))
        .values(inactivity_stage=None, inactivity_since=now),
        execution_options={"synchronize_session": False},
    )


def exempt(customer: Customer, now: datetime) -> str | None:
    """Support exempts the (row-locked) customer: no lifecycle again. Returns the stage it ends."""
    before = customer.inactivity_stage
    customer.inactivity_stage = EXEMPT
    customer.inactivity_since = now
    return before


@dataclass(frozen=True)
class Timeline:
    """The gaps of a lifecycle: the warning and the retirement come this long after the reminder."""

    remind_after: timedelta
    warn_after: timedelta
    retire_after: timedelta

    @property
    def warning_gap(self) -> timedelta:
        return self.warn_after - self.remind_after

    @property
    def retirement_gap(self) -> timedelta:
        return self.retire_after - self.warn_after


@dataclass(frozen=True)
class Standing:
    """Where a customer stands, for the back office."""

    stage: str  # active | reminded | warned | kept | retired | exempt
    since: datetime | None
    warning_due: datetime | None = None
    retirement_due: datetime | None = None


def standing(customer: Customer, timeline: Timeline | None) -> Standing:
    stage, since = customer.inactivity_stage, customer.inactivity_since
    if stage is None:
        return Standing("active", customer.last_signed_in_at)
    if timeline is None or since is None or stage not in RUNNING:
        return Standing(stage, since)
    if stage == REMINDED:
        warning = since + timeline.warning_gap
        return Standing(stage, since, warning, warning + timeline.retirement_gap)
    return Standing(stage, since, None, since + timeline.retirement_gap)


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
