"""Multi-factor authentication of customers: every rule in one place (Spryker's multi-factor-auth contract).

Methods: `email` (a 6-digit code sent by email) and `totp` (an authenticator app, RFC 6238), each
`pending` from its activation until a code verifies it, then `active`; a pending activation dies after
ACCOUNTS_MFA_ACTIVATION_EXPIRES_AFTER (its workflow, workflows/mfa.py, drops the row on time; the
expiry column is the authority in between). Where Spryker is weak this is stricter:
- an emailed code is stored as an HMAC under ACCOUNTS_SECRET_KEY (a leaked table gives no code),
  compared in constant time, and dead after its first use, after its attempts, when a newer code is
  sent, and at sign-out (Spryker keeps a code valid for its whole 30 minutes);
- every attempt is granted by one conditional UPDATE before the comparison, so concurrent guesses
  cannot share an attempt: three attempts are three, on PostgreSQL and on SQLite;
- TOTP remembers the time step it last accepted and refuses that code again (a replay), and after
  ACCOUNTS_MFA_CODE_ATTEMPTS failed TOTP or recovery codes it refuses all for ACCOUNTS_MFA_LOCK_DURATION;
- ten recovery codes come with a TOTP activation, shown once, stored as HMACs, each good once.

Its other parts: routes api/routes/mfa.py (Glue), the X-MFA-Code check api/mfa_check.py, the email
workflows/mfa.py + activities/emails.py (send_mfa_code) + activities/mfa.py, client starter/mfa.py,
TOTP arithmetic accounts/mfa_totp.py, secrets at rest accounts/mfa_secrets.py.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import audit, mfa_factors, mfa_totp
from accounts.db import SessionFactory
from accounts.locks import lock_customer
from accounts.mfa_secrets import SecretBox
from accounts.models import Customer, MfaCode, MfaMethod, MfaRecoveryCode, utcnow
from accounts.settings import Settings

EMAIL, TOTP, RECOVERY = "email", "totp", "recovery"
PENDING, ACTIVE = "pending", "active"
# Spryker's status texts (MultiFactorAuthConfig::getMultiFactorAuthTypeStatuses)
GLUE_STATUS = {None: "deactivated", PENDING: "activation is pending", ACTIVE: "activated"}
CODE_DIGITS = mfa_factors.CODE_DIGITS
code_hash = mfa_factors.code_hash


class CustomerLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def customer_reference(self) -> str: ...


@dataclass(frozen=True)
class Subject:
    """A customer as the rules need them (a sign-in knows no Customer row yet)."""

    id: int
    customer_reference: str


@dataclass(frozen=True)
class MfaPolicy:
    types: tuple[str, ...]
    secret_key: str
    box: SecretBox
    issuer: str
    code_expires_after: timedelta
    attempts: int
    resend_min_interval: timedelta
    codes_per_hour: int
    lock_duration: timedelta
    activation_expires_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> MfaPolicy:
        return cls(
            types=tuple(settings.mfa_types),
            secret_key=settings.secret_key.get_secret_value(),
            box=SecretBox.from_settings(settings),
            issuer=settings.shop_name,
            code_expires_after=settings.mfa_code_expires_after,
            attempts=settings.mfa_code_attempts,
            resend_min_interval=settings.mfa_code_resend_min_interval,
            codes_per_hour=settings.mfa_codes_per_hour,
            lock_duration=settings.mfa_lock_duration,
            activation_expires_after=settings.mfa_activation_expires_after,
        )


class MfaRefused(Exception):
    """A request the customer's methods do not allow; `reason` says which (the API maps it to Glue's codes)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # already_active | not_pending | not_active | unknown_type


class TooManyCodes(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many codes asked for this hour")
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class TotpEnrolment:
    """What a TOTP activation shows once: the secret (for typing in), its URI and QR code, recovery codes."""

    secret: str
    uri: str
    qr_code: str  # data:image/svg+xml URI
    recovery_codes: list[str]
    expires_at: datetime


@dataclass(frozen=True)
class EmailActivation:
    code_id: int | None  # the code to send (None: one was sent a moment ago and still works)
    expires_at: datetime


# --- hashes -----------------------------------------------------------------------------------------


def issued_code(secret_key: str, issue_key: str) -> str:
    """The code of one emailed step, derived from its idempotency key: a retried send mails the same code."""
    digest = hmac.new(secret_key.encode(), b"mfa-code-value\0" + issue_key.encode(), hashlib.sha256).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**CODE_DIGITS).zfill(CODE_DIGITS)


def is_six_digits(code: str) -> bool:
    return len(code) == CODE_DIGITS and code.isascii() and code.isdigit()


# --- reading ----------------------------------------------------------------------------------------


