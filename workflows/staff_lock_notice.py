"""Staff lock notice: a back-office name was locked by wrong passwords; its member hears of it once.

    the staff sign-in locked the name (api/web/sign_in.py, by the database clock) and the name is an
    enabled member with an email -> one email: when the lock ends, how many failures, and a one-time link
    (/backoffice/unlock) that lets the browser which opens it sign in while the name stays locked

One run per lock: its id `staff-lock-notice:{staff id}:{window}` names the lock, and a start with an id
already used is refused by the server (no history written), so a second try for the same lock starts
nothing. The link is minted by the activity from the send's key, never carried here.

Its other parts: started by `StaffLockNotices.start` (starter/staff_locks.py); activity
`EmailActivities.send_staff_lock_notice` (activities/emails.py); page api/web/unlock.py; email
templates/emails/<locale>/staff_locked.*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.emails import EmailActivities, StaffLockNoticeInput
    from workflows.queues import email_options
    from workflows.registration import ACTIVITY_OPTIONS


def staff_lock_notice_id(staff_id: int, window_ends_at: datetime) -> str:
    """One id per lock: the member and the end of the window whose failures locked the name."""
    return f"staff-lock-notice:{staff_id}:{window_ends_at.strftime('%Y%m%dT%H%M%S.%fZ')}"


@dataclass
class StaffLockNotice:
    staff_id: int
    locked_until: datetime
    failures: int


@workflow.defn
class StaffLockNoticeWorkflow:
    @workflow.run
    async def run(self, notice: StaffLockNotice) -> bool:
        # keyed by the workflow id alone: the id names the lock, and one lock is one email, whatever runs
        key = workflow.info().workflow_id
        return await workflow.execute_activity_method(
            EmailActivities.send_staff_lock_notice,
            StaffLockNoticeInput(notice.staff_id, notice.locked_until, notice.failures, key),
            **ACTIVITY_OPTIONS,
            **email_options(),  # the member may be waiting at the sign-in form for it
        )
