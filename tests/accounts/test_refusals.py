"""The refusal memory's places (accounts/refusals.py) and the access log's quiet refusals (api/refusals.py)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from datetime import timedelta

import pytest

from accounts.refusals import Place, RefusalMemory
from accounts.throttle import Blocked
from api import refusals as edge

ACCOUNT, IP = "email:abc", "ip:def"
LOCK = timedelta(minutes=6)


def attempt(memory: RefusalMemory, *subjects: str) -> asyncio.Task[Place]:
    """One request's entry, in a context of its own (as each request has)."""
    return asyncio.create_task(asyncio.wait_for(memory.enter(*subjects), timeout=1), context=contextvars.Context())


async def test_an_attempt_that_finds_every_place_taken_is_refused_at_once() -> None:
    memory = RefusalMemory(timedelta(seconds=2), places=2, full=LOCK)
    first, second = await attempt(memory, ACCOUNT, IP), await attempt(memory, ACCOUNT, IP)
    # those two hold all the account's window can still admit: a third is refused, it does not wait
    # for them to reach the database (a burst of 200 was answered after the nine admitted had)
    with pytest.raises(Blocked) as refused:
        await attempt(memory, ACCOUNT, IP)
    assert (refused.value.subject, refused.value.retry_after) == (ACCOUNT, LOCK)  # as the lock they bring
    assert await attempt(memory, "email:other", IP)  # another account has places of its own
    first.release()
    third = await attempt(memory, ACCOUNT, IP)  # a place given back is free again
    second.release()
    third.release()


async def test_the_same_attempt_entering_again_keeps_its_one_place() -> None:
    memory = RefusalMemory(timedelta(seconds=2), places=1, full=LOCK)

    async def one_attempt() -> None:
        edge_place = await memory.enter(ACCOUNT, IP)  # the HTTP edge
        sign_in_place = await memory.enter(ACCOUNT, IP)  # then the sign-in itself: not refused
        assert sign_in_place is edge_place
        sign_in_place.close()
        edge_place.close()

    await asyncio.create_task(one_attempt(), context=contextvars.copy_context())
    (await memory.enter(ACCOUNT, IP)).close()  # and it gave the place back


async def test_refusals_from_memory_are_counted_and_the_count_logged_once_a_burst_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("line",), None)
    assert edge.QuietRefusals().filter(record)  # any other answer keeps its line
    token = edge._from_memory.set(True)
    assert not edge.QuietRefusals().filter(record)  # an answer from memory has none
    edge._from_memory.reset(token)

    tally = edge.RefusalTally(interval=0.05)
    with caplog.at_level(logging.WARNING, logger="api.refusals"):
        for _ in range(5):
            tally.count()
        assert not [r for r in caplog.records if r.name == "api.refusals"]  # counted only, for now
        await asyncio.sleep(0.2)  # the burst is over: its count is logged, without waiting for another
        tally.count()
        await asyncio.sleep(0.2)
    summaries = [r.getMessage() for r in caplog.records if r.name == "api.refusals"]
    assert [s.split(" in the last")[0] for s in summaries] == [
        "5 sign-in attempts refused from memory",
        "1 sign-in attempts refused from memory",
    ], summaries
