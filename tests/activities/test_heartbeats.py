"""activities/heartbeats.py: an activity heartbeats only while it runs long; `heartbeating` lets the
activity's cancellation reach the work, `kept_alive` (the email sends) runs the work to its end."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.activity import _Definition
from temporalio.testing import ActivityEnvironment

from activities.emails import EmailActivities, NoticeInput
from activities.heartbeats import KEEP_ALIVE_SECONDS, heartbeating, kept_alive
from workflows.queues import EMAIL_HEARTBEAT_TIMEOUT


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
    assert 2 <= seen <= 6 and len(beats) == seen and set(beats) == {()}  # 5 on an idle machine


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


async def test_a_kept_alive_send_runs_to_its_end_when_its_activity_is_cancelled() -> None:
    """As before sends heartbeated: a handover under way is finished and marked, never cut."""
    beats: list[tuple[object, ...]] = []
    env = environment(beats)

    @kept_alive
    async def send() -> str:
        await asyncio.sleep(0.3)
        return "sent"

    running = asyncio.create_task(env.run(send))
    await asyncio.sleep(0.05)
    env.cancel()
    assert await running == "sent"


def test_the_sends_beat_well_inside_their_heartbeat_timeout() -> None:
    # the first beat must come well before the timeout; the SDK then sends one per 0.8 x the timeout
    assert KEEP_ALIVE_SECONDS * 2 <= EMAIL_HEARTBEAT_TIMEOUT.total_seconds()


def test_a_kept_alive_activity_keeps_its_signature_for_the_sdk() -> None:
    definition = _Definition.must_from_callable(EmailActivities.send_notice)
    assert (definition.name, definition.arg_types, definition.ret_type) == ("send_notice", [NoticeInput], bool)
