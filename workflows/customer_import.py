"""Customer import: a shop's customer.csv, batch by batch, into the database; a registration for each
customer imported unverified.

    index the stored file (the workflow holds its id and SHA-256, never its content)
    for each batch: check and upsert its rows in one transaction (an activity that heartbeats)
        start the registrations the batches queued, at most emails_per_second (their verification emails)
        the history grows large -> continue as new with the counts and the queue
    cancel (an admin) -> no further batch; rows written stay, their registrations still start
    delete the stored file (its index and the rejected rows stay for the report)
    report: counts, the first 50 row errors, where it stopped

Progress is the `progress` query, the `LifecycleStage` search attribute (indexing, importing,
starting_registrations, completed, cancelled) and the run's current details in the Temporal UI.

Its other parts: activities/customer_import.py, accounts/customer_csv.py (the format),
accounts/import_files.py (storage); client starter/imports.py; use case backoffice/imports.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from accounts.customer_csv import RowError
    from accounts.temporal import CHANNEL, LIFECYCLE_STAGE, lifecycle_attributes
    from activities.customer_import import (
        ERRORS_KEPT,
        IMPORT_CHANNEL,
        BatchInput,
        BatchResult,
        CustomerImportActivities,
        IndexInput,
    )
    from activities.customers import NewCustomer
    from workflows.password_reset import PasswordResetWorkflow, ResetInput, ResetTimings
    from workflows.registration import REVISION as REGISTRATION_REVISION
    from workflows.registration import RegistrationInput, RegistrationTimings, RegistrationWorkflow

INDEXING = "indexing"
IMPORTING = "importing"
STARTING_REGISTRATIONS = "starting_registrations"
COMPLETED = "completed"
CANCELLED = "cancelled"

BATCH_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=30),  # a killed worker's batch is retried this soon
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), non_retryable_error_types=["InvalidFile"]),
}


# References queued for a registration at most (reading waits): they travel in every continue-as-new
# input, whose payload Temporal bounds (2 MB); 50,000 references are about 0.8 MB
QUEUE_LIMIT = 50_000
# Registrations started in one round, whatever ACCOUNTS_IMPORT_EMAILS_PER_SECOND: at 1,000 a second one
# round of 1,000 child starts was one activation too heavy for a loaded worker (the SDK's 2 s deadlock
# detector fired, and the run's eviction then hung on its 279 starts in flight: bench/waiting.py, issue 15)
ROUND_LIMIT = 100


def import_workflow_id(import_id: str) -> str:
    return f"customer-import:{import_id}"


@dataclass
class ImportState:
    started_at: datetime
    rows_total: int = 0
    batches: int = 0
    next_batch: int = 0
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    last_line: int = 1
    queue: list[str] = field(default_factory=list)  # references whose registration is still to start
    without_password: list[str] = field(default_factory=list)  # of the queue: a set-password link instead
    emails_started: int = 0
    next_round_at: datetime | None = None  # when the rate allows the next round of registration starts
    cancel_requested: bool = False
    stopped_at_line: int | None = None
    finished_at: datetime | None = None
    stage: str = INDEXING


@dataclass
class ImportInput:
    import_id: str
    sha256: str
    delimiter: str
    dry_run: bool
    batch_size: int
    emails_per_second: float
    timings: RegistrationTimings
    concurrent_batches: int = 1  # batch activities at once (ACCOUNTS_IMPORT_CONCURRENT_BATCHES)
    history_limit: int = 4000  # events before the run continues as new
    # the set-password lifecycle of a customer imported unverified without a password (None: a verify link)
    reset_timings: ResetTimings | None = None
    state: ImportState | None = None  # carried over by continue-as-new


@dataclass
class ImportStatus:
    import_id: str
    stage: str
    dry_run: bool
    state: ImportState  # without its queue: a query answers with counts, not 25,000 references
    emails_queued: int | None = None  # len(queue); None in results of runs from before this field


@workflow.defn
class CustomerImportWorkflow:
    @workflow.init
    def __init__(self, input: ImportInput) -> None:
        self._input = input
        self._state = input.state or ImportState(started_at=workflow.now())
        self._starter: asyncio.Task[None] | None = None  # _start_queued, beside the batches
        self._starting = False  # registrations half started: no continue-as-new now
        self._pausing = False  # about to continue as new: the starter begins no round
        self._reading_done = False
        self._concurrency = max(1, input.concurrent_batches)

    @workflow.run
    async def run(self, input: ImportInput) -> ImportStatus:
        state = self._state
        if state.stage == INDEXING:
            workflow.upsert_search_attributes([CHANNEL.value_set(IMPORT_CHANNEL)])
            self._enter(INDEXING)
            indexed = await workflow.execute_activity_method(
                CustomerImportActivities.index_customer_import,
                IndexInput(input.import_id, input.sha256, input.delimiter, input.batch_size),
                **BATCH_OPTIONS,
            )
            state.rows_total, state.batches = indexed.rows, indexed.batches
            self._enter(IMPORTING)
        if workflow.patched("import-concurrent-batches"):
            await self._read_batches()
            await self._start_the_rest()
        else:
            await self._read_batches_one_by_one()
        if workflow.patched("import-discards-file"):
            # the upload holds personal data and password hashes, and a finished import never reads it again
            # (its index and rejected rows stay for the report and the download)
            await workflow.execute_activity_method(
                CustomerImportActivities.discard_customer_import_file, input.import_id, **BATCH_OPTIONS
            )
        state.finished_at = workflow.now()
        self._enter(CANCELLED if state.stopped_at_line is not None else COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    async def _read_batches(self) -> None:
        """Up to `concurrent_batches` batch activities at once: one parses its rows while another's write
        is in the database. The registrations they queue start beside them (`_start_queued`), never holding
        up the next batch. The run continues as new (or stops, when cancelled) once its batches are in."""
        state = self._state
        self._starter = asyncio.create_task(self._start_queued())
        running: list[asyncio.Task[BatchResult]] = []
        while True:
            stopping = state.cancel_requested or self._history_is_large()
            room = len(state.queue) < QUEUE_LIMIT  # the queue travels in every continue-as-new input
            while not stopping and room and state.next_batch < state.batches and len(running) < self._concurrency:
                running.append(asyncio.create_task(self._batch(state.next_batch)))
                state.next_batch += 1  # every batch below it is done or running
            if running:
                done, _ = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.remove(task)
                    self._count(task.result())
            elif state.cancel_requested or state.next_batch >= state.batches:
                if state.next_batch < state.batches:
                    state.stopped_at_line = state.last_line
                return
            elif self._history_is_large():
                await self._continue_as_new_when_quiet(stop_for_cancel=True)  # returns: a cancel came first
            else:  # the queue is full: read on once the registrations started make room
                await workflow.wait_condition(lambda: len(state.queue) < QUEUE_LIMIT or state.cancel_requested)

    async def _batch(self, number: int) -> BatchResult:
        input = self._input
        return await workflow.execute_activity_method(
            CustomerImportActivities.import_customer_batch,
            BatchInput(input.import_id, input.sha256, input.delimiter, number, input.dry_run),
            **BATCH_OPTIONS,
        )

    async def _start_queued(self) -> None:
        """Start the queued registrations, at most emails_per_second: a round of up to one second's worth,
        then a wait until the rate allows the next (the time is carried over continue-as-new), until the file
        is read and the queue is empty. Begins no round while the run prepares to continue as new."""
        rate = self._input.emails_per_second
        state = self._state
        while True:
            await workflow.wait_condition(lambda: not self._pausing and (bool(state.queue) or self._reading_done))
            if not state.queue:
                return
            now = workflow.now()
            if state.next_round_at is not None and now < state.next_round_at:
                await workflow.sleep(state.next_round_at - now)
                continue  # a pause may have begun meanwhile
            count = min(len(state.queue), max(1, math.ceil(rate)))
            if workflow.patched("import-bounded-rounds"):  # rounds of runs started before it stay as they were
                count = min(count, ROUND_LIMIT)
            starting, state.queue = state.queue[:count], state.queue[count:]
            # the rate counts from the round's start: the starts' own round trips are not added to it
            state.next_round_at = now + timedelta(seconds=count / rate)
            self._starting = True
            await asyncio.gather(*(self._start_registration(reference) for reference in starting))
            self._starting = False
            state.emails_started += count
            self._details()

    async def _start_the_rest(self) -> None:
        """The file is read: what is still queued starts at the rate; a long queue continues as new."""
        self._reading_done = True
        starter = self._starter
        assert starter is not None
        if self._state.queue or self._starting:
            self._enter(STARTING_REGISTRATIONS)  # a cancel waiting for the reading to stop is answered now
        while not starter.done():
            await workflow.wait_condition(
                lambda: starter.done() or (bool(self._state.queue) and self._history_is_large())
            )
            if not starter.done():
                await self._continue_as_new_when_quiet(stop_for_cancel=False)
        await starter  # its outcome: a failed start fails the import, as it did before

    async def _continue_as_new_when_quiet(self, *, stop_for_cancel: bool) -> None:
        """Continue as new once no registration start is half made and every handler has finished. While the
        file is read a cancel waits for the reading to stop, so then this returns instead (stop_for_cancel)."""
        self._pausing = True  # the starter begins no round now
        await workflow.wait_condition(lambda: not self._starting)
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() or (stop_for_cancel and self._state.cancel_requested)
        )
        if workflow.all_handlers_finished():
            self._continue_as_new()
        self._pausing = False

    async def _read_batches_one_by_one(self) -> None:
        """Runs started before `import-concurrent-batches`: one batch at a time, and the registrations a batch
        queued started before the next batch. Delete once no such run can be open (imports last hours)."""
        state, input = self._state, self._input
        allowance, refilled_at = 0.0, workflow.now()
        while state.next_batch < state.batches and not state.cancel_requested:
            if self._history_is_large() and await self._ready_to_continue():
                self._continue_as_new()
            result = await workflow.execute_activity_method(
                CustomerImportActivities.import_customer_batch,
                BatchInput(input.import_id, input.sha256, input.delimiter, state.next_batch, input.dry_run),
                **BATCH_OPTIONS,
            )
            state.next_batch += 1
            self._count(result)
            allowance, refilled_at = await self._start_registrations(allowance, refilled_at)
        if state.cancel_requested and state.next_batch < state.batches:
            state.stopped_at_line = state.last_line
        if state.queue:
            self._enter(STARTING_REGISTRATIONS)
        while state.queue:
            if self._history_is_large() and await self._ready_to_continue():
                self._continue_as_new()
            wanted = min(len(state.queue), max(1, math.ceil(input.emails_per_second)))
            if allowance < wanted:
                await workflow.sleep(timedelta(seconds=(wanted - allowance) / input.emails_per_second))
            allowance, refilled_at = await self._start_registrations(allowance, refilled_at)

    # --- messages ---------------------------------------------------------------------------------

    @workflow.query
    def progress(self) -> ImportStatus:
        state = dataclasses.replace(self._state, queue=[], without_password=[])
        return ImportStatus(self._input.import_id, state.stage, self._input.dry_run, state, len(self._state.queue))

    @workflow.update
    async def cancel(self) -> ImportStatus:
        """Stop after the batch under way; answers once the run stopped reading."""
        self._state.cancel_requested = True
        await workflow.wait_condition(lambda: self._state.stage in (STARTING_REGISTRATIONS, COMPLETED, CANCELLED))
        return self.progress()

    @cancel.validator
    def _validate_cancel(self) -> None:
        if self._state.stage in (COMPLETED, CANCELLED, STARTING_REGISTRATIONS):
            raise ApplicationError(f"the import is {self._state.stage}: nothing left to cancel", type="NotRunning")

    # --- steps ------------------------------------------------------------------------------------

    def _count(self, result: BatchResult) -> None:
        state = self._state
        state.rows_read += result.rows_read
        state.created += result.created
        state.updated += result.updated
        state.unchanged += result.unchanged
        state.rejected += result.rejected
        # batches may finish out of order: the first ERRORS_KEPT by line
        state.errors = sorted([*state.errors, *result.errors], key=lambda error: error.line)[:ERRORS_KEPT]
        state.last_line = max(state.last_line, result.last_line)
        if not self._input.dry_run:
            state.queue.extend(result.to_verify)
            state.without_password.extend(result.without_password)
        self._details()

    async def _start_registrations(self, allowance: float, refilled_at: datetime) -> tuple[float, datetime]:
        """Start as many queued registrations as the rate allows since the last call (a token bucket
        holding at most one second's worth), each sending its verification email."""
        rate = self._input.emails_per_second
        now = workflow.now()
        allowance = min(max(rate, 1.0), allowance + (now - refilled_at).total_seconds() * rate)
        count = min(len(self._state.queue), int(allowance))
        if count:
            starting, self._state.queue = self._state.queue[:count], self._state.queue[count:]
            await asyncio.gather(*(self._start_registration(reference) for reference in starting))
            self._state.emails_started += count
            allowance -= count
            self._details()
        return allowance, now

    async def _start_registration(self, reference: str) -> None:
        """The registration lifecycle (reminder, expiry) and its one first link: a verification link, or
        for a customer without a password a set-password link (which verifies the address too)."""
        timings = self._input.timings
        password_link = reference in self._state.without_password and self._input.reset_timings is not None
        if password_link:
            self._state.without_password.remove(reference)
        try:
            await workflow.start_child_workflow(
                RegistrationWorkflow.run,
                RegistrationInput(
                    # the row exists: the workflow reads the customer's data from it, none travels here
                    NewCustomer(email="", locale="", channel=IMPORT_CHANNEL, customer_reference=reference),
                    timings,
                    existing=True,
                    send_first_link=not password_link,
                    revision=REGISTRATION_REVISION,
                ),
                id=f"registration:{reference}",  # starter.client.registration_id
                task_queue=workflow.info().task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,  # it outlives the import
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Registration of {reference} ({IMPORT_CHANNEL})",
                search_attributes=lifecycle_attributes(reference, IMPORT_CHANNEL),
            )
        except WorkflowAlreadyStartedError:  # a retried start, or a reference Temporal knows already
            return
        if password_link:
            assert self._input.reset_timings is not None
            try:
                await workflow.start_child_workflow(
                    PasswordResetWorkflow.run,
                    ResetInput(
                        reference, "set_password", IMPORT_CHANNEL, self._input.import_id, self._input.reset_timings
                    ),
                    id=f"password-reset:{reference}",  # starter.passwords.reset_id
                    task_queue=workflow.info().task_queue,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    static_summary=f"Set-password link of {reference} ({IMPORT_CHANNEL})",
                    search_attributes=lifecycle_attributes(reference, IMPORT_CHANNEL),
                )
            except WorkflowAlreadyStartedError:
                pass

    def _history_is_large(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self._input.history_limit

    async def _ready_to_continue(self) -> bool:
        """Handlers finished: continue as new. A cancel under way waits for the run to stop reading, so it
        is not waited for: the run goes on (and stops) first."""
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or self._state.cancel_requested)
        return workflow.all_handlers_finished()

    def _continue_as_new(self) -> NoReturn:
        workflow.continue_as_new(dataclasses.replace(self._input, state=self._state))

    def _enter(self, stage: str) -> None:
        self._state.stage = stage
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        self._details()

    def _details(self) -> None:
        state = self._state
        workflow.set_current_details(
            f"Import {state.stage}: {state.rows_read}/{state.rows_total} rows read,"
            f" {state.created + state.updated} written, {state.rejected} rejected,"
            f" {len(state.queue)} verification emails queued, {state.emails_started} started"
        )
