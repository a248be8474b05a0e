"""The one client library: storefront, API, back office and CLI start, update and query lifecycles here."""

from starter.client import AccountsClient, Confirmation, Registration
from starter.errors import (
    AccountsError,
    EmailTaken,
    NotAwaitingVerification,
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
    "NotAwaitingVerification",
    "PasswordRejected",
    "Registration",
    "RegistrationNotFound",
    "ResendLimitReached",
    "ResendThrottled",
]
