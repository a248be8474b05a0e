"""The MFA rules on both databases: codes die after use and after three attempts (also under concurrent
guesses), TOTP refuses a replayed step, recovery codes work once, a pending activation expires."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Database
from pydantic import SecretStr
from sqlalchemy import select, update

from accounts import mfa, mfa_totp
from accounts.mfa_secrets import SecretBox, UnreadableSecret
from accounts.models import AuditEvent, Customer, MfaCode, MfaMethod, utcnow
from accounts.settings import Settings

SECRET = "test-secret-key-" + "x" * 32


@pytest.fixture
def policy(tmp_path: Path) -> mfa.MfaPolicy:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        secret_key=SecretStr(SECRET),
        var_dir=tmp_path,
        mfa_encryption_key=SecretStr(base64.b64encode(b"k" * 32).decode()),
    )
    return mfa.MfaPolicy.from_settings(settings)


async def new_customer(database: Database) -> Customer:
    marker = uuid.uuid4().hex[:12]
    async with database.sessions.begin() as session:
        customer = Customer(
            customer_reference=f"MFA-{marker}",
            email=f"mfa-{marker}@example.com",
            email_key=f"mfa-{marker}@example.com",
            locale="en_US",
            channel="api",
        )
        session.add(customer)
    return customer


async def emailed(database: Database, policy: mfa.MfaPolicy, code_id: int | None, code: str = "123456") -> str:
    """What the email activity does: the code's hash on its row."""
    assert code_id is not None
    assert await mfa.store_code(database.sessions, policy.secret_key, code_id, code)
    return code


async def email_active(database: Database, policy: mfa.MfaPolicy, customer: Customer) -> None:
    started = await mfa.start_email_activation(database.sessions, policy, customer)
    code = await emailed(database, policy, started.code_id, "654321")
    assert await mfa.verify_activation(database.sessions, policy, customer, mfa.EMAIL, code)


async def events(database: Database, customer: Customer) -> list[str]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.event)
            .where(AuditEvent.customer_reference == customer.customer_reference)
            .order_by(AuditEvent.id)
        )
        return list(rows)


async def test_an_emailed_code_works_once(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    await email_active(database, policy, customer)
    async with database.sessions.begin() as session:  # past the resend interval
        await session.execute(update(MfaCode).values(created_at=utcnow() - timedelta(minutes=5)))
    code = await emailed(database, policy, await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL))
    assert await mfa.verify(database.sessions, policy, customer, code, channel="api", purpose="test") == mfa.EMAIL
    assert await mfa.verify(database.sessions, policy, customer, code, channel="api", purpose="test") is None
    assert await mfa.statuses(database.sessions, policy, customer.id) == [
        ("email", "activated"),
        ("totp", "deactivated"),
    ]
    trail = await events(database, customer)
    assert trail[:3] == ["mfa_activation_started", "mfa_code_requested", "mfa_activated"]
    assert trail[-2:] == ["mfa_code_verified", "mfa_code_refused"]


async def test_concurrent_wrong_guesses_get_three_attempts_in_all(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    started = await mfa.start_email_activation(database.sessions, policy, customer)
    code = await emailed(database, policy, started.code_id)
    guesses = [f"{n:06d}" for n in range(10) if f"{n:06d}" != code]
    results = await asyncio.gather(
        *(mfa.verify_activation(database.sessions, policy, customer, mfa.EMAIL, guess) for guess in guesses)
    )
    assert not any(results)
    async with database.sessions() as session:
        row = await session.get(MfaCode, started.code_id)
        assert row is not None and row.attempts_left == 0
    # the right code, after three wrong ones, is dead too: brute force ends at three
    assert not await mfa.verify_activation(database.sessions, policy, customer, mfa.EMAIL, code)


async def test_a_newer_code_and_sign_out_end_the_code_before(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    await email_active(database, policy, customer)
    async with database.sessions.begin() as session:
        await session.execute(update(MfaCode).values(created_at=utcnow() - timedelta(minutes=5)))
    first = await emailed(database, policy, await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL))
    # within the resend interval no new code is made: the first one still works
    assert await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL) is None
    async with database.sessions.begin() as session:
        await mfa.end_codes(session, customer.id)
    assert await mfa.verify(database.sessions, policy, customer, first, channel="api", purpose="test") is None


