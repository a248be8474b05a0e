"""Refresh tokens: rotated on every use, a replayed one ends its login, races have one winner."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Database
from sqlalchemy import delete, select

from accounts.models import Customer
from accounts.refresh_tokens import InvalidRefreshToken, RefreshToken, RefreshTokenStore
from accounts.tokens import hash_token

LIFETIME = timedelta(days=30)


class Clock:
    """Database time for the store, moved by hand; starts at the real now so rows sort sensibly."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> RefreshTokenStore:
    return RefreshTokenStore(database.sessions, lifetime=LIFETIME, clock=clock)


async def new_customer(database: Database) -> int:
    marker = uuid.uuid4().hex[:12]
    async with database.sessions.begin() as session:
        customer = Customer(
            customer_reference=f"RT-{marker}",
            email=f"refresh-{marker}@example.com",
            email_key=f"refresh-{marker}@example.com",
            locale="en_US",
            channel="api",
        )
        session.add(customer)
        await session.flush()
        return customer.id


async def row_of(database: Database, token: str) -> RefreshToken:
    async with database.sessions() as session:
        row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token)))
    assert row is not None
    return row


async def family_rows(database: Database, family_id: str) -> list[RefreshToken]:
    async with database.sessions() as session:
        return list(
            await session.scalars(
                select(RefreshToken).where(RefreshToken.family_id == family_id).order_by(RefreshToken.id)
            )
        )


async def test_rotation_retires_the_old_token_and_the_new_one_works(
    database: Database, store: RefreshTokenStore, clock: Clock
) -> None:
    customer_id = await new_customer(database)
    first = await store.issue(customer_id)
    issued = await row_of(database, first)
    assert issued.customer_id == customer_id and issued.revoked_at is None and issued.replaced_by_id is None
    assert issued.expires_at == clock.now + LIFETIME and len(issued.family_id) == 32

    clock.advance(timedelta(days=1))
    owner, second = await store.rotate(first)
    assert owner == customer_id and second != first

    retired, successor = await row_of(database, first), await row_of(database, second)
    assert retired.revoked_at == clock.now and retired.replaced_by_id == successor.id
    assert successor.family_id == issued.family_id and successor.customer_id == customer_id
    assert successor.revoked_at is None and successor.expires_at == clock.now + LIFETIME

    owner, third = await store.rotate(second)  # the new one works, and rotates in turn
    assert owner == customer_id and third not in (first, second)
    assert [row.revoked_at is None for row in await family_rows(database, issued.family_id)] == [False, False, True]


async def test_unknown_token_is_refused(store: RefreshTokenStore) -> None:
    for token in ("", "not-a-token", "x" * 5000, "\udcff"):
        with pytest.raises(InvalidRefreshToken):
            await store.rotate(token)


async def test_expired_token_is_refused(database: Database, store: RefreshTokenStore, clock: Clock) -> None:
    customer_id = await new_customer(database)
    almost = await store.issue(customer_id)
    expired = await store.issue(customer_id)

    clock.advance(LIFETIME - timedelta(seconds=1))
    await store.rotate(almost)
    clock.advance(timedelta(seconds=1))
    with pytest.raises(InvalidRefreshToken, match="expired"):
        await store.rotate(expired)
    with pytest.raises(InvalidRefreshToken, match="expired"):
        await store.rotate(expired)  # still refused: an expired token is not "replayed"


async def test_revoke_logs_out_that_session_only(database: Database, store: RefreshTokenStore) -> None:
    customer_id = await new_customer(database)
    phone, laptop = await store.issue(customer_id), await store.issue(customer_id)
    _, phone = await store.rotate(phone)

    await store.revoke(phone)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        await store.rotate(phone)
    await store.revoke(phone)  # idempotent
    await store.revoke("never-issued")  # unknown tokens are ignored: DELETE always answers 204

    _, laptop = await store.rotate(laptop)  # the other login lives on
    assert laptop


async def test_revoke_with_customer_id_leaves_other_customers_tokens_alone(
    database: Database, store: RefreshTokenStore
) -> None:
    alice, mallory = await new_customer(database), await new_customer(database)
    token = await store.issue(alice)

    await store.revoke(token, customer_id=mallory)
    _, token = await store.rotate(token)

    await store.revoke(token, customer_id=alice)
    with pytest.raises(InvalidRefreshToken):
        await store.rotate(token)


