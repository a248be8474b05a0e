"""Lockout window: the locks of one customer over time.

    threshold_crossed (the login path counted the N-th failure of a real account, signal-with-start)
        -> lock: duration escalates with recent locks (x factor per lock in the escalation period, capped),
           notify the customer once per lock, wait out the lock or a support `unlock`, lift it
    idle once no recent lock can escalate a new one -> done; a new threshold starts a new run

The login path counts failures atomically in the database (that bounds password verifications per
window, however many requests race) and windows end by the database clock; this workflow only owns the
locks, so an attack costs Temporal nothing until an account's threshold, then a few events per lock.
A window under sustained attack continues as new. `window_opened` (a window's timer, then closed by
`close_window`) and runs for client IPs (`lockout-ip:`) and unknown addresses (`lockout-email:`) are
what the login path started before issue 14: nothing starts them now, and they still run as before.

Its other parts: routes `POST /access-tokens`, `POST /token` (api/routes/access_tokens.py); client
`AccountsClient.logins` (`authenticate`, `unlock`: starter/login.py), which counts the failures
(accounts/throttle.py); activities activities/lockout.py and activities/emails.py; email
templates/emails/<locale>/account_locked.*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.emails import EmailActivities, NoticeInput
    from activities.lockout import LiftLock, LockoutActivities, SetLock
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS

WINDOW_OPENED = "window_opened"
THRESHOLD_CROSSED = "threshold_crossed"
CLEAR_LOCK = "clear"  # a completed password reset: lift any lock, forget the window

OPEN = "window_open"
LOCKED = "locked"
IDLE = "idle"


def lockout_workflow_id(customer_reference: str) -> str:
    return f"lockout:{customer_reference}"


def ip_lockout_workflow_id(ip_hash: str) -> str:
    return f"lockout-ip:{ip_hash}"


@dataclass
class LockoutPolicy:
    max_failures: int
    window: timedelta
    lock_duration: timedelta
    escalation_factor: float
    max_lock_duration: timedelta
    escalation_period: timedelta
    history_limit: int = 2000  # events before continuing as new (the server also suggests it)


@dataclass
class LockoutState:
    stage: str = IDLE
    window_ends_at: datetime | None = None
    threshold_pending: bool = False
    lock_starts: list[datetime] = field(default_factory=list)  # recent locks, for escalation
    locks_total: int = 0
    locked_until: datetime | None = None
    locking: bool = False  # between the threshold and the lock being in place
    unlocked_by: str | None = None


@dataclass
class LockoutInput:
    subject: str  # customer:DE--1 | ip:<keyed hash>
    customer_reference: str | None  # set for customer subjects: they get the lock email
    policy: LockoutPolicy
    state: LockoutState | None = None  # carried over by continue-as-new


@dataclass
class Unlock:
    agent: str
    reason: str


@dataclass
class Unlocked:
    subject: str
    was_locked_until: datetime


@dataclass
class LockoutResult:
    subject: str
    locks: int


@workflow.defn
class LockoutWindowWorkflow:
    @workflow.init
    def __init__(self, input: LockoutInput) -> None:
        self._input = input
        self._state = input.state or LockoutState()

    @workflow.run
    async def run(self, input: LockoutInput) -> LockoutResult:
        if input.customer_reference:
            workflow.upsert_search_attributes([CUSTOMER_REFERENCE.value_set(input.customer_reference)])
        while True:
            if self._state.threshold_pending:
                await self._lock()
            elif self._state.window_ends_at is not None:
                self._enter(OPEN)
                if not await self._wait(lambda: self._state.threshold_pending, self._state.window_ends_at):
                    await self._close_window()
            else:
                self._enter(IDLE)
                memory_ends = self._escalation_memory_ends()
                if memory_ends is None or not await self._wait(self._has_news, memory_ends):
                    if not self._has_news():
                        break
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > input.policy.history_limit:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    LockoutInput(input.subject, input.customer_reference, input.policy, self._state)
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return LockoutResult(input.subject, self._state.locks_total)

    # --- messages ---------------------------------------------------------------------------------

    @workflow.signal(name=WINDOW_OPENED)
    def window_opened(self) -> None:
        # The window runs on this workflow's clock, from when it heard of the first failure.
        if self._state.window_ends_at is None:
            self._state.window_ends_at = workflow.now() + self._input.policy.window

    @workflow.signal(name=THRESHOLD_CROSSED)
    def threshold_crossed(self) -> None:
        self.window_opened()
        self._state.threshold_pending = True

    @workflow.signal(name=CLEAR_LOCK)
    def clear(self) -> None:
        self._state.threshold_pending = False
        if self._state.locked_until is not None or self._state.locking:  # also a lock still being applied
            self._state.unlocked_by = "password-reset"

    @workflow.update
    async def unlock(self, request: Unlock) -> Unlocked:
        # The database refuses sign-ins from the moment the threshold is crossed; the lock itself
        # follows a moment later. An unlock in between waits for the lock it is meant to lift.
        await workflow.wait_condition(
            lambda: self._state.locked_until is not None or not (self._state.threshold_pending or self._state.locking)
        )
        until = self._state.locked_until
        if until is None:  # a password reset cleared the pending threshold first: nothing to lift
            raise ApplicationError(f"{self._input.subject} is not locked", type="NotLocked")
        self._state.unlocked_by = request.agent
        await workflow.wait_condition(lambda: self._state.locked_until is None)
        return Unlocked(self._input.subject, until)

    @unlock.validator
    def _validate_unlock(self, request: Unlock) -> None:
        if self._state.locked_until is None and not (self._state.threshold_pending or self._state.locking):
            raise ApplicationError(f"{self._input.subject} is not locked", type="NotLocked")
        if not request.agent.strip():
            raise ApplicationError("unlock needs an agent", type="InvalidRequest")

    @workflow.query
    def status(self) -> LockoutState:
        return self._state

    # --- steps ------------------------------------------------------------------------------------

    async def _lock(self) -> None:
        policy = self._input.policy
        now = workflow.now()
        self._state.threshold_pending = False
        self._state.locking = True
        self._state.unlocked_by = None  # from here on, an unlock or a reset's clear lifts this lock
        recent = [t for t in self._state.lock_starts if now - t < policy.escalation_period]
        duration = min(policy.lock_duration * policy.escalation_factor ** len(recent), policy.max_lock_duration)
        self._state.lock_starts = [*recent, now]
        self._state.locks_total += 1
        until = now + duration
        key = f"{lifecycle_key()}/lock/{self._state.locks_total}"
        await workflow.execute_activity_method(
            LockoutActivities.set_lock,
            SetLock(self._input.subject, until, self._input.customer_reference, key),
            **ACTIVITY_OPTIONS,
        )
        self._state.locked_until = until
        self._state.locking = False
        self._enter(LOCKED)
        if self._input.customer_reference and self._state.unlocked_by is None:  # not when already being lifted
            await workflow.execute_activity_method(
                EmailActivities.send_notice,
                NoticeInput(
                    self._input.customer_reference,
                    "account_locked",
                    key,
                    locked_until=until,
                    failures=policy.max_failures,
                ),
                **ACTIVITY_OPTIONS,
                **email_options(bulk=True),  # a spray that locks many accounts at once: a burst of these
            )
        await self._wait(lambda: self._state.unlocked_by is not None, until)
        await workflow.execute_activity_method(
            LockoutActivities.lift_lock,
            LiftLock(self._input.subject, self._input.customer_reference, self._state.unlocked_by or "timer", key),
            **ACTIVITY_OPTIONS,
        )
        self._state.locked_until = None
        self._state.window_ends_at = None  # lifting a lock starts the count afresh

    async def _close_window(self) -> None:
        ended = self._state.window_ends_at
        await workflow.execute_activity_method(LockoutActivities.close_window, self._input.subject, **ACTIVITY_OPTIONS)
        if self._state.window_ends_at == ended:  # no new window opened meanwhile
            self._state.window_ends_at = None

    async def _wait(self, condition: object, deadline: datetime) -> bool:
        """Wait for the condition until the deadline; False when the deadline passed first."""
        remaining = deadline - workflow.now()
        if remaining <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(condition, timeout=remaining)  # type: ignore[arg-type]
            return True
        except TimeoutError:
            return False

    def _has_news(self) -> bool:
        return self._state.threshold_pending or self._state.window_ends_at is not None

    def _escalation_memory_ends(self) -> datetime | None:
        if not self._state.lock_starts:
            return None
        return max(self._state.lock_starts) + self._input.policy.escalation_period

    def _enter(self, stage: str) -> None:
        if self._state.stage != stage:
            self._state.stage = stage
            workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
