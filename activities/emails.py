"""Email sends: render the customer's message in their language and deliver it once per idempotency key.

A staff member's lock notice (`send_staff_lock_notice`) goes through the same claim, handover and mark:
a `Recipient` is a customer (their language, the deletion guard, the bounce's audit event) or a staff
member (the default language; no customer, so no audit event: the outbox row holds the bounce).

Every send first claims its key in the outbox table. A retry finds the key marked "sent" and does nothing;
a retry after a crash between the SMTP handover and the "sent" mark sends again (SMTP gives no
exactly-once, so at-least-once with a stable Message-ID is the honest best).

A permanent refusal (``MailRefused``: 5xx to RCPT or DATA) is final: the row becomes "bounced" with the
server's code and reply, an ``email_bounced`` audit event names the template and code, and the activity
returns as if it had sent. Retrying could only fail again and would hold the lifecycle on this step; the
lifecycle goes on instead (a registration waits for support or its expiry, a notice is simply not
delivered), and the workflows need no new branch. Every other failure raises and is retried with backoff.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from accounts import anonymization, audit, customer_sessions, data_exports, device_tokens, metrics, mfa, tokens
from accounts.db import SessionFactory
from accounts.emails import EmailRenderer, Mailer, MailRefused
from accounts.locks import take_customer_lock
from accounts.models import Customer, CustomerSession, EmailOutbox, MfaCode, OneTimeToken, Staff, utcnow
from accounts.settings import Settings
from activities.heartbeats import kept_alive
from activities.lookup import load_customer

UNLOCK_LINK = device_tokens.UNLOCK_LINK
UNLOCK_PATH = device_tokens.UNLOCK_PATH
STAFF_LOCKED = "staff_locked"  # the template of a staff member's lock notice
NEW_DEVICE_EMAIL = "new_device"
FINISHED = ("sent", "bounced")  # outbox states after which a key is never sent again


@dataclass
class TokenLinkInput:
    """Mint a one-time token for the customer and email a link carrying it."""

    customer_reference: str
    purpose: str
    template: str
    path: str  # storefront path of the link, e.g. /register/confirm
    expires_at: datetime
    idempotency_key: str
    # another address than the customer's (an email change confirms the new address before it is theirs)
    recipient: str | None = None
    changed_at: datetime | None = None  # email_changed (its undo link goes to the old address)
    new_email_masked: str | None = None  # email_changed


@dataclass
class TokenLinkSent:
    token_hash: str  # the workflow keeps hashes only; the token itself exists in the email alone


@dataclass
class NoticeInput:
    customer_reference: str
    template: str
    idempotency_key: str
    locked_until: datetime | None = None  # account_locked
    failures: int | None = None  # account_locked
    changed_at: datetime | None = None  # password_changed, email_changed
    recipient: str | None = None  # email_changed goes to the address the account had before
    new_email_masked: str | None = None  # email_changed
    removed: str | None = None  # mfa_removed: the types support removed ("email, totp")
    activated: str | None = None  # mfa_activated: the type that became active ("email" or "totp")
    session_id: str | None = None  # new_device: the sign-in whose device and network prefix it names
    export_id: str | None = None  # data_export_ready: the export whose download it links to
    expires_at: datetime | None = None  # data_export_ready: when the archive is deleted
    due_at: datetime | None = None  # inactivity_reminder, inactivity_warning: when the account is deleted (None: kept)


@dataclass
class MfaCodeInput:
    """Email the code of an MFA code row (accounts/mfa.py): the code is derived here, never carried."""

    customer_reference: str
    code_id: int
    idempotency_key: str


@dataclass
class StaffLockNoticeInput:
    """A staff member's name was locked (api/web/sign_in.py): tell them once, with a one-time link."""

    staff_id: int
    locked_until: datetime
    failures: int
    idempotency_key: str


@dataclass(frozen=True)
class Recipient:
    """Who one send goes to: a customer, or (customer None) a staff member."""

    address: str
    locale: str
    label: str  # for logs: a customer reference, or staff:<id> (never the address)
    customer: Customer | None = None
    names: dict[str, Any] = field(default_factory=dict)  # the templates' `customer` (the greeting)

    @classmethod
    def of_customer(cls, customer: Customer, address: str | None = None) -> Recipient:
        names = {
            "salutation": customer.salutation,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
        }
        return cls(address or customer.email, customer.locale, customer.customer_reference, customer, names)


