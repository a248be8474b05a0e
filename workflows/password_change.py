"""Password change: a new password set by the customer (change) or by support (set), made durable.

store the hash (from a pending credential: the input carries its id), end every session, clear the lockout
    -> `stored` answers the caller
the "password changed" email, even if the API process died right after the request
cancelled (the account is being deleted): `stored` answers AccountDeleted if the hash was not stored,
    nothing more is sent, the run ends Canceled

Its other parts: route `PATCH /customer-password/{customer_reference}` (api/routes/passwords.py); client
`AccountsClient.passwords.change` and `set_by_support` (starter/passwords.py); activities
activities/passwords.py and activities/emails.py; email templates/emails/<locale>/password_changed.*.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE
    from activities.emails import EmailActivities, NoticeInput
    from activities.passwords import PasswordActivities, SetPassword
    from workflows.keys import lifecycle_key
    from workflows.password_reset import clear_lockout
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS


@dataclass
class PasswordChange:
    customer_reference: str
    password_hash: str | None  # runs started before issue 15; since then None and credential_id
    event: str  # password_changed | password_set
    channel: str
    actor: str
    credential_id: str | None = None  # accounts/pending_credentials.py: set_password reads and deletes it


@workflow.defn
class PasswordChangeWorkflow:
    def __init__(self) -> None:
        self._stored = False
        self._cancelled = False

    @workflow.run
    async def run(self, change: PasswordChange) -> None:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(change.customer_reference)])
        try:
            await self._change(change)
        except asyncio.CancelledError:
            # the caller waiting on `stored` gets an answer instead of a run that vanished under it
            self._cancelled = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise

    async def _change(self, change: PasswordChange) -> None:
        key = lifecycle_key()
        await workflow.execute_activity_method(
            PasswordActivities.set_password,
            SetPassword(
                change.customer_reference,
                change.password_hash,
                change.event,
                change.channel,
                change.actor,
                key,
                credential_id=change.credential_id,
            ),
            **ACTIVITY_OPTIONS,
        )
        self._stored = True
        await clear_lockout(change.customer_reference)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(change.customer_reference, "password_changed", f"{key}/changed", changed_at=workflow.now()),
            **ACTIVITY_OPTIONS,
            **email_options(),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def stored(self) -> bool:
        await workflow.wait_condition(lambda: self._stored or self._cancelled)
        if not self._stored:
            raise ApplicationError("the account is being deleted", type="AccountDeleted")
        return True
