"""Staff API keys: created once, checked by a keyed SHA-256 (argon2 rows of old still work), malformed keys
refused without work."""

from __future__ import annotations

import os
import secrets

import pytest
from conftest import Database
from sqlalchemy import select, update

from accounts.models import Staff
from accounts.passwords import PasswordHasher
from accounts.staff import StaffDirectory, StaffExists, StaffNotFound

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
SECRET = "test-only-staff-key-secret"


class CountingHasher(PasswordHasher):
    """Counts argon2 verifications, real and dummy."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


# dummy_verify calls verify: counted too


async def stored_key_hash(database: Database, staff_id: int) -> str:
    async with database.sessions() as session:
        return (await session.scalars(select(Staff.api_key_hash).where(Staff.id == staff_id))).one()


async def test_a_flood_of_fake_keys_costs_no_argon2(database: Database) -> None:
    """256 random bits need no slow hash: a keyed SHA-256 checks a key in microseconds, so fake keys
    (for a real member's id or any other) no longer compete with customers' sign-ins for argon2."""
    hasher = CountingHasher()
    directory = StaffDirectory(database.sessions, hasher, key_secret=SECRET)
    member, key = await directory.create(f"flo-{os.urandom(3).hex()}", "support")
    stored = await stored_key_hash(database, member.id)
    assert stored.startswith("hmac-sha256$") and key.split("_", 2)[2] not in stored
    for n in range(50):
        fake = secrets.token_urlsafe(32)
        assert await directory.authenticate(f"stf_{member.id}_{fake}") is None
        assert await directory.authenticate(f"stf_{member.id + 100_000 + n}_{fake}") is None
    assert hasher.verifications == 0
    assert await StaffDirectory(database.sessions, hasher, key_secret=SECRET).authenticate(key) == member
    # keyed: under another secret the same key is no key
    assert await StaffDirectory(database.sessions, hasher, key_secret=SECRET + "x").authenticate(key) is None
    assert hasher.verifications == 0


async def test_a_key_stored_as_argon2_still_works_and_is_rewritten_on_first_use(database: Database) -> None:
    hasher = CountingHasher()
    directory = StaffDirectory(database.sessions, hasher, key_secret=SECRET)
    member, key = await directory.create(f"old-{os.urandom(3).hex()}", "admin")
    secret = key.split("_", 2)[2]
    wrong = f"stf_{member.id}_{'AB'[secret[0] == 'A']}{secret[1:]}"

    def fresh() -> StaffDirectory:  # another process: nothing cached
        return StaffDirectory(database.sessions, hasher, key_secret=SECRET)

    async with database.sessions.begin() as session:  # as `accounts staff create` stored keys before
        await session.execute(update(Staff).where(Staff.id == member.id).values(api_key_hash=FAST.hash(secret)))
    assert await fresh().authenticate(wrong) is None
    assert hasher.verifications == 1  # a wrong key for an argon2 row: argon2, until the row is rewritten
    assert await fresh().authenticate(key) == member
    assert hasher.verifications == 2
    assert (await stored_key_hash(database, member.id)).startswith("hmac-sha256$")
    assert await fresh().authenticate(key) == member
    assert await fresh().authenticate(wrong) is None
    assert hasher.verifications == 2


async def test_keys_verify_and_anything_else_is_refused_without_an_error(database: Database) -> None:
    directory = StaffDirectory(database.sessions, FAST, key_secret=SECRET)
    member, key = await directory.create(f"carol-{os.urandom(3).hex()}", "admin")
    assert await directory.authenticate(key) == member
    _, staff_id, secret = key.split("_", 2)
    for wrong in (
        f"stf_{staff_id}_{'A' * 43}",  # right shape, wrong secret
        f"stf_{int(staff_id) + 10_000}_{secret}",  # unknown id
        "stf_²_" + secret,  # a digit that int() refuses
        f"stf_{2**31}_{secret}",  # beyond the 32-bit id column (PostgreSQL refuses the parameter)
        f"stf_{10**12 - 1}_{secret}",
        "stf__",
        "",
        "Bearer " + key,
        key + "x",
    ):
        assert await StaffDirectory(database.sessions, FAST, key_secret=SECRET).authenticate(wrong) is None, wrong


async def test_a_disabled_member_is_refused_listed_as_disabled_and_can_be_enabled(database: Database) -> None:
    directory = StaffDirectory(database.sessions, FAST, key_secret=SECRET)
    name, password = f"dora-{os.urandom(3).hex()}", "Lantern-7#quiet-harbor"
    member, key = await directory.create(name, "support", password=password)
    other_process = StaffDirectory(database.sessions, FAST, key_secret=SECRET)
    assert await directory.authenticate(key) == member == await other_process.authenticate(key)  # both cache it
    with pytest.raises(StaffExists, match=f"^a staff member named {name} already exists$"):
        await directory.create(name, "admin")

    assert await directory.set_disabled(name, True) == (member, True)
    assert await directory.authenticate(key) is None  # this directory forgets at once
    assert await StaffDirectory(database.sessions, FAST, key_secret=SECRET).authenticate(key) is None
    assert await other_process.authenticate(key) == member  # another process: until its cache minute ends
    assert await directory.authenticate_password(name, password) is None
    listed = {m.name: m for m in await directory.listing()}
    assert (listed[name].role, listed[name].has_password) == ("support", True)
    disabled_at = listed[name].disabled_at
    assert disabled_at is not None and listed[name].created_at <= disabled_at
    assert await directory.set_disabled(name, True) == (member, False)  # already disabled: nothing changes
    assert {m.name: m for m in await directory.listing()}[name].disabled_at == listed[name].disabled_at

    assert await directory.set_disabled(name, False) == (member, True)
    assert await StaffDirectory(database.sessions, FAST, key_secret=SECRET).authenticate(key) == member
    checked = await directory.authenticate_password(name, password)
    assert checked is not None and checked.member == member
    assert {m.name: m for m in await directory.listing()}[name].disabled_at is None
    with pytest.raises(StaffNotFound):
        await directory.set_disabled(f"nobody-{os.urandom(3).hex()}", True)
