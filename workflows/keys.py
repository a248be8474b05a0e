"""Idempotency keys of lifecycle steps (email outbox, audit rows, one-time tokens): one rule for all.

A workflow id is reused: `lockout:{ref}` runs again at the next attack, `password-reset:{ref}` at the
next forgotten password. A key built from the id alone collides with the previous run's rows, and the
step is silently skipped as "already done". So every key starts with the id and the run id of the
lifecycle's first execution, which continue-as-new keeps (counters carried in the state stay unique).
"""

from __future__ import annotations

from temporalio import workflow


def lifecycle_key() -> str:
    """`{workflow id}/{first run id}`: unique per lifecycle instance, stable across continue-as-new."""
    info = workflow.info()
    return f"{info.workflow_id}/{info.first_execution_run_id}"
