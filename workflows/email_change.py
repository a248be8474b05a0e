"""Email change with re-verification: the new address must confirm before the account uses it.

    one workflow per customer (email-change:{ref}); every request is an Update on it
    for each request, newest wins:
        check the new address: taken -> its owner gets the "already registered" email, nothing else
        email a confirmation link to the NEW address
        wait for: confirm (link token) | a newer request (this one's links die) | expires_after
    confirmed: switch the address (one transaction), then tell the OLD address what happened
    Sessions and tokens stay valid: the person who signed in is still the same customer.

The caller always gets the same answer, whether the address was free or taken: an email change must
not tell anybody which addresses have accounts.

Its other parts: routes `PATCH /customers/{customer_reference}` with a new email (api/routes/customers.py) and
`POST /customer-email-change-confirmation`, `GET`/`POST /email-change/confirm` (api/routes/confirmation.py); client
`AccountsClient.email_changes` (starter/email_changes.py); activities activities/email_change.py and
activities/emails.py; emails templates/emails/<locale>/{email_change_confirm,email_changed,
already_registered}.*, page templates/pages/<locale>/email_change_confirm.html.j2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.email_change import (
        EMAIL_CHANGE,
        ApplyEmailChange,
        EmailChangeActivities,
        EmailCheck,
        RetireLinks,
    )
    from activities.emails import EmailActivities, NoticeInput, TokenLinkInput
    from workflows.keys import lifecycle_key
    from workflows.queues import email_queue
    from workflows.registration import ACTIVITY_OPTIONS, already_registered_notice

CHECKING = "checking"
AWAITING_CONFIRMATION = "awaiting_confirmation"
CHANGED = "changed"
EXPIRED = "expired"
SUPERSEDED = "superseded"
TAKEN = "taken"
IDLE = "idle"


def email_change_id(customer_reference: str) -> str:
    return f"email-change:{customer_reference}"


@dataclass
class EmailChangeRequest:
    new_email: str
    channel: str
    actor: str


@dataclass
class EmailChangeInput:
    customer_reference: str
    expires_after: timedelta
    # the "already registered" notice shares registration's window: one per address owner and interval
    already_registered_notice_interval: timedelta
    # a customer may keep asking: after this many requests (or when Temporal suggests it) the workflow
    # continues as new, carrying the newest request, so its history stays bounded
    requests_per_run: int = 100
    carried: EmailChangeRequest | None = None
    received: int = 0


@dataclass
class EmailChangeConfirm:
    token_hash: str


@dataclass
class EmailChangeStatus:
    customer_reference: str
    stage: str
    requests: int
    pending_email: str | None = None
    expires_at: datetime | None = None
    outcomes: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    number: int
    request: EmailChangeRequest
    token_hashes: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    sending: bool = True
    confirmed: EmailChangeConfirm | None = None
    outcome: str | None = None


@workflow.defn
class EmailChangeWorkflow:
    @workflow.init
    def __init__(self, input: EmailChangeInput) -> None:
        self._input = input
        self._stage = IDLE
        self._received = input.received  # requests accepted so far; the newest one is the one that counts
        self._newest: EmailChangeRequest | None = input.carried
        self._handled = 0  # requests handled by this run
        self._current: _Pending | None = None
        self._outcomes: list[str] = []

    @workflow.run
    async def run(self, input: EmailChangeInput) -> list[str]:
        workflow.upsert_search_attributes(
            [CUSTOMER_REFERENCE.value_set(input.customer_reference)]
            + ([CHANNEL.value_set(input.carried.channel)] if input.carried is not None else [])
        )
        while True:
            while self._newest is not None:
                if self._handled >= input.requests_per_run or workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(replace(input, carried=self._newest, received=self._received))
                self._handled += 1
                request, self._newest = self._newest, None
                await self._handle(_Pending(self._received, request))
            # an update accepted while the last request finished is handled before this run ends
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._newest is None:
                return self._outcomes

    # --- messages ---------------------------------------------------------------------------------

    @workflow.update
    def request(self, request: EmailChangeRequest) -> int:
        """Accept a request; it replaces any pending one. Answers at once with the request's number:
        the caller's answer must not depend on whether the address is free."""
        self._received += 1
        self._newest = request
        workflow.upsert_search_attributes([CHANNEL.value_set(request.channel)])
        return self._received

    @request.validator
    def _validate_request(self, request: EmailChangeRequest) -> None:
        if "@" not in request.new_email or len(request.new_email) > 255:
            raise ApplicationError("not an email address", type="InvalidRequest")

    @workflow.update
    async def confirm(self, confirm: EmailChangeConfirm) -> str:
        """The link's token hash; answers `changed`, or raises InvalidToken (superseded, expired, unknown)."""
        current = self._current
        # the email can be opened before the workflow has recorded its link's hash
        await workflow.wait_condition(lambda: current is None or not current.sending)
        if current is None or current is not self._current or confirm.token_hash not in current.token_hashes:
            raise ApplicationError("email change link is not valid", type="InvalidToken")
        if current.expires_at is None or workflow.now() >= current.expires_at or self._newest is not None:
            raise ApplicationError("email change link is not valid", type="InvalidToken")
        current.confirmed = confirm
        await workflow.wait_condition(lambda: current.outcome is not None)
        if current.outcome != CHANGED:
            raise ApplicationError("email change could not be applied", type="InvalidToken")
        return CHANGED

    @workflow.query
    def status(self) -> EmailChangeStatus:
        current = self._current
        return EmailChangeStatus(
            customer_reference=self._input.customer_reference,
            stage=self._stage,
            requests=self._received,
            pending_email=current.request.new_email if current is not None else None,
            expires_at=current.expires_at if current is not None else None,
            outcomes=list(self._outcomes),
        )

    # --- steps ------------------------------------------------------------------------------------

    async def _handle(self, pending: _Pending) -> None:
        self._current = pending
        pending.outcome = await self._run_request(pending)
        pending.sending = False  # a request that sent no link (taken, unchanged) releases a waiting confirm
        self._outcomes.append(pending.outcome)
        self._current = None
        if self._newest is None:
            self._enter(IDLE)

    async def _run_request(self, pending: _Pending) -> str:
        ref = self._input.customer_reference
        key = f"{lifecycle_key()}/{pending.number}"  # numbers carry over continue-as-new (`received`)
        self._enter(CHECKING)
        check = await workflow.execute_activity_method(
            EmailChangeActivities.check_new_email, EmailCheck(ref, pending.request.new_email), **ACTIVITY_OPTIONS
        )
        if check.outcome in ("unchanged", "inactive"):
            return check.outcome
        if check.outcome == "taken":
            assert check.taken_by is not None
            await self._tell_owner(check.taken_by)
            return TAKEN

        pending.expires_at = workflow.now() + self._input.expires_after
        sent = await workflow.execute_activity_method(
            EmailActivities.send_token_link,
            TokenLinkInput(
                customer_reference=ref,
                purpose=EMAIL_CHANGE,
                template="email_change_confirm",
                path="/email-change/confirm",
                expires_at=pending.expires_at,
                idempotency_key=f"{key}/link",
                recipient=pending.request.new_email,
            ),
            **ACTIVITY_OPTIONS,
            **email_queue(),
        )
        pending.token_hashes.append(sent.token_hash)
        pending.sending = False
        self._enter(AWAITING_CONFIRMATION)
        try:
            await workflow.wait_condition(
                lambda: pending.confirmed is not None or self._newest is not None,
                timeout=pending.expires_at - workflow.now(),
            )
        except TimeoutError:
            await self._retire(pending)
            return EXPIRED
        if pending.confirmed is None:  # a newer request arrived: this one's link dies
            await self._retire(pending)
            return SUPERSEDED

        applied = await workflow.execute_activity_method(
            EmailChangeActivities.apply_email_change,
            ApplyEmailChange(
                customer_reference=ref,
                new_email=pending.request.new_email,
                token_hash=pending.confirmed.token_hash,
                channel=pending.request.channel,
                actor=pending.request.actor,
                idempotency_key=f"{key}/changed",
            ),
            **ACTIVITY_OPTIONS,
        )
        if applied.outcome == "taken":  # registered by someone else between the link and the click
            assert applied.taken_by is not None
            await self._retire(pending)
            await self._tell_owner(applied.taken_by)
            return TAKEN
        if applied.outcome != "changed":
            return applied.outcome
        self._enter(CHANGED)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            NoticeInput(
                ref,
                "email_changed",
                f"{key}/old-address-told",
                changed_at=workflow.now(),
                recipient=check.current_email,
                new_email_masked=mask_email(pending.request.new_email),
            ),
            **ACTIVITY_OPTIONS,
            **email_queue(),
        )
        return CHANGED

    async def _tell_owner(self, owner_reference: str) -> None:
        """The address has an account: its owner hears of the attempt, the requester learns nothing."""
        self._enter(TAKEN)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            already_registered_notice(owner_reference, self._input.already_registered_notice_interval),
            **ACTIVITY_OPTIONS,
            **email_queue(bulk=True),
        )

    async def _retire(self, pending: _Pending) -> None:
        await workflow.execute_activity_method(
            EmailChangeActivities.retire_links,
            RetireLinks(self._input.customer_reference, list(pending.token_hashes)),
            **ACTIVITY_OPTIONS,
        )

    def _enter(self, stage: str) -> None:
        self._stage = stage
        workflow.upsert_search_attributes([LIFECYCLE_STAGE.value_set(stage)])
        workflow.set_current_details(f"Email change stage: {stage}")


def mask_email(email: str) -> str:
    """a***@example.org: enough for the old address to recognise the change, not a copy of the new one."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
