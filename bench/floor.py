"""The engine floor: registration's shape on Temporal with activities that do nothing.

    update-with-start "created" answers once the create activity ran
    create -> send link -> wait for the "confirm" update -> activate -> welcome

Same update round trips, same activity count, same waits (the wait for the confirmation has a timer, as
registration's has for its reminder) and the same task queues as `RegistrationWorkflow`
(its two emails go to the email queue, as workflows/queues.py sends them: a queue of its own whose rate
the server bounds, so they are dispatched through matching, not eagerly), but no database, no argon2,
no SMTP: what is left is what the engine (server, SDK, worker) costs per registration.
It lives apart from bench/registration.py because the workflow sandbox re-imports a workflow's module,
and that module must not be the script being run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from accounts.task_queues import TaskQueues

ACTIVITY_OPTIONS: dict = {"start_to_close_timeout": timedelta(seconds=30)}
EMAIL_STEPS = ("send_link", "welcome")
REMINDER_AFTER = timedelta(days=1)  # ACCOUNTS_VERIFICATION_REMINDER_AFTER's default; only its timer counts here


def email_queue(task_queue: str) -> str:
    """The floor's email queue beside its own, named as the real worker names its email queue."""
    return TaskQueues(task_queue).email


@dataclass
class FloorInput:
    key: str
    # every step on the workflow's own queue, as the floor was before the email queues (printed beside it)
    one_queue: bool = False


@dataclass
class FloorStep:
    key: str
    step: str


@dataclass
class FloorCreated:
    key: str


@dataclass
class FloorConfirm:
    key: str


@dataclass
class FloorActivated:
    key: str


@dataclass
class FloorResult:
    key: str


@activity.defn(name="floor_step")
async def floor_step(step: FloorStep) -> None:
    """Stands in for each of create, send link, activate and welcome: a round trip and nothing else."""


@dataclass
class FloorState:
    created: bool = False
    link_sent: bool = False
    confirmed: bool = False
    activated: bool = False


@workflow.defn
class FloorWorkflow:
    @workflow.init
    def __init__(self, input: FloorInput) -> None:
        self._input = input
        self._state = FloorState()

    @workflow.run
    async def run(self, input: FloorInput) -> FloorResult:
        await self._step("create")
        self._state.created = True
        await self._step("send_link")
        self._state.link_sent = True
        # as registration waits: until its reminder is due (a timer, cancelled by the confirmation)
        await workflow.wait_condition(lambda: self._state.confirmed, timeout=REMINDER_AFTER)
        await self._step("activate")
        self._state.activated = True
        await self._step("welcome")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return FloorResult(input.key)

    @workflow.update
    async def created(self) -> FloorCreated:
        await workflow.wait_condition(lambda: self._state.created)
        return FloorCreated(self._input.key)

    @workflow.update
    async def confirm(self, request: FloorConfirm) -> FloorActivated:
        # as in registration: the link must have been recorded before a confirmation counts
        await workflow.wait_condition(lambda: self._state.link_sent)
        self._state.confirmed = True
        await workflow.wait_condition(lambda: self._state.activated)
        return FloorActivated(request.key)

    async def _step(self, step: str) -> None:
        own = workflow.info().task_queue
        queue = email_queue(own) if step in EMAIL_STEPS and not self._input.one_queue else own
        await workflow.execute_activity(
            floor_step, FloorStep(self._input.key, step), task_queue=queue, **ACTIVITY_OPTIONS
        )
