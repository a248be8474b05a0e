"""AccountsClient: the typed API over the lifecycle workflows.

Entry points hand it what a person typed; it applies the password policy, hashes the password
(so no plaintext reaches Temporal), allocates the customer reference and starts or messages the
workflow. It reads the database (token lookups) but never writes lifecycle state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from accounts import metrics, pending_credentials
from accounts.db import SessionFactory
from accounts.logs import know_customer
from accounts.models import Customer
from accounts.passwords import PasswordHasher, PasswordPolicy, user_inputs
from accounts.profile import SignUp
from accounts.references import allocate_customer_reference
from accounts.settings import Settings
from accounts.temporal import connect, lifecycle_attributes, ui_url
from accounts.tokens import find_issued, hash_token, usable
from activities.customers import EMAIL_VERIFICATION, NewCustomer
from starter.assists import Assists
from starter.customer_sessions import CustomerSessions
from starter.data_exports import DataExports
from starter.deletions import Deletions
from starter.email_changes import EmailChanges
from starter.errors import (
    AccountsError,
    EmailTaken,
    NotAwaitingVerification,
    PasswordRejected,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)
from starter.imports import Imports
from starter.inactivity import InactivityLifecycles
from starter.login import Authenticated, Logins
from starter.mfa import MfaLifecycles
from starter.passwords import Passwords
from starter.reauth import Reauthentication
from starter.staff_locks import StaffLockNotices
from workflows.registration import REVISION as REGISTRATION_REVISION
from workflows.registration import (
    Activation,
    ConfirmRequest,
    ManualVerification,
    RegistrationInput,
    RegistrationResult,
    RegistrationStatus,
    RegistrationTimings,
    RegistrationWorkflow,
    Resent,
)


@dataclass(kw_only=True)
class Registration(SignUp):
    """A sign-up as an entry point received it (already schema-validated); the password is hashed here."""

    password: str | None = field(default=None, repr=False)


@dataclass
class Registered:
    customer_reference: str
    created_at: datetime
    updated_at: datetime
    workflow_id: str


@dataclass
class Confirmation:
    outcome: str  # activated | already_active | invalid; pending only in a preview
    customer_reference: str | None = None
    locale: str | None = None
    first_name: str | None = None


log = logging.getLogger("accounts.registration")
# Enough to skip about four million references Temporal knows and the database forgot (see register).
REFERENCE_TRIES = 24


def registration_id(customer_reference: str) -> str:
    return f"registration:{customer_reference}"


def registration_timings(settings: Settings) -> RegistrationTimings:
    return RegistrationTimings(
        reminder_after=settings.verification_reminder_after,
        expires_after=settings.verification_expires_after,
        resend_min_interval=settings.verification_resend_min_interval,
        resend_max=settings.verification_resend_max,
        unverified_action=settings.unverified_action,
        already_registered_notice_interval=settings.already_registered_notice_interval,
    )


class AccountsClient:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        sessions: SessionFactory,
        *,
        hasher: PasswordHasher | None = None,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.temporal = client
        self._settings = settings
        self._sessions = sessions
        self._hasher = hasher or PasswordHasher.from_settings(settings)
        self._policy = policy or PasswordPolicy.from_settings(settings)
        self.logins = Logins(client, settings, sessions, self._hasher)
        self.passwords = Passwords(client, settings, sessions, self._hasher, self._policy, self.logins)
        self.reauth = Reauthentication(self.logins, sessions, settings)
        self.deletions = Deletions(client, settings, sessions)
        self.customer_sessions = CustomerSessions(client, settings, sessions)
        self.email_changes = EmailChanges(client, settings, sessions, self.passwords)
        self.imports = Imports(client, settings, registration_timings(settings))
        self.mfa = MfaLifecycles(client, settings)
        self.staff_locks = StaffLockNotices(client, settings)
        self.assists = Assists(client, settings, sessions)
        self.data_exports = DataExports(client, settings, sessions)
        self.inactivity = InactivityLifecycles(client)

    @classmethod
    async def connect(cls, settings: Settings, sessions: SessionFactory) -> AccountsClient:
        return cls(await connect(settings), settings, sessions)

    # --- registration -----------------------------------------------------------------------------

    async def register(self, registration: Registration) -> Registered:
        """Start the double opt-in. Raises PasswordRejected, or EmailTaken (the owner gets an email)."""
        password_hash = None
        if registration.password is not None:
            # ~5 ms of CPU on long inputs: off the event loop, like the hash
            personal = user_inputs(registration.email, registration.first_name, registration.last_name)
            violations = await asyncio.to_thread(self._policy.violations, registration.password, user_inputs=personal)
            if violations:
                raise PasswordRejected(violations)
            password_hash = await self._hasher.hash_async(registration.password)
        # The profile and the hash wait in the database; the workflow carries the row's id (issue 15).
        # A row left behind (this process died, Temporal refused) expires; create_customer deletes it.
        pending_id = await pending_credentials.store(
            self._sessions,
            lifetime=self._settings.pending_credential_lifetime,
            password_hash=password_hash,
            sign_up=registration,
        )
        skip = 0
        for attempt in range(REFERENCE_TRIES):
            reference = await allocate_customer_reference(
                self._sessions, prefix=self._settings.customer_reference_prefix, skip=skip
            )
            know_customer(reference)  # the request's later log lines name it (never the address)
            try:
                created = await self.temporal.execute_update_with_start_workflow(
                    RegistrationWorkflow.account_created,
                    start_workflow_operation=self._registration_start(reference, registration, pending_id),
                )
                break
            except WorkflowAlreadyStartedError:
                # Temporal knows this reference and the database does not: the database was restored
                # from a backup. Try the next one, then gallop (a gap of n costs about log2(n) tries).
                log.warning("customer reference %s already has a registration in Temporal; skipping it", reference)
                skip = 0 if attempt == 0 else max(1, skip * 2)
        else:
            raise RuntimeError(
                f"no free customer reference after {REFERENCE_TRIES} tries (last {reference}): Temporal holds"
                " registrations this database does not know"
            )
        if not created.created:
            raise EmailTaken(reference)
        metrics.REGISTRATIONS_STARTED.inc()
        assert created.created_at is not None and created.updated_at is not None
        return Registered(reference, created.created_at, created.updated_at, registration_id(reference))

    def _registration_start(
        self, reference: str, registration: Registration, pending_id: str
    ) -> WithStartWorkflowOperation[RegistrationWorkflow, RegistrationResult]:
        workflow_input = RegistrationInput(
            customer=NewCustomer.pending(reference, registration.channel, pending_id),
            timings=registration_timings(self._settings),
            revision=REGISTRATION_REVISION,
        )
        return WithStartWorkflowOperation(
            RegistrationWorkflow.run,
            workflow_input,
            id=registration_id(reference),
            task_queue=self._settings.task_queue,
            # A fresh reference never had a run. One that did (running or closed) means the database
            # was restored while Temporal kept its history: joining or reusing it would mix two customers.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"Registration of {reference} ({registration.channel})",
            search_attributes=lifecycle_attributes(reference, registration.channel),
        )

    async def preview_email_confirmation(self, token: str) -> Confirmation:
        """What the link's page shows before its button is pressed (`pending`, `already_active`, `invalid`):
        a read only, because mail scanners open links too. Only confirm_email confirms."""
        found = await find_issued(self._sessions, token, EMAIL_VERIFICATION)
        if found is None:
            return Confirmation("invalid")
        issued, customer = found
        known = Confirmation("pending", customer.customer_reference, customer.locale, customer.first_name)
        if customer.registered_at is not None and customer.anonymized_at is None:
            known.outcome = "already_active"
        elif not usable(issued):
            known.outcome = "invalid"
        return known

    async def confirm_email(self, token: str) -> Confirmation:
        """Confirm with the token from the email link; the token is hashed before anything else sees it."""
        token_hash = hash_token(token)
        found = await find_issued(self._sessions, token, EMAIL_VERIFICATION)
        if found is None:
            return Confirmation("invalid")
        issued, customer = found
        known = Confirmation("invalid", customer.customer_reference, customer.locale, customer.first_name)
        if customer.registered_at is not None and customer.anonymized_at is None:
            known.outcome = "already_active"
            return known
        if not usable(issued):
            return known
        try:
            await self.temporal.get_workflow_handle(registration_id(customer.customer_reference)).execute_update(
                RegistrationWorkflow.confirm, ConfirmRequest(token_hash)
            )
        except (WorkflowUpdateFailedError, RPCError) as error:
            _raise_unless_rejection(error)
            return known
        known.outcome = "activated"
        return known

    async def verify_manually(self, customer_reference: str, *, agent: str, reason: str) -> Activation:
        try:
            return await self._registration(customer_reference).execute_update(
                RegistrationWorkflow.verify_manually, ManualVerification(agent, reason)
            )
        except (WorkflowUpdateFailedError, RPCError) as error:
            raise await self._explain(error, customer_reference) from error

    async def resend_verification(self, customer_reference: str) -> Resent:
        try:
            return await self._registration(customer_reference).execute_update(RegistrationWorkflow.resend)
        except (WorkflowUpdateFailedError, RPCError) as error:
            raise await self._explain(error, customer_reference) from error

    async def _explain(self, error: Exception, customer_reference: str) -> Exception:
        """A closed registration is no lookup failure when the customer exists: say what state it is in."""
        mapped = _business_error(error, customer_reference)
        # a run still finishing its verification refuses with the bare reference: say the state here too
        if isinstance(mapped, RegistrationNotFound | NotAwaitingVerification):
            async with self._sessions() as session:
                customer = await session.scalar(
                    select(Customer).where(Customer.customer_reference == customer_reference)
                )
            if customer is not None:
                return NotAwaitingVerification(f"{customer_reference} is {customer.status}")
        return mapped

    async def registration_status(self, customer_reference: str) -> RegistrationStatus:
        try:
            return await self._registration(customer_reference).query(RegistrationWorkflow.status)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RegistrationNotFound(customer_reference) from error
            raise

    async def customer_by_id(self, customer_id: int) -> Authenticated | None:
        """The signed-in identity behind a refresh token, if that customer may still sign in."""
        async with self._sessions() as session:
            customer = await session.get(Customer, customer_id)
        if customer is None or customer.status != "verified":
            return None
        return Authenticated(
            customer.id,
            customer.customer_reference,
            customer.token_version,
            last_signed_in_at=customer.last_signed_in_at,
            inactivity_stage=customer.inactivity_stage,
        )

    async def customer_by_reference(self, customer_reference: str) -> Customer | None:
        async with self._sessions() as session:
            return await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))

    def run_url(self, customer_reference: str) -> str:
        return ui_url(self._settings, registration_id(customer_reference))

    def _registration(self, customer_reference: str) -> WorkflowHandle[RegistrationWorkflow, RegistrationResult]:
        return self.temporal.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(customer_reference))


def _business_error(error: Exception, customer_reference: str) -> Exception:
    if isinstance(error, RPCError):
        if error.status == RPCStatusCode.NOT_FOUND:
            return RegistrationNotFound(customer_reference)
        return error
    cause = error.cause if isinstance(error, WorkflowUpdateFailedError) else None
    if not isinstance(cause, ApplicationError):
        return error
    if cause.type == "ResendThrottled":
        return ResendThrottled(int(cause.details[0]) if cause.details else 60)
    if cause.type == "ResendLimitReached":
        return ResendLimitReached(customer_reference)
    if cause.type in ("NotWaiting", "InvalidToken"):
        return NotAwaitingVerification(customer_reference)
    return AccountsError(cause.message)


def _raise_unless_rejection(error: Exception) -> None:
    """A confirm refused by the workflow (closed, expired, unknown token) is an invalid link, nothing worse."""
    mapped = _business_error(error, "")
    if not isinstance(mapped, AccountsError):
        raise mapped
