"""Customers' lifecycles: their runs read live from Temporal (listed by the `CustomerReference` search
attribute, running ones queried; never copied into the database), and the actions staff take on them,
which go through `starter.AccountsClient` (the workflows write; these add who asked).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from accounts.email_address import email_key
from accounts.models import Customer
from accounts.settings import Settings
from accounts.staff import StaffMember
from accounts.temporal import LIFECYCLE_STAGE, ui_url
from backoffice.base import CHANNEL, Area, require_customer
from backoffice.permissions import Conflict, CustomerNotFound, EmailInUse, InvalidInput, authorize
from backoffice.profiles import checked_locale, checked_profile
from starter.client import AccountsClient, Registration
from starter.errors import EmailTaken, RegistrationNotFound
from workflows.email_change import AWAITING_CONFIRMATION, UNDO_OPEN, EmailChangeWorkflow
from workflows.lockout import LockoutWindowWorkflow
from workflows.password_reset import PasswordResetWorkflow
from workflows.registration import WAITING_STAGES, Activation, RegistrationWorkflow, Resent

LIFECYCLE_RUNS = 50
# A back-office page must not hang on an unreachable cluster or a query to a run whose worker is down.
TEMPORAL_TIMEOUT = timedelta(seconds=3)


@dataclass
class LifecycleRun:
    kind: str  # registration | password-reset | password-change | lockout | anonymization | email-change
    workflow_id: str
    run_id: str
    status: str  # running | completed | failed | canceled | terminated | timed_out | continued_as_new
    stage: str | None
    deadlines: dict[str, datetime]
    pending_actions: list[str]  # what the run waits for right now
    ui_url: str
    started_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass
class CustomerDraft:
    """A customer created by staff: no password (the customer sets one through an emailed link)."""

    email: str
    first_name: str
    last_name: str
    salutation: str | None = None
    gender: str | None = None
    date_of_birth: date | None = None
    phone: str | None = None
    company: str | None = None
    locale: str | None = None


@dataclass
class CreatedCustomer:
    customer_reference: str
    created_at: datetime
    workflow_id: str
    password_token_sent: bool


class Lifecycles(Area):
    async def lifecycle(self, customer_reference: str) -> tuple[list[LifecycleRun], str]:
        """The customer's workflow runs, newest first, and "ok", or ([], "unavailable") without Temporal."""
        return await read_lifecycle(self._accounts, self._settings, customer_reference)

    # starting a lifecycle: a customer created by staff

    async def create_customer(
        self, draft: CustomerDraft, staff: StaffMember, *, send_password_token: bool = False
    ) -> CreatedCustomer:
        """Start a registration with channel `backoffice` and no password; its workflow sends the
        verification email. With send_password_token the customer also gets a "set your password" link,
        which verifies the address too when used first."""
        authorize(staff, "customers.create")
        registration = self._registration(draft)
        async with self._sessions() as session:
            # staff need no anti-enumeration answer, and the owner needs no "already registered" email
            taken = await session.scalar(select(Customer.id).where(Customer.email_key == email_key(registration.email)))
        if taken is not None:
            raise EmailInUse()
        try:
            registered = await self._accounts.register(registration)
        except EmailTaken:  # lost a race with another sign-up of the address
            raise EmailInUse() from None
        await self._record(registered.customer_reference, "customer_created", staff)
        if send_password_token:
            await self.send_password_token(registered.customer_reference, staff)
        return CreatedCustomer(registered.customer_reference, registered.created_at, registered.workflow_id,
                               send_password_token)  # fmt: skip

    def _registration(self, draft: CustomerDraft) -> Registration:
        email = draft.email.strip()
        if len(email) > 100:
            raise InvalidInput("email", "must have 100 characters or less")
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            raise InvalidInput("email", "is not a valid email address") from None
        profile = checked_profile(
            {
                "first_name": draft.first_name,
                "last_name": draft.last_name,
                "salutation": draft.salutation,
                "gender": draft.gender,
                "date_of_birth": draft.date_of_birth,
                "phone": draft.phone,
                "company": draft.company,
            },
            self._settings,
        )
        locale = checked_locale(draft.locale, self._settings) if draft.locale else self._settings.default_locale
        return Registration(email=email, channel=CHANNEL, locale=locale, **profile)

    # lifecycle actions (the workflows write; these add who asked)

    async def verify_manually(self, customer_reference: str, staff: StaffMember, reason: str) -> Activation:
        authorize(staff, "customers.verify")
        return await self._accounts.verify_manually(customer_reference, agent=staff.name, reason=reason)

    async def resend_verification(self, customer_reference: str, staff: StaffMember) -> Resent:
        authorize(staff, "customers.resend_verification")
        resent = await self._accounts.resend_verification(customer_reference)
        await self._record(customer_reference, "verification_resent", staff)
        return resent

    async def unlock(self, customer_reference: str, staff: StaffMember, reason: str) -> datetime:
        """Lift a sign-in lock; returns when it would have ended. NotLocked when there is none."""
        authorize(staff, "customers.unlock")
        if await self._accounts.customer_by_reference(customer_reference) is None:
            raise CustomerNotFound(customer_reference)
        unlocked = await self._accounts.logins.unlock(customer_reference, agent=staff.name, reason=reason)
        return unlocked.was_locked_until

    async def send_password_token(self, customer_reference: str, staff: StaffMember) -> None:
        authorize(staff, "customers.send_password_token")
        await self._accounts.passwords.send_set_password_link(customer_reference, agent=staff.name)
        await self._record(customer_reference, "password_token_sent", staff)

    async def export_data(self, customer_reference: str, staff: StaffMember) -> str:
        """Start a data export of the customer (workflows/data_export.py): the link goes to the customer, whose
        sign-in opens it, never to staff; audited `data_export_requested` with the staff member as actor.
        Returns the export's id. No once-a-day limit (that is the customer's own request's)."""
        authorize(staff, "customers.export_data")
        async with self._sessions() as session:
            customer = await require_customer(session, customer_reference)
        if customer.status != "verified":  # only a verified customer can sign in to download it
            raise Conflict(f"{customer_reference} is {customer.status}")
        return await self._accounts.data_exports.request(customer_reference, channel=CHANNEL, actor=staff.name)

    async def set_password(self, customer_reference: str, staff: StaffMember, password: str) -> None:
        authorize(staff, "customers.set_password")
        await self._accounts.passwords.set_by_support(customer_reference, password, agent=staff.name)

    async def force_password_reset(self, customer_reference: str, staff: StaffMember) -> None:
        authorize(staff, "customers.force_password_reset")
        await self._accounts.passwords.force_reset(customer_reference, agent=staff.name)

    async def delete_customer(self, customer_reference: str, staff: StaffMember) -> None:
        """Anonymize (the deletion workflow); notes and group memberships go with the personal data."""
        authorize(staff, "customers.delete")
        try:
            await self._accounts.deletions.delete(customer_reference, channel=CHANNEL, actor=staff.name)
        except RegistrationNotFound:
            raise CustomerNotFound(customer_reference) from None


