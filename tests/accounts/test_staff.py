"""Staff API keys: created once, verified with argon2, malformed keys refused without work."""

from __future__ import annotations

import os

import pytest
from conftest import Database

from accounts.passwords import PasswordHasher
from accounts.staff import StaffDirectory, StaffExists, StaffNotFound

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def test_keys_verify_and_anything_else_is_refused_without_an_error(database: Database) -> None:
    directory = StaffDirectory(database.sessions, FAST)
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
        assert await StaffDirectory(database.sessions, FAST).authenticate(wrong) is None, wrong


async def test_a_disabled_member_is_refused_listed_as_disabled_and_can_be_enabled(database: Database) -> None:
    directory = StaffDirectory(database.sessions, FAST)
    name, password = f"dora-{os.urandom(3).hex()}", "Lantern-7#quiet-harbor"
    member, key = await directory.create(name, "support", password=password)
    other_process = StaffDirectory(database.sessions, FAST)
    assert await directory.authenticate(key) == member == await other_process.authenticate(key)  # both cache it
    with pytest.raises(StaffExists, match=f"^a staff member named {name} already exists$"):
        await directory.create(name, "admin")

    assert await directory.set_disabled(name, True) == (member, True)
    assert await directory.authenticate(key) is None  # this directory forgets at once
    assert await StaffDirectory(database.sessions, FAST).authenticate(key) is None
    assert await other_process.authenticate(key) == member  # another process: until its cache minute ends
    assert await directory.authenticate_password(name, password) is None
    listed = {m.name: m for m in await directory.listing()}
    assert (listed[name].role, listed[name].has_password) == ("support", True)
    disabled_at = listed[name].disabled_at
    assert disabled_at is not None and listed[name].created_at <= disabled_at
    assert await directory.set_disabled(name, True) == (member, False)  # already disabled: nothing changes
    assert {m.name: m for m in await directory.listing()}[name].disabled_at == listed[name].disabled_at

    assert await directory.set_disabled(name, False) == (member, True)
    assert await StaffDirectory(database.sessions, FAST).authenticate(key) == member
    assert await directory.authenticate_password(name, password) == member
    assert {m.name: m for m in await directory.listing()}[name].disabled_at is None
    with pytest.raises(StaffNotFound):
        await directory.set_disabled(f"nobody-{os.urandom(3).hex()}", True)
