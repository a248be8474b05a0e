"""Account deletion's activities: end the customer's running lifecycles, the one transaction that
turns a customer into an anonymous row, and then the deletion of the customer's closed runs from
Temporal (their histories held the address and, before issue 15, the profile and password hashes)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from accounts import anonymization, audit, pending_credentials
from accounts.db import SessionFactory
from accounts.models import Address, Customer, EmailOutbox, LoginThrottle, utcnow
from accounts.refresh_tokens import RefreshToken
from accounts.throttle import customer_subject
from activities.lookup import load_customer


@dataclass
class Anonymize:
    customer_reference: str
    channel: str
    actor: str
    idempotency_key: str


@dataclass
class EndLifecycles:
    customer_reference: str
    known_ids: list[str]  # registration, reset, email change: found even before visibility lists them
    own_id: str  # the anonymization itself carries the customer's reference too
    channel: str
    actor: str
    idempotency_key: str  # of the `deletion_started` audit event


@dataclass
class DeleteRuns:
    customer_reference: str
    own_id: str  # the anonymization's own runs stay: they carry the reference and no personal data


@dataclass
class RunsDeleted:
    deleted: int  # closed runs whose deletion Temporal accepted
    left_running: list[str] = field(default_factory=list)  # ids listed as running (none should be)


@dataclass
class LifecyclesEnded:
    workflow_ids: list[str] = field(default_factory=list)  # the runs this attempt asked to cancel


class AnonymizationActivities:
    # one attempt waits this long for the cancelled runs to close, then fails and is retried
    # (a worker that is down right now cannot close them; the deletion waits for it)
    END_LIFECYCLES_WAIT = 30.0
    POLL_INTERVALS = (0.05, 0.1, 0.2, 0.5, 1.0)  # a cancelled run mostly closes within the first
    # a claimed email older than this is no handover in progress but a send whose worker died: the
    # longest attempt is the activities' start_to_close_timeout (90 s)
    SEND_IN_PROGRESS_FOR = timedelta(minutes=3)

    def __init__(self, sessions: SessionFactory, client: Client) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn
    async def end_lifecycles(self, request: EndLifecycles) -> LifecyclesEnded:
        """Mark the deletion as started, cancel every running lifecycle of the customer and return once
        all of them have closed and no email of theirs is still being handed over.

        The mark (`deletion_started`) makes every later email claim for the customer fail, so a run
        cancelled in the middle of a send, or started after this sweep, mails nothing more. The runs come
        from the `CustomerReference` search attribute (password changes have random ids) plus the known
        ids: visibility lags a fraction of a second behind a start, so each round lists again, and only
        `describe()` decides whether a run still runs. A cancelled run closes at once, while an activity
        attempt it had started may still finish: its writes check `anonymized_at` under the row lock."""
        await self._mark_started(request)
        deadline = time.monotonic() + self.END_LIFECYCLES_WAIT
        requested: set[tuple[str, str]] = set()
        round_number = 0
        while True:
            running = []
            for handle in await self._candidates(request):
                try:
                    description = await handle.describe()
                except RPCError as error:
                    if error.status == RPCStatusCode.NOT_FOUND:  # never started
                        continue
                    raise
                if description.status != WorkflowExecutionStatus.RUNNING:
                    continue
                run = (description.id, description.run_id)
                running.append(run)
                if run not in requested:
                    await self._cancel(self._client.get_workflow_handle(run[0], run_id=run[1]))
                    requested.add(run)
            sending = await self._emails_being_sent(request.customer_reference)
            if not running and not sending:
                return LifecyclesEnded(sorted({workflow_id for workflow_id, _ in requested}))
            if time.monotonic() > deadline:
                still = sorted(workflow_id for workflow_id, _ in running)
                raise ApplicationError(f"still running: {still}, {sending} email(s) being sent", type="StillRunning")
            activity.heartbeat(len(running))
            await asyncio.sleep(self.POLL_INTERVALS[min(round_number, len(self.POLL_INTERVALS) - 1)])
            round_number += 1

    async def _mark_started(self, request: EndLifecycles) -> None:
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            # the row lock every email claim takes: a claim is committed before the mark, or sees it
            customer = await load_customer(session, request.customer_reference, for_update=True)
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event=anonymization.DELETION_STARTED,
                channel=request.channel,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
            )

    async def _emails_being_sent(self, customer_reference: str) -> int:
        async with self._sessions() as session:
            return int(
                await session.scalar(
                    select(func.count()).where(
                        EmailOutbox.customer_reference == customer_reference,
                        EmailOutbox.status == "sending",
                        EmailOutbox.template != anonymization.DELETION_EMAIL,
                        EmailOutbox.created_at > utcnow() - self.SEND_IN_PROGRESS_FOR,
                    )
                )
                or 0
            )

    async def _candidates(self, request: EndLifecycles) -> list[WorkflowHandle]:
        query = f'CustomerReference = "{request.customer_reference}" AND ExecutionStatus = "Running"'
        listed = [(e.id, e.run_id) async for e in self._client.list_workflows(query)]
        ids = {workflow_id for workflow_id, _ in listed}
        candidates: list[tuple[str, str | None]] = list(listed)
        candidates += [(workflow_id, None) for workflow_id in request.known_ids if workflow_id not in ids]
        return [
            self._client.get_workflow_handle(workflow_id, run_id=run_id)
            for workflow_id, run_id in candidates
            if workflow_id != request.own_id
        ]

    @staticmethod
    async def _cancel(handle: WorkflowHandle) -> None:
        try:
            await handle.cancel()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # closed in the meantime: nothing to end
                raise

    @activity.defn
    async def anonymize_customer(self, request: Anonymize) -> None:
        """Scrub the row, drop addresses, kill one-time and refresh tokens, forget the lockout count and
        record `customer_anonymized`: all or nothing, once per idempotency key. Orders are not touched."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            customer = await session.scalar(
                select(Customer).where(Customer.customer_reference == request.customer_reference).with_for_update()
            )
            if customer is None:
                raise ApplicationError(
                    f"customer {request.customer_reference} does not exist", type="NoSuchCustomer", non_retryable=True
                )
            now = utcnow()
            # An expired registration may have scrubbed the row already: a second scrub would only churn it.
            if customer.anonymized_at is None:
                await anonymization.scrub(session, customer, now=now)
            customer.default_billing_address_id = None
            customer.default_shipping_address_id = None
            customer.preferred_shipping_method = None
            customer.updated_at = now
            await session.flush()  # the defaults go before the addresses they point at
            await session.execute(delete(Address).where(Address.customer_id == customer.id))
            await anonymization.kill_tokens(session, customer.id, now=now)
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.customer_id == customer.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.execute(
                delete(LoginThrottle).where(LoginThrottle.subject == customer_subject(customer.customer_reference))
            )
            await pending_credentials.delete_for_customer(session, customer.customer_reference)
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event="customer_anonymized",
                channel=request.channel,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
            )

    @activity.defn
    async def delete_closed_runs(self, request: DeleteRuns) -> RunsDeleted:
        """Ask Temporal to delete every closed run that carries the customer's reference (the
        anonymization's own aside).

        Runs are listed by the `CustomerReference` search attribute, whatever their status; `describe()`
        decides whether one is closed (visibility lags). Temporal accepts a deletion at once and carries
        it out by itself: for a run closed within the last ~30 s (the history service's
        `history.transferProcessorUpdateAckInterval`) a little later, since it first waits for the run's
        close to be acknowledged. Nothing here waits for that. A retry lists again; a run deleted
        meanwhile answers NOT_FOUND, which is done. Runs still running are left (the deletion ended them
        all before; one started since carries no personal data) and named in the result."""
        query = f'CustomerReference = "{request.customer_reference}"'
        deleted = 0
        running: list[str] = []
        async for execution in self._client.list_workflows(query):
            if execution.id == request.own_id:
                continue
            handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                description = await handle.describe()
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:  # deleted already; visibility lags
                    continue
                raise
            if description.status == WorkflowExecutionStatus.RUNNING:
                running.append(execution.id)
                continue
            await self._delete(execution.id, execution.run_id)
            deleted += 1
            activity.heartbeat(deleted)  # a customer with many runs: the pass takes a while
        return RunsDeleted(deleted, sorted(running))

    async def _delete(self, workflow_id: str, run_id: str) -> None:
        try:
            await self._client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=self._client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                )
            )
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
