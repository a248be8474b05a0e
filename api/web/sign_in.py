"""Staff sign-in to the web UI: the password check behind the same attempt bound as customers' sign-ins.

Attempts are reserved per staff name and per client address with `accounts.throttle.reserve` (one atomic
UPDATE) before argon2 runs, so guessing is bounded whatever the concurrency. A browser that signed in as
this member before carries a device token (cookie `backoffice_device`, accounts/device_tokens.py): its
attempts are counted on that device alone, so a member whose guessable name is under attack still signs
in from their own browser. No lockout workflow is told: staff windows and locks end by the database clock
(`throttle.lock`), which is all a handful of staff accounts need; nobody has to unlock a colleague.

When a name's lock is set and the name is an enabled member with an email, a notice workflow mails them
once per lock (workflows/staff_lock_notice.py) with a link that gives their browser a device token. It
starts on a task of its own: the answer neither waits for it nor tells a name with an address from one
without (or from no member at all). With Temporal unreachable the lock holds as ever, unmailed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from accounts import device_tokens, mfa_staff, throttle
from accounts.db import SessionFactory
from accounts.mfa import MfaPolicy
from accounts.models import Staff
from accounts.settings import Settings
from accounts.staff import PasswordChecked, StaffDirectory, StaffMember
from accounts.throttle import Blocked, Reservation, ThrottlePolicy
from starter.staff_locks import StaffLockNotices

log = logging.getLogger("accounts.backoffice.sign_in")


class SignInBlocked(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed sign-ins; wait {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class SignedIn:
    checked: PasswordChecked  # the member, and their row as read before the password was verified
    device_token: str  # for the browser's device cookie: the one it presented, or a new one

    @property
    def member(self) -> StaffMember:
        return self.checked.member


class StaffSignIn:
    def __init__(
        self, settings: Settings, sessions: SessionFactory, staff: StaffDirectory, notices: StaffLockNotices
    ) -> None:
        self._settings = settings
        self._notices = notices
        self._notifying: set[asyncio.Task[None]] = set()  # kept until done (the loop holds tasks weakly)
        self._secret = settings.secret_key.get_secret_value()
        self._sessions = sessions
        self._staff = staff
        self._mfa_policy = MfaPolicy.from_settings(settings)
        self._name_policy = ThrottlePolicy(
            settings.lockout_max_failures, settings.lockout_window, settings.lockout_duration
        )
        self._ip_policy = ThrottlePolicy(
            settings.lockout_ip_max_failures, settings.lockout_ip_window, settings.lockout_ip_duration
        )
        self._device_policy = ThrottlePolicy(
            settings.lockout_device_max_failures, settings.lockout_window, settings.lockout_duration
        )

    async def authenticate(
        self, name: str, password: str, *, client_ip: str, device_token: str | None = None, code: str = ""
    ) -> SignedIn | None:
        """The member, or None (unknown name, wrong password, disabled, and with ACCOUNTS_STAFF_MFA_REQUIRED a
        missing or wrong authenticator code, or no authenticator app enrolled yet: one answer, so that the
        answer never tells a right password apart); raises SignInBlocked."""
        device = await self._known_device(name, device_token)
        name_subject = throttle.keyed_subject("staff", name.strip().casefold(), self._secret)
        if device is not None:
            subjects = [(device_tokens.subject(device), self._device_policy)]
        else:  # keyed hashes: the throttle table names neither staff members nor addresses
            subjects = [  # the name first: refusing a locked name takes reads alone (throttle.reserve)
                (name_subject, self._name_policy),
                (throttle.keyed_subject("staff-ip", client_ip, self._secret), self._ip_policy),
            ]
        reservations: list[tuple[Reservation, ThrottlePolicy]] = []
        try:
            for subject, policy in subjects:
                reservations.append((await throttle.reserve(self._sessions, subject, policy), policy))
        except Blocked as blocked:
            for reservation, _ in reservations:  # no password was tried
                await throttle.release(self._sessions, reservation, forget_failures=False)
            raise SignInBlocked(_seconds(blocked)) from None
        checked = await self._staff.authenticate_password(name.strip(), password)
        if checked is not None and self._settings.staff_mfa_required:
            # a wrong second factor, or none enrolled, counts as a failed sign-in: a distinct answer for the
            # right password of an unenrolled member would confirm the password to whoever guessed it
            staff_id = checked.member.id
            enrolled = await mfa_staff.enrolled(self._sessions, staff_id)
            if not enrolled or not await mfa_staff.verify(self._sessions, self._mfa_policy, staff_id, code):
                checked = None
        if checked is None:
            for reservation, policy in reservations:
                if reservation.crossed(policy):
                    locked_until = await throttle.lock(self._sessions, reservation, policy)
                    if reservation.subject == name_subject:
                        self._notify_later(name.strip(), reservation, locked_until)
            return None
        for reservation, _ in reservations:
            await throttle.release(self._sessions, reservation, forget_failures=not reservation.kind.endswith("ip"))
        lifetime = self._settings.device_token_lifetime
        if device is not None and device_token is not None:
            await device_tokens.renew(self._sessions, device, lifetime)
            return SignedIn(checked, device_token)
        keep = self._settings.device_tokens_per_account
        issued = await device_tokens.issue(self._sessions, staff_id=checked.member.id, lifetime=lifetime, keep=keep)
        return SignedIn(checked, issued)

    def _notify_later(self, name: str, reservation: Reservation, locked_until: datetime) -> None:
        task = asyncio.get_running_loop().create_task(self._notify(name, reservation, locked_until))
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self, name: str, reservation: Reservation, locked_until: datetime) -> None:
        """Start the lock's notice when the name is an enabled member with an email (else nothing)."""
        try:
            async with self._sessions() as session:
                # the lock is the name's whatever its case (the subject is case-folded): so is its member
                found = (
                    await session.scalars(
                        select(Staff.id).where(
                            func.lower(Staff.name) == name.lower(),
                            Staff.disabled_at.is_(None),
                            Staff.email.is_not(None),
                        )
                    )
                ).all()
            if len(found) != 1:  # nobody to tell (or names told apart by case alone: nobody to pick)
                return
            (staff_id,) = found
            await self._notices.start(
                staff_id=staff_id,
                window_ends_at=reservation.window_ends_at,
                locked_until=locked_until,
                failures=self._name_policy.max_failures,
            )
        except (RPCError, RuntimeError, SQLAlchemyError) as error:  # RuntimeError: no connection at all
            # the lock holds by the database clock as ever; only its email is lost
            log.warning("staff lock notice not started: %s", type(error).__name__)

    async def _known_device(self, name: str, device_token: str | None) -> str | None:
        if not device_token:
            return None
        async with self._sessions() as session:
            staff_id = await session.scalar(
                select(Staff.id).where(Staff.name == name.strip(), Staff.disabled_at.is_(None))
            )
        if staff_id is None:
            return None
        return await device_tokens.find(self._sessions, device_token, staff_id=staff_id)


def _seconds(blocked: Blocked) -> int:
    return max(1, math.ceil(blocked.retry_after.total_seconds()))