async def test_revoke_all_ends_every_session_of_one_customer(database: Database, store: RefreshTokenStore) -> None:
    alice, bob = await new_customer(database), await new_customer(database)
    alices = [await store.issue(alice) for _ in range(3)]
    _, alices[0] = await store.rotate(alices[0])  # the retired one is not counted again
    bobs = await store.issue(bob)

    assert await store.revoke_all(alice) == 3
    for token in alices:
        with pytest.raises(InvalidRefreshToken):
            await store.rotate(token)
    assert await store.revoke_all(alice) == 0
    assert (await store.rotate(bobs))[0] == bob


async def test_replaying_a_rotated_token_ends_the_whole_family(database: Database, store: RefreshTokenStore) -> None:
    customer_id = await new_customer(database)
    stolen = await store.issue(customer_id)
    other_login = await store.issue(customer_id)
    _, second = await store.rotate(stolen)
    _, newest = await store.rotate(second)

    with pytest.raises(InvalidRefreshToken, match="reused"):
        await store.rotate(stolen)  # the thief (or the customer, we cannot tell) replays it
    with pytest.raises(InvalidRefreshToken):
        await store.rotate(newest)  # so the newest token of that login is dead too
    family = await family_rows(database, (await row_of(database, stolen)).family_id)
    assert len(family) == 3 and all(row.revoked_at is not None for row in family)

    _, other_login = await store.rotate(other_login)  # another login of the same customer is not touched
    assert other_login


async def test_concurrent_rotations_of_one_token_have_exactly_one_winner(
    database: Database, store: RefreshTokenStore
) -> None:
    customer_id = await new_customer(database)
    token = await store.issue(customer_id)

    outcomes = await asyncio.gather(*(store.rotate(token) for _ in range(10)), return_exceptions=True)

    winners = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(outcome, InvalidRefreshToken) for outcome in outcomes if outcome not in winners)
    family = await family_rows(database, (await row_of(database, token)).family_id)
    assert len(family) == 2  # one successor minted, not ten
    assert family[0].replaced_by_id == family[1].id
    # every loser presented a token that had already been rotated: a replay, so the family ends
    with pytest.raises(InvalidRefreshToken):
        await store.rotate(winners[0][1])


async def test_deleting_a_customer_deletes_their_tokens(database: Database, store: RefreshTokenStore) -> None:
    customer_id = await new_customer(database)
    token = await store.issue(customer_id)
    async with database.sessions.begin() as session:
        await session.execute(delete(Customer).where(Customer.id == customer_id))
    async with database.sessions() as session:
        assert await session.scalar(select(RefreshToken).where(RefreshToken.customer_id == customer_id)) is None
    with pytest.raises(InvalidRefreshToken):
        await store.rotate(token)


async def test_no_plaintext_token_rests_in_the_table(database: Database, store: RefreshTokenStore) -> None:
    customer_id = await new_customer(database)
    plaintext = [await store.issue(customer_id)]
    for _ in range(3):
        plaintext.append((await store.rotate(plaintext[-1]))[1])
    plaintext.append(await store.issue(customer_id))
    await store.revoke(plaintext[-1])

    async with database.engine.connect() as connection:
        rows = (await connection.execute(RefreshToken.__table__.select())).all()
    dumped = json.dumps([[str(value) for value in row] for row in rows])
    assert all(token not in dumped for token in plaintext)
    stored = {row.token_hash for row in rows}
    assert all(hash_token(token) in stored for token in plaintext)


async def test_lifetime_must_be_positive(sqlite_database: Database) -> None:
    with pytest.raises(ValueError):
        RefreshTokenStore(sqlite_database.sessions, lifetime=timedelta(0))


async def test_a_sign_in_that_raced_a_password_change_gets_no_refresh_token(database: Database) -> None:
    from sqlalchemy import update as sa_update

    from accounts.models import Customer as CustomerRow

    store = RefreshTokenStore(database.sessions, lifetime=timedelta(days=1))
    customer_id = await new_customer(database)
    async with database.sessions.begin() as session:
        version = (
            await session.execute(select(CustomerRow.token_version).where(CustomerRow.id == customer_id))
        ).scalar_one()
        await session.execute(
            sa_update(CustomerRow).where(CustomerRow.id == customer_id).values(token_version=version + 1)
        )
    with pytest.raises(InvalidRefreshToken):
        await store.issue(customer_id, token_version=version)  # what the password check saw
    assert await store.issue(customer_id, token_version=version + 1)
