"""TOTP (RFC 6238) for authenticator apps, with pyotp; the QR code of the enrolment URI, with segno.

Pure functions: no database, no clock of their own (the caller passes `now`), so the rules in
accounts/mfa.py can be tested at any moment.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

DIGITS = 6
STEP_SECONDS = 30
# a code of the step before or after the current one is accepted too (clock drift of phones, RFC 6238 §5.2)
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits (RFC 4226's recommended length)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """The enrolment URI as an SVG QR code in a data URI: an app scans it from the activation answer."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=4))


def step_at(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is (within the drift), compared in constant time; None if none."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = step_at(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # every candidate is compared, so the time taken does not tell which one matched
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def code_at(secret: str, now: datetime) -> str:
    """The code an authenticator app shows at `now` (tests and the CLI's enrolment check)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step_at(now))
