"""Multi-factor authentication: the emailed code, and the deadline of a pending activation.

MfaCode (`mfa-code:{customer_reference}:{code_id}`): one code by email. The input names the code's row,
never the code: the activity derives the code from the step's key, writes its hash on the row and mails
it, so no history holds it (as a password-reset link's token). A code that died before its email went
out (a newer one, a sign-out) is not sent.

MfaRemoved (`mfa-removed:{customer_reference}:{uuid}`): support removed the customer's methods; the
customer hears of it by email ("mfa_removed"), even if the API process dies right after the removal.

MfaActivated (`mfa-activated:{customer_reference}:{uuid}`): a method became active (POST
/multi-factor-auth-type-verify); the customer hears of it by email ("mfa_activated"), so a stolen token
that enrolled its own authenticator app does not go unnoticed. A workflow type of its own beside
MfaRemoved (the same one activity), so runs of MfaRemoved in flight replay unchanged.

MfaActivation (`mfa-activation:{customer_reference}:{type}`): from an activation until its expiry. At
the deadline the pending method is dropped (if it is still pending: a verified one stays) and
`mfa_activation_expired` is audited. An activation started again while a run waits joins that run (no
signal: however often it is started, the run's history grows by one timer and one activity per
deadline that passed); the activity names the later deadline and the run waits for it. The database's
expiry column already refuses the method in between; the timer tidies and records. A customer who starts
it again for months would still grow one run without end: past `history_limit` events (or when the
server suggests it) the run continues as new with the later deadline (patch
`mfa-activation-continue-as-new`; runs recorded before it never meet the check's patch call).

Its other parts: routes api/routes/mfa.py; client starter/mfa.py; rules accounts/mfa.py; activities
activities/emails.py (send_mfa_code) and activities/mfa.py; templates templates/emails/<locale>/mfa_code.*.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE
    from activities.emails import EmailActivities, MfaCodeInput, NoticeInput
    from activities.mfa import EndActivation, MfaActivities
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS


@dataclass
class MfaCodeRequest:
    customer_reference: str
    code_id: int


@workflow.defn
class MfaCodeWorkflow:
    @workflow.run
    async def run(self, request: MfaCodeRequest) -> bool:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(request.customer_reference)])
        return await workflow.execute_activity_method(
            EmailActivities.send_mfa_code,
            MfaCodeInput(request.customer_reference, request.code_id, f"{lifecycle_key()}/code"),
            **ACTIVITY_OPTIONS,
            **email_options(),
        )


CONTINUE_AS_NEW_PATCH = "mfa-activation-continue-as-new"


@dataclass
class MfaActivationInput:
    customer_reference: str
    type: str
    expires_at: datetime
    history_limit: int = 1000  # events before an activation started again and again continues as new


@workflow.defn
class MfaActivationWorkflow:
    @workflow.run
    async def run(self, activation: MfaActivationInput) -> bool:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(activation.customer_reference)])
        deadline = activation.expires_at
        while True:
            wait = deadline - workflow.now()
            if wait > timedelta(0):
                await workflow.sleep(wait)
            end = await workflow.execute_activity_method(
                MfaActivities.end_expired_activation,
                EndActivation(activation.customer_reference, activation.type, deadline),
                **ACTIVITY_OPTIONS,
            )
            if end.next_deadline is None or end.next_deadline <= deadline:
                return end.dropped
            deadline = end.next_deadline  # started again meanwhile: its own deadline, one timer more
            if _history_is_large(activation.history_limit) and workflow.patched(CONTINUE_AS_NEW_PATCH):
                workflow.continue_as_new(replace(activation, expires_at=deadline))


def _history_is_large(limit: int) -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


@dataclass
class MfaRemovedInput:
    customer_reference: str
    removed: list[str]


@workflow.defn
class MfaRemovedWorkflow:
    @workflow.run
    async def run(self, removal: MfaRemovedInput) -> bool:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(removal.customer_reference)])
        notice = NoticeInput(
            removal.customer_reference,
            "mfa_removed",
            f"{lifecycle_key()}/removed",
            changed_at=workflow.now(),
            removed=", ".join(removal.removed),
        )
        return await workflow.execute_activity_method(
            EmailActivities.send_notice, notice, **ACTIVITY_OPTIONS, **email_options()
        )


@dataclass
class MfaActivatedInput:
    customer_reference: str
    type: str


@workflow.defn
class MfaActivatedWorkflow:
    @workflow.run
    async def run(self, activation: MfaActivatedInput) -> bool:
        workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(activation.customer_reference)])
        notice = NoticeInput(
            activation.customer_reference,
            "mfa_activated",
            f"{lifecycle_key()}/activated",
            changed_at=workflow.now(),
            activated=activation.type,
        )
        return await workflow.execute_activity_method(
            EmailActivities.send_notice, notice, **ACTIVITY_OPTIONS, **email_options()
        )
