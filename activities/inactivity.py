"""Inactive accounts' activities: the sweep's page (find inactive customers, start their lifecycles) and
the lifecycle's steps (move the standing, record how it ended). accounts/inactivity.py holds the queries.

Idempotent under retry: a step's audit event carries its key, so a retried step finds it done; a
retried page starts from the cursor its last attempt heartbeated, and a start whose lifecycle runs
already joins it (id-conflict policy USE_EXISTING): a customer never has two.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from accounts import audit, inactivity
from accounts.db import SessionFactory
from accounts.models import utcnow
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes

CHANNEL = "inactivity"  # the audit events' channel and actor, and the deletion's
STARTS_AT_ONCE = 50  # lifecycle starts in flight at once: a page of 500 takes ten round trips of the cluster


def inactivity_id(customer_reference: str) -> str:
    return f"inactivity:{customer_reference}"


@dataclass
class InactivityInput:
    customer_reference: str
    inactive_before: datetime  # no sign-in since then: the sweep's cutoff, re-checked at every step
    warning_gap: timedelta  # reminder -> last warning
    retirement_gap: timedelta  # last warning -> anonymized (or kept)
    action: str  # anonymize | keep
    open_order_statuses: list[str] = field(default_factory=list)


@dataclass
class SweepPage:
    after_id: int
    inactive_before: datetime
    page_size: int
    warning_gap: timedelta
    retirement_gap: timedelta
    action: str
    open_order_statuses: list[str] = field(default_factory=list)


@dataclass
class PageSwept:
    cursor: int  # the last customer id examined: the next page starts after it
    examined: int
    started: int  # starts made; one whose customer's lifecycle runs already joined it (no second run)
    last: bool  # fewer than a page: the sweep is done


@dataclass
class Advance:
    customer_reference: str
    from_stage: str | None
    to_stage: str
    inactive_before: datetime
    open_order_statuses: list[str]
    idempotency_key: str


@dataclass
class Conclude:
    customer_reference: str
    outcome: str  # signed_in | exempt | active (a step found the customer no longer inactive) | kept | retired
    idempotency_key: str


class InactivityActivities:
    def __init__(self, sessions: SessionFactory, client: Client, settings: Settings) -> None:
        self._sessions = sessions
        self._client = client  # starts the lifecycles
        self._settings = settings  # as the worker runs now: the feature turned off, or to keep, ends a run

    @activity.defn
    async def sweep_inactive_page(self, page: SweepPage) -> PageSwept:
        """One page of inactive customers (keyset by id), a lifecycle started for each."""
        details = activity.info().heartbeat_details
        after_id = int(details[0]) if details else page.after_id  # a retry goes on where the last attempt got
        async with self._sessions() as session:
            found = await inactivity.candidates(
                session,
                after_id=after_id,
                inactive_before=page.inactive_before,
                open_statuses=page.open_order_statuses,
                limit=page.page_size,
            )
        started = 0
        for chunk in (found[i : i + STARTS_AT_ONCE] for i in range(0, len(found), STARTS_AT_ONCE)):
            await asyncio.gather(*(self._start(page, candidate.customer_reference) for candidate in chunk))
            started += len(chunk)
            activity.heartbeat(chunk[-1].id)
        return PageSwept(found[-1].id if found else after_id, len(found), started, len(found) < page.page_size)

    async def _start(self, page: SweepPage, customer_reference: str) -> None:
        await self._client.start_workflow(
            "InactivityWorkflow",
            InactivityInput(
                customer_reference,
                page.inactive_before,
                page.warning_gap,
                page.retirement_gap,
                page.action,
                page.open_order_statuses,
            ),
            id=inactivity_id(customer_reference),
            task_queue=activity.info().task_queue,
            # a customer whose lifecycle runs already (a sweep retried, or run twice) keeps that one
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=lifecycle_attributes(customer_reference, CHANNEL),
        )

    @activity.defn
    async def advance_inactivity(self, request: Advance) -> bool:
        """Move the customer's standing one step; False when they are no longer where the lifecycle left
        them (signed in, exempted, deleted, an open order)."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return True
            if not self._still_wanted(request.to_stage):
                return False
            moved = await inactivity.advance(
                session,
                request.customer_reference,
                from_stage=request.from_stage,
                to_stage=request.to_stage,
                inactive_before=request.inactive_before,
                open_statuses=request.open_order_statuses,
                now=utcnow(),
            )
            if moved:
                audit.record(
                    session,
                    customer_reference=request.customer_reference,
                    event=f"inactivity_{request.to_stage}",
                    channel=CHANNEL,
                    actor=CHANNEL,
                    idempotency_key=request.idempotency_key,
                )
            return moved

    def _still_wanted(self, to_stage: str) -> bool:
        """A run started under settings since changed: the feature turned off ends it at its next step, and
        ACCOUNTS_INACTIVE_ACTION turned to keep spares the customer its deletion (its stage is cleared)."""
        if self._settings.inactive_remind_after is None:
            return False
        return to_stage != inactivity.RETIRED or self._settings.inactive_action == "anonymize"

    @activity.defn
    async def conclude_inactivity(self, request: Conclude) -> None:
        """Record how the lifecycle ended (`inactivity_ended`, with the outcome); no running stage stays."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            await inactivity.release(session, request.customer_reference, utcnow())
            audit.record(
                session,
                customer_reference=request.customer_reference,
                event="inactivity_ended",
                channel=CHANNEL,
                actor=CHANNEL,
                details={"outcome": request.outcome},
                idempotency_key=request.idempotency_key,
            )