# --- the live lifecycle -----------------------------------------------------------------------------------


async def read_lifecycle(
    accounts: AccountsClient, settings: Settings, customer_reference: str
) -> tuple[list[LifecycleRun], str]:
    try:
        runs = await asyncio.wait_for(
            _runs(accounts, settings, customer_reference), 3 * TEMPORAL_TIMEOUT.total_seconds()
        )
    except (RPCError, RuntimeError, TimeoutError, OSError):
        return [], "unavailable"
    return runs, "ok"


async def _runs(accounts: AccountsClient, settings: Settings, customer_reference: str) -> list[LifecycleRun]:
    if '"' in customer_reference or "\\" in customer_reference:
        return []  # no reference has them; they would only break the query
    client = accounts.temporal
    executions = [
        execution
        async for execution in client.list_workflows(
            f'CustomerReference = "{customer_reference}"', limit=LIFECYCLE_RUNS, rpc_timeout=TEMPORAL_TIMEOUT
        )
    ]
    executions.sort(key=lambda e: e.start_time, reverse=True)
    return list(await asyncio.gather(*(_run(client, settings, execution) for execution in executions)))


async def _run(client: Client, settings: Settings, execution: WorkflowExecution) -> LifecycleRun:
    kind = execution.id.split(":", 1)[0]
    status = execution.status.name.lower() if execution.status is not None else "unknown"
    run = LifecycleRun(
        kind=kind,
        workflow_id=execution.id,
        run_id=execution.run_id,
        status=status,
        stage=execution.typed_search_attributes.get(LIFECYCLE_STAGE),
        deadlines={},
        pending_actions=[],
        ui_url=ui_url(settings, execution.id, execution.run_id),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )
    if execution.status == WorkflowExecutionStatus.RUNNING:
        try:
            await _query_running(client, execution, run)
        except (RPCError, RuntimeError, TimeoutError):
            run.pending_actions = ["(the run did not answer: is a worker running?)"]
        except Exception:  # a failed query or an answer of another shape: one run must not break the page
            run.pending_actions = ["(the run's status could not be read)"]
    return run