def _live(now: datetime) -> Any:
    return or_(MfaMethod.status == ACTIVE, and_(MfaMethod.status == PENDING, MfaMethod.expires_at > now))


async def methods(session: AsyncSession, customer_id: int, now: datetime) -> dict[str, MfaMethod]:
    """The customer's live methods by type (a pending activation past its expiry is none)."""
    rows = await session.scalars(select(MfaMethod).where(MfaMethod.customer_id == customer_id, _live(now)))
    return {row.type: row for row in rows}


async def statuses(sessions: SessionFactory, policy: MfaPolicy, customer_id: int) -> list[tuple[str, str]]:
    """(type, Glue status) of every type this shop offers, as GET /multi-factor-auth-types lists them."""
    async with sessions() as session:
        found = await methods(session, customer_id, utcnow())
    return [(kind, GLUE_STATUS[found[kind].status if kind in found else None]) for kind in policy.types]


async def active_types(sessions: SessionFactory, customer_id: int) -> set[str]:
    async with sessions() as session:
        found = await methods(session, customer_id, utcnow())
    return {kind for kind, row in found.items() if row.status == ACTIVE}


async def identity_proofs(sessions: SessionFactory, customer_id: int) -> set[str]:
    """What `verify` may answer that proves who the customer is: the active methods activated with the
    current password, and `recovery` with a TOTP that was (its recovery codes came with it)."""
    async with sessions() as session:
        found = await methods(session, customer_id, utcnow())
    proving = {kind for kind, row in found.items() if row.status == ACTIVE and row.proves_identity}
    return proving | ({RECOVERY} if TOTP in proving else set())


# --- emailed codes ----------------------------------------------------------------------------------


async def _reserve_code(
    session: AsyncSession, policy: MfaPolicy, customer: CustomerLike, now: datetime, *, channel: str
) -> int | None:
    """A new code row (its hash comes from the email activity); the customer's row is locked by the caller.
    None when the newest code is younger than the resend interval (it still works); TooManyCodes past
    the hourly budget, so that codes asked for again and again cannot widen the guessing."""
    hour_ago = now - timedelta(hours=1)
    recent = list(
        await session.scalars(
            select(MfaCode.created_at)
            .where(MfaCode.customer_id == customer.id, MfaCode.created_at > hour_ago)
            .order_by(MfaCode.created_at)
        )
    )
    newest = await session.scalar(
        select(MfaCode)
        .where(MfaCode.customer_id == customer.id, MfaCode.used_at.is_(None), MfaCode.expires_at > now)
        .order_by(MfaCode.id.desc())
        .limit(1)
    )
    if newest is not None and newest.attempts_left > 0 and newest.created_at > now - policy.resend_min_interval:
        return newest.id if newest.code_hash is None else None  # not sent yet: its email again (one run per row)
    if len(recent) >= policy.codes_per_hour:
        wait = recent[0] + timedelta(hours=1) - now
        raise TooManyCodes(max(1, int(wait.total_seconds()) + 1))
    await _end_codes(session, customer.id, now)  # one live code at a time: a new one ends the ones before
    row = MfaCode(
        customer_id=customer.id,
        type=EMAIL,
        attempts_left=policy.attempts,
        created_at=now,
        expires_at=now + policy.code_expires_after,
    )
    session.add(row)
    await session.flush()
    _record(session, customer.customer_reference, "mfa_code_requested", channel, {"type": EMAIL, "codeId": row.id})
    return row.id


async def request_code(
    sessions: SessionFactory, policy: MfaPolicy, customer: CustomerLike, kind: str, *, channel: str = "api"
) -> int | None:
    """POST /multi-factor-auth-trigger: a code for an active method. Returns the code row to email (None
    for TOTP, whose codes come from the app, and within the resend interval)."""
    now = utcnow()
    async with sessions.begin() as session:
        await lock_customer(session, customer_id=customer.id)
        found = await methods(session, customer.id, now)
        if kind not in found or found[kind].status != ACTIVE:
            raise MfaRefused("not_active")
        if kind != EMAIL:
            return None
        return await _reserve_code(session, policy, customer, now, channel=channel)


async def store_code(sessions: SessionFactory, secret_key: str, code_id: int, code: str) -> bool:
    """The email activity's write: the code's hash on its row. False when the code died meanwhile (used,
    ended by a newer one, expired) or holds another hash: then nothing is sent."""
    wanted = code_hash(secret_key, code_id, code)
    async with sessions.begin() as session:
        result = await _execute(
            session,
            update(MfaCode)
            .where(
                MfaCode.id == code_id,
                MfaCode.used_at.is_(None),
                MfaCode.expires_at > utcnow(),
                or_(MfaCode.code_hash.is_(None), MfaCode.code_hash == wanted),
            )
            .values(code_hash=wanted),
        )
        return result.rowcount == 1


