"""Email change for every entry point: request a change (always the same answer) and confirm it by link."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from accounts import throttle
from accounts.db import SessionFactory
from accounts.email_address import email_key
from accounts.models import Customer, utcnow
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from accounts.throttle import Blocked, ThrottlePolicy
from accounts.tokens import find_issued, hash_token
from activities.email_change import EMAIL_CHANGE
from starter.errors import EmailChangeThrottled
from workflows.email_change import (
    EmailChangeConfirm,
    EmailChangeInput,
    EmailChangeRequest,
    EmailChangeStatus,
    EmailChangeWorkflow,
    email_change_id,
)


@dataclass
class EmailConfirmation:
    outcome: str  # changed | invalid; pending only in a preview
    customer_reference: str | None = None
    locale: str | None = None
    first_name: str | None = None


class EmailChanges:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
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

    async def preview(self, token: str) -> EmailConfirmation:
        """What the link's page shows before its button is pressed (`pending` or `invalid`): a read only,
        because mail scanners open links too. Only confirm changes the address."""
        found = await find_issued(self._sessions, token, EMAIL_CHANGE)
        if found is None:
            return EmailConfirmation("invalid")
        issued, customer = found
        usable = issued.used_at is None and issued.expires_at > utcnow() and customer.status == "verified"
        return EmailConfirmation(
            "pending" if usable else "invalid", customer.customer_reference, customer.locale, customer.first_name
        )

    async def confirm(self, token: str) -> EmailConfirmation:
        """The link's token, hashed before anything else sees it. `invalid` covers unknown, used, expired and
        superseded links alike."""
        found = await find_issued(self._sessions, token, EMAIL_CHANGE)
        if found is None:
            return EmailConfirmation("invalid")
        issued, customer = found
        answer = EmailConfirmation("invalid", customer.customer_reference, customer.locale, customer.first_name)
        if issued.used_at is not None or issued.expires_at <= utcnow() or customer.status != "verified":
            return answer
        handle = self._client.get_workflow_handle_for(
            EmailChangeWorkflow.run, email_change_id(customer.customer_reference)
        )
        try:
            await handle.execute_update(EmailChangeWorkflow.confirm, EmailChangeConfirm(hash_token(token)))
        except WorkflowUpdateFailedError:
            return answer
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:  # the change ended (expired or done)
                return answer
            raise  # Temporal unreachable: the API answers 503 and the link stays valid
        answer.outcome = "changed"
        return answer

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
