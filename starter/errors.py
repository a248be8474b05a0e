"""Business outcomes a caller must handle, as exceptions; the API maps them to HTTP in one place."""

from __future__ import annotations

from accounts.passwords import PolicyViolation


class AccountsError(Exception):
    """Base of every expected business failure."""


class PasswordRejected(AccountsError):
    def __init__(self, violations: list[PolicyViolation]) -> None:
        super().__init__("; ".join(v.detail for v in violations))
        self.violations = violations


class EmailTaken(AccountsError):
    """The address already has an account; its owner was emailed instead (answer neutrally).

    `customer_reference` is the one this sign-up was given and never got an account: it names nobody,
    and the counter never hands it out again."""

    def __init__(self, customer_reference: str = "") -> None:
        super().__init__(customer_reference)
        self.customer_reference = customer_reference


class RegistrationNotFound(AccountsError):
    pass


class NotAwaitingVerification(AccountsError):
    """The registration is verified, expired, or was never opened."""


class ResendThrottled(AccountsError):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"wait {retry_after_seconds} s before asking for another email")
        self.retry_after_seconds = retry_after_seconds


class ResendLimitReached(AccountsError):
    pass


class LoginFailed(AccountsError):
    """Wrong password, unknown email, unverified or anonymized account: one answer for all."""


class LoginBlocked(AccountsError):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed sign-ins; wait {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class NotLocked(AccountsError):
    pass


class InvalidResetKey(AccountsError):
    """Unknown, expired or used restore-password key."""


class PasswordResetRequired(AccountsError):
    """The right password of an account whose reset was forced: use the emailed link."""


class WrongCurrentPassword(AccountsError):
    """Changing a password needs the current one; a wrong one counts as a failed sign-in."""


class EmailChangeThrottled(AccountsError):
    """Too many email change requests of this customer in the last hour."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"wait {retry_after_seconds} s before asking for another email change")
        self.retry_after_seconds = retry_after_seconds


class ReauthenticationRequired(AccountsError):
    """Changing the email address or deleting the account needs the current password (or an MFA code):
    the bearer token alone is not enough."""


class MfaCodeRefused(AccountsError):
    """The X-MFA-Code given as re-authentication is no valid code of the customer's second factor (wrong,
    used, expired, or its attempts spent: accounts/mfa.py counts them)."""


class DataExportThrottled(AccountsError):
    """The customer asked for a data export less than ACCOUNTS_DATA_EXPORT_MIN_INTERVAL ago."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"wait {retry_after_seconds} s before asking for another data export")
        self.retry_after_seconds = retry_after_seconds
