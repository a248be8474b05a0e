"""Inactive accounts: the daily sweep, and each inactive customer's lifecycle `inactivity:{ref}`.

    InactivitySweepWorkflow (the `inactivity-sweep` Schedule, starter/schedules.py)
        page after page of customers with no sign-in for ACCOUNTS_INACTIVE_REMIND_AFTER (keyset by id):
        an `inactivity:{ref}` lifecycle started for each; continues as new after `pages_per_run` pages

    InactivityWorkflow (one per customer; waits for `signed_in`, `exempted`)
        standing -> reminded, "sign in to keep your account" email
        warning gap passes   -> standing -> warned, the last warning
        retirement gap passes -> anonymize: standing -> retired, the deletion lifecycle started
                                 (AnonymizationWorkflow as an abandoned child: it outlives this run)
                                 keep: standing -> kept
        a sign-in or an exemption at any point ends it (one landing while a step runs: before its email);
        every step re-checks the customer in the database (accounts/inactivity.advance), so a lost signal
        ends it at the next step instead

The warning and the retirement are timed from the reminder (gaps of WARN_AFTER - REMIND_AFTER and
RETIRE_AFTER - WARN_AFTER), so a customer inactive for longer than RETIRE_AFTER when the feature is
turned on still gets both emails and their full notice.

Its other parts: activities activities/inactivity.py and activities/emails.py; queries
accounts/inactivity.py; the sign-in's signal starter/inactivity.py; the exemption backoffice/inactivity.py;
emails templates/emails/<locale>/inactivity_{reminder,warning}.*.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from accounts.inactivity import EXEMPT, KEPT, REMINDED, RETIRED, WARNED
    from accounts.temporal import CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.emails import EmailActivities, NoticeInput
    from activities.inactivity import (
        CHANNEL,
        Advance,
        Conclude,
        InactivityActivities,
        InactivityInput,
        SweepPage,
    )
    from workflows.anonymization import AnonymizationInput, AnonymizationWorkflow, anonymization_id
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS

__all__ = ["InactivityInput", "InactivitySweepWorkflow", "InactivityWorkflow", "SweepInput"]

SIGNED_IN = "signed_in"
EMAILS = {REMINDED: "inactivity_reminder", WARNED: "inactivity_warning"}
# asked only where a signal landed during a step: runs recorded before it sent the email there, and replay it
NO_EMAIL_AFTER_A_SIGNAL = "no-email-after-a-signal"
ACTIVE = "active"  # a step found the customer no longer inactive (a sign-in whose signal did not arrive, ...)


@dataclass
class InactivityResult:
    outcome: str  # signed_in | exempt | active | kept | retired


@workflow.defn
class InactivityWorkflow:
    def __init__(self) -> None:
        self._ended_by: str | None = None

    @workflow.run
    async def run(self, input: InactivityInput) -> InactivityResult:
        ref = input.customer_reference
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(ref)])
        key = lifecycle_key()
        retire_stage = RETIRED if input.action == "anonymize" else KEPT
        steps = [
            (None, REMINDED, timedelta(0)),
            (REMINDED, WARNED, input.warning_gap),
            (WARNED, retire_stage, input.retirement_gap),
        ]
        for from_stage, to_stage, wait in steps:
            if wait:
                with contextlib.suppress(asyncio.TimeoutError):  # the timer ran out: the next step is due
                    await workflow.wait_condition(lambda: self._ended_by is not None, timeout=wait)
            if self._ended_by is not None:
                return await self._conclude(ref, self._ended_by, key)
            moved = await workflow.execute_activity_method(
                InactivityActivities.advance_inactivity,
                Advance(
                    ref, from_stage, to_stage, input.inactive_before, input.open_order_statuses, f"{key}/{to_stage}"
                ),
                **ACTIVITY_OPTIONS,
            )
            if not moved:  # a signal on its way names why; else the database said it (a lost signal, a deletion)
                return await self._conclude(ref, self._ended_by or ACTIVE, key)
            if to_stage in EMAILS and self._ended_by is not None and workflow.patched(NO_EMAIL_AFTER_A_SIGNAL):
                # the sign-in or exemption landed while the step ran, after its write: the customer is back
                # (or spared), so no email asking them to sign in; the end clears the stage just set
                return await self._conclude(ref, self._ended_by, key)
            self._enter(to_stage)
            if to_stage in EMAILS:
                deleted_on = workflow.now() + input.retirement_gap
                if to_stage == REMINDED:
                    deleted_on += input.warning_gap
                due_at = deleted_on if retire_stage == RETIRED else None  # kept: no deletion to announce
                await workflow.execute_activity_method(
                    EmailActivities.send_notice,
                    NoticeInput(ref, EMAILS[to_stage], f"{key}/{to_stage}-email", due_at=due_at),
                    **ACTIVITY_OPTIONS,
                    **email_options(bulk=True),
                )
        result = await self._conclude(ref, retire_stage, key)
        if retire_stage == RETIRED:  # the last step: the deletion cancels every running run of the customer
            await self._retire(ref)
        return result

    async def _retire(self, ref: str) -> None:
        """The deletion lifecycle, as support's deletion starts it (abandoned: it outlives this run). It ends
        the customer's running runs first, this one too if it had not closed right after the start."""
        try:
            await workflow.start_child_workflow(
                AnonymizationWorkflow.run,
                AnonymizationInput(ref, CHANNEL, CHANNEL),
                id=anonymization_id(ref),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:  # a deletion is under way already: it anonymizes the account
            workflow.logger.info("the deletion of %s runs already", ref)

    async def _conclude(self, ref: str, outcome: str, key: str) -> InactivityResult:
        await workflow.execute_activity_method(
            InactivityActivities.conclude_inactivity, Conclude(ref, outcome, f"{key}/ended"), **ACTIVITY_OPTIONS
        )
        self._enter(f"ended_{outcome}")
        return InactivityResult(outcome)

    @workflow.signal
    def signed_in(self) -> None:
        """The customer signed in (their standing was cleared by the sign-in itself)."""
        self._ended_by = self._ended_by or SIGNED_IN

    @workflow.signal
    def exempted(self) -> None:
        """Support exempted the customer (backoffice/inactivity.py: standing exempt, audited)."""
        self._ended_by = self._ended_by or EXEMPT

    @workflow.query
    def ended_by(self) -> str | None:
        return self._ended_by

    def _enter(self, stage: str) -> None:
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        workflow.set_current_details(f"Inactivity stage: {stage}")


@dataclass
class SweepInput:
    remind_after: timedelta
    warn_after: timedelta
    retire_after: timedelta
    action: str
    open_order_statuses: list[str] = field(default_factory=list)
    page_size: int = 500
    pages_per_run: int = 100  # then continue as new: about 600 events a run
    # carried by continue-as-new: one run's cutoff for all its pages, the cursor, the counts so far
    inactive_before: datetime | None = None
    cursor: int = 0
    examined: int = 0
    started: int = 0


@dataclass
class SweepResult:
    examined: int
    started: int


@workflow.defn
class InactivitySweepWorkflow:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        if input.inactive_before is None:
            input = replace(input, inactive_before=workflow.now() - input.remind_after)
        assert input.inactive_before is not None
        for _ in range(input.pages_per_run):
            page = await workflow.execute_activity_method(
                InactivityActivities.sweep_inactive_page,
                SweepPage(
                    input.cursor,
                    input.inactive_before,
                    input.page_size,
                    input.warn_after - input.remind_after,
                    input.retire_after - input.warn_after,
                    input.action,
                    input.open_order_statuses,
                ),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                # a database or cluster outage: the next scheduled run goes on anyway
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10),
            )
            input = replace(
                input, cursor=page.cursor, examined=input.examined + page.examined, started=input.started + page.started
            )
            if page.last:
                return SweepResult(input.examined, input.started)
        workflow.continue_as_new(input)
