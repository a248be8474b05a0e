"""Database side of the throttle cleanup: delete expired rows of `request_counts` and `login_throttles`,
pending credentials nobody applied (accounts/pending_credentials.py) once they expired, and the records
of sessions that ended and were not used for `sessions_kept_for` (accounts/customer_sessions.py).

Bounded batches, each its own short transaction, so a cleanup never holds locks on a hot table for
long; the activity heartbeats between batches and stops after `max_batches` (the next run goes on).
Idempotent: a retried run deletes what is still expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity

from accounts import customer_sessions, pending_credentials
from accounts.db import SessionFactory
from accounts.rate_limits import delete_expired_batch


@dataclass
class CleanupRequest:
    retention: timedelta  # login throttles: kept this long after their window ended and lock lifted
    batch_size: int = 1000
    max_batches: int = 100
    # ended sessions' records (device, network prefix) are forgotten this long after their last use; None
    # (runs scheduled before issue 16) keeps them
    sessions_kept_for: timedelta | None = None


@dataclass
class CleanupResult:
    deleted: int
    batches: int


class ThrottleCleanupActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    async def delete_expired_throttles(self, request: CleanupRequest) -> CleanupResult:
        deleted = batches = 0
        while batches < request.max_batches:
            removed = await delete_expired_batch(self._sessions, retention=request.retention, batch=request.batch_size)
            removed += await pending_credentials.delete_expired_batch(self._sessions, batch=request.batch_size)
            if request.sessions_kept_for is not None:
                removed += await customer_sessions.delete_forgotten_batch(
                    self._sessions, kept_for=request.sessions_kept_for, batch=request.batch_size
                )
            batches += 1
            deleted += removed
            activity.heartbeat(deleted)
            if removed < request.batch_size:
                break
        return CleanupResult(deleted, batches)
