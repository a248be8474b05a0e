"""Re-authentication: what the bearer token alone must not do (move the email address, delete the account).

A stolen access token is a session, not the customer: for steps that cannot be undone by signing in again,
the caller proves they are the customer once more. The proof is the current password, checked on sign-in's
own path (`Logins.check_password`: the same lockout per account and per client network, a wrong password
counted as a failed sign-in), or, for a customer with MFA, a code of their second factor in `X-MFA-Code`
(accounts/mfa.py: three attempts a code, then the factor locks for ACCOUNTS_MFA_LOCK_DURATION).

Callers: PATCH /customers/{ref} with a new email, DELETE /customers/{ref} (api/routes/customers.py).
"""

from __future__ import annotations

from functools import cached_property

from accounts import mfa
from accounts.db import SessionFactory
from accounts.models import Customer
from accounts.settings import Settings
from starter.errors import MfaCodeRefused, ReauthenticationRequired
from starter.login import Logins


class Reauthentication:
    def __init__(self, logins: Logins, sessions: SessionFactory, settings: Settings) -> None:
        self._logins = logins
        self._sessions = sessions
        self._settings = settings

    @cached_property
    def _mfa_policy(self) -> mfa.MfaPolicy:  # built when first needed: it reads the MFA key
        return mfa.MfaPolicy.from_settings(self._settings)

    async def confirm_identity(
        self,
        customer: Customer,
        *,
        password: str | None,
        mfa_code: str | None,
        client_ip: str,
        code_accepted: str | None = None,
    ) -> None:
        """Returns when the caller proved to be `customer`. Raises ReauthenticationRequired (no proof given),
        WrongCurrentPassword (counted as a failed sign-in), LoginBlocked (locked: nothing was checked) or
        MfaCodeRefused.

        `mfa_code`: the `X-MFA-Code` header. A code proves who the caller is only from a method that was
        activated with the current password (`accounts.mfa.identity_proofs`): a method that a bearer token
        alone activated would let a thief enrol their own app and use its codes here. `code_accepted`: the
        method that accepted (and spent) this request's code in the protected-request check
        (api/mfa_check.py), so it is not tried twice. Otherwise the password is the proof."""
        proofs = await mfa.identity_proofs(self._sessions, customer.id) if (mfa_code or code_accepted) else set()
        if code_accepted is not None:
            if code_accepted in proofs:
                return
        elif mfa_code and proofs:
            accepted = await mfa.verify(
                self._sessions, self._mfa_policy, customer, mfa_code, channel="api", purpose="reauthentication"
            )
            if accepted is None:
                raise MfaCodeRefused()
            if accepted in proofs:
                return
        await self.confirm_password(customer, password, client_ip=client_ip)

    async def confirm_password(self, customer: Customer, password: str | None, *, client_ip: str) -> None:
        """The current password as the proof, on sign-in's path (its lockout; a wrong one a failed sign-in)."""
        if not password:
            raise ReauthenticationRequired()
        await self._logins.check_password(customer, password, client_ip=client_ip)
