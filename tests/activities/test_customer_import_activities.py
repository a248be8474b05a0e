"""The import's batch activity on its own: a batch retried after its transaction committed (the worker died
before it reported) writes nothing twice and answers as its first attempt did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import csv_bytes, prefix, row, unique_email
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from accounts import import_files
from accounts.models import AuditEvent, Customer
from accounts.passwords import PasswordHasher
from accounts.settings import Settings
from activities.customer_import import BatchInput, CustomerImportActivities, IndexInput


async def test_a_batch_retried_after_its_commit_answers_the_same_and_writes_once(database: Any, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=database.url, var_dir=tmp_path)  # type: ignore[call-arg]
    activities = CustomerImportActivities(
        database.sessions, settings, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    p = prefix()
    rows = [
        row(f"{p}1", unique_email(), registered=""),
        row(f"{p}2", unique_email(), password="plain text Pass 1"),
        row(f"{p}3", unique_email(), salutation="Sir"),
        row(f"{p}4", unique_email(), password="password123"),  # plaintext the policy refuses
    ]
    import_id = import_files.new_import_id()
    sha256 = import_files.store(tmp_path, import_id, csv_bytes(rows))
    env = ActivityEnvironment()
    indexed = await env.run(activities.index_customer_import, IndexInput(import_id, sha256, ",", 10))
    assert (indexed.rows, indexed.batches) == (4, 1)
    batch = BatchInput(import_id, sha256, ",", 0, dry_run=False)
    first = await env.run(activities.import_customer_batch, batch)
    again = await env.run(activities.import_customer_batch, batch)  # the retry of a committed attempt
    assert again == first
    assert (first.created, first.rejected, first.to_verify) == (2, 2, [f"{p}1"])
    assert [(error.line, error.column) for error in first.errors] == [(4, "salutation"), (5, "password")]
    assert "common" in first.errors[1].message
    async with database.sessions() as session:
        count = select(func.count()).select_from(AuditEvent).where(AuditEvent.actor == import_id)
        assert await session.scalar(count) == 2
        hashed = await session.scalar(select(Customer.password_hash).where(Customer.customer_reference == f"{p}2"))
    assert str(hashed).startswith("$argon2id$")
    rejected = import_files.rejected_csv(tmp_path, import_id)
    assert "plain text" not in rejected and "password123" not in rejected  # rejected rows keep no password
    assert "Sir" in import_files.rejected_csv(tmp_path, import_id)


async def test_a_stored_file_that_changed_fails_the_import_for_good(sqlite_database: Any, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_database.url, var_dir=tmp_path)  # type: ignore[call-arg]
    activities = CustomerImportActivities(sqlite_database.sessions, settings, PasswordHasher.from_settings(settings))
    import_id = import_files.new_import_id()
    sha256 = import_files.store(tmp_path, import_id, csv_bytes([row(f"{prefix()}1", unique_email())]))
    import_files.file_path(tmp_path, import_id).write_bytes(csv_bytes([row(f"{prefix()}2", unique_email())]))
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.index_customer_import, IndexInput(import_id, sha256, ",", 10))
    assert refused.value.type == "ImportFileChanged" and refused.value.non_retryable


async def test_a_batch_whose_bytes_changed_after_indexing_fails_the_import_for_good(
    sqlite_database: Any, tmp_path: Path
) -> None:
    """Each batch checks only its own bytes against the SHA-256 indexing took of them (not the whole file
    before every batch), and still refuses a file edited under a running import."""
    settings = Settings(_env_file=None, database_url=sqlite_database.url, var_dir=tmp_path)  # type: ignore[call-arg]
    activities = CustomerImportActivities(sqlite_database.sessions, settings, PasswordHasher.from_settings(settings))
    p = prefix()
    rows = [row(f"{p}{n}", f"{p.lower()}-{n}@example.com") for n in range(1, 5)]
    import_id = import_files.new_import_id()
    sha256 = import_files.store(tmp_path, import_id, csv_bytes(rows))
    env = ActivityEnvironment()
    assert (await env.run(activities.index_customer_import, IndexInput(import_id, sha256, ",", 2))).batches == 2
    path = import_files.file_path(tmp_path, import_id)
    path.write_bytes(path.read_bytes().replace(f"{p.lower()}-4@".encode(), f"{p.lower()}-9@".encode()))
    first = await env.run(activities.import_customer_batch, BatchInput(import_id, sha256, ",", 0, dry_run=False))
    assert first.created == 2  # the first batch's bytes are as indexed
    with pytest.raises(ApplicationError) as refused:
        await env.run(activities.import_customer_batch, BatchInput(import_id, sha256, ",", 1, dry_run=False))
    assert refused.value.type == "ImportFileChanged" and refused.value.non_retryable