async def test_totp_refuses_a_replayed_step(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    enrolment = await mfa.start_totp_activation(database.sessions, policy, customer, "ada@example.com")
    assert enrolment.qr_code.startswith("data:image/svg+xml")
    assert enrolment.uri.startswith("otpauth://totp/")
    assert len(enrolment.recovery_codes) == 10
    assert await mfa.statuses(database.sessions, policy, customer.id) == [
        ("email", "deactivated"),
        ("totp", "activation is pending"),
    ]
    now = utcnow()
    assert await mfa.verify_activation(
        database.sessions, policy, customer, mfa.TOTP, mfa_totp.code_at(enrolment.secret, now)
    )
    # the same code (its step was accepted at activation) is a replay
    replay = mfa_totp.code_at(enrolment.secret, now)
    assert await mfa.verify(database.sessions, policy, customer, replay, channel="api", purpose="test") is None
    later = mfa_totp.code_at(enrolment.secret, now + timedelta(seconds=30))  # the next step (within the drift)
    assert await mfa.verify(database.sessions, policy, customer, later, channel="api", purpose="test") == mfa.TOTP
    assert await mfa.verify(database.sessions, policy, customer, later, channel="api", purpose="test") is None


async def test_totp_locks_after_three_failures(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    enrolment = await mfa.start_totp_activation(database.sessions, policy, customer, "ada@example.com")
    now = utcnow()
    assert await mfa.verify_activation(
        database.sessions, policy, customer, mfa.TOTP, mfa_totp.code_at(enrolment.secret, now)
    )
    right = mfa_totp.code_at(enrolment.secret, now + timedelta(seconds=30))
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(3):
        assert await mfa.verify(database.sessions, policy, customer, wrong, channel="api", purpose="t") is None
    assert await mfa.verify(database.sessions, policy, customer, right, channel="api", purpose="t") is None
    async with database.sessions.begin() as session:  # the lock has passed
        await session.execute(
            update(MfaMethod).where(MfaMethod.customer_id == customer.id).values(locked_until=utcnow())
        )
    assert await mfa.verify(database.sessions, policy, customer, right, channel="api", purpose="t") == mfa.TOTP


async def test_a_recovery_code_works_once(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    enrolment = await mfa.start_totp_activation(database.sessions, policy, customer, "ada@example.com")
    code = mfa_totp.code_at(enrolment.secret, utcnow())
    assert await mfa.verify_activation(database.sessions, policy, customer, mfa.TOTP, code)
    recovery = enrolment.recovery_codes[3]
    typed = recovery.upper().replace("-", " ")  # as read off paper
    assert await mfa.verify(database.sessions, policy, customer, typed, channel="api", purpose="t") == mfa.RECOVERY
    assert await mfa.verify(database.sessions, policy, customer, recovery, channel="api", purpose="t") is None
    assert await mfa.verify_request_code(database.sessions, customer.id, enrolment.recovery_codes[4], policy=policy)


async def test_the_secret_is_encrypted_at_rest_and_bound_to_its_owner(
    database: Database, policy: mfa.MfaPolicy
) -> None:
    customer = await new_customer(database)
    enrolment = await mfa.start_totp_activation(database.sessions, policy, customer, "ada@example.com")
    async with database.sessions() as session:
        stored = await session.scalar(select(MfaMethod.secret_encrypted).where(MfaMethod.customer_id == customer.id))
    assert stored is not None and enrolment.secret not in stored
    assert policy.box.open(stored, f"customer:{customer.id}") == enrolment.secret
    with pytest.raises(UnreadableSecret):
        policy.box.open(stored, f"customer:{customer.id + 1}")
    with pytest.raises(UnreadableSecret):
        SecretBox(b"o" * 32).open(stored, f"customer:{customer.id}")


async def test_an_expired_activation_is_gone(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    started = await mfa.start_email_activation(database.sessions, policy, customer)
    code = await emailed(database, policy, started.code_id)
    async with database.sessions.begin() as session:
        await session.execute(update(MfaMethod).where(MfaMethod.customer_id == customer.id).values(expires_at=utcnow()))
    with pytest.raises(mfa.MfaRefused):
        await mfa.verify_activation(database.sessions, policy, customer, mfa.EMAIL, code)
    assert await mfa.end_expired_activation(database.sessions, customer.customer_reference, mfa.EMAIL, utcnow()) == (
        True,
        None,
    )
    assert (await events(database, customer))[-1] == "mfa_activation_expired"


def test_production_refuses_a_missing_mfa_key() -> None:
    with pytest.raises(ValueError, match="ACCOUNTS_MFA_ENCRYPTION_KEY"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


async def test_an_expired_code_is_refused(database: Database, policy: mfa.MfaPolicy) -> None:
    customer = await new_customer(database)
    await email_active(database, policy, customer)
    async with database.sessions.begin() as session:
        await session.execute(update(MfaCode).values(created_at=utcnow() - timedelta(minutes=5)))
    code = await emailed(database, policy, await mfa.request_code(database.sessions, policy, customer, mfa.EMAIL))
    async with database.sessions.begin() as session:  # 30 minutes later
        await session.execute(
            update(MfaCode).where(MfaCode.customer_id == customer.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await mfa.verify(database.sessions, policy, customer, code, channel="api", purpose="t") is None
