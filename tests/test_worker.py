"""The worker's composition: its graceful shutdown outlasts any send it lets finish; one worker per task
queue it polls, each with its slots (which must fit the database pool) and the email queues' rates."""

from __future__ import annotations

import logging
import os
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from conftest import ACCOUNTS, CHECKOUT

from accounts.db import DATABASE_TIMEOUT
from accounts.settings import Settings
from accounts.task_queues import KINDS, QueueKind, TaskQueues
from worker import (
    WorkerMisconfigured,
    activity_polls,
    build_worker,
    check_database_capacity,
    graceful_shutdown_timeout,
    warn_of_lost_tasks_at_shutdown,
)
from workflows.lockout import LockoutWindowWorkflow
from workflows.registration import ACTIVITY_OPTIONS
from workflows.staff_lock_notice import StaffLockNoticeWorkflow


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


async def test_one_process_polls_every_queue_by_default_and_a_setting_picks_some(
    time_skipping: Any, sqlite_database: Any
) -> None:
    settings = Settings(_env_file=None, task_queue="shop")  # type: ignore[call-arg]
    everything = build_worker(time_skipping.client, settings, sqlite_database.sessions)
    assert everything.task_queues == ["shop", "shop-signin", "shop-email", "shop-bulk-email"]
    assert [TaskQueues.of(queue).base for queue in everything.task_queues] == ["shop"] * 4
    # (a client refuses a second worker of a queue it polls already: another shop's name)
    picked = Settings(_env_file=None, task_queue="mail", worker_task_queues=["email", "bulk-email"])  # type: ignore[call-arg]
    assert build_worker(time_skipping.client, picked, sqlite_database.sessions).task_queues == [
        "mail-email",
        "mail-bulk-email",
    ]


async def test_each_queue_gets_its_activity_slots_and_the_email_queues_their_rates(
    time_skipping: Any, sqlite_database: Any
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, lifecycle_activity_slots=7, signin_activity_slots=3, email_activity_slots=5,
        bulk_email_activity_slots=1, email_sends_per_second=12.5, bulk_email_sends_per_second=2.0,
        worker_max_cached_workflows=40,
    )  # fmt: skip
    workers = build_worker(time_skipping.client, settings, sqlite_database.sessions)
    config = {kind: workers[kind].config() for kind in KINDS}
    assert {kind: c["max_concurrent_activities"] for kind, c in config.items()} == {
        "lifecycles": 7, "signin": 3, "email": 5, "bulk-email": 1,
    }  # fmt: skip
    assert config["email"]["max_task_queue_activities_per_second"] == 12.5
    assert config["bulk-email"]["max_task_queue_activities_per_second"] == 2.0
    assert config["lifecycles"].get("max_task_queue_activities_per_second") is None
    assert list(config["signin"]["workflows"]) == [LockoutWindowWorkflow, StaffLockNoticeWorkflow]
    # the memory a worker keeps for waiting lifecycles is bounded by the setting, not the SDK's 1,000
    assert {c["max_cached_workflows"] for c in config.values()} == {40}


@pytest.mark.parametrize(
    ("queues", "pool", "overflow", "fits"),
    [
        (list(KINDS), 5, 10, True),  # the defaults: 6 + 2 + 4 + 2 = 14 slots, 15 connections
        (list(KINDS), 5, 8, False),
        (["email", "bulk-email"], 3, 3, True),  # a process of the email queues only needs 6
        (["lifecycles"], 5, 0, False),
    ],
)
def test_a_worker_whose_activity_slots_exceed_its_database_pool_is_refused(
    queues: list[Any], pool: int, overflow: int, fits: bool
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, worker_task_queues=queues, database_pool_size=pool, database_max_overflow=overflow
    )
    if fits:
        check_database_capacity(settings)
        return
    with pytest.raises(WorkerMisconfigured) as refused:
        check_database_capacity(settings)
    assert "ACCOUNTS_DATABASE_POOL_SIZE + ACCOUNTS_DATABASE_MAX_OVERFLOW" in str(refused.value)
    assert "ACCOUNTS_*_ACTIVITY_SLOTS" in str(refused.value)


def test_the_refusal_is_one_line_before_the_worker_connects_anywhere(tmp_path: Any) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
    environment.update(
        PYTHONPATH=CHECKOUT,
        ACCOUNTS_DATABASE_POOL_SIZE="2",
        ACCOUNTS_DATABASE_MAX_OVERFLOW="0",
        ACCOUNTS_TEMPORAL_ADDRESS="127.0.0.1:9",  # nothing answers: the check comes first
        ACCOUNTS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'never.db'}",
    )
    done = subprocess.run(
        [*ACCOUNTS, "worker"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "accounts worker: activity slots 6 (lifecycles) + 2 (signin) + 4 (email) + 2 (bulk-email) = 14 exceed the 2"
        " database connections of ACCOUNTS_DATABASE_POOL_SIZE + ACCOUNTS_DATABASE_MAX_OVERFLOW: raise those or lower"
        " ACCOUNTS_*_ACTIVITY_SLOTS"
    ]
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("slots", range(3, 41))
def test_queues_that_run_their_own_workflows_activities_keep_slots_free_for_eager_starts(slots: int) -> None:
    """A waiting poll holds a slot; an eager start needs two free ones (at 6 slots and 5 polls, measured on
    the dev server, no create or activate started eagerly). The email queues poll with up to 5."""
    own: tuple[QueueKind, ...] = ("lifecycles", "signin")
    for kind in own:
        assert 1 <= activity_polls(kind, slots) <= slots - 2
    emails: tuple[QueueKind, ...] = ("email", "bulk-email")
    for kind in emails:
        assert activity_polls(kind, slots) == min(5, slots)
    assert activity_polls("signin", 1) == activity_polls("email", 1) == 1


async def test_a_server_that_completes_a_stopping_workers_polls_gets_no_warning(
    dev_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every dev server here runs with accounts.temporal.SERVER_DYNAMIC_CONFIG, as docker-compose's does."""
    with caplog.at_level(logging.INFO, logger="accounts.worker"):
        await warn_of_lost_tasks_at_shutdown(dev_server.client)
    assert caplog.records == []


async def test_a_server_that_cuts_a_stopping_workers_polls_is_named_in_one_warning(
    time_skipping: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="accounts.worker"):
        await warn_of_lost_tasks_at_shutdown(time_skipping.client)  # the test server has no such capability
    assert [(r.levelname, "frontend.enableCancelWorkerPollsOnShutdown" in r.getMessage()) for r in caplog.records] == [
        ("WARNING", True)
    ]
