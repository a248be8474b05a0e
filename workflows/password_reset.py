"""Password reset: a single-use emailed link, then the new password, or nothing when it expires.

    email a link (reset, or "set your password" for accounts made without one)
    wait for: complete (token hash + the id of the pending new hash, checked)
        | request_link (a repeated "forgot password": an Update whose validator refuses what the
          throttle refuses, so a refused request costs no history)
        | force (support: the current password stops working, the old links die, a new link goes out)
        the latest link's lifetime passes -> links die, nothing changes
        the history grows large (a customer who keeps asking) -> continue as new with the live links
    complete -> store the hash, end every session, clear the lockout; the "password changed" email

Like registration, the workflow sees token hashes only; the API hashes the presented token, and stores
the new password's argon2 hash as a pending credential (accounts/pending_credentials.py), before
`complete`: the workflow carries the row's id, `set_password` reads and deletes it. The `status` query
answers a view (ResetStatus), never the completion itself.

Its other parts: routes `POST /customer-forgotten-password`, `PATCH /customer-restore-password/{restore_password_key}`,
`GET|POST /password/restore` (api/routes/passwords.py); client `AccountsClient.passwords` (`forgotten`,
`complete_reset`, `send_set_password_link`, `force_reset`: starter/passwords.py); activities
activities/passwords.py and activities/emails.py; emails templates/emails/<locale>/{password_reset,
set_password,password_changed}.*, page templates/pages/<locale>/restore_password.html.j2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.emails import EmailActivities, NoticeInput, TokenLinkInput
    from activities.passwords import PASSWORD_RESET, ForceReset, PasswordActivities, SetPassword
    from workflows.keys import lifecycle_key
    from workflows.lockout import CLEAR_LOCK, lockout_workflow_id
    from workflows.queues import BULK_CHANNELS, email_options
    from workflows.registration import ACTIVITY_OPTIONS, EMAIL_PROVEN

RESEND = "resend"  # the signal that carried repeated requests before `request_link`; kept for old histories
AWAITING = "awaiting_new_password"
COMPLETED = "password_set"
EXPIRED = "expired"


@dataclass
class ResetTimings:
    link_lifetime: timedelta
    resend_min_interval: timedelta
    resends_per_hour: int


@dataclass
class ResetInput:
    customer_reference: str
    kind: str  # reset | set_password | forced (the current password stops working first)
    channel: str
    actor: str
    timings: ResetTimings
    history_limit: int = 1000  # events before a reset that keeps being asked for continues as new
    state: ResetState | None = None  # carried over by continue-as-new
    # the first link goes out with the bulk emails (support's `send-tokens` to every customer without a
    # password; an import's links are bulk by their channel). Later links were asked for: not bulk.
    bulk: bool = False


@dataclass
class CompleteReset:
    token_hash: str
    password_hash: str | None = None  # runs completed before issue 15 carry the hash itself
    credential_id: str | None = None  # since: the pending credential that holds it


@dataclass
class ResetStatus:
    """What the `status` query shows: the run's state without its secrets (token hashes, the completion)."""

    customer_reference: str
    kind: str
    stage: str
    links_sent: int
    sent_at: list[datetime]
    completing: bool  # a new password was accepted and is being stored
    completed: bool
    forced: bool


@dataclass
class ResetCompleted:
    customer_reference: str


@dataclass
class ForceRequest:
    agent: str


@dataclass
class ResetState:
    stage: str = AWAITING
    token_hashes: list[str] = field(default_factory=list)
    sent_at: list[datetime] = field(default_factory=list)
    resend_requested: bool = False
    sending: bool = False
    completion: CompleteReset | None = None
    completed: bool = False
    forced: bool = False  # a forced reset's first step is done: the old password no longer signs in
    force_requested: ForceRequest | None = None  # support forced a reset while this one was running
    forced_times: int = 0
    links_sent: int = 0  # every link of this lifecycle, across continue-as-new: numbers its idempotency key


