"""Answers that must not wait for an attack's password verifications (accounts/passwords.py): argon2 runs in
a pool of its own at a lower CPU priority, a blocked subject is refused before any is queued, and a known
device's sign-in is verified in a pool of its own."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import func, select
from test_login_http import JSONAPI, PASSWORD, login_body, registered, sign_in

from accounts.models import LoginThrottle
from starter import LoginBlocked

pytestmark = pytest.mark.e2e
# the production argon2 cost: a verification is hundreds of milliseconds of CPU, as in a real attack
PRODUCTION_ARGON2 = {"argon2_time_cost": 3, "argon2_memory_cost": 65536, "argon2_parallelism": 4}
BUSY = 8  # verifications in flight: more than the machine has cores, so they queue for argon2 threads


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    settings = {
        "lockout_max_failures": 1,
        "lockout_ip_max_failures": 10_000,
        "request_timeout": 120,
        **PRODUCTION_ARGON2,
    }
    async with stack(dev_server, database, api=True, **settings) as built:
        yield built


async def blocked_latencies(http: httpx.AsyncClient, email: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await sign_in(http, email)
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 429
    return latencies


async def test_a_blocked_sign_in_is_not_slowed_by_verifications_in_flight(e2e: Stack) -> None:
    assert e2e.server is not None
    hasher = e2e.server.config.loaded_app.app.state.accounts.logins._hasher  # the API's own
    stored = await hasher.hash_async("another customer's password")
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        assert (await sign_in(http, email, "wrong password!")).status_code == 401  # the threshold: locked
        await blocked_latencies(http, email, 3)  # warm: connections open, code paths run once
        idle = await blocked_latencies(http, email, 10)

        # other customers' sign-ins keep every argon2 thread busy for seconds (the API's hasher itself: its
        # threads and their priority are what is under test, not the rest of a sign-in)
        load = [asyncio.create_task(hasher.verify_async(stored, "a guess")) for _ in range(BUSY)]
        await asyncio.sleep(0.2)
        busy = await blocked_latencies(http, email, 10)
        still_verifying = sum(not task.done() for task in load)
        await asyncio.gather(*load)

    assert still_verifying > 0, "the verifications ended before the blocked attempts were measured"
    # In the loop's default executor (cores + 4 threads, each with its argon2 lane threads, at the loop's
    # priority), a refusal took ten times as long as when idle; in argon2's own pool at nice 19, about as long.
    assert statistics.median(busy) <= 2 * statistics.median(idle) + 0.02, (idle, busy)


async def test_the_owners_known_device_is_not_queued_behind_an_attacks_verifications(e2e: Stack) -> None:
    assert e2e.server is not None
    hasher = e2e.server.config.loaded_app.app.state.accounts.logins._hasher
    stored = await hasher.hash_async("the victim's password, as stored")
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        device_token = (await sign_in(http, email)).headers["X-Device-Token"]
        # the attack's verifications (bounded per account, but each seconds of queue on a small machine);
        # twice BUSY, so that "half still queued" is a margin of BUSY verifications, not of a few
        # milliseconds of the owner's own sign-in (its session row, its device token) on a loaded machine
        queued = 2 * BUSY
        load = [asyncio.create_task(hasher.verify_async(stored, "a guess")) for _ in range(queued)]
        await asyncio.sleep(0.2)
        owner = await http.post(
            "/access-tokens",
            json=login_body(email, PASSWORD),
            headers={"Content-Type": JSONAPI, "X-Device-Token": device_token},
        )
        still_verifying = sum(not task.done() for task in load)
        await asyncio.gather(*load)
    assert owner.status_code == 201
    # in one pool with them, the owner's verification waited for every one queued before it
    assert still_verifying >= queued // 2, still_verifying


async def test_a_blocked_account_is_refused_by_reads_alone(e2e: Stack) -> None:
    """A flood on a locked account from ever new addresses writes nothing: the account is checked first,
    by a read, so no per-address row is made and given back for each refusal (on SQLite, every write
    queues for the one writer)."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        assert (await sign_in(http, email, "wrong password!")).status_code == 401  # the threshold: locked

    async def rows() -> tuple[int, object]:
        async with e2e.database.sessions() as session:
            count, latest = (await session.execute(select(func.count(), func.max(LoginThrottle.updated_at)))).one()
        return count, latest

    for _ in range(200):  # the lock itself follows from the workflow's activity, a moment later
        async with e2e.database.sessions() as session:
            locked = await session.scalar(
                select(LoginThrottle.locked_until).where(LoginThrottle.subject == f"customer:{reference}")
            )
        if locked is not None:
            break
        await asyncio.sleep(0.05)
    before = await rows()
    for n in range(20):
        with pytest.raises(LoginBlocked):
            await e2e.accounts.logins.authenticate(email, "a guess", client_ip=f"198.51.100.{n + 1}")
    assert await rows() == before
