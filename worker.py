"""The worker: the composition root that builds the activities with their dependencies and runs them.

python worker.py        (or: accounts worker)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from accounts.db import DATABASE_TIMEOUT, SessionFactory, create_engine, session_factory
from accounts.emails import EmailRenderer, Mailer, SmtpMailer
from accounts.logs import configure_logging
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from accounts.temporal import connect
from accounts.worker_ops import WorkerOps
from activities.anonymization import AnonymizationActivities
from activities.customer_import import CustomerImportActivities
from activities.customers import CustomerActivities
from activities.email_change import EmailChangeActivities
from activities.emails import EmailActivities
from activities.lockout import LockoutActivities
from activities.passwords import PasswordActivities
from activities.throttle_cleanup import ThrottleCleanupActivities
from starter.schedules import ensure_schedules
from workflows.anonymization import AnonymizationWorkflow
from workflows.customer_import import CustomerImportWorkflow
from workflows.email_change import EmailChangeWorkflow
from workflows.lockout import LockoutWindowWorkflow
from workflows.password_change import PasswordChangeWorkflow
from workflows.password_rehash import PasswordRehashWorkflow
from workflows.password_reset import PasswordResetWorkflow
from workflows.registration import RegistrationWorkflow
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
]
log = logging.getLogger("accounts.worker")
SHUTDOWN_MARGIN = timedelta(seconds=10)


def graceful_shutdown_timeout(settings: Settings) -> timedelta:
    """How long a stopping worker lets running activities finish: an SMTP handover cut short can have
    been delivered without its "sent" mark, and its retry delivers again. A send does not start once
    shutdown began (activities.emails), so one under way needs at most the SMTP timeout plus the database
    step that marks it; docker-compose's stop_grace_period must outlast this in turn."""
    return timedelta(seconds=settings.smtp_timeout + DATABASE_TIMEOUT) + SHUTDOWN_MARGIN


def build_worker(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    *,
    mailer: Mailer | None = None,
    task_queue: str | None = None,
) -> Worker:
    customers = CustomerActivities(sessions)
    lockout = LockoutActivities(sessions)
    passwords = PasswordActivities(sessions)
    anonymization = AnonymizationActivities(sessions, client)  # the client ends the customer's lifecycles
    email_change = EmailChangeActivities(sessions)
    throttle_cleanup = ThrottleCleanupActivities(sessions)
    customer_import = CustomerImportActivities(sessions, settings, PasswordHasher.from_settings(settings))
    emails = EmailActivities(
        sessions,
        EmailRenderer(settings.templates_dir, default_locale=settings.default_locale),
        mailer or SmtpMailer.from_settings(settings),
        settings,
    )
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            customers.create_customer,
            customers.activate_customer,
            customers.expire_registration,
            customers.replace_password_hash,
            lockout.set_lock,
            lockout.lift_lock,
            lockout.close_window,
            passwords.set_password,
            passwords.force_reset,
            passwords.expire_reset_links,
            anonymization.end_lifecycles,
            anonymization.anonymize_customer,
            anonymization.delete_closed_runs,
            email_change.check_new_email,
            email_change.retire_links,
            email_change.apply_email_change,
            emails.send_token_link,
            emails.send_notice,
            customer_import.index_customer_import,
            customer_import.import_customer_batch,
            customer_import.discard_customer_import_file,
            throttle_cleanup.delete_expired_throttles,
        ],
        # let running activities (an SMTP handover, a DB commit) finish on Ctrl-C or SIGTERM
        graceful_shutdown_timeout=graceful_shutdown_timeout(settings),
        workflow_runner=WORKFLOW_RUNNER,
    )


# Every workflow run gets its own sandbox, and by default each sandbox imports again every module its
# workflow imports (a fresh registration's first task took ~0.5 s of the worker at 10 imports a second).
# Passed through, modules are imported once per worker; the sandbox still refuses non-deterministic calls
# (time, random, I/O) inside workflow code. Workflow modules hold no mutable module state to share.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    engine = create_engine(settings.database_url)
    ops = WorkerOps(settings)  # metrics, health and tracing (accounts/worker_ops.py)
    try:
        client = await connect(settings, runtime=ops.runtime, interceptors=ops.interceptors)
        worker = build_worker(client, settings, session_factory(engine))
        try:
            await ensure_schedules(client, settings)  # idempotent: every worker start brings it up to date
        except RPCError as error:  # the worker runs without it; the next start tries again
            log.warning("schedules not created: %s", error)
        log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_target)
        async with ops.serving(engine, client, worker), worker:  # the listener outlives the shutdown
            await stop.wait()
    finally:
        await engine.dispose()


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_worker(settings, stop)


if __name__ == "__main__":
    asyncio.run(main())
