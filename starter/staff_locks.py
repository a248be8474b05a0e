"""Starting a staff lock notice (workflows/staff_lock_notice.py): what the staff sign-in calls when it
locks a member's name."""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from accounts.settings import Settings
from accounts.task_queues import TaskQueues
from workflows.staff_lock_notice import StaffLockNotice, StaffLockNoticeWorkflow, staff_lock_notice_id


class StaffLockNotices:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def start(self, *, staff_id: int, window_ends_at: datetime, locked_until: datetime, failures: int) -> bool:
        """Start the notice of one lock; False when this lock's notice was started before (refused by id,
        running or closed: the server writes no history for it). Raises RPCError when Temporal fails."""
        try:
            await self._client.start_workflow(
                StaffLockNoticeWorkflow.run,
                StaffLockNotice(staff_id, locked_until, failures),
                id=staff_lock_notice_id(staff_id, window_ends_at),
                task_queue=TaskQueues(self._settings.task_queue).signin,  # sign-in throttling's queue
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            return False
        return True
