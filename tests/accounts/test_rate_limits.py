"""Request budgets in the database: atomic under concurrency, a new window after the old one ends, IPv6 by network."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from conftest import Database
from sqlalchemy import delete

from accounts.models import RequestCount
from accounts.rate_limits import Budget, OverBudget, RedisCounter, RequestLimits, client_network, spend
from accounts.settings import Settings


async def admitted(database: Database, subject: str, budget: Budget) -> bool:
    try:
        await spend(database.sessions, subject, budget)
    except OverBudget:
        return False
    return True


async def test_racing_requests_never_exceed_the_budget(database: Database) -> None:
    """One conditional UPDATE per request: 100 at once against a budget of 7, on a subject never seen
    (so they also race to insert its row), admit exactly 7, in every API process alike."""
    subject = f"test:{uuid.uuid4().hex}"
    budget = Budget(7, timedelta(minutes=5))
    answers = await asyncio.gather(*(admitted(database, subject, budget) for _ in range(100)))
    assert sum(answers) == 7
    with pytest.raises(OverBudget) as refused:
        await spend(database.sessions, subject, budget)
    assert timedelta(0) < refused.value.retry_after <= timedelta(minutes=5)
    assert 1 <= refused.value.retry_after_seconds <= 300


async def test_a_window_that_ended_opens_a_new_one(database: Database) -> None:
    subject = f"test:{uuid.uuid4().hex}"
    budget = Budget(2, timedelta(seconds=0.5))
    assert [await admitted(database, subject, budget) for _ in range(3)] == [True, True, False]
    await asyncio.sleep(0.6)
    assert await spend(database.sessions, subject, budget) == 1  # counted from one again


async def test_a_budget_of_zero_is_off() -> None:
    assert await spend(None, "anything", Budget(0, timedelta(seconds=1))) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "prefix", "network"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),  # one network however it is written
        ("2001:db8:1:2::1", 56, "2001:db8:1::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:198.51.100.4", 64, "198.51.100.4"),  # an IPv4 client on a dual-stack socket
        ("unknown", 64, "unknown"),
    ],
)
def test_clients_are_named_by_their_network(host: str, prefix: int, network: str) -> None:
    assert client_network(host, prefix) == network


async def test_in_redis_racing_requests_never_exceed_the_budget_and_windows_expire(redis_url: str) -> None:
    counter = RedisCounter(redis_url)
    try:
        subject = f"test:{uuid.uuid4().hex}"
        budget = Budget(7, timedelta(seconds=0.5))

        async def one() -> bool:
            try:
                await counter.spend(subject, budget)
            except OverBudget:
                return False
            return True

        assert sum(await asyncio.gather(*(one() for _ in range(100)))) == 7
        with pytest.raises(OverBudget) as refused:
            await counter.spend(subject, budget)
        assert timedelta(0) < refused.value.retry_after <= timedelta(seconds=0.5)
        await asyncio.sleep(0.6)
        assert await counter.spend(subject, budget) == 1  # the key expired with its window
    finally:
        await counter.close()


async def test_a_process_refuses_a_spent_client_from_memory_until_its_window_ends(database: Database) -> None:
    """After the first refusal, a flood from that client costs this process no database round trip: with the
    row gone from the database, this process still refuses (its memory), another one counts afresh."""
    settings = Settings(_env_file=None, rate_limit_per_ip=2, rate_limit_global=0)  # type: ignore[call-arg]
    limits = RequestLimits(settings, database.sessions)
    client = f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
    await limits.admit_client("test", client)
    await limits.admit_client("test", client)
    with pytest.raises(OverBudget):
        await limits.admit_client("test", client)
    async with database.sessions.begin() as session:
        await session.execute(delete(RequestCount).where(RequestCount.subject.startswith("ip:test:")))
    with pytest.raises(OverBudget) as from_memory:
        await limits.admit_client("test", client)
    assert timedelta(0) < from_memory.value.retry_after <= timedelta(seconds=60)
    await RequestLimits(settings, database.sessions).admit_client("test", client)  # another process
