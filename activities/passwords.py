"""Database side of password lifecycles: one place that sets a password and what must follow it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts import anonymization, audit, metrics, pending_credentials
from accounts.db import SessionFactory
from accounts.models import LoginThrottle, utcnow
from accounts.refresh_tokens import RefreshToken
from accounts.throttle import customer_subject
from activities.customers import activate
from activities.lookup import load_customer

PASSWORD_RESET = "password_reset"  # noqa: S105 (a token purpose, not a secret)


@dataclass
class SetPassword:
    customer_reference: str
    password_hash: str | None  # None since issue 15: the hash waits in pending_credentials (credential_id)
    event: str  # password_reset | password_changed | password_set
    channel: str
    actor: str
    idempotency_key: str
    verifies_email: bool = False  # a reset link proves the address: an unverified account becomes active
    credential_id: str | None = None  # accounts/pending_credentials.py: read and deleted when applied


@dataclass
class ForceReset:
    customer_reference: str
    actor: str
    idempotency_key: str


class PasswordActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def set_password(self, request: SetPassword) -> None:
        """Store the hash; end every session (refresh tokens, access tokens via token_version); clear the
        lockout count and reset flag; kill outstanding reset links. Once per idempotency key. Nothing for
        an anonymized customer: the row lock orders this against the anonymization's transaction."""
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            # locked: the token version bump must not be lost to a concurrent one (a forced reset, a change),
            # and activate() decides on the row as it is now
            customer = await load_customer(session, request.customer_reference, for_update=True)
            password_hash = request.password_hash
            if request.credential_id is not None:
                pending = await pending_credentials.pending(session, request.credential_id)
                if pending is not None:
                    password_hash = pending.password_hash
                    await pending_credentials.consume(session, pending)
            if customer.anonymized_at is not None:  # a change or reset still in flight when the account went
                return
            if password_hash is None:  # the key was checked above: this attempt is the first
                raise ApplicationError(
                    f"the new password of {request.customer_reference} is no longer pending"
                    " (older than ACCOUNTS_PENDING_CREDENTIAL_LIFETIME)",
                    type="PendingCredentialGone",
                    non_retryable=True,
                )
            now = utcnow()
            customer.password_hash = password_hash
            customer.password_reset_required = False
            customer.token_version += 1
            if request.verifies_email and await activate(session, customer, now=now):
                metrics.REGISTRATIONS_VERIFIED.inc()  # at least once: a failed commit's retry counts again
                audit.record(
                    session,
                    customer_reference=customer.customer_reference,
                    event="email_verified",
                    channel=request.channel,
                    actor=request.actor,
                    details={"by": "password_link"},
                )
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.customer_id == customer.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.subject == customer_subject(customer.customer_reference))
                .values(attempts=0, locked_until=None)
            )
            await anonymization.kill_tokens(session, customer.id, now=now, purpose=PASSWORD_RESET)
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event=request.event,
                channel=request.channel,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
            )

    @activity.defn
    async def force_reset(self, request: ForceReset) -> None:
        async with self._sessions.begin() as session:
            if await audit.recorded(session, request.idempotency_key):
                return
            # locked like set_password: the token version bump must not be lost to a concurrent one
            customer = await load_customer(session, request.customer_reference, for_update=True)
            if customer.anonymized_at is not None:
                return
            customer.password_reset_required = True
            customer.token_version += 1
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.customer_id == customer.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            audit.record(
                session,
                customer_reference=customer.customer_reference,
                event="password_reset_forced",
                channel="backoffice",
                actor=request.actor,
                idempotency_key=request.idempotency_key,
            )

    @activity.defn
    async def expire_reset_links(self, customer_reference: str) -> None:
        async with self._sessions.begin() as session:
            customer = await load_customer(session, customer_reference)
            await anonymization.kill_tokens(session, customer.id, now=utcnow(), purpose=PASSWORD_RESET)
