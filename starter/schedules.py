"""Temporal Schedules the system keeps: `throttle-cleanup` (workflows/throttle_cleanup.py).

`ensure_schedules` is idempotent: the worker calls it at every start; an existing schedule is updated to
the current settings (interval, retention), so a changed setting applies after a restart.
"""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from accounts.settings import Settings
from workflows.throttle_cleanup import CleanupRequest, ThrottleCleanupWorkflow

THROTTLE_CLEANUP = "throttle-cleanup"
log = logging.getLogger("accounts.schedules")


def throttle_cleanup_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ThrottleCleanupWorkflow.run,
            # a device stays "seen" (no new-device email) as long as its device token would live
            CleanupRequest(retention=settings.throttle_retention, sessions_kept_for=settings.device_token_lifetime),
            id=THROTTLE_CLEANUP,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.throttle_cleanup_interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    schedule = throttle_cleanup_schedule(settings)
    try:
        await client.create_schedule(THROTTLE_CLEANUP, schedule)
        log.info("created schedule %s (every %s)", THROTTLE_CLEANUP, settings.throttle_cleanup_interval)
    except ScheduleAlreadyRunningError:

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(THROTTLE_CLEANUP).update(updated)
