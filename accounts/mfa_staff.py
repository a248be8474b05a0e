"""Staff sign-in to the back office with a second factor (ACCOUNTS_STAFF_MFA_REQUIRED): TOTP only.

Staff rows have no email address, so an authenticator app is the one factor they can have. An admin
enrols a member from the command line (`accounts staff mfa-enroll NAME`: the secret and its QR code are
printed once, to hand over in person); the web UI's sign-in then asks for the app's code after the
password, with the same replay refusal and failure lock as customers' TOTP (accounts/mfa_factors.py).
The JSON API's staff keys are unaffected: a 256-bit key is no password to guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from accounts import mfa_factors, mfa_totp
from accounts.db import SessionFactory
from accounts.mfa import ACTIVE, TOTP, MfaPolicy, is_six_digits
from accounts.models import MfaMethod, utcnow


@dataclass(frozen=True)
class StaffEnrolment:
    secret: str
    uri: str


async def enrol(sessions: SessionFactory, policy: MfaPolicy, staff_id: int, name: str) -> StaffEnrolment:
    """A new TOTP secret for the member, active at once (the admin hands it over); replaces an older one."""
    secret = mfa_totp.new_secret()
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(delete(MfaMethod).where(MfaMethod.staff_id == staff_id, MfaMethod.type == TOTP))
        row = MfaMethod(staff_id=staff_id, type=TOTP, status=ACTIVE, failures=0, created_at=now, activated_at=now)
        session.add(row)
        await session.flush()
        row.secret_encrypted = policy.box.seal(secret, mfa_factors.owner_of(row))
    return StaffEnrolment(
        secret, mfa_totp.provisioning_uri(secret, account=name, issuer=f"{policy.issuer} back office")
    )


async def remove(sessions: SessionFactory, staff_id: int) -> bool:
    async with sessions.begin() as session:
        gone = await session.execute(delete(MfaMethod).where(MfaMethod.staff_id == staff_id))
    return bool(getattr(gone, "rowcount", 0))


async def enrolled(sessions: SessionFactory, staff_id: int) -> bool:
    async with sessions() as session:
        found = await session.scalar(
            select(MfaMethod.id).where(
                MfaMethod.staff_id == staff_id, MfaMethod.type == TOTP, MfaMethod.status == ACTIVE
            )
        )
    return found is not None


async def verify(sessions: SessionFactory, policy: MfaPolicy, staff_id: int, code: str) -> bool:
    """The member's current TOTP code: one attempt on the method's counter, a used step refused."""
    code = code.strip()
    if not is_six_digits(code):
        return False
    now = utcnow()
    async with sessions.begin() as session:
        method = await session.scalar(
            select(MfaMethod).where(MfaMethod.staff_id == staff_id, MfaMethod.type == TOTP, MfaMethod.status == ACTIVE)
        )
        if method is None:
            return False
        return await mfa_factors.try_totp(session, policy, method, code, now)
