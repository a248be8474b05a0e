"""Password use cases for every entry point (REST API, storefront form, CLI, back office):
forgotten password, reset completion, change, set by support, forced reset, set-password links."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from accounts import pending_credentials
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer
from accounts.passwords import PasswordHasher, PasswordPolicy, user_inputs
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from accounts.tokens import find_issued, hash_token, usable
from activities.passwords import PASSWORD_RESET
from starter.errors import AccountsError, InvalidResetKey, PasswordRejected, RegistrationNotFound
from starter.login import Logins
from workflows.password_change import PasswordChange, PasswordChangeWorkflow
from workflows.password_reset import CompleteReset, ForceRequest, PasswordResetWorkflow, ResetInput, ResetTimings

log = logging.getLogger("accounts.passwords")


def reset_id(customer_reference: str) -> str:
    return f"password-reset:{customer_reference}"


@dataclass(frozen=True)
class ResetLink:
    valid: bool  # neither used nor expired (its form may be sent)
    locale: str | None  # the customer's, when the key names one: the page speaks their language


class Passwords:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        sessions: SessionFactory,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        logins: Logins,
    ) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._hasher = hasher
        self._policy = policy
        self._logins = logins

    async def forgotten(self, email: str) -> None:
        """Start or join the reset for this address; nothing (and no difference) for an unknown one.

        The API runs this after its answer (so known and unknown addresses cost the same time), where no
        request deadline applies: it is bounded here, so an outage leaves no task waiting forever. A reset
        started before the bound goes on by itself; a request lost to the outage is asked again."""
        customer = await self._by_email(email)
        if customer is None:
            return
        try:
            async with asyncio.timeout(self._settings.request_timeout.total_seconds()):
                await self._start_reset(
                    customer.customer_reference, kind="reset", channel="storefront", actor="customer"
                )
        except (TimeoutError, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
            log.warning("forgotten password of %s not handed on: %s", customer.customer_reference, type(error).__name__)

    async def preview_reset(self, token: str) -> ResetLink:
        """What the reset link's page shows before its form is sent: a read only (mail scanners open links)."""
        found = await find_issued(self._sessions, token, PASSWORD_RESET) if token else None
        if found is None:
            return ResetLink(valid=False, locale=None)
        issued, customer = found
        return ResetLink(valid=usable(issued), locale=customer.locale)

    async def complete_reset(self, token: str, password: str) -> str:
        """Set the new password with the emailed key. Raises InvalidResetKey or PasswordRejected."""
        token_hash = hash_token(token)
        found = await find_issued(self._sessions, token, PASSWORD_RESET)
        if found is None or not usable(found[0]):
            raise InvalidResetKey()
        customer = found[1]
        credential_id = await self._pending(customer, await self.checked_hash(password, customer))
        handle = self._client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(customer.customer_reference))
        try:
            await handle.execute_update(
                PasswordResetWorkflow.complete, CompleteReset(token_hash, credential_id=credential_id)
            )
        except WorkflowUpdateFailedError as error:  # refused: the hash will never be applied
            await pending_credentials.discard(self._sessions, credential_id)
            raise InvalidResetKey() from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:  # the reset ended (expired or completed)
                await pending_credentials.discard(self._sessions, credential_id)
                raise InvalidResetKey() from error
            raise  # Temporal unreachable: the API answers 503, the key stays valid (the row expires)
        self._logins.forget_refusals(customer.email)  # the reset cleared the lockout
        return customer.customer_reference

    async def change(self, customer: Customer, *, current: str, new: str, client_ip: str) -> None:
        """The signed-in customer's change. A wrong current password counts as a failed sign-in."""
        await self._logins.check_password(customer, current, client_ip=client_ip)
        await self._store(customer, await self.checked_hash(new, customer), event="password_changed",
                          channel="storefront", actor=customer.customer_reference)  # fmt: skip

    async def set_by_support(self, customer_reference: str, password: str, *, agent: str) -> None:
        customer = await self._by_reference(customer_reference)
        await self._store(customer, await self.checked_hash(password, customer), event="password_set",
                          channel="backoffice", actor=agent)  # fmt: skip

    async def send_reset_link(self, customer_reference: str, *, channel: str, actor: str) -> None:
        """A reset link to the customer's address, as a forgotten password sends (an undone email change)."""
        await self._start_reset(customer_reference, kind="reset", channel=channel, actor=actor)

    async def send_set_password_link(self, customer_reference: str, *, agent: str) -> None:
        await self._by_reference(customer_reference)
        await self._start_reset(customer_reference, kind="set_password", channel="backoffice", actor=agent)

    async def force_reset(self, customer_reference: str, *, agent: str) -> None:
        """The current password stops working before this returns; a reset link goes out.

        A running reset becomes the forced one through its own `force` update (its links die, support's
        link replaces them), so nothing is terminated halfway. A reset that is just ending (completed
        or expired a moment ago) refuses; then we wait for it to close and start a fresh forced one."""
        await self._by_reference(customer_reference)
        handle = self._client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(customer_reference))
        for _ in range(3):
            start = WithStartWorkflowOperation(
                PasswordResetWorkflow.run,
                self._input(customer_reference, "forced", "backoffice", agent),
                id=reset_id(customer_reference),
                task_queue=self._settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=lifecycle_attributes(customer_reference, "backoffice"),
            )
            try:
                await self._client.execute_update_with_start_workflow(
                    PasswordResetWorkflow.force, ForceRequest(agent), start_workflow_operation=start
                )
                return
            except WorkflowUpdateFailedError as error:
                if not _refused_as(error, "NotWaiting", "ForceInProgress"):
                    raise
            with contextlib.suppress(WorkflowFailureError, RPCError):
                await handle.result(follow_runs=False)  # the ending run closes; then a fresh one starts
        raise AccountsError(f"could not force a reset for {customer_reference}: other resets kept starting")

    async def send_links_to_customers_without_password(self, *, agent: str) -> AsyncIterator[tuple[str, bool]]:
        """Bulk set-password links to active customers without a password: yields (reference, sent).

        Resumable: a customer whose link is still running is skipped, so an interrupted run can be
        started again without mailing anyone twice."""
        last_id = 0
        while True:
            async with self._sessions() as session:
                batch = (
                    await session.execute(
                        select(Customer.id, Customer.customer_reference)
                        .where(
                            Customer.id > last_id,
                            Customer.password_hash.is_(None),
                            Customer.registered_at.is_not(None),
                            Customer.anonymized_at.is_(None),
                        )
                        .order_by(Customer.id)
                        .limit(200)
                    )
                ).all()
            if not batch:
                return
            for customer_id, reference in batch:
                last_id = customer_id
                try:
                    await self._client.start_workflow(
                        PasswordResetWorkflow.run,
                        self._input(reference, "set_password", "backoffice", agent, bulk=True),
                        id=reset_id(reference),
                        task_queue=self._settings.task_queue,
                        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                        search_attributes=lifecycle_attributes(reference, "backoffice"),
                    )
                    yield reference, True
                except WorkflowAlreadyStartedError:
                    yield reference, False

    async def count_customers_without_password(self) -> int:
        from sqlalchemy import func

        async with self._sessions() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(Customer)
                    .where(
                        Customer.password_hash.is_(None),
                        Customer.registered_at.is_not(None),
                        Customer.anonymized_at.is_(None),
                    )
                )
                or 0
            )

    async def checked_hash(self, password: str, customer: Customer) -> str:
        personal = user_inputs(customer.email, customer.first_name, customer.last_name)
        violations = await asyncio.to_thread(self._policy.violations, password, user_inputs=personal)
        if violations:
            raise PasswordRejected(violations)
        return await self._hasher.hash_async(password)

    async def _pending(self, customer: Customer, password_hash: str) -> str:
        """The hash waits in the database; the workflow carries the id (no hash in any payload)."""
        return await pending_credentials.store(
            self._sessions,
            lifetime=self._settings.pending_credential_lifetime,
            customer_reference=customer.customer_reference,
            password_hash=password_hash,
        )

    async def _store(self, customer: Customer, password_hash: str, *, event: str, channel: str, actor: str) -> None:
        credential_id = await self._pending(customer, password_hash)
        start = WithStartWorkflowOperation(
            PasswordChangeWorkflow.run,
            PasswordChange(customer.customer_reference, None, event, channel, actor, credential_id=credential_id),
            id=f"password-change:{customer.customer_reference}:{uuid.uuid4().hex[:12]}",
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=lifecycle_attributes(customer.customer_reference, channel),
        )
        # Answers once the hash is stored; the email follows durably whatever happens to this process.
        try:
            await self._client.execute_update_with_start_workflow(
                PasswordChangeWorkflow.stored, start_workflow_operation=start
            )
        except WorkflowUpdateFailedError as error:  # AccountDeleted: a deletion ended the change
            await pending_credentials.discard(self._sessions, credential_id)
            raise RegistrationNotFound(customer.customer_reference) from error

    async def _start_reset(self, customer_reference: str, *, kind: str, channel: str, actor: str) -> None:
        """One workflow per customer: a repeated request is its `request_link` Update, and a request the
        throttle refuses is refused by the validator, so it costs the workflow's history nothing."""
        start = WithStartWorkflowOperation(
            PasswordResetWorkflow.run,
            self._input(customer_reference, kind, channel, actor),
            id=reset_id(customer_reference),
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=lifecycle_attributes(customer_reference, channel),
        )
        try:
            await self._client.execute_update_with_start_workflow(
                PasswordResetWorkflow.request_link, start_workflow_operation=start
            )
        except WorkflowUpdateFailedError as error:
            if not _refused_as(error, "ResendThrottled", "NotWaiting"):
                raise
            # throttled (the customer has enough links), or the reset is ending: nothing to send

    def _input(self, customer_reference: str, kind: str, channel: str, actor: str, *, bulk: bool = False) -> ResetInput:
        settings = self._settings
        return ResetInput(
            customer_reference,
            kind,
            channel,
            actor,
            ResetTimings(settings.password_reset_expires_after, settings.password_reset_resend_min_interval,
                         settings.password_reset_resends_per_hour),
            history_limit=settings.password_reset_history_limit,
            bulk=bulk,
        )  # fmt: skip

    async def _by_email(self, email: str) -> Customer | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Customer).where(Customer.email_key == email_key(email), Customer.anonymized_at.is_(None))
            )

    async def _by_reference(self, customer_reference: str) -> Customer:
        async with self._sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))
        if customer is None or customer.anonymized_at is not None:
            raise RegistrationNotFound(customer_reference)
        return customer


def _refused_as(error: WorkflowUpdateFailedError, *types: str) -> bool:
    return isinstance(error.cause, ApplicationError) and error.cause.type in types


__all__ = ["AccountsError", "Passwords", "reset_id"]
