"""The one client library: storefront, API, back office and CLI start, update and query lifecycles here."""

from starter.client import AccountsClient, Confirmation, Registration
from starter.errors import (
    AccountsError,
    EmailTaken,
    LoginBlocked,
    LoginFailed,
    NotAwaitingVerification,
    NotLocked,
    PasswordRejected,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)

__all__ = [
    "AccountsClient",
    "AccountsError",
    "Confirmation",
    "EmailTaken",
    "LoginBlocked",
    "LoginFailed",
    "NotAwaitingVerification",
    "NotLocked",
    "PasswordRejected",
    "Registration",
    "RegistrationNotFound",
    "ResendLimitReached",
    "ResendThrottled",
]
