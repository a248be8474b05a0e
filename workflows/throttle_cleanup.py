"""Throttle cleanup: one run of the `throttle-cleanup` Schedule deletes the expired counter rows.

    delete_expired_throttles (bounded batches) -> how many rows went

The Schedule (starter/schedules.py, created by the worker at start) runs it every
ACCOUNTS_THROTTLE_CLEANUP_INTERVAL and skips a run while the previous one is still going; without
it, `request_counts` and `login_throttles` would keep one row per client, address and account ever seen
(and `pending_credentials` the hashes of abandoned sign-ups, resets and changes).

Its other parts: activity `ThrottleCleanupActivities.delete_expired_throttles`
(activities/throttle_cleanup.py), which calls `accounts.rate_limits.delete_expired_batch`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.throttle_cleanup import CleanupRequest, CleanupResult, ThrottleCleanupActivities

__all__ = ["CleanupRequest", "CleanupResult", "ThrottleCleanupWorkflow"]


@workflow.defn
class ThrottleCleanupWorkflow:
    @workflow.run
    async def run(self, request: CleanupRequest) -> CleanupResult:
        return await workflow.execute_activity_method(
            ThrottleCleanupActivities.delete_expired_throttles,
            request,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            # a database outage: the next scheduled run tries again anyway
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5),
        )
