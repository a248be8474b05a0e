"""Review of issue 16, the MFA rules: a code whose email never went out must not hold back the next one."""

from __future__ import annotations

from conftest import Database
from test_mfa import email_active, new_customer, policy  # noqa: F401 (the fixture)

from accounts import mfa


async def test_a_code_asked_again_after_its_email_failed_to_start_is_sent(
    database: Database,
    policy: mfa.MfaPolicy,  # noqa: F811
) -> None:
    """POST /multi-factor-auth-trigger reserves a code row, then starts its email (api/routes/mfa.py
    send_code); Temporal unreachable answers 5910 and nothing is sent, the row without a hash. The client's
    retry within ACCOUNTS_MFA_CODE_RESEND_MIN_INTERVAL gets None from request_code (accounts/mfa.py
    _reserve_code: 'it still works') and the API answers 204 with no email at all. The retry should get the
    same row back (its email workflow id is per row, USE_EXISTING: a send that did go out is not repeated)."""
    customer = await new_customer(database)
    await email_active(database, policy, customer)
    first = await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL)
    assert first is not None
    # ... its email never started; the client asks again
    again = await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL)
    assert again is not None, "no code to send, though none was ever sent"
