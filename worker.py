"""The worker: the composition root that builds the activities with their dependencies and runs them.

python worker.py        (or: accounts worker)

One process polls every task queue by default (lifecycles, sign-in throttling, email, bulk email:
accounts/task_queues.py), one Temporal `Worker` each; ACCOUNTS_WORKER_TASK_QUEUES picks some, so the
queues can be scaled apart. Each queue's activity slots are a setting, and together they must fit in the
process's database pool (check_database_capacity).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from accounts.db import DATABASE_TIMEOUT, SessionFactory, pool_capacity, service_engine, session_factory
from accounts.emails import EmailRenderer, Mailer, SmtpMailer
from accounts.logs import configure_logging
from accounts.mfa_secrets import SecretBox
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from accounts.task_queues import QueueKind, TaskQueues
from accounts.temporal import completes_polls_on_shutdown, connect
from accounts.worker_ops import WorkerOps
from activities.anonymization import AnonymizationActivities
from activities.assists import AssistActivities
from activities.customer_import import CustomerImportActivities
from activities.customers import CustomerActivities
from activities.data_export import DataExportActivities
from activities.email_change import EmailChangeActivities
from activities.emails import EmailActivities
from activities.inactivity import InactivityActivities
from activities.lockout import LockoutActivities
from activities.mfa import MfaActivities
from activities.passwords import PasswordActivities
from activities.throttle_cleanup import ThrottleCleanupActivities
from starter.schedules import ensure_schedules
from workflows.anonymization import AnonymizationWorkflow
from workflows.assist import AssistWorkflow
from workflows.customer_import import CustomerImportWorkflow
from workflows.data_export import DataExportWorkflow
from workflows.email_change import EmailChangeWorkflow
from workflows.inactivity import InactivitySweepWorkflow, InactivityWorkflow
from workflows.lockout import LockoutWindowWorkflow
from workflows.mfa import MfaActivatedWorkflow, MfaActivationWorkflow, MfaCodeWorkflow, MfaRemovedWorkflow
from workflows.new_device import NewDeviceAlertWorkflow
from workflows.password_change import PasswordChangeWorkflow
from workflows.password_rehash import PasswordRehashWorkflow
from workflows.password_reset import PasswordResetWorkflow
from workflows.registration import RegistrationWorkflow
from workflows.staff_lock_notice import StaffLockNoticeWorkflow
from workflows.throttle_cleanup import ThrottleCleanupWorkflow

WORKFLOWS = [
    RegistrationWorkflow,
    LockoutWindowWorkflow,
    PasswordRehashWorkflow,
    PasswordResetWorkflow,
    PasswordChangeWorkflow,
    AnonymizationWorkflow,
    EmailChangeWorkflow,
    CustomerImportWorkflow,
    ThrottleCleanupWorkflow,
    MfaCodeWorkflow,
    MfaActivationWorkflow,
    MfaRemovedWorkflow,
    MfaActivatedWorkflow,
    StaffLockNoticeWorkflow,
    NewDeviceAlertWorkflow,
    AssistWorkflow,
    DataExportWorkflow,
    InactivityWorkflow,
    InactivitySweepWorkflow,
]
log = logging.getLogger("accounts.worker")
SHUTDOWN_MARGIN = timedelta(seconds=10)


def graceful_shutdown_timeout(settings: Settings) -> timedelta:
    """How long a stopping worker lets running activities finish: an SMTP handover cut short can have
    been delivered without its "sent" mark, and its retry delivers again. A send does not start once
    shutdown began (activities.emails), so one under way needs at most the SMTP timeout plus the database
    step that marks it; docker-compose's stop_grace_period must outlast this in turn."""
    return timedelta(seconds=settings.smtp_timeout + DATABASE_TIMEOUT) + SHUTDOWN_MARGIN


def activity_slots(settings: Settings) -> dict[QueueKind, int]:
    """Activities each queue's worker runs at once (`max_concurrent_activities`)."""
    return {
        "lifecycles": settings.lifecycle_activity_slots,
        "signin": settings.signin_activity_slots,
        "email": settings.email_activity_slots,
        "bulk-email": settings.bulk_email_activity_slots,
    }


