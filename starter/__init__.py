"""The one client library: storefront, API, back office and CLI start, update and query lifecycles here."""

from starter.client import AccountsClient, Confirmation, Registration
from starter.errors import (
    AccountsError,
    EmailTaken,
    InvalidResetKey,
    LoginBlocked,
    LoginFailed,
    NotAwaitingVerification,
    NotLocked,
    PasswordRejected,
    PasswordResetRequired,
    ReauthenticationRequired,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
    WrongCurrentPassword,
)

__all__ = [
    "AccountsClient",
    "AccountsError",
    "Confirmation",
    "EmailTaken",
    "InvalidResetKey",
    "LoginBlocked",
    "LoginFailed",
    "NotAwaitingVerification",
    "NotLocked",
    "PasswordRejected",
    "PasswordResetRequired",
    "ReauthenticationRequired",
    "Registration",
    "RegistrationNotFound",
    "ResendLimitReached",
    "ResendThrottled",
    "WrongCurrentPassword",
]
