"""Pending credentials (accounts/pending_credentials.py): the hash and a sign-up's profile wait in the
database instead of a workflow payload; the activity that applies them deletes them, retries answer as
the first attempt did, and what nobody applies is deleted once expired. Real activities on SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from conftest import Database, unique_email
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from accounts import pending_credentials
from accounts.models import Customer, PendingCredential, utcnow
from accounts.profile import SignUp
from activities.customers import CustomerActivities, NewCustomer
from activities.passwords import PasswordActivities, SetPassword
from activities.throttle_cleanup import CleanupRequest, ThrottleCleanupActivities

DAY = timedelta(days=1)


def reference(database: Database) -> str:
    return f"{database.reference_prefix}P{uuid.uuid4().hex[:10]}"


async def credential(database: Database, credential_id: str) -> PendingCredential | None:
    async with database.sessions() as session:
        return await session.get(PendingCredential, credential_id)


async def customer(database: Database, customer_reference: str) -> Customer | None:
    async with database.sessions() as session:
        return await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))


def sign_up(email: str) -> SignUp:
    dob = date(1906, 12, 9)
    return SignUp(email=email, locale="de_DE", channel="api", first_name="Grace", last_name="Hopper", date_of_birth=dob)


async def test_a_pending_sign_up_becomes_the_row_and_is_gone(database: Database) -> None:
    activities = CustomerActivities(database.sessions)
    ref, email = reference(database), unique_email("pending")
    pending_id = await pending_credentials.store(
        database.sessions, lifetime=DAY, password_hash="$argon2id$pending", sign_up=sign_up(email)
    )
    new = NewCustomer.pending(ref, "api", pending_id)

    created = await activities.create_customer(new)
    again = await activities.create_customer(new)  # the retry after a lost completion

    assert created.created and again.created and again.created_at == created.created_at
    row = await customer(database, ref)
    assert row is not None
    assert (row.email, row.first_name, row.date_of_birth, row.locale) == (email, "Grace", date(1906, 12, 9), "de_DE")
    assert row.password_hash == "$argon2id$pending"
    assert await credential(database, pending_id) is None


async def test_a_taken_address_keeps_only_the_owner_reference_for_the_retry(database: Database) -> None:
    activities = CustomerActivities(database.sessions)
    email = unique_email("taken")
    owner = reference(database)
    first = await pending_credentials.store(database.sessions, lifetime=DAY, sign_up=sign_up(email))
    assert (await activities.create_customer(NewCustomer.pending(owner, "api", first))).created

    loser = reference(database)
    second = await pending_credentials.store(
        database.sessions, lifetime=DAY, password_hash="$argon2id$loser", sign_up=sign_up(email)
    )
    refused = await activities.create_customer(NewCustomer.pending(loser, "api", second))
    retried = await activities.create_customer(NewCustomer.pending(loser, "api", second))

    assert (refused.created, refused.existing_customer_reference) == (False, owner)
    assert (retried.created, retried.existing_customer_reference) == (False, owner)
    left = await credential(database, second)
    assert left is not None and (left.password_hash, left.sign_up) == (None, None)  # nothing personal waits
    assert await customer(database, loser) is None


async def test_a_sign_up_no_longer_pending_fails_the_step_for_good(database: Database) -> None:
    activities = CustomerActivities(database.sessions)
    with pytest.raises(ApplicationError) as gone:
        await activities.create_customer(NewCustomer.pending(reference(database), "api", uuid.uuid4().hex))
    assert gone.value.type == "PendingCredentialGone" and gone.value.non_retryable


async def test_set_password_applies_the_pending_hash_once_and_deletes_it(database: Database) -> None:
    ref = reference(database)
    pending_id = await pending_credentials.store(database.sessions, lifetime=DAY, sign_up=sign_up(unique_email()))
    await CustomerActivities(database.sessions).create_customer(NewCustomer.pending(ref, "api", pending_id))
    new_hash = await pending_credentials.store(
        database.sessions, lifetime=DAY, customer_reference=ref, password_hash="$argon2id$new"
    )
    request = SetPassword(ref, None, "password_changed", "api", ref, f"change:{ref}", credential_id=new_hash)
    passwords = PasswordActivities(database.sessions)

    await passwords.set_password(request)
    await passwords.set_password(request)  # the retry: the key is recorded, nothing more happens

    row = await customer(database, ref)
    assert row is not None and row.password_hash == "$argon2id$new"
    assert await credential(database, new_hash) is None


async def test_the_cleanup_deletes_expired_pending_credentials_only(database: Database) -> None:
    expired = await pending_credentials.store(
        database.sessions, lifetime=-timedelta(seconds=1), customer_reference="X", password_hash="$argon2id$old"
    )
    live = await pending_credentials.store(
        database.sessions, lifetime=DAY, customer_reference="X", password_hash="$argon2id$live"
    )
    cleanup = ThrottleCleanupActivities(database.sessions)
    await ActivityEnvironment().run(cleanup.delete_expired_throttles, CleanupRequest(retention=DAY))

    assert await credential(database, expired) is None
    assert await credential(database, live) is not None
    async with database.sessions() as session:
        left = await session.scalar(select(func.count()).where(PendingCredential.expires_at <= utcnow()))
    assert left == 0
    await pending_credentials.discard(database.sessions, live)
    assert await credential(database, live) is None
