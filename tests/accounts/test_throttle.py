"""The attempt bound itself (accounts.throttle), on SQLite and PostgreSQL, without the API around it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from conftest import Database

from accounts import throttle
from accounts.throttle import Blocked, ThrottlePolicy

POLICY = ThrottlePolicy(max_failures=9, window=timedelta(minutes=15), lock_duration=timedelta(minutes=6))


async def attempt(database: Database, subject: str) -> bool:
    try:
        await throttle.reserve(database.sessions, subject, POLICY)
    except Blocked:
        return False
    return True


async def test_concurrent_first_attempts_below_the_bound_are_all_admitted(database: Database) -> None:
    """The first attempts on a new subject race to create its row: none of them is refused for it.
    (An UPDATE that found no row, then a read that found the row another request had just inserted,
    once answered 429 to a correct sign-in.)"""
    for _ in range(60):
        subject = f"customer:race-{uuid.uuid4().hex[:12]}"
        admitted = await asyncio.gather(*(attempt(database, subject) for _ in range(8)))
        assert all(admitted), admitted


async def test_concurrent_attempts_beyond_the_bound_admit_exactly_the_bound(database: Database) -> None:
    subject = f"customer:bound-{uuid.uuid4().hex[:12]}"
    admitted = await asyncio.gather(*(attempt(database, subject) for _ in range(30)))
    assert sum(admitted) == POLICY.max_failures
