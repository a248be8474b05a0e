"""Expired throttle rows go: the `throttle-cleanup` Schedule (created by the worker) runs a workflow whose
activity deletes them in bounded batches; rows still in use stay. On the dev server: the time-skipping
test server has no schedules."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from conftest import Database, StackFactory
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from accounts.models import Customer, CustomerSession, LoginThrottle, RequestCount, utcnow
from accounts.refresh_tokens import RefreshToken
from accounts.tokens import hash_token
from activities.throttle_cleanup import CleanupRequest, ThrottleCleanupActivities
from starter.schedules import THROTTLE_CLEANUP, ensure_schedules


async def subjects_left(database: Database, prefix: str) -> set[str]:
    async with database.sessions() as session:
        counts = await session.scalars(select(RequestCount.subject).where(RequestCount.subject.startswith(prefix)))
        throttles = await session.scalars(select(LoginThrottle.subject).where(LoginThrottle.subject.startswith(prefix)))
        return set(counts) | set(throttles)


async def some_rows(database: Database, prefix: str) -> None:
    now = utcnow()
    async with database.sessions.begin() as session:
        session.add_all(
            [
                RequestCount(subject=f"{prefix}count-ended", count=3, window_ends_at=now - timedelta(seconds=1)),
                RequestCount(subject=f"{prefix}count-open", count=3, window_ends_at=now + timedelta(hours=1)),
                LoginThrottle(subject=f"{prefix}login-old", attempts=2, window_ends_at=now - timedelta(days=2)),
                # its window ended, but within the retention: a lockout workflow may still write to it
                LoginThrottle(subject=f"{prefix}login-recent", attempts=0, window_ends_at=now - timedelta(minutes=1)),
                LoginThrottle(
                    subject=f"{prefix}login-locked",
                    attempts=9,
                    window_ends_at=now - timedelta(days=2),
                    locked_until=now + timedelta(hours=1),
                ),
            ]
        )


async def test_the_schedule_deletes_expired_rows_and_keeps_live_ones(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    async with stack(dev_server, database, throttle_cleanup_interval=timedelta(seconds=1)) as built:
        await some_rows(database, prefix)
        await ensure_schedules(built.client, built.settings)
        await ensure_schedules(built.client, built.settings)  # a second start of the worker: no error, one schedule
        handle = built.client.get_schedule_handle(THROTTLE_CLEANUP)
        try:
            expected = {f"{prefix}count-open", f"{prefix}login-recent", f"{prefix}login-locked"}
            for _ in range(200):
                if await subjects_left(database, prefix) == expected:
                    break
                await asyncio.sleep(0.1)
            assert await subjects_left(database, prefix) == expected
            described = await handle.describe()
            assert described.info.num_actions >= 1
            assert described.schedule.spec.intervals[0].every == timedelta(seconds=1)
            # a changed setting reaches the existing schedule at the next start
            later = built.settings.model_copy(update={"throttle_cleanup_interval": timedelta(hours=2)})
            await ensure_schedules(built.client, later)
            assert (await handle.describe()).schedule.spec.intervals[0].every == timedelta(hours=2)
        finally:
            await handle.delete()  # the dev server outlives this test: nothing may fire at its task queue later


async def test_one_cleanup_deletes_in_bounded_batches(database: Database) -> None:
    prefix = f"b-{uuid.uuid4().hex[:8]}:"
    now = utcnow()
    async with database.sessions.begin() as session:
        session.add_all(
            RequestCount(subject=f"{prefix}{n}", count=1, window_ends_at=now - timedelta(seconds=1)) for n in range(7)
        )
    cleanup = ThrottleCleanupActivities(database.sessions)
    request = CleanupRequest(retention=timedelta(days=1), batch_size=2, max_batches=2)
    result = await ActivityEnvironment().run(cleanup.delete_expired_throttles, request)
    # two batches of at most two rows per table (request_counts, login_throttles, pending_credentials)
    assert result.batches == 2 and 0 < result.deleted <= 2 * 2 * 3
    while await subjects_left(database, prefix):
        result = await ActivityEnvironment().run(cleanup.delete_expired_throttles, request)
    async with database.sessions() as session:
        expired = await session.scalar(select(func.count()).where(RequestCount.window_ends_at <= utcnow()))
    assert expired == 0


async def test_the_cleanup_forgets_ended_sessions_after_their_time(database: Database) -> None:
    """A session's record (device, network prefix: personal data) goes once it ended and went unused for
    `sessions_kept_for`; a live one and a recent one stay."""
    now = utcnow()
    marker = uuid.uuid4().hex[:8]
    async with database.sessions.begin() as session:
        customer = Customer(
            customer_reference=f"CL-{marker}", email=f"{marker}@example.com", email_key=f"{marker}@example.com",
            locale="en_US", channel="api",
        )  # fmt: skip
        session.add(customer)
        await session.flush()
        families = {name: f"{marker}{name}".ljust(32, "0") for name in ("old", "live", "recent")}
        for name, family in families.items():
            used = now - (timedelta(days=1) if name == "recent" else timedelta(days=100))
            session.add(
                CustomerSession(
                    family_id=family, customer_id=customer.id, device="Firefox on Windows",
                    network_prefix="203.0.113.0/24", created_at=used, last_used_at=used,
                )
            )  # fmt: skip
        session.add(
            RefreshToken(
                customer_id=customer.id, token_hash=hash_token(marker), family_id=families["live"],
                expires_at=now + timedelta(days=1), created_at=now,
            )
        )  # fmt: skip
    cleanup = ThrottleCleanupActivities(database.sessions)
    request = CleanupRequest(retention=timedelta(days=1), sessions_kept_for=timedelta(days=90))
    await ActivityEnvironment().run(cleanup.delete_expired_throttles, request)
    async with database.sessions() as session:
        left = set(
            await session.scalars(select(CustomerSession.family_id).where(CustomerSession.customer_id == customer.id))
        )
    assert left == {families["live"], families["recent"]}
