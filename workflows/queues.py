"""Which task queue a workflow's email goes to (accounts/task_queues.py names them), and its heartbeat timeout.

Emails somebody is waiting for (the link they just asked for, the answer to what they just did) go to
the email queue; emails that come in bursts and that nobody waits for right now (an import's
verification and set-password links, reminders, lock and "already registered" notices) go to the bulk
email queue. Both queues are rate-bounded (Temporal's task-queue rate limit, set by the worker), each on
its own, so 5,000 import emails wait in their own queue and never ahead of a verification link.

Runs recorded before the split scheduled their emails on their own task queue: `workflow.patched`
keeps them replaying that way. Its answer holds for the whole run, so a run that had sent an email
before the upgrade keeps sending its emails to its own queue (the lifecycles' worker serves them, without
a rate limit) until it ends or continues as new; a run that had not yet sent one uses the email queues.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from accounts.task_queues import TaskQueues

EMAIL_QUEUES_PATCH = "email-task-queues"
EMAIL_HEARTBEAT_TIMEOUT = timedelta(seconds=10)  # above activities/heartbeats.py KEEP_ALIVE_SECONDS
BULK_CHANNELS = ("import",)  # a lifecycle started by this channel sends its first emails in bulk


def email_options(*, bulk: bool = False, split: bool = False) -> dict[str, Any]:
    """The options an email activity takes beside ACTIVITY_OPTIONS: `**email_options(bulk=...)`.

    Its task queue, and a heartbeat timeout: the sends heartbeat while they run (activities/heartbeats.py),
    so one lost with its worker is retried after EMAIL_HEARTBEAT_TIMEOUT rather than its 90 s attempt.
    `split=True`: the run knows it started after the split (its input says so: workflows/registration.py's
    `revision`), so no patch marker is recorded; otherwise the patch answers. (Options are not replayed:
    the heartbeat timeout needs no patch.)"""
    options: dict[str, Any] = {"heartbeat_timeout": EMAIL_HEARTBEAT_TIMEOUT}
    if split or workflow.patched(EMAIL_QUEUES_PATCH):
        queues = TaskQueues.of(workflow.info().task_queue)
        options["task_queue"] = queues.bulk_email if bulk else queues.email
    return options