@workflow.defn
class PasswordResetWorkflow:
    @workflow.init
    def __init__(self, input: ResetInput) -> None:
        self._input = input
        self._state = input.state or ResetState()

    @workflow.run
    async def run(self, input: ResetInput) -> str:
        workflow.upsert_search_attributes(
            [CUSTOMER_REFERENCE.value_set(input.customer_reference), CHANNEL.value_set(input.channel)]
        )
        if input.state is None:  # a fresh reset (a continued one did this in an earlier run)
            if input.kind == "forced":
                await workflow.execute_activity_method(
                    PasswordActivities.force_reset,
                    ForceReset(input.customer_reference, input.actor, f"{self._key}/forced"),
                    **ACTIVITY_OPTIONS,
                )
                self._state.forced = True
            self._enter(AWAITING)
            await self._send_link()
        while self._state.completion is None:
            if self._state.force_requested is not None:
                await self._force(self._state.force_requested)
                continue
            if self._state.resend_requested:
                self._state.resend_requested = False
                if self._may_resend():
                    await self._send_link()
                continue
            if self._history_is_large() and workflow.patched("reset-continue-as-new"):
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() or self._has_news())
                if not self._has_news():
                    workflow.continue_as_new(replace(input, state=self._carried_state()))
                continue
            remaining = self._expires_at - workflow.now()
            try:
                await workflow.wait_condition(self._has_news, timeout=max(remaining, timedelta(0)))
            except TimeoutError:
                self._enter(EXPIRED)
                await workflow.execute_activity_method(
                    PasswordActivities.expire_reset_links, input.customer_reference, **ACTIVITY_OPTIONS
                )
                await workflow.wait_condition(workflow.all_handlers_finished)
                return EXPIRED

        await workflow.execute_activity_method(
            PasswordActivities.set_password,
            SetPassword(
                customer_reference=input.customer_reference,
                password_hash=self._state.completion.password_hash,
                credential_id=self._state.completion.credential_id,
                event="password_set" if input.kind == "set_password" else "password_reset",
                channel=input.channel,
                actor=input.customer_reference,
                idempotency_key=f"{self._key}/set",
                verifies_email=True,
            ),
            **ACTIVITY_OPTIONS,
        )
        self._state.completed = True
        self._enter(COMPLETED)
        await clear_lockout(input.customer_reference)
        if workflow.patched("tell-registration"):  # resets that were past this point before it existed
            await tell_registration(input.customer_reference)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(
                input.customer_reference, "password_changed", f"{self._key}/changed", changed_at=workflow.now()
            ),
            **ACTIVITY_OPTIONS,
            **email_options(),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return COMPLETED

    @workflow.update
    async def complete(self, request: CompleteReset) -> ResetCompleted:
        # The link may be opened before its hash is recorded here (see registration): wait while unknown.
        await workflow.wait_condition(lambda: request.token_hash in self._state.token_hashes or not self._state.sending)
        if request.token_hash not in self._state.token_hashes or self._state.completion is not None:
            raise ApplicationError("reset link is not valid", type="InvalidToken")
        self._state.completion = request
        await workflow.wait_condition(lambda: self._state.completed)
        return ResetCompleted(self._input.customer_reference)

    @complete.validator
    def _validate_complete(self, request: CompleteReset) -> None:
        # Two submissions of one link: the first sets `completion`, the second is refused here.
        if self._state.stage != AWAITING or self._state.completion is not None or workflow.now() >= self._expires_at:
            raise ApplicationError("reset link is not valid", type="InvalidToken")

    @workflow.update
    async def applied(self) -> str:
        """Answers once the request took effect (for a forced reset: the old password is dead)."""
        await workflow.wait_condition(lambda: self._input.kind != "forced" or self._state.forced)
        return self._input.kind

    @workflow.update
    def request_link(self) -> None:
        """A repeated "forgot password": another link, unless the throttle refuses (in the validator)."""
        if self._state.sent_at:  # a fresh reset sends its first link anyway
            self._state.resend_requested = True

    @request_link.validator
    def _validate_request_link(self) -> None:
        if self._state.completion is not None or self._state.stage != AWAITING:
            raise ApplicationError("this reset is ending", type="NotWaiting")
        if self._state.sending or self._state.resend_requested or self._state.force_requested is not None:
            raise ApplicationError("a link is on its way", type="ResendThrottled")
        if self._state.sent_at and not self._may_resend():
            raise ApplicationError("too many reset emails; wait", type="ResendThrottled")

    @workflow.update
    async def force(self, request: ForceRequest) -> str:
        """Support forces a reset: this run becomes a forced one (the old password and old links die,
        a new link goes out). Answers once the old password no longer signs in."""
        if self._input.kind != "forced" or self._state.forced:  # a fresh forced reset does it at start
            self._state.forced = False
            self._state.force_requested = request
        await workflow.wait_condition(lambda: self._state.forced)
        return "forced"

    @force.validator
    def _validate_force(self, request: ForceRequest) -> None:
        if self._state.completion is not None or self._state.stage != AWAITING:
            raise ApplicationError("this reset is ending", type="NotWaiting")
        if self._state.force_requested is not None:
            raise ApplicationError("a forced reset is being applied", type="ForceInProgress")
        if not request.agent.strip():
            raise ApplicationError("a forced reset needs an agent", type="InvalidRequest")

    @workflow.signal(name=RESEND)
    def resend(self) -> None:
        self._state.resend_requested = True

    @workflow.query
    def status(self) -> ResetStatus:
        state = self._state
        return ResetStatus(
            customer_reference=self._input.customer_reference,
            kind=self._input.kind,
            stage=state.stage,
            links_sent=state.links_sent,
            sent_at=list(state.sent_at),
            completing=state.completion is not None and not state.completed,
            completed=state.completed,
            forced=state.forced,
        )

    async def _send_link(self) -> None:
        self._state.sending = True
        sent = await workflow.execute_activity_method(
            EmailActivities.send_token_link,
            TokenLinkInput(
                customer_reference=self._input.customer_reference,
                purpose=PASSWORD_RESET,
                template="set_password" if self._input.kind == "set_password" else "password_reset",
                path="/password/restore",
                expires_at=workflow.now() + self._input.timings.link_lifetime,
                idempotency_key=f"{self._key}/link/{self._state.links_sent + 1}",
            ),
            **ACTIVITY_OPTIONS,
            **email_options(bulk=self._first_link_in_bulk),
        )
        self._state.token_hashes.append(sent.token_hash)
        self._state.sent_at.append(workflow.now())
        self._state.links_sent += 1
        self._state.sending = False

    async def _force(self, request: ForceRequest) -> None:
        self._state.forced_times += 1
        await workflow.execute_activity_method(
            PasswordActivities.force_reset,
            ForceReset(self._input.customer_reference, request.agent, f"{self._key}/forced/{self._state.forced_times}"),
            **ACTIVITY_OPTIONS,
        )
        # the links sent before support stepped in die: the new link is the only way in
        await workflow.execute_activity_method(
            PasswordActivities.expire_reset_links, self._input.customer_reference, **ACTIVITY_OPTIONS
        )
        self._state.token_hashes.clear()  # (and their send times: support's link is a new beginning)
        self._state.sent_at.clear()
        self._state.forced = True
        self._state.force_requested = None
        self._state.resend_requested = False
        await self._send_link()

    @property
    def _first_link_in_bulk(self) -> bool:
        return self._state.links_sent == 0 and (self._input.bulk or self._input.channel in BULK_CHANNELS)

    def _has_news(self) -> bool:
        state = self._state
        return state.completion is not None or state.resend_requested or state.force_requested is not None

    def _history_is_large(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self._input.history_limit

    def _carried_state(self) -> ResetState:
        """What the next run needs: the links still alive and the sends the hourly throttle counts."""
        now = workflow.now()
        keep = max(self._input.timings.link_lifetime, timedelta(hours=1))
        links = list(zip(self._state.token_hashes, self._state.sent_at, strict=True))
        recent = [(h, t) for h, t in links if now - t < keep] or links[-1:]
        return replace(self._state, token_hashes=[h for h, _ in recent], sent_at=[t for _, t in recent])

    def _may_resend(self) -> bool:
        now = workflow.now()
        timings = self._input.timings
        if self._state.sent_at and now - self._state.sent_at[-1] < timings.resend_min_interval:
            return False
        return sum(1 for t in self._state.sent_at if now - t < timedelta(hours=1)) < timings.resends_per_hour

    def _enter(self, stage: str) -> None:
        self._state.stage = stage
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])

    @property
    def _expires_at(self) -> datetime:
        start = self._state.sent_at[-1] if self._state.sent_at else workflow.now()
        return start + self._input.timings.link_lifetime

    @property
    def _key(self) -> str:
        return lifecycle_key()


async def tell_registration(customer_reference: str) -> None:
    """The link proved the address: a registration still waiting for its confirmation stops waiting."""
    try:
        await workflow.get_external_workflow_handle(f"registration:{customer_reference}").signal(EMAIL_PROVEN)
    except Exception:  # the registration ended long ago (or never ran here): nothing waits
        workflow.logger.debug("no registration waiting for %s", customer_reference)


async def clear_lockout(customer_reference: str) -> None:
    """A completed reset unlocks through the same path as support: the lockout workflow lifts its lock."""
    try:
        await workflow.get_external_workflow_handle(lockout_workflow_id(customer_reference)).signal(CLEAR_LOCK)
    except Exception:  # no lockout window is running: nothing to clear (the count was reset above)
        workflow.logger.debug("no lockout window to clear for %s", customer_reference)
