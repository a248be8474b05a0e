"""Email sends: render the customer's message in their language and deliver it once per idempotency key.

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio import activity

from accounts import anonymization, audit, customer_sessions, device_tokens, metrics, tokens
from accounts.db import SessionFactory
from accounts.emails import EmailRenderer, Mailer, MailRefused
from accounts.locks import lock_customer
from accounts.models import Customer, CustomerSession, EmailOutbox, OneTimeToken, utcnow
from accounts.settings import Settings
from activities.lookup import load_customer

UNLOCK_LINK = device_tokens.UNLOCK_LINK
UNLOCK_PATH = device_tokens.UNLOCK_PATH
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
    session_id: str | None = None  # new_device: the sign-in whose device and network prefix it names


class EmailActivities:
    def __init__(self, sessions: SessionFactory, renderer: EmailRenderer, mailer: Mailer, settings: Settings) -> None:
        self._sessions = sessions
        self._renderer = renderer
        self._mailer = mailer
        self._settings = settings

    @activity.defn
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
        await self._deliver(
            customer,
            request.template,
            request.idempotency_key,
            {"link": link, "expires_at": request.expires_at},
            message_key=f"{request.idempotency_key}/{issued.token_hash[:16]}",
            recipient=request.recipient,
        )
        return TokenLinkSent(issued.token_hash)

    @activity.defn
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
                context.update(await self._unlock_link(customer, request.idempotency_key))
        if request.changed_at is not None:
            context.update(changed_at=request.changed_at)
        if request.new_email_masked is not None:
            context.update(new_email_masked=request.new_email_masked)
        if request.template == NEW_DEVICE_EMAIL and request.session_id is not None:
            context.update(signed_in_at=request.changed_at)
            context.update(await self._new_device(customer, request.session_id, request.idempotency_key))
        return await self._deliver(
            customer, request.template, request.idempotency_key, context, recipient=request.recipient
        )

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

    async def _unlock_link(self, customer: Customer, key: str) -> dict[str, Any]:
        """The lock email's one-time link (accounts/device_tokens.py): minted here, so no history holds it,
        and derived from the send's key, so a retried send carries the same, working link."""
        issue_key = f"{key}/unlock"
        token = tokens.issued_token(self._settings.secret_key.get_secret_value(), issue_key)
        async with self._sessions.begin() as session:
            issued = await session.scalar(select(OneTimeToken).where(OneTimeToken.issue_key == issue_key))
            if issued is None:
                issued = OneTimeToken(
                    issue_key=issue_key,
                    customer_id=customer.id,
                    token_hash=tokens.hash_token(token),
                    purpose=UNLOCK_LINK,
                    expires_at=utcnow() + self._settings.unlock_link_expires_after,
                )
                session.add(issued)
            expires_at = issued.expires_at
        base = self._settings.public_url.rstrip("/")
        return {"unlock_url": f"{base}{UNLOCK_PATH}?token={token}", "unlock_expires_at": expires_at}

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
        recipient = recipient or customer.email
        if not await self._claim(customer, template, key, recipient):
            return False
        content = self._renderer.render_email(
            template,
            customer.locale,
            {
                "shop_name": self._settings.shop_name,
                "public_url": self._settings.public_url,
                "customer": {
                    "salutation": customer.salutation,
                    "first_name": customer.first_name,
                    "last_name": customer.last_name,
                    "email": customer.email,
                },
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
                to=recipient,
                content=content,
                headers={"Message-ID": message_id},
            )
        except MailRefused as refusal:
            await self._bounced(customer.customer_reference, template, key, refusal)
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
        async with self._sessions.begin() as session:
            row = await session.scalar(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))
            assert row is not None
            row.status = status
            if status == "sent":
                row.sent_at = utcnow()

    async def _bounced(self, customer_reference: str, template: str, key: str, refusal: MailRefused) -> None:
        """Record a permanent refusal once: the outbox row and one audit event, in one transaction."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))
            assert row is not None
            row.status = "bounced"
            row.smtp_code = refusal.code
            row.smtp_reply = refusal.reply
            audit.record(
                session,
                customer_reference=customer_reference,
                event="email_bounced",
                channel="email",
                actor="system",
                # the template and code say what failed; the reply may quote the address, so it stays on the row
                details={"template": template, "smtpCode": refusal.code},
                idempotency_key=f"email_bounced:{key}",
            )
        activity.logger.warning("email %s to %s bounced: %s", template, customer_reference, refusal.code)

    async def _claim(self, customer: Customer, template: str, key: str, recipient: str) -> bool:
        """Take the idempotency key for this send; False when it went out or bounced, or another sender holds it."""
        info = activity.info()
        claimant = f"{info.workflow_id}/{info.activity_id}"
        try:
            async with self._sessions.begin() as session:
                if template != anonymization.DELETION_EMAIL:
                    # under the row lock the deletion's mark takes too: a claim made before the mark is
                    # one the deletion waits for (AnonymizationActivities.end_lifecycles), any later one is refused
                    await lock_customer(session, customer_id=customer.id)
                    if await anonymization.deletion_started(session, customer.customer_reference):
                        return False
                row = await session.scalar(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))
                if row is None:
                    session.add(
                        EmailOutbox(
                            idempotency_key=key,
                            customer_reference=customer.customer_reference,
                            recipient=recipient,
                            template=template,
                            locale=customer.locale,
                            status="sending",
                            claimed_by=claimant,
                            attempts=1,
                        )
                    )
                    return True
                if row.status in FINISHED or row.claimed_by != claimant:
                    return False
                row.attempts += 1  # our own earlier attempt failed or died before "sent": send again
                row.status = "sending"
                return True
        except IntegrityError:  # a concurrent sender inserted the key first
            return False


async def _finished(session: Any, key: str) -> bool:
    status = await session.scalar(select(EmailOutbox.status).where(EmailOutbox.idempotency_key == key))
    return status in FINISHED