def activity_polls(kind: QueueKind, slots: int) -> int:
    """Activity polls each queue's worker keeps open (`max_concurrent_activity_task_polls`).

    A waiting poll holds an activity slot. On the queues whose workflows run their own activities
    (lifecycles, sign-in) the workflow's next activity starts eagerly, in the reply to the workflow task
    that scheduled it, only while two slots are free: at 6 slots and 5 polls none was, and every create and
    activate went through the server's matching instead (measured: bench/registration.py's requests by
    operation). A third of the slots polls there; the email queues, which nothing eager reaches, poll with up to 5."""
    if kind in ("lifecycles", "signin"):
        return max(1, min(5, slots // 3))
    return min(5, slots)


class WorkerMisconfigured(ValueError):
    """A setting makes this worker unable to run as configured; the message names it."""


def check_database_capacity(settings: Settings) -> None:
    """Refuse a worker whose activities could not all hold a database connection at once.

    Each activity uses at most one connection at a time. More slots than the pool can hand out would
    make the surplus wait for a connection, past the pool timeout (4 s), and fail and retry under load:
    work that looks like a database outage. So the slots of the queues this process polls must fit in
    ACCOUNTS_DATABASE_POOL_SIZE + ACCOUNTS_DATABASE_MAX_OVERFLOW."""
    slots = activity_slots(settings)
    polled = {kind: slots[kind] for kind in settings.worker_task_queues}
    capacity = pool_capacity(settings)
    if sum(polled.values()) > capacity:
        parts = " + ".join(f"{count} ({kind})" for kind, count in polled.items())
        raise WorkerMisconfigured(
            f"activity slots {parts} = {sum(polled.values())} exceed the {capacity} database connections of"
            " ACCOUNTS_DATABASE_POOL_SIZE + ACCOUNTS_DATABASE_MAX_OVERFLOW: raise those or lower"
            " ACCOUNTS_*_ACTIVITY_SLOTS"
        )


class WorkerGroup:
    """The workers of one process, one per task queue it polls, run and stopped together: a process
    serves all of its queues or none (a fatal error of one stops the others, and the process exits)."""

    def __init__(self, workers: dict[QueueKind, Worker]) -> None:
        self._workers = workers
        self._running: asyncio.Task[None] | None = None

    def __getitem__(self, kind: QueueKind) -> Worker:
        return self._workers[kind]

    @property
    def task_queues(self) -> list[str]:
        return [worker.task_queue for worker in self._workers.values()]

    @property
    def workers(self) -> list[Worker]:
        return list(self._workers.values())

    @property
    def is_running(self) -> bool:
        return any(worker.is_running for worker in self._workers.values())

    async def run(self) -> None:
        tasks = [asyncio.create_task(worker.run()) for worker in self._workers.values()]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            await self.shutdown()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def shutdown(self) -> None:
        """As `Worker.shutdown`: may come before `run` has begun, and returns once it has ended."""
        await asyncio.gather(*(worker.shutdown() for worker in self._workers.values()))

    async def __aenter__(self) -> WorkerGroup:
        """As `async with Worker(...)`: run in the background until the block ends, then shut down."""
        self._running = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.shutdown()
        if self._running is not None:
            await self._running


def build_worker(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    *,
    mailer: Mailer | None = None,
    task_queue: str | None = None,
    queues: list[QueueKind] | None = None,
) -> WorkerGroup:
    """One worker per task queue in `queues` (default ACCOUNTS_WORKER_TASK_QUEUES, all of them), named
    after `task_queue` (default ACCOUNTS_TASK_QUEUE; accounts/task_queues.py)."""
    customers = CustomerActivities(sessions)
    lockout = LockoutActivities(sessions)
    passwords = PasswordActivities(sessions)
    anonymization = AnonymizationActivities(sessions, client)  # the client ends the customer's lifecycles
    email_change = EmailChangeActivities(sessions)
    throttle_cleanup = ThrottleCleanupActivities(sessions)
    mfa = MfaActivities(sessions)
    assists = AssistActivities(sessions)
    inactivity = InactivityActivities(sessions, client, settings)  # the client starts the lifecycles
    customer_import = CustomerImportActivities(sessions, settings, PasswordHasher.from_settings(settings))
    renderer = EmailRenderer(settings.templates_dir, default_locale=settings.default_locale)
    emails = EmailActivities(sessions, renderer, mailer or SmtpMailer.from_settings(settings), settings)
    data_export = DataExportActivities(sessions, renderer, SecretBox.from_settings(settings), settings)
    signin_activities: list[Callable[..., Any]] = [lockout.set_lock, lockout.lift_lock, lockout.close_window]
    email_activities: list[Callable[..., Any]] = [
        emails.send_token_link,
        emails.send_notice,
        emails.send_mfa_code,
        emails.send_staff_lock_notice,
    ]
    # The lifecycles' worker keeps every workflow and activity: runs started before the queues split
    # (lockout windows on this queue, emails scheduled on it) finish here.
    lifecycle_activities: list[Callable[..., Any]] = [
        customers.create_customer,
        customers.activate_customer,
        customers.expire_registration,
        customers.replace_password_hash,
        passwords.set_password,
        passwords.force_reset,
        passwords.expire_reset_links,
        anonymization.end_lifecycles,
        anonymization.anonymize_customer,
        anonymization.delete_closed_runs,
        email_change.check_new_email,
        email_change.retire_links,
        email_change.apply_email_change,
        email_change.undo_email_change,
        customer_import.index_customer_import,
        customer_import.import_customer_batch,
        customer_import.discard_customer_import_file,
        throttle_cleanup.delete_expired_throttles,
        mfa.end_expired_activation,
        assists.record_assist_step,
        assists.close_assist,
        data_export.prepare_data_export,
        data_export.delete_data_export,
        inactivity.sweep_inactive_page,
        inactivity.advance_inactivity,
        inactivity.conclude_inactivity,
        *signin_activities,
        *email_activities,
    ]
    names = TaskQueues(task_queue or settings.task_queue)
    slots = activity_slots(settings)
    common: dict[str, Any] = {
        # let running activities (an SMTP handover, a DB commit) finish on Ctrl-C or SIGTERM
        "graceful_shutdown_timeout": graceful_shutdown_timeout(settings),
        "workflow_runner": WORKFLOW_RUNNER,
        # bounds the worker's memory however many lifecycles wait (a cached registration: ~170 KiB)
        "max_cached_workflows": settings.worker_max_cached_workflows,
    }
    work: dict[QueueKind, dict[str, Any]] = {
        "lifecycles": {"workflows": WORKFLOWS, "activities": lifecycle_activities},
        "signin": {"workflows": [LockoutWindowWorkflow, StaffLockNoticeWorkflow], "activities": signin_activities},
        # the task-queue rate limit is the server's, for every worker of the queue together
        "email": {
            "activities": email_activities,
            "max_task_queue_activities_per_second": settings.email_sends_per_second,
        },
        "bulk-email": {
            "activities": email_activities,
            "max_task_queue_activities_per_second": settings.bulk_email_sends_per_second,
        },
    }
    return WorkerGroup(
        {
            kind: Worker(
                client,
                task_queue=names.name(kind),
                max_concurrent_activities=slots[kind],
                max_concurrent_activity_task_polls=activity_polls(kind, slots[kind]),
                **work[kind],
                **common,
            )
            for kind in (queues or settings.worker_task_queues)
        }
    )


# Every workflow run gets its own sandbox, and by default each sandbox imports again every module its
# workflow imports (a fresh registration's first task took ~0.5 s of the worker at 10 imports a second).
# Passed through, modules are imported once per worker; the sandbox still refuses non-deterministic calls
# (time, random, I/O) inside workflow code. Workflow modules hold no mutable module state to share.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


async def warn_of_lost_tasks_at_shutdown(client: Client) -> None:
    """One warning at start when the server does not answer a stopping worker's polls (accounts.temporal's
    SERVER_DYNAMIC_CONFIG): each redeploy can then strand a task in transit until its timeout."""
    try:
        if await completes_polls_on_shutdown(client):
            return
    except RPCError as error:  # an API key without namespace read access, say: the worker runs regardless
        log.info("could not ask the namespace whether it completes polls on worker shutdown: %s", error)
        return
    log.warning(
        "the Temporal server does not complete polls on worker shutdown: a task handed out as this worker "
        "stops waits for its timeout (set the dynamic config frontend.enableCancelWorkerPollsOnShutdown)"
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    check_database_capacity(settings)
    engine = service_engine(settings)
    ops = WorkerOps(settings)  # metrics, health and tracing (accounts/worker_ops.py)
    try:
        client = await connect(settings, runtime=ops.runtime, interceptors=ops.interceptors)
        workers = build_worker(client, settings, session_factory(engine))
        await warn_of_lost_tasks_at_shutdown(client)
        if "lifecycles" in settings.worker_task_queues:
            try:
                await ensure_schedules(client, settings)  # idempotent: every worker start brings it up to date
            except RPCError as error:  # the worker runs without it; the next start tries again
                log.warning("schedules not created: %s", error)
        log.info("worker polling task queues %s on %s", ", ".join(workers.task_queues), settings.temporal_target)
        async with ops.serving(engine, client, *workers.workers):  # the listener outlives the shutdown
            running = asyncio.create_task(workers.run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await workers.shutdown()
            await running  # a worker's fatal error (the namespace is missing, say) ends the process with it
    finally:
        await engine.dispose()


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(settings, stop)
    except WorkerMisconfigured as error:
        raise SystemExit(f"accounts worker: {error}") from None


if __name__ == "__main__":
    asyncio.run(main())
