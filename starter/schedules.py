"""Temporal Schedules the system keeps: `throttle-cleanup` (workflows/throttle_cleanup.py) and, while
ACCOUNTS_INACTIVE_REMIND_AFTER is set, `inactivity-sweep` (workflows/inactivity.py).

`ensure_schedules` is idempotent: the worker calls it at every start; an existing schedule is updated to
the current settings (interval, retention), so a changed setting applies after a restart. The sweep's
schedule is deleted at the start of a worker whose settings turned the feature off.
"""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from accounts.settings import Settings
from workflows.inactivity import InactivitySweepWorkflow, SweepInput
from workflows.throttle_cleanup import CleanupRequest, ThrottleCleanupWorkflow

THROTTLE_CLEANUP = "throttle-cleanup"
INACTIVITY_SWEEP = "inactivity-sweep"
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


def inactivity_sweep_schedule(settings: Settings) -> Schedule | None:
    """None while ACCOUNTS_INACTIVE_REMIND_AFTER is unset (the feature is off)."""
    remind, warn, retire = settings.inactive_remind_after, settings.inactive_warn_after, settings.inactive_retire_after
    if remind is None or warn is None or retire is None:
        return None
    return Schedule(
        action=ScheduleActionStartWorkflow(
            InactivitySweepWorkflow.run,
            SweepInput(
                remind,
                warn,
                retire,
                settings.inactive_action,
                settings.inactive_open_order_statuses,
                page_size=settings.inactive_sweep_page_size,
            ),
            id=INACTIVITY_SWEEP,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.inactive_sweep_interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    await _ensure(client, THROTTLE_CLEANUP, throttle_cleanup_schedule(settings))
    sweep = inactivity_sweep_schedule(settings)
    if sweep is not None:
        await _ensure(client, INACTIVITY_SWEEP, sweep)
    else:
        await _delete(client.get_schedule_handle(INACTIVITY_SWEEP))


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("created schedule %s (every %s)", schedule_id, schedule.spec.intervals[0].every)
    except ScheduleAlreadyRunningError:

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(updated)


async def _delete(handle: ScheduleHandle) -> None:
    try:
        await handle.delete()
        log.info("deleted schedule %s (its feature is off)", handle.id)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
