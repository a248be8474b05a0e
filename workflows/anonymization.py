"""Deletion: a customer's account anonymized the way Spryker does it, safe to retry at every step.

    end the customer's running lifecycles (every run carrying its CustomerReference: registration, reset,
        password change, email change, lockout window) and wait until each has closed, so none acts afterwards
    email "your account was deleted" to the address while it still exists
    anonymize in one transaction -> `anonymized` answers the caller
        (row scrubbed, addresses gone, every token dead, lockout count gone, pending credentials gone, audit event)
    delete the customer's closed runs from Temporal (listed by CustomerReference; this run's own id stays,
        it holds the reference and nothing personal): their histories held the address

A second request while this runs joins it; once it completed, the client sees `anonymized_at` and
starts nothing.

Its other parts: routes `DELETE /customers/{customer_reference}` (api/routes/customers.py) and the back office's
(api/routes/backoffice/customers.py); client `AccountsClient.deletions.delete` (starter/deletions.py);
activities activities/anonymization.py and activities/emails.py; the scrub itself accounts/anonymization.py;
email templates/emails/<locale>/account_deleted.*.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.anonymization import AnonymizationActivities, Anonymize, DeleteRuns, EndLifecycles
    from activities.emails import EmailActivities, NoticeInput
    from workflows.email_change import email_change_id
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS

ENDING_LIFECYCLES = "ending_lifecycles"
NOTIFYING = "notifying"
ANONYMIZING = "anonymizing"
DELETING_RUNS = "deleting_runs"
ANONYMIZED = "anonymized"
# an attempt polls for up to 30 s (AnonymizationActivities.END_LIFECYCLES_WAIT), heartbeating meanwhile
END_LIFECYCLES_OPTIONS: dict[str, Any] = {**ACTIVITY_OPTIONS, "heartbeat_timeout": timedelta(seconds=10)}


def anonymization_id(customer_reference: str) -> str:
    return f"anonymization:{customer_reference}"


def lifecycle_ids(customer_reference: str) -> list[str]:
    # The ids starter.client.registration_id, starter.passwords.reset_id and email_change_id give
    # (workflow code must not import the client): ended even when visibility does not list them yet.
    return [
        f"registration:{customer_reference}",
        f"password-reset:{customer_reference}",
        email_change_id(customer_reference),
    ]


@dataclass
class AnonymizationInput:
    customer_reference: str
    channel: str
    actor: str


@workflow.defn
class AnonymizationWorkflow:
    def __init__(self) -> None:
        self._anonymized = False

    @workflow.run
    async def run(self, input: AnonymizationInput) -> None:
        ref = input.customer_reference
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(ref), CHANNEL.value_set(input.channel)])
        key = workflow.info().workflow_id  # one per customer: a later run finds this run's email and event

        self._enter(ENDING_LIFECYCLES)
        if workflow.patched("wait-for-lifecycles"):
            # An activity, not external-workflow cancels: it finds runs by search attribute (password
            # changes have random ids) and waits until they are closed, which a cancel request cannot.
            await workflow.execute_activity_method(
                AnonymizationActivities.end_lifecycles,
                EndLifecycles(ref, lifecycle_ids(ref), key, input.channel, input.actor, f"{key}/started"),
                **END_LIFECYCLES_OPTIONS,
            )
        else:  # runs recorded before the patch: fire-and-forget cancel requests, as they were made
            for lifecycle_id in lifecycle_ids(ref):
                asyncio.create_task(end_lifecycle(lifecycle_id))  # noqa: RUF006 (replayed, never awaited)

        self._enter(NOTIFYING)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(ref, "account_deleted", f"{key}/deleted"),
            **ACTIVITY_OPTIONS,
            **email_options(),
        )

        self._enter(ANONYMIZING)
        await workflow.execute_activity_method(
            AnonymizationActivities.anonymize_customer,
            Anonymize(ref, input.channel, input.actor, f"{key}/anonymized"),
            **ACTIVITY_OPTIONS,
        )
        self._anonymized = True
        if workflow.patched("delete-closed-runs"):  # runs recorded before it ended here
            self._enter(DELETING_RUNS)
            await workflow.execute_activity_method(
                AnonymizationActivities.delete_closed_runs, DeleteRuns(ref, key), **END_LIFECYCLES_OPTIONS
            )
        self._enter(ANONYMIZED)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def anonymized(self) -> bool:
        """Answers once the personal data is gone: what DELETE /customers/{customer_reference} waits for."""
        await workflow.wait_condition(lambda: self._anonymized)
        return True

    def _enter(self, stage: str) -> None:
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        workflow.set_current_details(f"Anonymization stage: {stage}")


async def end_lifecycle(workflow_id: str) -> None:
    """Before "wait-for-lifecycles": cancel a lifecycle workflow without waiting for it to end."""
    try:
        await workflow.get_external_workflow_handle(workflow_id).cancel()
    except Exception:  # never started, or already closed: nothing to end
        workflow.logger.debug("no running %s to cancel", workflow_id)
