"""Email change with re-verification: the new address must confirm before the account uses it.

    one workflow per customer (email-change:{ref}); every request is an Update on it
    for each request, newest wins:
        check the new address: taken -> its owner gets the "already registered" email, nothing else
        email a confirmation link to the NEW address
        wait for: confirm (link token) | a newer request (this one's links die) | expires_after
    confirmed: switch the address and end every session (one transaction), then tell the OLD address
        what happened, with a link that undoes the change (ACCOUNTS_EMAIL_CHANGE_UNDO_LIFETIME)
    after the last request: wait for the undo links still open, handling newer requests meanwhile
        undo (link token): the address before that change comes back, every session ends again, the
        links of that change and of every later one die (the customer then sets a new password)

Who asks for a change proved to be the customer (starter/reauth.py); the undo is for the case where that
proof was stolen too. The confirmation comes by a link, without a session, so it ends them all: keeping
the session that asked would keep a thief's session as well.

The caller always gets the same answer, whether the address was free or taken: an email change must
not tell anybody which addresses have accounts.

Its other parts: routes `PATCH /customers/{customer_reference}` with a new email (api/routes/customers.py) and
`POST /customer-email-change-confirmation`, `GET`/`POST /email-change/confirm` (api/routes/confirmation.py); client
`AccountsClient.email_changes` (starter/email_changes.py); activities activities/email_change.py and
activities/emails.py; emails templates/emails/<locale>/{email_change_confirm,email_changed,
already_registered}.*, pages templates/pages/<locale>/email_change_{confirm,undo}.html.j2; the undo link's
routes `GET`/`POST /email-change/undo` (api/routes/confirmation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE, LIFECYCLE_STAGE
    from activities.email_change import (
        EMAIL_CHANGE,
        EMAIL_CHANGE_UNDO,
        ApplyEmailChange,
        EmailChangeActivities,
        EmailCheck,
        RetireLinks,
        UndoEmailChange,
    )
    from activities.email_change import UNDO_BLOCKED as UNDO_BLOCKED
    from activities.email_change import UNDONE as UNDONE
    from activities.emails import EmailActivities, NoticeInput, TokenLinkInput
    from workflows.keys import lifecycle_key
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS, already_registered_notice

CHECKING = "checking"
AWAITING_CONFIRMATION = "awaiting_confirmation"
CHANGED = "changed"
EXPIRED = "expired"
SUPERSEDED = "superseded"
TAKEN = "taken"
IDLE = "idle"
UNDO_OPEN = "undo_open"  # a confirmed change can still be undone from the old address

# Runs that confirmed a change before this version told the old address without an undo link.
UNDO_PATCH = "email-change-undo"
# Runs started before ACCOUNTS_EMAIL_CHANGE_UNDO_LIFETIME reached their input: its default.
DEFAULT_UNDO_LIFETIME = timedelta(days=7)


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
    undo_lifetime: timedelta | None = None  # None: a run started before the undo link existed
    undo_windows: list[UndoWindow] = field(default_factory=list)  # carried over continue-as-new


@dataclass
class UndoWindow:
    """The undo link of one confirmed change, as the workflow knows it (the token only as its hash)."""

    number: int  # the request that made the change
    previous_email: str  # the address the change replaced: the undo restores it
    token_hash: str
    expires_at: datetime


@dataclass
class EmailChangeUndo:
    token_hash: str


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
    undo_open_until: datetime | None = None


@dataclass
class _Pending:
    number: int
    request: EmailChangeRequest
    token_hashes: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    sending: bool = True
    confirmed: EmailChangeConfirm | None = None
    outcome: str | None = None
    undone: bool = False  # an undo arrived: this request's link dies, and its change (if any) is not told


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
        self._undo_windows: list[UndoWindow] = list(input.undo_windows)
        self._telling_old_address = False  # an undo link is on its way: its hash is not known yet
        self._applying = False  # an address switch is in the database's hands
        self._undoing = False

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
                    workflow.continue_as_new(
                        replace(
                            input,
                            carried=self._newest,
                            received=self._received,
                            undo_windows=self._open_windows(),
                        )
                    )
                self._handled += 1
                request, self._newest = self._newest, None
                await self._handle(_Pending(self._received, request))
            await self._wait_for_undo_links()
            # an update accepted while the last request finished is handled before this run ends
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._newest is None and not self._open_windows():
                return self._outcomes

    async def _wait_for_undo_links(self) -> None:
        """Until every undo link expired or was used; a newer request is handled meanwhile (it returns)."""
        while self._newest is None and (windows := self._open_windows()):
            self._enter(UNDO_OPEN)
            try:
                await workflow.wait_condition(
                    partial(self._undo_wait_over, len(self._undo_windows)),
                    timeout=min(w.expires_at for w in windows) - workflow.now(),
                )
            except TimeoutError:
                pass
            self._undo_windows = self._open_windows()

    def _undo_wait_over(self, windows_before: int) -> bool:
        return self._newest is not None or len(self._undo_windows) != windows_before

    def _open_windows(self) -> list[UndoWindow]:
        now = workflow.now()
        return [w for w in self._undo_windows if w.expires_at > now]

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
        if current.undone or self._undoing:
            raise ApplicationError("email change link is not valid", type="InvalidToken")
        current.confirmed = confirm
        await workflow.wait_condition(lambda: current.outcome is not None)
        if current.outcome != CHANGED:
            raise ApplicationError("email change could not be applied", type="InvalidToken")
        return CHANGED

    @workflow.update
    async def undo(self, undo: EmailChangeUndo) -> str:
        """The old address's link: answers `undone` or `undo_blocked`; raises InvalidToken (expired, used,
        unknown, or undone along with an earlier change)."""
        await workflow.wait_condition(lambda: not self._telling_old_address and not self._undoing)
        window = next((w for w in self._open_windows() if w.token_hash == undo.token_hash), None)
        if window is None:
            raise ApplicationError("email change undo link is not valid", type="InvalidToken")
        self._undoing = True
        try:
            # a request waiting for its confirmation dies, and one queued behind it
            self._newest = None
            if self._current is not None:
                self._current.undone = True
            await workflow.wait_condition(lambda: not self._applying and not self._telling_old_address)
            # this change and every later one are undone: their links die, earlier ones stay usable
            undone = [w for w in self._undo_windows if w.number >= window.number]
            self._undo_windows = [w for w in self._undo_windows if w.number < window.number]
            result = await workflow.execute_activity_method(
                EmailChangeActivities.undo_email_change,
                UndoEmailChange(
                    customer_reference=self._input.customer_reference,
                    restore_email=window.previous_email,
                    token_hashes=[w.token_hash for w in undone],
                    idempotency_key=f"{lifecycle_key()}/{window.number}/undone",
                ),
                **ACTIVITY_OPTIONS,
            )
        finally:
            self._undoing = False
        self._outcomes.append(result.outcome)
        return result.outcome

    @undo.validator
    def _validate_undo(self, undo: EmailChangeUndo) -> None:
        # refused without a trace in the history; the API checked the stored hash before asking
        if not self._telling_old_address and all(w.token_hash != undo.token_hash for w in self._open_windows()):
            raise ApplicationError("email change undo link is not valid", type="InvalidToken")

    @workflow.query
    def status(self) -> EmailChangeStatus:
        current = self._current
        windows = self._open_windows()
        return EmailChangeStatus(
            customer_reference=self._input.customer_reference,
            stage=self._stage,
            requests=self._received,
            pending_email=current.request.new_email if current is not None else None,
            expires_at=current.expires_at if current is not None else None,
            outcomes=list(self._outcomes),
            undo_open_until=max((w.expires_at for w in windows), default=None),
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
            **email_options(),
        )
        pending.token_hashes.append(sent.token_hash)
        pending.sending = False
        self._enter(AWAITING_CONFIRMATION)
        try:
            await workflow.wait_condition(
                lambda: pending.confirmed is not None or self._newest is not None or pending.undone,
                timeout=pending.expires_at - workflow.now(),
            )
        except TimeoutError:
            await self._retire(pending)
            return EXPIRED
        if pending.confirmed is None or pending.undone:  # a newer request or an undo: this one's link dies
            await self._retire(pending)
            return SUPERSEDED

        self._applying = True
        try:
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
        finally:
            self._applying = False
        if applied.outcome == "taken":  # registered by someone else between the link and the click
            assert applied.taken_by is not None
            await self._retire(pending)
            await self._tell_owner(applied.taken_by)
            return TAKEN
        if applied.outcome != "changed":
            return applied.outcome
        self._enter(CHANGED)
        if workflow.patched(UNDO_PATCH):
            if not pending.undone:  # an undo under way restores an older address: this change is not told
                await self._tell_old_address(pending, key, check.current_email)
            return CHANGED
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
            **email_options(),
        )
        return CHANGED

    async def _tell_old_address(self, pending: _Pending, key: str, old_email: str) -> None:
        """The notice to the address the account had, with the link that undoes this change."""
        expires_at = workflow.now() + (self._input.undo_lifetime or DEFAULT_UNDO_LIFETIME)
        self._telling_old_address = True
        try:
            sent = await workflow.execute_activity_method(
                EmailActivities.send_token_link,
                TokenLinkInput(
                    customer_reference=self._input.customer_reference,
                    purpose=EMAIL_CHANGE_UNDO,
                    template="email_changed",
                    path="/email-change/undo",
                    expires_at=expires_at,
                    idempotency_key=f"{key}/old-address-told",
                    recipient=old_email,
                    changed_at=workflow.now(),
                    new_email_masked=mask_email(pending.request.new_email),
                ),
                **ACTIVITY_OPTIONS,
                **email_options(),
            )
            self._undo_windows.append(UndoWindow(pending.number, old_email, sent.token_hash, expires_at))
        finally:
            self._telling_old_address = False

    async def _tell_owner(self, owner_reference: str) -> None:
        """The address has an account: its owner hears of the attempt, the requester learns nothing."""
        self._enter(TAKEN)
        await workflow.execute_activity_method(
            EmailActivities.send_notice,
            already_registered_notice(owner_reference, self._input.already_registered_notice_interval),
            **ACTIVITY_OPTIONS,
            **email_options(bulk=True),
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
