"""Password change: a new password set by the customer (change) or by support (set), made durable.

store the hash, end every session, clear the lockout -> `stored` answers the caller
the "password changed" email, even if the API process died right after the request
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE
    from activities.emails import EmailActivities, NoticeInput
    from activities.passwords import PasswordActivities, SetPassword
    from workflows.keys import lifecycle_key
    from workflows.password_reset import clear_lockout
    from workflows.registration import ACTIVITY_OPTIONS


@dataclass
class PasswordChange:
    customer_reference: str
    password_hash: str
    event: str  # password_changed | password_set
    channel: str
    actor: str


@workflow.defn
class PasswordChangeWorkflow:
    def __init__(self) -> None:
        self._stored = False

    @workflow.run
    async def run(self, change: PasswordChange) -> None:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(change.customer_reference)])
        key = lifecycle_key()
        await workflow.execute_activity_method(
            PasswordActivities.set_password,
            SetPassword(
                change.customer_reference, change.password_hash, change.event, change.channel, change.actor, key
            ),
            **ACTIVITY_OPTIONS,
        )
        self._stored = True
        await clear_lockout(change.customer_reference)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(change.customer_reference, "password_changed", f"{key}/changed", changed_at=workflow.now()),
            **ACTIVITY_OPTIONS,
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def stored(self) -> bool:
        await workflow.wait_condition(lambda: self._stored)
        return True
