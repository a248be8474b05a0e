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


def attempt(memory: RefusalMemory, *subjects: str) -> asyncio.Task[Place]:
    """One request's entry, in a context of its own (as each request has)."""
    return asyncio.create_task(asyncio.wait_for(memory.enter(*subjects), timeout=1), context=contextvars.Context())


async def test_an_attempt_that_finds_every_place_taken_is_refused_at_once() -> None:
    memory = RefusalMemory(timedelta(seconds=2), places=2)
    first, second = await attempt(memory, ACCOUNT, IP), await attempt(memory, ACCOUNT, IP)
    # those two hold all the account's window can still admit: a third is refused, it does not wait
    # for them to reach the database (a burst of 200 was answered after the nine admitted had)
    with pytest.raises(Blocked) as refused:
        await attempt(memory, ACCOUNT, IP)
    assert refused.value.subject == ACCOUNT
    assert await attempt(memory, "email:other", IP)  # another account has places of its own
    first.release()
    third = await attempt(memory, ACCOUNT, IP)  # a place given back is free again
    second.release()
    third.release()


async def test_the_same_attempt_entering_again_keeps_its_one_place() -> None:
    memory = RefusalMemory(timedelta(seconds=2), places=1)

    async def one_attempt() -> None:
        edge_place = await memory.enter(ACCOUNT, IP)  # the HTTP edge
        sign_in_place = await memory.enter(ACCOUNT, IP)  # then the sign-in itself: not refused
        assert sign_in_place is edge_place
        sign_in_place.close()
        edge_place.close()

    await asyncio.create_task(one_attempt(), context=contextvars.copy_context())
    (await memory.enter(ACCOUNT, IP)).close()  # and it gave the place back


def test_refusals_from_memory_are_counted_not_logged_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    quiet = edge.QuietRefusals(interval=3600)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("line",), None)
    assert quiet.filter(record)  # any other answer keeps its line

    def refused_from_memory() -> bool:
        edge._from_memory.set(True)
        return quiet.filter(record)

    assert not any(contextvars.copy_context().run(refused_from_memory) for _ in range(5))
    assert not [r for r in caplog.records if r.name == "api.refusals"]  # within the interval: counted only
    quiet._interval = 0
    with caplog.at_level(logging.WARNING, logger="api.refusals"):
        assert not contextvars.copy_context().run(refused_from_memory)
    [summary] = [r.getMessage() for r in caplog.records if r.name == "api.refusals"]
    assert summary.startswith("6 sign-in attempts refused from memory in the last"), summary
