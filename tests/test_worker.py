"""The worker's composition: its graceful shutdown outlasts any send it lets finish."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from accounts.db import DATABASE_TIMEOUT
from accounts.settings import Settings
from accounts.task_queues import KINDS
from worker import build_worker, graceful_shutdown_timeout
from workflows.registration import ACTIVITY_OPTIONS


@pytest.mark.parametrize("smtp_timeout", [30.0, 5.0, 120.0])
def test_shutdown_waits_longer_than_an_smtp_handover_and_the_database_step_after_it(smtp_timeout: float) -> None:
    settings = Settings(_env_file=None, smtp_timeout=smtp_timeout)  # type: ignore[call-arg]

    assert graceful_shutdown_timeout(settings) > timedelta(seconds=smtp_timeout + DATABASE_TIMEOUT)


def test_an_activity_attempt_may_take_longer_than_a_default_send() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert ACTIVITY_OPTIONS["start_to_close_timeout"] > timedelta(seconds=settings.smtp_timeout + DATABASE_TIMEOUT)
    assert ACTIVITY_OPTIONS["retry_policy"].maximum_interval <= timedelta(seconds=30)  # mail soon after an outage


async def test_the_worker_is_built_with_that_shutdown(time_skipping: Any, sqlite_database: Any) -> None:
    settings = Settings(_env_file=None, smtp_timeout=45.0)  # type: ignore[call-arg]
    workers = build_worker(time_skipping.client, settings, sqlite_database.sessions, task_queue="unused")

    for kind in KINDS:
        assert workers[kind].config()["graceful_shutdown_timeout"] == graceful_shutdown_timeout(settings)
        assert workers[kind].config()["graceful_shutdown_timeout"] > timedelta(seconds=45)
