"""Agent assistance: one agent acting for one customer, from the impersonation token to its end.

started (audited; the customer emailed when ACCOUNTS_AGENT_ASSIST_NOTIFY_CUSTOMER) -> each change the agent
makes with the token (`record_action`: audited, listed) -> ended: the token deleted or an admin ended it
(`end`), or the session expired (ACCOUNTS_AGENT_IMPERSONATION_TTL after its start) -> the row closed (the
token dies at once) and the end audited.

The id names the session (`assist:{ref}:{assist id}`). Payloads carry ids, method names and route templates
(`PATCH /customers/{customer_reference}`), never what the agent typed. History is bounded by the session:
`record_action`'s validator refuses once `max_actions` were recorded or the session is ending (the change
is then audited by the request itself, starter/assists.py `record_action`); the run lives at most the TTL.

Its other parts: client starter/assists.py; routes api/routes/agents.py; rows accounts/assists.py; activities
activities/assists.py and activities/emails.py (send_notice); templates templates/emails/<locale>/agent_assist.*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.assists import AssistActivities, AssistClose, AssistStep
    from activities.emails import EmailActivities, NoticeInput
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS

ASSIST_EMAIL = "agent_assist"


@dataclass
class AssistInput:
    assist_id: str
    customer_reference: str
    expires_at: datetime
    notify_customer: bool
    max_actions: int


@dataclass
class AssistAction:
    method: str  # POST | PATCH | PUT | DELETE
    route: str  # the route template the request matched


@dataclass
class AssistEnd:
    reason: str  # token_deleted | ended_by_admin
    ended_by: str  # "agent:<name>" or the admin's name


@dataclass
class AssistStatus:
    actions: list[str] = field(default_factory=list)  # "PATCH /customers/{customer_reference}", in order
    ended: str | None = None  # the end's reason once it is ending


def assist_id(customer_reference: str, assist: str) -> str:
    return f"assist:{customer_reference}:{assist}"


@workflow.defn
class AssistWorkflow:
    @workflow.init
    def __init__(self, assist: AssistInput) -> None:
        self._input = assist
        self._status = AssistStatus()
        self._end: AssistEnd | None = None
        self._closed = False

    @workflow.run
    async def run(self, assist: AssistInput) -> AssistStatus:
        workflow.upsert_search_attributes(
            [CUSTOMER_REFERENCE.value_set(assist.customer_reference), LIFECYCLE_STAGE.value_set("assisting")]
        )
        key = lifecycle_key()
        await self._step(AssistStep(assist.assist_id, "assist_started", f"{key}/started"))
        if assist.notify_customer:
            notice = NoticeInput(assist.customer_reference, ASSIST_EMAIL, f"{key}/notice", changed_at=workflow.now())
            await workflow.execute_activity_method(
                EmailActivities.send_notice, notice, **ACTIVITY_OPTIONS, **email_options()
            )
        remaining = assist.expires_at - workflow.now()
        if remaining > timedelta(0):  # a run that starts late (a worker outage) ends at once
            try:
                await workflow.wait_condition(lambda: self._end is not None, timeout=remaining)
            except TimeoutError:
                pass
        end = self._end
        self._status.ended = end.reason if end is not None else "expired"
        await workflow.execute_activity_method(
            AssistActivities.close_assist,
            AssistClose(assist.assist_id, self._status.ended, f"{key}/ended", end.ended_by if end else None),
            **ACTIVITY_OPTIONS,
        )
        self._closed = True
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(self._status.ended)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    @workflow.update
    async def record_action(self, action: AssistAction) -> int:
        """Audit one change the agent made; returns its number in this session."""
        self._status.actions.append(f"{action.method} {action.route}")
        number = len(self._status.actions)
        step = AssistStep(
            self._input.assist_id,
            "assist_action",
            f"{lifecycle_key()}/action/{number}",
            {"method": action.method, "route": action.route},
        )
        await self._step(step)
        return number

    @record_action.validator
    def _check_action(self, action: AssistAction) -> None:
        if self._status.ended is not None or self._end is not None:
            raise ValueError("the assistance session is ending")
        if len(self._status.actions) >= self._input.max_actions:
            raise ValueError("the assistance session recorded as many actions as it may")
        if len(action.method) > 8 or len(action.route) > 200:
            raise ValueError("not an action of this API")

    @workflow.update
    async def end(self, end: AssistEnd) -> bool:
        """End the session now; returns once its row is closed (its token refused). False: it had ended."""
        ending = self._end is None and self._status.ended is None
        if ending:
            self._end = end
        await workflow.wait_condition(lambda: self._closed)
        return ending

    @workflow.query
    def status(self) -> AssistStatus:
        return self._status

    async def _step(self, step: AssistStep) -> None:
        await workflow.execute_activity_method(AssistActivities.record_assist_step, step, **ACTIVITY_OPTIONS)
