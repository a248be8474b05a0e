"""activities/heartbeats.py: a kept-alive activity heartbeats only while it runs long, and its
cancellation still reaches the work."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.testing import ActivityEnvironment

from activities.heartbeats import heartbeating


def environment(beats: list[tuple[object, ...]]) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    return env


async def test_work_that_ends_before_the_first_interval_sends_no_heartbeat() -> None:
    beats: list[tuple[object, ...]] = []

    async def send() -> str:
        return await heartbeating(asyncio.sleep(0.01, "sent"), every=0.2)

    assert await environment(beats).run(send) == "sent"
    await asyncio.sleep(0.3)  # the beat was stopped with the work, not merely not yet due
    assert beats == []


async def test_long_work_heartbeats_each_interval_and_stops_when_it_ends() -> None:
    beats: list[tuple[object, ...]] = []

    async def send() -> str:
        return await heartbeating(asyncio.sleep(0.55, "sent"), every=0.1)

    assert await environment(beats).run(send) == "sent"
    seen = len(beats)
    await asyncio.sleep(0.3)
    assert 4 <= seen <= 6 and len(beats) == seen and set(beats) == {()}


async def test_the_activitys_cancellation_reaches_the_work_and_ends_the_beat() -> None:
    beats: list[tuple[object, ...]] = []
    reached: list[str] = []
    env = environment(beats)

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            reached.append("work")
            raise

    async def send() -> None:
        await heartbeating(work(), every=0.05)

    running = asyncio.create_task(env.run(send))
    await asyncio.sleep(0.2)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    seen = len(beats)
    await asyncio.sleep(0.2)
    assert reached == ["work"] and seen >= 2 and len(beats) == seen
