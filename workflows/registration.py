"""Registration: double opt-in, from sign-up to an active account, or to an expired unverified one.

    create the customer row (or, when the address is taken, tell its owner and stop); an imported
    customer's row exists already (workflows/customer_import.py starts this run with `existing`)
    email a verification link
    wait for: confirm (link token) | verify_manually (support) | resend (throttled)
              | email_proven (a reset or set-password link proved the address and activated it)
        reminder_after passes -> one reminder with a fresh link (none when the run sent no first link)
        expires_after passes  -> links die; the account stays unverified or is anonymized
    activate: registered_at set, tokens killed, audit event; then the welcome email

The workflow never sees a token, only the hashes the email activity hands back; the API hashes the
token a customer presents before it reaches `confirm`.

Its other parts: routes `POST /customers` (api/routes/customers.py) and `POST /customer-confirmation`,
`GET`/`POST /register/confirm` (api/routes/confirmation.py); client `AccountsClient.register`, `confirm_email`,
`resend_verification`, `verify_manually` (starter/client.py); activities activities/customers.py and
activities/emails.py; emails templates/emails/<locale>/{verify,reminder,welcome,already_registered}.*,
page templates/pages/<locale>/register_confirm.html.j2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.customers import (
        EMAIL_VERIFICATION,
        ActivationInput,
        CustomerActivities,
        CustomerCreated,
        ExpiryInput,
        NewCustomer,
    )
    from activities.emails import EmailActivities, NoticeInput, TokenLinkInput
    from workflows.keys import lifecycle_key
    from workflows.queues import BULK_CHANNELS, email_options

CREATING = "creating"
AWAITING_VERIFICATION = "awaiting_verification"
REMINDED = "reminded"
VERIFIED = "verified"
EXPIRED = "expired"
DUPLICATE = "duplicate"
WAITING_STAGES = (AWAITING_VERIFICATION, REMINDED)
EMAIL_PROVEN = "email_proven"  # signal from a password reset whose link proved the address

ACTIVITY_OPTIONS: dict[str, Any] = {
    # above ACCOUNTS_SMTP_TIMEOUT's 30 s default plus the database time around the send
    "start_to_close_timeout": timedelta(seconds=90),
    # Retried forever (a permanent SMTP refusal is recorded and returns instead); a 30-second ceiling
    # brings mail back soon after an SMTP or database outage ends. Options are not replayed: no patch.
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


@dataclass
class RegistrationTimings:
    reminder_after: timedelta
    expires_after: timedelta
    resend_min_interval: timedelta
    resend_max: int
    unverified_action: str  # keep | anonymize
    already_registered_notice_interval: timedelta


@dataclass
class RegistrationInput:
    customer: NewCustomer
    timings: RegistrationTimings
    # the customer row exists already (written by a customer import, which started this run): no
    # create step. Earlier runs' inputs lack the field, so their commands replay unchanged (no patch).
    existing: bool = False
    # False: the first link is another lifecycle's (an imported customer without a password gets a
    # set-password link, which verifies the address too); reminder and expiry stay this run's
    send_first_link: bool = True
    # The code revision the run started under (REVISION): commands that changed since branch on it. Earlier
    # runs' inputs lack it (0) and replay as recorded. Cheaper than `workflow.patched`, which records a
    # marker and a TemporalChangeVersion search-attribute write in every new run: server work each sign-up paid.
    revision: int = 0


# 1: the start's search attributes stand (the run no longer writes its reference and channel again) and
#    emails go to the email queues without asking `workflow.patched` (every run since the split does)
REVISION = 1


@dataclass
class RegistrationResult:
    customer_reference: str
    outcome: str  # verified | expired | duplicate


@dataclass
class ConfirmRequest:
    token_hash: str


@dataclass
class ManualVerification:
    agent: str
    reason: str


@dataclass
class ProvenByPasswordLink:
    """A reset or set-password link was used: it proved the address (and activated the account)."""


@dataclass
class Activation:
    customer_reference: str
    registered_at: datetime


@dataclass
class Resent:
    sent_at: datetime
    resends_left: int


@dataclass
class RegistrationStatus:
    customer_reference: str
    stage: str
    channel: str
    started_at: datetime
    reminder_at: datetime
    expires_at: datetime
    links_sent: int
    resends_left: int
    next_resend_at: datetime | None
    registered_at: datetime | None = None
    verified_by: str | None = None


@dataclass
class RegistrationState:
    stage: str
    started_at: datetime
    token_hashes: list[str] = field(default_factory=list)
    links_sent: int = 0
    resends: int = 0
    last_link_at: datetime | None = None
    reminded: bool = False
    created: CustomerCreated | None = None
    requested: ManualVerification | ConfirmRequest | ProvenByPasswordLink | None = None
    resend_requested: bool = False
    sending_link: bool = False
    registered_at: datetime | None = None


@workflow.defn
class RegistrationWorkflow:
    @workflow.init
    def __init__(self, input: RegistrationInput) -> None:
        self._input = input
        self._state = RegistrationState(stage=CREATING, started_at=workflow.now())

    @workflow.run
    async def run(self, input: RegistrationInput) -> RegistrationResult:
        customer = input.customer
        if input.revision < 1:  # runs started before every start gave them (they still do)
            workflow.upsert_search_attributes(
                [CUSTOMER_REFERENCE.value_set(customer.customer_reference), CHANNEL.value_set(customer.channel)]
            )
        if input.existing:
            created = CustomerCreated(True, customer.customer_reference)
        else:
            created = await workflow.execute_activity_method(
                CustomerActivities.create_customer, customer, **ACTIVITY_OPTIONS
            )
        self._state.created = created
        if not created.created:
            return await self._tell_owner(created)

        # a password link may have proved the address already
        if self._state.requested is None and input.send_first_link:
            await self._send_link("verify", bulk=customer.channel in BULK_CHANNELS)  # an import's come in bulk
        # Without its first link (an imported customer without a password got a set-password link, which
        # verifies the address too) no reminder follows: a verification link would activate an account
        # that has no password. That one link is the customer's; the registration still expires.
        remind = True if input.send_first_link else not workflow.patched("no-reminder-beside-a-password-link")
        self._enter(AWAITING_VERIFICATION)
        while self._state.requested is None:
            if self._state.resend_requested:
                self._state.resends += 1
                await self._send_link("verify")
                self._state.resend_requested = False
                continue
            deadline = self._reminder_at if remind and not self._state.reminded else self._expires_at
            if not await self._wait_until(deadline):
                if self._state.reminded or not remind:
                    return await self._expire()
                await self._send_link("reminder", bulk=True)  # nobody waits for it right now
                self._state.reminded = True
                self._enter(REMINDED)

        await self._activate(self._state.requested)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(customer.customer_reference, "welcome", f"{self._key}/welcome"),
            **ACTIVITY_OPTIONS,
            **email_options(split=self._split_queues),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RegistrationResult(customer.customer_reference, VERIFIED)

    # --- messages ---------------------------------------------------------------------------------

    @workflow.update
    async def account_created(self) -> CustomerCreated:
        """Answers once the customer row exists (or the address proved taken): what the API replies with."""
        await workflow.wait_condition(lambda: self._state.created is not None)
        return self._state.created  # type: ignore[return-value]  # set: the condition above held

    @workflow.update
    async def confirm(self, request: ConfirmRequest) -> Activation:
        # The email can be opened before this workflow has recorded the link's hash: wait for that,
        # but only while the hash is unknown (a reminder stuck on a down SMTP server must not block it).
        await workflow.wait_condition(
            lambda: (
                request.token_hash in self._state.token_hashes
                or (self._state.stage != CREATING and not self._state.sending_link)
            )
        )
        if request.token_hash not in self._state.token_hashes:
            raise ApplicationError("confirmation token is not valid for this registration", type="InvalidToken")
        self._require_waiting()
        self._state.requested = request
        return await self._activation()

    @confirm.validator
    def _validate_confirm(self, request: ConfirmRequest) -> None:
        self._require_open()

    @workflow.update
    async def verify_manually(self, request: ManualVerification) -> Activation:
        await self._settled()
        self._require_waiting()
        self._state.requested = request
        return await self._activation()

    @verify_manually.validator
    def _validate_verify_manually(self, request: ManualVerification) -> None:
        self._require_open()
        if not request.agent.strip() or not request.reason.strip():
            raise ApplicationError("manual verification needs an agent and a reason", type="InvalidRequest")
        if len(request.agent) > 255 or len(request.reason) > 1000:
            raise ApplicationError("agent (255) or reason (1000 characters) too long", type="InvalidRequest")

    @workflow.signal(name=EMAIL_PROVEN)
    def email_proven(self) -> None:
        """The password workflow activated the account: stop waiting (no reminder, no expiry), welcome."""
        if self._state.requested is None and self._state.stage in (CREATING, *WAITING_STAGES):
            self._state.requested = ProvenByPasswordLink()

    @workflow.update
    async def resend(self) -> Resent:
        self._state.resend_requested = True
        sent_before = self._state.links_sent
        # A confirm or manual verification may win the race: then this resend is moot, not pending forever.
        await workflow.wait_condition(
            lambda: (
                self._state.links_sent > sent_before
                or self._state.requested is not None
                or self._state.stage not in WAITING_STAGES
            )
        )
        if self._state.links_sent == sent_before or self._state.last_link_at is None:
            self._state.resend_requested = False
            raise ApplicationError("registration is no longer awaiting verification", type="NotWaiting")
        return Resent(self._state.last_link_at, self._resends_left)

    @resend.validator
    def _validate_resend(self) -> None:
        if self._state.stage == CREATING or self._state.sending_link or self._state.resend_requested:
            # a link is on its way right now
            seconds = int(self._input.timings.resend_min_interval.total_seconds())
            raise ApplicationError(f"wait {seconds} s before asking for another email", seconds, type="ResendThrottled")
        self._require_waiting()
        if self._resends_left <= 0:
            raise ApplicationError("no more verification emails may be sent", type="ResendLimitReached")
        next_at = self._next_resend_at
        if next_at is not None and workflow.now() < next_at:
            seconds = int((next_at - workflow.now()).total_seconds()) + 1
            raise ApplicationError(f"wait {seconds} s before asking for another email", seconds, type="ResendThrottled")

    @workflow.query
    def status(self) -> RegistrationStatus:
        return RegistrationStatus(
            customer_reference=self._input.customer.customer_reference,
            stage=self._state.stage,
            channel=self._input.customer.channel,
            started_at=self._state.started_at,
            reminder_at=self._reminder_at,
            expires_at=self._expires_at,
            links_sent=self._state.links_sent,
            resends_left=self._resends_left,
            next_resend_at=self._next_resend_at if self._state.stage in WAITING_STAGES else None,
            registered_at=self._state.registered_at,
            verified_by=self._verified_by,
        )

    # --- steps ------------------------------------------------------------------------------------

    async def _send_link(self, template: str, *, bulk: bool = False) -> None:
        self._state.sending_link = True
        sent = await workflow.execute_activity_method(
            EmailActivities.send_token_link,
            TokenLinkInput(
                customer_reference=self._input.customer.customer_reference,
                purpose=EMAIL_VERIFICATION,
                template=template,
                path="/register/confirm",
                expires_at=self._expires_at,
                idempotency_key=f"{self._key}/{template}/{self._state.links_sent + 1}",
            ),
            **ACTIVITY_OPTIONS,
            **email_options(bulk=bulk, split=self._split_queues),
        )
        self._state.token_hashes.append(sent.token_hash)
        self._state.sending_link = False
        self._state.links_sent += 1
        self._state.last_link_at = workflow.now()

    async def _wait_until(self, deadline: datetime) -> bool:
        """Wait for a request or a resend until the deadline; False when the deadline passed first."""
        remaining = deadline - workflow.now()
        if remaining <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(
                lambda: self._state.requested is not None or self._state.resend_requested, timeout=remaining
            )
            return True
        except TimeoutError:
            return False

    async def _activate(self, request: ManualVerification | ConfirmRequest | ProvenByPasswordLink) -> None:
        customer = self._input.customer
        if isinstance(request, ManualVerification):
            activation = ActivationInput(
                customer.customer_reference, "backoffice", "manual", request.agent, request.reason
            )
        else:  # the link, or a password link that proved the address (that activation is done already)
            method = "link" if isinstance(request, ConfirmRequest) else "password_link"
            activation = ActivationInput(
                customer.customer_reference, customer.channel, method, customer.customer_reference
            )
        activated = await workflow.execute_activity_method(
            CustomerActivities.activate_customer, activation, **ACTIVITY_OPTIONS
        )
        self._state.registered_at = activated.registered_at
        self._enter(VERIFIED)

    async def _expire(self) -> RegistrationResult:
        self._enter(EXPIRED)
        await workflow.execute_activity_method(
            CustomerActivities.expire_registration,
            ExpiryInput(
                self._input.customer.customer_reference,
                self._input.customer.channel,
                self._input.timings.unverified_action,
                f"{self._key}/expired",
            ),
            **ACTIVITY_OPTIONS,
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RegistrationResult(self._input.customer.customer_reference, EXPIRED)

    async def _tell_owner(self, created: CustomerCreated) -> RegistrationResult:
        """The address has an account: its owner gets one "already registered" email per interval."""
        self._enter(DUPLICATE)
        assert created.existing_customer_reference is not None
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            already_registered_notice(
                created.existing_customer_reference, self._input.timings.already_registered_notice_interval
            ),
            **ACTIVITY_OPTIONS,
            # a flood of sign-ups with taken addresses must not delay anyone's link
            **email_options(bulk=True, split=self._split_queues),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RegistrationResult(self._input.customer.customer_reference, DUPLICATE)

    # --- helpers ----------------------------------------------------------------------------------

    async def _activation(self) -> Activation:
        await workflow.wait_condition(lambda: self._state.registered_at is not None)
        return Activation(self._input.customer.customer_reference, self._state.registered_at)  # type: ignore[arg-type]

    async def _settled(self) -> None:
        await workflow.wait_condition(lambda: self._state.stage != CREATING and not self._state.sending_link)

    def _require_open(self) -> None:
        """Refuse at once what can never succeed; the handler checks the rest once the workflow settled."""
        if self._state.stage != CREATING:
            self._require_waiting()

    def _require_waiting(self) -> None:
        if self._state.stage not in WAITING_STAGES or self._state.requested is not None:
            raise ApplicationError(f"registration is {self._state.stage}, not awaiting verification", type="NotWaiting")
        if workflow.now() >= self._expires_at:
            raise ApplicationError("verification period is over", type="NotWaiting")

    def _enter(self, stage: str) -> None:
        self._state.stage = stage
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        workflow.set_current_details(f"Registration stage: {stage}")

    @property
    def _key(self) -> str:
        return lifecycle_key()

    @property
    def _split_queues(self) -> bool:
        """Started after the email queues existed: no patch to ask (workflows/queues.py)."""
        return self._input.revision >= 1

    @property
    def _reminder_at(self) -> datetime:
        return self._state.started_at + self._input.timings.reminder_after

    @property
    def _expires_at(self) -> datetime:
        return self._state.started_at + self._input.timings.expires_after

    @property
    def _resends_left(self) -> int:
        return max(0, self._input.timings.resend_max - self._state.resends)

    @property
    def _next_resend_at(self) -> datetime | None:
        if self._state.last_link_at is None:
            return None
        return self._state.last_link_at + self._input.timings.resend_min_interval

    @property
    def _verified_by(self) -> str | None:
        request = self._state.requested
        if self._state.registered_at is None or request is None:
            return None
        if isinstance(request, ManualVerification):
            return f"support:{request.agent}"
        return "link" if isinstance(request, ConfirmRequest) else "password_link"


def already_registered_notice(owner_reference: str, interval: timedelta) -> NoticeInput:
    """The "someone used your address" email: one per owner and interval, whichever lifecycle asks
    (a sign-up or an email change to a taken address share the window)."""
    window = int(workflow.now().timestamp() // (interval.total_seconds() or 1))
    return NoticeInput(owner_reference, "already_registered", f"already-registered:{owner_reference}/{window}")
