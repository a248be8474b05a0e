"""Staff sign-in to the web UI: the password check behind the same attempt bound as customers' sign-ins.

Attempts are reserved per staff name and per client address with `accounts.throttle.reserve` (one atomic
UPDATE) before argon2 runs, so guessing is bounded whatever the concurrency. No lockout workflow is told:
staff windows and blocks end by the database's wall clock (the throttle's safety valve), which is all a
handful of staff accounts need; nobody has to unlock a colleague.
"""

from __future__ import annotations

import math

from accounts import throttle
from accounts.db import SessionFactory
from accounts.settings import Settings
from accounts.staff import StaffDirectory, StaffMember
from accounts.throttle import Blocked, ThrottlePolicy


class SignInBlocked(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed sign-ins; wait {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class StaffSignIn:
    def __init__(self, settings: Settings, sessions: SessionFactory, staff: StaffDirectory) -> None:
        self._secret = settings.secret_key.get_secret_value()
        self._sessions = sessions
        self._staff = staff
        self._name_policy = ThrottlePolicy(
            settings.lockout_max_failures, settings.lockout_window, settings.lockout_duration
        )
        self._ip_policy = ThrottlePolicy(
            settings.lockout_ip_max_failures, settings.lockout_ip_window, settings.lockout_ip_duration
        )

    async def authenticate(self, name: str, password: str, *, client_ip: str) -> StaffMember | None:
        """The member, or None (unknown name, wrong password, disabled: one answer); raises SignInBlocked."""
        # keyed hashes: the throttle table names neither staff members nor addresses
        name_subject = throttle.keyed_subject("staff", name.strip().casefold(), self._secret)
        ip_subject = throttle.keyed_subject("staff-ip", client_ip, self._secret)
        try:
            by_ip = await throttle.reserve(self._sessions, ip_subject, self._ip_policy)
        except Blocked as blocked:
            raise SignInBlocked(_seconds(blocked)) from None
        try:
            by_name = await throttle.reserve(self._sessions, name_subject, self._name_policy)
        except Blocked as blocked:
            await throttle.release(self._sessions, by_ip, forget_failures=False)  # no password was tried
            raise SignInBlocked(_seconds(blocked)) from None
        member = await self._staff.authenticate_password(name.strip(), password)
        if member is not None:
            await throttle.release(self._sessions, by_ip, forget_failures=False)
            await throttle.release(self._sessions, by_name, forget_failures=True)
        return member


def _seconds(blocked: Blocked) -> int:
    return max(1, math.ceil(blocked.retry_after.total_seconds()))
