"""Re-authentication: what the bearer token alone must not do (move the email address, delete the account).

A stolen access token is a session, not the customer: for steps that cannot be undone by signing in again,
the caller proves they are the customer once more. The proof is the current password, checked on sign-in's
own path (`Logins.check_password`: the same lockout per account and per client network, a wrong password
counted as a failed sign-in), or, for a customer with MFA, a code of their second factor.

Callers: PATCH /customers/{ref} with a new email, DELETE /customers/{ref} (api/routes/customers.py).
"""

from __future__ import annotations

from accounts.models import Customer
from starter.errors import ReauthenticationRequired
from starter.login import Logins


class Reauthentication:
    def __init__(self, logins: Logins) -> None:
        self._logins = logins

    async def confirm_identity(
        self, customer: Customer, *, password: str | None, mfa_code: str | None, client_ip: str
    ) -> None:
        """Returns when the caller proved to be `customer`. Raises ReauthenticationRequired (no proof given),
        WrongCurrentPassword (counted as a failed sign-in) or LoginBlocked (locked: nothing was checked).

        `mfa_code`: the `X-MFA-Code` header, for customers with MFA; not checked yet, so a code alone is
        no proof today."""
        # MFA: when the customer has MFA enabled and `mfa_code` is given, verify it here (a wrong code
        # counted like a wrong password) and return; a password stays accepted as the other proof.
        if not password:
            raise ReauthenticationRequired()
        await self._logins.check_password(customer, password, client_ip=client_ip)