async def _query_running(client: Client, execution: WorkflowExecution, run: LifecycleRun) -> None:
    """Stage, deadlines and what the run waits for, from its own `status` query."""
    if run.kind == "registration":
        registration = await client.get_workflow_handle_for(RegistrationWorkflow.run, execution.id).query(
            RegistrationWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = registration.stage
        if registration.stage in WAITING_STAGES:
            run.deadlines = {"reminder": registration.reminder_at, "expiry": registration.expires_at}
            if registration.stage != "awaiting_verification":
                run.deadlines.pop("reminder")
            if registration.next_resend_at is not None:
                run.deadlines["next_resend"] = registration.next_resend_at
            run.pending_actions = ["confirm (email link)", "verify manually"]
            if registration.resends_left > 0:
                run.pending_actions.append("resend")
    elif run.kind == "password-reset":
        reset = await client.get_workflow_handle_for(PasswordResetWorkflow.run, execution.id).query(
            PasswordResetWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = reset.stage
        if not reset.completing and not reset.completed:
            run.pending_actions = ["new password (email link)", "resend"]
            if reset.sent_at:
                run.deadlines = {"last_link_sent": reset.sent_at[-1]}
    elif run.kind == "email-change":
        change = await client.get_workflow_handle_for(EmailChangeWorkflow.run, execution.id).query(
            EmailChangeWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = change.stage
        if change.stage == AWAITING_CONFIRMATION:
            if change.expires_at is not None:
                run.deadlines = {"link_expiry": change.expires_at}
            address = f" ({change.pending_email})" if change.pending_email else ""
            run.pending_actions = [f"confirmation of the new address{address}"]
        elif change.stage == UNDO_OPEN and change.undo_open_until is not None:
            run.deadlines = {"undo_link_expiry": change.undo_open_until}
            run.pending_actions = ["undo from the old address (email link)"]
    elif run.kind == "lockout":
        lockout = await client.get_workflow_handle_for(LockoutWindowWorkflow.run, execution.id).query(
            LockoutWindowWorkflow.status, rpc_timeout=TEMPORAL_TIMEOUT
        )
        run.stage = lockout.stage
        if lockout.window_ends_at is not None:
            run.deadlines["window_ends"] = lockout.window_ends_at
        if lockout.locked_until is not None:
            run.deadlines["locked_until"] = lockout.locked_until
            run.pending_actions = ["unlock (support)", "password reset"]