class EmailActivities:
    def __init__(self, sessions: SessionFactory, renderer: EmailRenderer, mailer: Mailer, settings: Settings) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._mailer = mailer
        self._settings = settings

    @activity.defn
    @kept_alive  # a send lost with its worker is retried after the heartbeat timeout, not 90 s
    async def send_token_link(self, request: TokenLinkInput) -> TokenLinkSent:
        async with self._sessions.begin() as session:
            customer = await load_customer(session, request.customer_reference)
            issued = await session.scalar(select(OneTimeToken).where(OneTimeToken.issue_key == request.idempotency_key))
            if issued is not None and await _finished(session, request.idempotency_key):
                return TokenLinkSent(issued.token_hash)
            token = tokens.issued_token(self._settings.secret_key.get_secret_value(), request.idempotency_key)
            if issued is None:
                issued = OneTimeToken(issue_key=request.idempotency_key, customer_id=customer.id)
                session.add(issued)
            issued.token_hash = tokens.hash_token(token)
            issued.purpose = request.purpose
            issued.expires_at = request.expires_at
        link = f"{self._settings.public_url.rstrip('/')}{request.path}?token={token}"
        # A retry after a lost "sent" mark derives the same token: the same link, the same Message-ID, so a
        # receiver that drops duplicates keeps one mail, and whichever copy is opened works.
        context: dict[str, Any] = {"link": link, "expires_at": request.expires_at}
        if request.changed_at is not None:
            context.update(changed_at=request.changed_at, new_email_masked=request.new_email_masked)
        await self._deliver(
            customer,
            request.template,
            request.idempotency_key,
            context,
            message_key=f"{request.idempotency_key}/{issued.token_hash[:16]}",
            recipient=request.recipient,
        )
        return TokenLinkSent(issued.token_hash)

    @activity.defn
    @kept_alive  # a send lost with its worker is retried after the heartbeat timeout, not 90 s
    async def send_mfa_code(self, request: MfaCodeInput) -> bool:
        """Derive the code from the step's key (a retry mails the same code), store its hash, mail it.
        False when the code died before it went out (a newer code, a sign-out, its expiry)."""
        secret = self._settings.secret_key.get_secret_value()
        code = mfa.issued_code(secret, request.idempotency_key)
        if not await mfa.store_code(self._sessions, secret, request.code_id, code):
            return False
        async with self._sessions() as session:
            customer = await load_customer(session, request.customer_reference)
            row = await session.get(MfaCode, request.code_id)
        assert row is not None
        minutes = max(1, round((row.expires_at - row.created_at).total_seconds() / 60))
        return await self._deliver(
            customer,
            "mfa_code",
            request.idempotency_key,
            {"code": code, "expires_at": row.expires_at, "valid_minutes": minutes},
        )

    @activity.defn
    @kept_alive  # a send lost with its worker is retried after the heartbeat timeout, not 90 s
    async def send_notice(self, request: NoticeInput) -> bool:
        """Send a message without a token (welcome, already registered). False when it had gone out (or
        bounced) before, or bounced now."""
        async with self._sessions() as session:
            customer = await load_customer(session, request.customer_reference)
        base = self._settings.public_url.rstrip("/")
        context: dict[str, Any] = {"login_url": f"{base}/login", "reset_url": f"{base}/password/forgotten"}
        if request.locked_until is not None:
            context.update(locked_until=request.locked_until, failures=request.failures)
            if request.template == "account_locked":
                context.update(
                    await self._unlock_link(request.idempotency_key, UNLOCK_LINK, UNLOCK_PATH, customer_id=customer.id)
                )
        if request.changed_at is not None:
            context.update(changed_at=request.changed_at)
        if request.new_email_masked is not None:
            context.update(new_email_masked=request.new_email_masked)
        if request.removed is not None:
            context.update(removed=request.removed)
        if request.activated is not None:
            context.update(activated=request.activated)
        if request.export_id is not None:
            # the download needs the owner's sign-in: the link names the export, it opens nothing by itself
            path = data_exports.download_path(request.customer_reference, request.export_id)
            context.update(download_url=f"{base}{path}", expires_at=request.expires_at)
        if request.due_at is not None:
            context.update(due_at=request.due_at)
        if request.template == NEW_DEVICE_EMAIL and request.session_id is not None:
            context.update(signed_in_at=request.changed_at)
            context.update(await self._new_device(customer, request.session_id, request.idempotency_key))
        return await self._deliver(
            customer, request.template, request.idempotency_key, context, recipient=request.recipient
        )

    @activity.defn
    @kept_alive  # a send lost with its worker is retried after the heartbeat timeout, not 90 s
    async def send_staff_lock_notice(self, request: StaffLockNoticeInput) -> bool:
        """A staff member's lock notice with its one-time link; False when there is nobody to tell (the
        member was deleted, disabled or has no address any more), or it had gone out or bounced before."""
        async with self._sessions() as session:
            staff = await session.get(Staff, request.staff_id)
        if staff is None or staff.disabled_at is not None or not staff.email:
            return False
        key = request.idempotency_key
        link = await self._unlock_link(
            key, device_tokens.STAFF_UNLOCK_LINK, device_tokens.STAFF_UNLOCK_PATH, staff_id=staff.id
        )
        base = self._settings.public_url.rstrip("/")
        context = {
            "locked_until": request.locked_until,
            "failures": request.failures,
            "sign_in_url": f"{base}/backoffice/sign-in",
            "staff_name": staff.name,
            **link,
        }
        names = {"salutation": None, "first_name": staff.name, "last_name": None, "email": staff.email}
        # staff have no language of their own: the shop's default one
        to = Recipient(staff.email, self._settings.default_locale, f"staff:{staff.id}", names=names)
        return await self._send(to, STAFF_LOCKED, key, context)

    async def _new_device(self, customer: Customer, session_id: str, key: str) -> dict[str, Any]:
        """The sign-in's device and network prefix (read here: no history holds them) and the "this wasn't
        me" link (accounts/customer_sessions.py), minted and derived from the send's key as the unlock link."""
        issue_key = f"{key}/not-me"
        token = tokens.issued_token(self._settings.secret_key.get_secret_value(), issue_key)
        async with self._sessions.begin() as session:
            signed_in = await session.get(CustomerSession, session_id)
            issued = await session.scalar(select(OneTimeToken).where(OneTimeToken.issue_key == issue_key))
            if issued is None:
                issued = OneTimeToken(
                    issue_key=issue_key,
                    customer_id=customer.id,
                    token_hash=tokens.hash_token(token),
                    purpose=customer_sessions.NOT_ME_LINK,
                    expires_at=utcnow() + self._settings.not_me_link_expires_after,
                )
                session.add(issued)
            expires_at = issued.expires_at
        base = self._settings.public_url.rstrip("/")
        return {
            "device": signed_in.device if signed_in is not None else customer_sessions.UNKNOWN_DEVICE,
            "network_prefix": signed_in.network_prefix if signed_in is not None else None,
            "not_me_url": f"{base}{customer_sessions.NOT_ME_PATH}?token={token}",
            "not_me_expires_at": expires_at,
        }

    async def _unlock_link(
        self, key: str, purpose: str, path: str, *, customer_id: int | None = None, staff_id: int | None = None
    ) -> dict[str, Any]:
        """A lock email's one-time link (accounts/device_tokens.py): minted here, so no history holds it,
        and derived from the send's key, so a retried send carries the same, working link."""
        issue_key = f"{key}/unlock"
        token = tokens.issued_token(self._settings.secret_key.get_secret_value(), issue_key)
        async with self._sessions.begin() as session:
            issued = await session.scalar(select(OneTimeToken).where(OneTimeToken.issue_key == issue_key))
            if issued is None:
                issued = OneTimeToken(
                    issue_key=issue_key,
                    customer_id=customer_id,
                    staff_id=staff_id,
                    token_hash=tokens.hash_token(token),
                    purpose=purpose,
                    expires_at=utcnow() + self._settings.unlock_link_expires_after,
                )
                session.add(issued)
            expires_at = issued.expires_at
        base = self._settings.public_url.rstrip("/")
        return {"unlock_url": f"{base}{path}?token={token}", "unlock_expires_at": expires_at}

    async def _deliver(
        self,
        customer: Customer,
        template: str,
        key: str,
        context: dict[str, Any],
        message_key: str | None = None,
        recipient: str | None = None,
    ) -> bool:
        if customer.anonymized_at is not None:
            return False
        return await self._send(Recipient.of_customer(customer, recipient), template, key, context, message_key)

    async def _send(
        self, to: Recipient, template: str, key: str, context: dict[str, Any], message_key: str | None = None
    ) -> bool:
        """Claim the key, render, hand over, mark: the one path of every email."""
        if not await self._claim(to, template, key):
            return False
        content = self._renderer.render_email(
            template,
            to.locale,
            {
                "shop_name": self._settings.shop_name,
                "public_url": self._settings.public_url,
                "customer": to.names,
                **context,
            },
        )
        domain = self._settings.mail_from.rsplit("@", 1)[-1].strip(" >") or "localhost"
        message_id = f"<{hashlib.sha256((message_key or key).encode()).hexdigest()[:32]}@{domain}>"
        try:
            if activity.is_worker_shutdown():
                # The worker's shutdown waits for a handover under way (worker.graceful_shutdown_timeout), not
                # for one that starts now; the key stays claimed by this activity, so its retry sends.
                raise RuntimeError("the worker is shutting down: this send is left to the next attempt")
            await self._mailer.send(
                sender=self._settings.mail_from,
                to=to.address,
                content=content,
                headers={"Message-ID": message_id},
            )
        except MailRefused as refusal:
            await self._bounced(to, template, key, refusal)
            metrics.email_bounced(template)
            return False
        except Exception:
            metrics.email_retried(template)  # a temporary failure: the activity's retry sends again
            await self._mark(key, "failed")  # no handover in progress: a deletion need not wait for it
            raise
        metrics.email_sent(template)
        await self._mark(key, "sent")
        return True

    async def _mark(self, key: str, status: str) -> None:
        # one UPDATE (the claim wrote the row): no read of it first, on the path of every email
        values: dict[str, Any] = {"status": status, **({"sent_at": utcnow()} if status == "sent" else {})}
        async with self._sessions.begin() as session:
            marked = await session.execute(
                update(EmailOutbox).where(EmailOutbox.idempotency_key == key).values(**values)
            )
            assert marked.rowcount == 1  # type: ignore[attr-defined]

    async def _bounced(self, to: Recipient, template: str, key: str, refusal: MailRefused) -> None:
        """Record a permanent refusal once: the outbox row and (a customer's) one audit event, in one
        transaction."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))
            assert row is not None
            row.status = "bounced"
            row.smtp_code = refusal.code
            row.smtp_reply = refusal.reply
            if to.customer is not None:  # a staff member's has no customer history: the row says it
                audit.record(
                    session,
                    customer_reference=to.customer.customer_reference,
                    event="email_bounced",
                    channel="email",
                    actor="system",
                    # the template and code say what failed; the reply may quote the address, so it stays on the row
                    details={"template": template, "smtpCode": refusal.code},
                    idempotency_key=f"email_bounced:{key}",
                )
        activity.logger.warning("email %s to %s bounced: %s", template, to.label, refusal.code)

    async def _claim(self, to: Recipient, template: str, key: str) -> bool:
        """Take the idempotency key for this send; False when it went out or bounced, or another sender holds it.

        The row is inserted first: a first attempt (nearly every send) needs no read of it. A key that
        exists already is our own earlier attempt (send again) or someone else's (leave it)."""
        info = activity.info()
        claimant = f"{info.workflow_id}/{info.activity_id}"
        customer = to.customer
        try:
            async with self._sessions.begin() as session:
                if not await _may_send(session, to, template):
                    return False
                session.add(
                    EmailOutbox(
                        idempotency_key=key,
                        customer_reference=customer.customer_reference if customer is not None else None,
                        recipient=to.address,
                        template=template,
                        locale=to.locale,
                        status="sending",
                        claimed_by=claimant,
                        attempts=1,
                    )
                )
            return True
        except IntegrityError:  # the key is taken: by an earlier attempt of ours, or by another sender
            pass
        async with self._sessions.begin() as session:
            if not await _may_send(session, to, template):
                return False
            row = await session.scalar(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))
            if row is None:  # purged since the insert failed: the activity's retry inserts it again
                raise RuntimeError(f"outbox row {key} vanished while it was being claimed; retrying")
            if row.status in FINISHED or row.claimed_by != claimant:
                return False
            row.attempts += 1  # our own earlier attempt failed or died before "sent": send again
            row.status = "sending"
            return True


async def _may_send(session: AsyncSession, to: Recipient, template: str) -> bool:
    """Under the row lock the deletion's mark takes too: a claim made before the mark is one the deletion
    waits for (AnonymizationActivities.end_lifecycles), any later one is refused (False)."""
    customer = to.customer
    if customer is None or template == anonymization.DELETION_EMAIL:
        return True
    await take_customer_lock(session, Customer.id == customer.id)
    return not await anonymization.deletion_started(session, customer.customer_reference)


async def _finished(session: Any, key: str) -> bool:
    status = await session.scalar(select(EmailOutbox.status).where(EmailOutbox.idempotency_key == key))
    return status in FINISHED
