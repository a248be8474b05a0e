"""Customer imports: store an uploaded customer.csv, refuse a bad file whole, start its workflow, read its
progress, cancel it, hand out its rejected rows (workflows/customer_import.py does the import).

The file is stored under `var_dir/imports` by import id; the workflow is given that id and the file's
SHA-256, never the content. A file refused by `accounts.customer_csv.scan` (empty, header only, a
required column missing, not UTF-8, a field over 1 MB) is deleted again and nothing was started.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from accounts import import_files
from accounts.customer_csv import InvalidFile, RowError, check_delimiter, scan
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes, ui_url
from activities.customer_import import IMPORT_CHANNEL
from starter.errors import AccountsError
from workflows.customer_import import (
    CANCELLED,
    COMPLETED,
    CustomerImportWorkflow,
    ImportInput,
    ImportStatus,
    import_workflow_id,
)
from workflows.password_reset import ResetTimings
from workflows.registration import RegistrationTimings

LISTED_IMPORTS = 50

__all__ = ["ImportProgress", "ImportStarted", "Imports", "InvalidFile", "NoSuchImport", "NotCancellable", "RowError"]


class NoSuchImport(AccountsError):
    def __init__(self, import_id: str) -> None:
        super().__init__(f"no customer import {import_id}")


class NotCancellable(AccountsError):
    """The import finished reading its file (or is over): there is nothing left to cancel."""


@dataclass
class ImportStarted:
    import_id: str
    workflow_id: str
    rows: int  # data rows in the file (header excluded)
    dry_run: bool


@dataclass
class ImportProgress:
    import_id: str
    state: str  # running | completed | cancelled | failed
    dry_run: bool
    rows_total: int
    rows_read: int
    rows_written: int  # created + updated (0 in a dry run)
    rows_created: int
    rows_updated: int
    rows_rejected: int
    emails_queued: int  # registrations (verification emails) still to start
    emails_started: int
    started_at: datetime
    finished_at: datetime | None
    stopped_at_line: int | None  # set when cancelled
    errors: list[RowError] = field(default_factory=list)  # the first 50; all of them: rejected_csv
    ui_url: str = ""
    stage: str = ""  # the workflow's stage (indexing, importing, starting_registrations, completed, cancelled)


class Imports:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        timings: RegistrationTimings,
        *,
        batch_size: int | None = None,  # rows per batch; None: ACCOUNTS_IMPORT_BATCH_SIZE
        history_limit: int = 4000,
    ) -> None:
        self._client = client
        self._settings = settings
        self._timings = timings
        self._batch_size = batch_size or settings.import_batch_size
        self._history_limit = history_limit

    async def start(self, content: bytes, *, delimiter: str = ",", dry_run: bool = False) -> ImportStarted:
        """Store the file and check it whole (InvalidFile: refused, nothing stored or started), then start."""
        check_delimiter(delimiter)
        var_dir = self._settings.var_dir
        import_id = import_files.new_import_id()
        sha256 = await asyncio.to_thread(import_files.store, var_dir, import_id, content)
        try:
            found = await asyncio.to_thread(
                scan, import_files.file_path(var_dir, import_id), delimiter, self._batch_size
            )
        except InvalidFile:
            import_files.discard(var_dir, import_id)
            raise
        workflow_id = import_workflow_id(import_id)
        await self._client.start_workflow(
            CustomerImportWorkflow.run,
            ImportInput(
                import_id=import_id,
                sha256=sha256,
                delimiter=delimiter,
                dry_run=dry_run,
                batch_size=self._batch_size,
                emails_per_second=self._settings.import_emails_per_second,
                concurrent_batches=self._settings.import_concurrent_batches,
                timings=self._timings,
                history_limit=self._history_limit,
                # an imported customer without a password: the set-password link lives as long as the
                # verification would (it verifies the address too)
                reset_timings=ResetTimings(
                    self._timings.expires_after,
                    self._settings.password_reset_resend_min_interval,
                    self._settings.password_reset_resends_per_hour,
                ),
            ),
            id=workflow_id,
            task_queue=self._settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"Customer import {import_id}{' (dry run)' if dry_run else ''}: {found.rows} rows",
            search_attributes=lifecycle_attributes(None, IMPORT_CHANNEL, stage="indexing"),
        )
        return ImportStarted(import_id, workflow_id, found.rows, dry_run)

    async def progress(self, import_id: str) -> ImportProgress:
        handle = self._handle(import_id)
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                raise NoSuchImport(import_id) from error
            raise
        if description.status == WorkflowExecutionStatus.COMPLETED:  # its result: no worker needed to read it
            run = self._client.get_workflow_handle_for(
                CustomerImportWorkflow.run, import_workflow_id(import_id), run_id=description.run_id
            )
            return self._progress(await run.result(follow_runs=False))
        status = await handle.query(CustomerImportWorkflow.progress)
        return self._progress(status, failed=description.status != WorkflowExecutionStatus.RUNNING)

    async def wait(self, import_id: str, *, poll_seconds: float = 0.2) -> ImportProgress:
        """The import's report once it finished (every row read, every registration started)."""
        while True:
            try:
                progress = await self.progress(import_id)
            except RPCError as error:  # no worker answers queries right now (one restarting): ask again
                if error.status != RPCStatusCode.DEADLINE_EXCEEDED:
                    raise
            else:
                if progress.state != "running":
                    return progress
            await asyncio.sleep(poll_seconds)

    async def cancel(self, import_id: str) -> ImportProgress:
        await self.progress(import_id)  # NoSuchImport
        try:
            status = await self._handle(import_id).execute_update(CustomerImportWorkflow.cancel)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == "NotRunning":
                raise NotCancellable(cause.message) from error
            raise
        except RPCError as error:  # an update to a closed run: "workflow execution already completed"
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            raise NotCancellable(f"the import {import_id} is over: nothing left to cancel") from error
        return self._progress(status)

    async def rejected_csv(self, import_id: str) -> str:
        try:
            return await asyncio.to_thread(import_files.rejected_csv, self._settings.var_dir, import_id)
        except (FileNotFoundError, ValueError):
            raise NoSuchImport(import_id) from None

    async def list(self) -> list[ImportProgress]:
        """The latest imports, newest first (read from Temporal's visibility)."""
        ids = [
            execution.id.split(":", 1)[1]
            async for execution in self._client.list_workflows(
                'WorkflowType = "CustomerImportWorkflow"', limit=LISTED_IMPORTS
            )
        ]
        found = await asyncio.gather(*(self.progress(import_id) for import_id in dict.fromkeys(ids)))
        return sorted(found, key=lambda progress: progress.started_at, reverse=True)

    def _handle(self, import_id: str) -> WorkflowHandle[CustomerImportWorkflow, ImportStatus]:
        return self._client.get_workflow_handle_for(CustomerImportWorkflow.run, import_workflow_id(import_id))

    def _progress(self, status: ImportStatus, *, failed: bool = False) -> ImportProgress:
        state = status.state
        if failed:
            outcome = "failed"
        elif status.stage == CANCELLED:
            outcome = "cancelled"
        elif status.stage == COMPLETED:
            outcome = "completed"
        else:
            outcome = "running"
        return ImportProgress(
            import_id=status.import_id,
            state=outcome,
            dry_run=status.dry_run,
            rows_total=state.rows_total,
            rows_read=state.rows_read,
            rows_written=0 if status.dry_run else state.created + state.updated,
            rows_created=state.created,
            rows_updated=state.updated,
            rows_rejected=state.rejected,
            emails_queued=len(state.queue) if status.emails_queued is None else status.emails_queued,
            emails_started=state.emails_started,
            started_at=state.started_at,
            finished_at=state.finished_at,
            stopped_at_line=state.stopped_at_line,
            errors=list(state.errors),
            ui_url=ui_url(self._settings, import_workflow_id(status.import_id)),
            stage=status.stage,
        )