async def _end_codes(session: AsyncSession, customer_id: int, now: datetime) -> int:
    result = await _execute(
        session,
        update(MfaCode)
        .where(MfaCode.customer_id == customer_id, MfaCode.used_at.is_(None), MfaCode.expires_at > now)
        .values(expires_at=now),
    )
    return result.rowcount


async def end_codes(session: AsyncSession, customer_id: int) -> int:
    """Sign-out (accounts/refresh_tokens.py): the customer's emailed codes that still worked die."""
    return await _end_codes(session, customer_id, utcnow())


# --- verification of a request ----------------------------------------------------------------------


async def verify(
    sessions: SessionFactory, policy: MfaPolicy, customer: CustomerLike, code: str, *, channel: str, purpose: str
) -> str | None:
    """The X-MFA-Code of a protected request (or a sign-in, or a re-authentication): the method that
    accepted it (email, totp, recovery), or None. Each attempt costs one try of every method it is
    tried against; the one that accepts it is spent (the emailed code, the TOTP step, the recovery code)."""
    now = utcnow()
    code = code.strip()
    accepted = None
    async with sessions.begin() as session:
        found = {kind: row for kind, row in (await methods(session, customer.id, now)).items() if row.status == ACTIVE}
        if is_six_digits(code):
            if EMAIL in found and await mfa_factors.try_email_code(session, policy, customer.id, code, now):
                accepted = EMAIL
            if (
                accepted is None
                and TOTP in found
                and await mfa_factors.try_totp(session, policy, found[TOTP], code, now)
            ):
                accepted = TOTP
            if accepted == EMAIL and TOTP in found:
                await mfa_factors.succeeded(session, found[TOTP].id, None)  # the customer proved a factor
        elif TOTP in found and await mfa_factors.try_recovery(session, policy, found[TOTP], customer.id, code, now):
            accepted = RECOVERY
        if found:
            event = "mfa_code_verified" if accepted else "mfa_code_refused"
            details = {"purpose": purpose, **({"type": accepted} if accepted else {})}
            _record(session, customer.customer_reference, event, channel, details)
    return accepted


async def verify_request_code(sessions: SessionFactory, customer_id: int, code: str, *, policy: MfaPolicy) -> bool:
    """For re-authentication (accounts/reauth.py): whether `code` is a valid code of one of the
    customer's active methods. A valid code is spent, as on a protected request."""
    async with sessions() as session:
        customer = await session.get(Customer, customer_id)
    if customer is None:
        return False
    return await verify(sessions, policy, customer, code, channel="api", purpose="reauthentication") is not None


# --- activation and deactivation --------------------------------------------------------------------


async def _pending_row(
    session: AsyncSession, policy: MfaPolicy, customer_id: int, kind: str, now: datetime, *, proves_identity: bool
) -> MfaMethod:
    found = await session.scalar(select(MfaMethod).where(MfaMethod.customer_id == customer_id, MfaMethod.type == kind))
    if found is not None and found.status == ACTIVE:
        raise MfaRefused("already_active")
    if found is None:
        found = MfaMethod(customer_id=customer_id, type=kind, failures=0, created_at=now)
        session.add(found)
    found.status = PENDING
    found.proves_identity = proves_identity
    found.created_at = now
    found.expires_at = now + policy.activation_expires_after
    found.failures = 0
    found.locked_until = None
    found.last_used_step = None
    return found


async def start_email_activation(
    sessions: SessionFactory,
    policy: MfaPolicy,
    customer: CustomerLike,
    *,
    channel: str = "api",
    proves_identity: bool = False,
) -> EmailActivation:
    now = utcnow()
    async with sessions.begin() as session:
        await lock_customer(session, customer_id=customer.id)
        row = await _pending_row(session, policy, customer.id, EMAIL, now, proves_identity=proves_identity)
        expires_at = cast(datetime, row.expires_at)
        _record(session, customer.customer_reference, "mfa_activation_started", channel, {"type": EMAIL})
        code_id = await _reserve_code(session, policy, customer, now, channel=channel)
    return EmailActivation(code_id, expires_at)


