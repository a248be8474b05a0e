"""The attempts, one function per factor: an emailed code, a TOTP code, a recovery code.

Each attempt is granted before the comparison by a conditional UPDATE (an emailed code's attempts left,
a method's failure count), which holds the row's lock on PostgreSQL and the database lock on SQLite until
the transaction ends: concurrent guesses queue there, and none is granted past the limit. Comparisons are
constant-time; what accepted a code is spent by a second conditional UPDATE, so two requests carrying
the same code cannot both pass. accounts/mfa.py decides which factors a request is tried against.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import mfa_totp
from accounts.models import MfaCode, MfaMethod, MfaRecoveryCode

if TYPE_CHECKING:
    from accounts.mfa import MfaPolicy

CODE_DIGITS = 6
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
_RECOVERY_LENGTH = 10  # about 49 bits each


def keyed_hash(secret_key: str, purpose: str, value: str) -> str:
    """HMAC-SHA256: a 6-digit code or a recovery code has too little entropy for a plain hash."""
    return hmac.new(secret_key.encode(), f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def code_hash(secret_key: str, code_id: int, code: str) -> str:
    return keyed_hash(secret_key, f"mfa-code:{code_id}", code)


def recovery_hash(secret_key: str, customer_id: int, code: str) -> str:
    return keyed_hash(secret_key, f"mfa-recovery:{customer_id}", code)


def normal_recovery_code(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in "- ")


def owner(customer_id: int) -> str:
    return f"customer:{customer_id}"


def owner_of(method: MfaMethod) -> str:
    """The associated data a method's secret is sealed with: its customer's or its staff member's."""
    return owner(method.customer_id) if method.customer_id is not None else f"staff:{method.staff_id}"


async def try_email_code(session: AsyncSession, policy: MfaPolicy, customer_id: int, code: str, now: datetime) -> bool:
    """One attempt at the newest live code: granted by the UPDATE (attempts_left > 0, under the row's
    lock), then compared in constant time, then used by a second conditional UPDATE."""
    newest = (
        select(MfaCode.id)
        .where(
            MfaCode.customer_id == customer_id,
            MfaCode.code_hash.is_not(None),
            MfaCode.used_at.is_(None),
            MfaCode.expires_at > now,
            MfaCode.attempts_left > 0,
        )
        .order_by(MfaCode.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    granted = (
        await session.execute(
            update(MfaCode)
            .where(MfaCode.id == newest, MfaCode.attempts_left > 0, MfaCode.used_at.is_(None))
            .values(attempts_left=MfaCode.attempts_left - 1)
            .returning(MfaCode.id, MfaCode.code_hash),
            execution_options={"synchronize_session": False},
        )
    ).first()
    if granted is None:
        return False
    code_id, stored = granted
    if not hmac.compare_digest(code_hash(policy.secret_key, code_id, code), stored or ""):
        return False
    used = await _execute(
        session, update(MfaCode).where(MfaCode.id == code_id, MfaCode.used_at.is_(None)).values(used_at=now)
    )
    return used.rowcount == 1


async def grant(session: AsyncSession, policy: MfaPolicy, method_id: int, now: datetime) -> MfaMethod | None:
    """One TOTP or recovery attempt on the method's counter, or None while it is locked."""
    await _execute(  # a lock that has passed starts a fresh count
        session,
        update(MfaMethod)
        .where(MfaMethod.id == method_id, MfaMethod.locked_until.is_not(None), MfaMethod.locked_until <= now)
        .values(failures=0, locked_until=None),
    )
    granted = (
        await session.execute(
            update(MfaMethod)
            .where(MfaMethod.id == method_id, MfaMethod.failures < policy.attempts)
            .values(failures=MfaMethod.failures + 1)
            .returning(MfaMethod.id, MfaMethod.failures),
            execution_options={"synchronize_session": False},
        )
    ).first()
    if granted is None:
        return None
    if granted[1] >= policy.attempts:
        await _execute(
            session, update(MfaMethod).where(MfaMethod.id == method_id).values(locked_until=now + policy.lock_duration)
        )
    return await session.scalar(
        select(MfaMethod).where(MfaMethod.id == method_id).execution_options(populate_existing=True)
    )


async def succeeded(session: AsyncSession, method_id: int, step: int | None) -> bool:
    """Reset the counter; with a TOTP step, only if that step is newer than the last one accepted."""
    statement = update(MfaMethod).where(MfaMethod.id == method_id)
    values: dict[str, Any] = {"failures": 0, "locked_until": None}
    if step is not None:
        statement = statement.where(or_(MfaMethod.last_used_step.is_(None), MfaMethod.last_used_step < step))
        values["last_used_step"] = step
    return (await _execute(session, statement.values(**values))).rowcount == 1


async def try_totp(session: AsyncSession, policy: MfaPolicy, method: MfaMethod, code: str, now: datetime) -> bool:
    row = await grant(session, policy, method.id, now)
    if row is None or row.secret_encrypted is None:
        return False
    secret = policy.box.open(row.secret_encrypted, owner_of(row))
    step = mfa_totp.matching_step(secret, code, now)
    if step is None:
        return False
    return await succeeded(session, method.id, step)  # False: this step was used already (a replay)


async def try_recovery(
    session: AsyncSession, policy: MfaPolicy, method: MfaMethod, customer_id: int, code: str, now: datetime
) -> bool:
    if await grant(session, policy, method.id, now) is None:
        return False
    wanted = recovery_hash(policy.secret_key, customer_id, normal_recovery_code(code))
    unused = await session.execute(
        select(MfaRecoveryCode.id, MfaRecoveryCode.code_hash).where(
            MfaRecoveryCode.customer_id == customer_id, MfaRecoveryCode.used_at.is_(None)
        )
    )
    match = None
    for code_id, stored in unused:
        if hmac.compare_digest(wanted, stored):  # every row compared: the time does not tell which
            match = code_id
    if match is None:
        return False
    used = await _execute(
        session,
        update(MfaRecoveryCode)
        .where(MfaRecoveryCode.id == match, MfaRecoveryCode.used_at.is_(None))
        .values(used_at=now),
    )
    return used.rowcount == 1 and await succeeded(session, method.id, None)


def new_recovery_codes() -> list[str]:
    codes = [
        "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH)) for _ in range(RECOVERY_CODES)
    ]
    return [f"{code[:5]}-{code[5:]}" for code in codes]


async def _execute(session: AsyncSession, statement: Any) -> CursorResult[Any]:
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result)
