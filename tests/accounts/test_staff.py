"""Staff API keys: created once, verified with argon2, malformed keys refused without work."""

from __future__ import annotations

from conftest import Database

from accounts.passwords import PasswordHasher
from accounts.staff import StaffDirectory

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def test_keys_verify_and_anything_else_is_refused_without_an_error(database: Database) -> None:
    directory = StaffDirectory(database.sessions, FAST)
    import os

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