async def start_totp_activation(
    sessions: SessionFactory,
    policy: MfaPolicy,
    customer: CustomerLike,
    account: str,
    *,
    channel: str = "api",
    proves_identity: bool = False,
) -> TotpEnrolment:
    """A new secret, pending until a code of it verifies; fresh recovery codes (TOTP's), shown once here."""
    now = utcnow()
    secret = mfa_totp.new_secret()
    recovery = mfa_factors.new_recovery_codes()
    async with sessions.begin() as session:
        await lock_customer(session, customer_id=customer.id)
        row = await _pending_row(session, policy, customer.id, TOTP, now, proves_identity=proves_identity)
        row.secret_encrypted = policy.box.seal(secret, mfa_factors.owner(customer.id))
        await session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.customer_id == customer.id))
        for code in recovery:
            session.add(
                MfaRecoveryCode(
                    customer_id=customer.id,
                    code_hash=mfa_factors.recovery_hash(
                        policy.secret_key, customer.id, mfa_factors.normal_recovery_code(code)
                    ),
                    created_at=now,
                )
            )
        expires_at = cast(datetime, row.expires_at)
        _record(session, customer.customer_reference, "mfa_activation_started", channel, {"type": TOTP})
    uri = mfa_totp.provisioning_uri(secret, account=account, issuer=policy.issuer)
    return TotpEnrolment(secret, uri, mfa_totp.qr_data_uri(uri), recovery, expires_at)


async def verify_activation(
    sessions: SessionFactory, policy: MfaPolicy, customer: CustomerLike, kind: str, code: str, *, channel: str = "api"
) -> bool:
    """POST /multi-factor-auth-type-verify: the pending method becomes active when `code` is its code."""
    now = utcnow()
    code = code.strip()
    async with sessions.begin() as session:
        found = await methods(session, customer.id, now)
        if kind in found and found[kind].status == ACTIVE:
            raise MfaRefused("already_active")
        if kind not in found:
            raise MfaRefused("not_pending")
        row = found[kind]
        ok = is_six_digits(code) and (
            await mfa_factors.try_email_code(session, policy, customer.id, code, now)
            if kind == EMAIL
            else await mfa_factors.try_totp(session, policy, row, code, now)
        )
        if ok:
            await _execute(
                session,
                update(MfaMethod)
                .where(MfaMethod.id == row.id, MfaMethod.status == PENDING)
                .values(status=ACTIVE, activated_at=now, expires_at=None, failures=0, locked_until=None),
            )
        event = "mfa_activated" if ok else "mfa_code_refused"
        _record(session, customer.customer_reference, event, channel, {"type": kind, "purpose": "activation"})
    return ok


async def deactivate(
    sessions: SessionFactory, customer: CustomerLike, kind: str | None, *, channel: str, actor: str | None = None
) -> list[str]:
    """Remove one method (kind) or all (None: support's removal); returns the types removed. Recovery
    codes belong to TOTP and go with it; with no method left, live codes die too."""
    now = utcnow()
    async with sessions.begin() as session:
        await lock_customer(session, customer_id=customer.id)
        condition = [MfaMethod.customer_id == customer.id]
        if kind is not None:
            condition.append(MfaMethod.type == kind)
        removed = sorted(await session.scalars(select(MfaMethod.type).where(*condition)))
        await session.execute(delete(MfaMethod).where(*condition))
        if TOTP in removed:
            await session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.customer_id == customer.id))
        if EMAIL in removed:
            await _end_codes(session, customer.id, now)
        for one in removed:
            _record(session, customer.customer_reference, "mfa_deactivated", channel, {"type": one}, actor=actor)
    return removed


async def end_expired_activation(
    sessions: SessionFactory, customer_reference: str, kind: str, deadline: datetime
) -> tuple[bool, datetime | None]:
    """The activation workflow's timer, at `deadline`: the method goes if it is still pending with that
    deadline or an earlier one. Returns (dropped, the later deadline of an activation started again since,
    which the workflow waits for next). The workflow's deadline, not this process's clock, decides."""
    async with sessions.begin() as session:
        customer_id = await session.scalar(select(Customer.id).where(Customer.customer_reference == customer_reference))
        if customer_id is None:
            return False, None
        pending = (MfaMethod.customer_id == customer_id, MfaMethod.type == kind, MfaMethod.status == PENDING)
        gone = (await _execute(session, delete(MfaMethod).where(*pending, MfaMethod.expires_at <= deadline))).rowcount
        if gone and kind == TOTP:
            await session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.customer_id == customer_id))
        if gone:
            _record(session, customer_reference, "mfa_activation_expired", "system", {"type": kind}, actor="system")
            return True, None
        later = await session.scalar(select(MfaMethod.expires_at).where(*pending))
    return False, later


def _record(
    session: AsyncSession,
    reference: str,
    event: str,
    channel: str,
    details: dict[str, Any],
    *,
    actor: str | None = None,
) -> None:
    audit.record(
        session, customer_reference=reference, event=event, channel=channel, actor=actor or reference, details=details
    )


async def _execute(session: AsyncSession, statement: Any) -> CursorResult[Any]:
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result)
