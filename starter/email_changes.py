"""Email change for every entry point: request a change (always the same answer), confirm it by link, and
undo it by the link sent to the old address."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from accounts import throttle
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from accounts.throttle import Blocked, ThrottlePolicy
from accounts.tokens import find_issued, hash_token, usable
from activities.email_change import EMAIL_CHANGE, EMAIL_CHANGE_UNDO, UNDONE
from starter.errors import EmailChangeThrottled
from starter.passwords import Passwords
from workflows.email_change import (
    EmailChangeConfirm,
    EmailChangeInput,
    EmailChangeRequest,
    EmailChangeStatus,
    EmailChangeUndo,
    EmailChangeWorkflow,
    email_change_id,
)

log = logging.getLogger("accounts.email_changes")


@dataclass
class EmailConfirmation:
    outcome: str  # changed | invalid; pending only in a preview; an undo: undone | undo_blocked
    customer_reference: str | None = None
    locale: str | None = None
    first_name: str | None = None


class EmailChanges:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory, passwords: Passwords) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._passwords = passwords
        # a window of an hour opened by the first request; it ends by the clock (no lock, no workflow)
        self._bound = ThrottlePolicy(
            max_failures=settings.email_change_requests_per_hour, window=timedelta(hours=1), lock_duration=timedelta(0)
        )

    async def request(self, customer: Customer, new_email: str, *, channel: str, actor: str) -> None:
        """Ask the new address to confirm. Returns as soon as the request is durable, the same way whether the
        address is free or taken; a newer request replaces a pending one. The same address: nothing happens.
        Raises EmailChangeThrottled beyond ACCOUNTS_EMAIL_CHANGE_REQUESTS_PER_HOUR (per customer, so the
        answer says nothing about the address)."""
        if email_key(new_email) == customer.email_key:
            return
        # Counted in the database, not in the workflow: a run ends when a change is confirmed or an address
        # proves taken, and a count kept there would start again with the next run.
        try:
            reservation = await throttle.reserve(
                self._sessions, email_change_subject(customer.customer_reference), self._bound
            )
        except Blocked as blocked:
            raise EmailChangeThrottled(max(1, math.ceil(blocked.retry_after.total_seconds()))) from None
        start = WithStartWorkflowOperation(
            EmailChangeWorkflow.run,
            EmailChangeInput(
                customer.customer_reference,
                expires_after=self._settings.email_change_expires_after,
                already_registered_notice_interval=self._settings.already_registered_notice_interval,
                undo_lifetime=self._settings.email_change_undo_lifetime,
            ),
            id=email_change_id(customer.customer_reference),
            task_queue=self._settings.task_queue,
            # one workflow per customer: a request while one is pending joins it and replaces the older
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"Email change of {customer.customer_reference}",
            search_attributes=lifecycle_attributes(customer.customer_reference, channel),
        )
        try:
            await self._client.execute_update_with_start_workflow(
                EmailChangeWorkflow.request,
                EmailChangeRequest(new_email, channel, actor),
                start_workflow_operation=start,
            )
        except BaseException:  # not accepted (Temporal unreachable, say): the request does not count
            await throttle.release(self._sessions, reservation, forget_failures=False)
            raise

    async def preview(self, token: str, purpose: str = EMAIL_CHANGE) -> EmailConfirmation:
        """What the link's page shows before its button is pressed (`pending` or `invalid`): a read only,
        because mail scanners open links too. Only confirm (or undo) changes the address."""
        found = await find_issued(self._sessions, token, purpose)
        if found is None:
            return EmailConfirmation("invalid")
        issued, customer = found
        good = usable(issued) and customer.status == "verified"
        return EmailConfirmation(
            "pending" if good else "invalid", customer.customer_reference, customer.locale, customer.first_name
        )

    async def confirm(self, token: str) -> EmailConfirmation:
        """The link's token, hashed before anything else sees it. `invalid` covers unknown, used, expired and
        superseded links alike."""
        answer, outcome = await self._link_update(
            token, EMAIL_CHANGE, EmailChangeWorkflow.confirm, EmailChangeConfirm(hash_token(token))
        )
        if outcome is not None:
            answer.outcome = outcome  # changed
        return answer

    async def preview_undo(self, token: str) -> EmailConfirmation:
        return await self.preview(token, EMAIL_CHANGE_UNDO)

    async def undo(self, token: str) -> EmailConfirmation:
        """The old address's link: restores it and ends every session; then a password reset link goes to it
        (whoever changed the address may know the password). `invalid` for unknown, used, expired links and
        those undone with an earlier change; `undo_blocked` when another account has the address now."""
        answer, outcome = await self._link_update(
            token, EMAIL_CHANGE_UNDO, EmailChangeWorkflow.undo, EmailChangeUndo(hash_token(token))
        )
        if outcome is None:
            return answer
        answer.outcome = outcome
        if outcome == UNDONE:
            assert answer.customer_reference is not None
            try:
                await self._passwords.send_reset_link(answer.customer_reference, channel="email", actor="customer")
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
                # the undo is done and must be answered as done; the page also points to "forgotten password"
                log.warning("reset link after the undo of %s not sent: %s", answer.customer_reference,
                            type(error).__name__)  # fmt: skip
        return answer

    async def _link_update(
        self, token: str, purpose: str, update: Any, argument: Any
    ) -> tuple[EmailConfirmation, Any | None]:
        """An emailed link of the email change as the workflow's Update `update`: the answer for the page
        (`invalid` until the Update says otherwise) and the Update's result, None when the link is no live
        one, the workflow refused it, or the change ended. Temporal unreachable raises (the API answers 503
        and the link stays valid)."""
        found = await find_issued(self._sessions, token, purpose)
        if found is None:
            return EmailConfirmation("invalid"), None
        issued, customer = found
        answer = EmailConfirmation("invalid", customer.customer_reference, customer.locale, customer.first_name)
        if not usable(issued) or customer.status != "verified":
            return answer, None
        handle = self._client.get_workflow_handle_for(
            EmailChangeWorkflow.run, email_change_id(customer.customer_reference)
        )
        try:
            return answer, await handle.execute_update(update, argument)
        except WorkflowUpdateFailedError:
            return answer, None
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:  # the change, or its undo window, ended
                return answer, None
            raise

    async def status(self, customer_reference: str) -> EmailChangeStatus | None:
        """The pending change as the workflow sees it; None when none ever ran."""
        try:
            return await self._client.get_workflow_handle_for(
                EmailChangeWorkflow.run, email_change_id(customer_reference)
            ).query(EmailChangeWorkflow.status)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise


def email_change_subject(customer_reference: str) -> str:
    """The throttle row that counts a customer's email change requests (accounts.throttle)."""
    return f"email-change:{customer_reference}"
