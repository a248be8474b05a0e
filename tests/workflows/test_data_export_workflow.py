"""The data export's lifecycle on the time-skipping server with the real worker, database and SMTP sink:
the archive is stored, the link emailed (it carries no secret), and at the expiry the archive is deleted
and audited; the customer's own second request within the interval starts nothing. Both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, decoded_payload_texts
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from test_email_change_workflow import events
from test_lockout_workflow import verified_customer

from accounts import data_exports
from accounts.models import DataExport
from starter.errors import DataExportThrottled
from workflows.data_export import data_export_id

LIFETIME = timedelta(days=7)


@pytest.fixture
def export_stack(stack: StackFactory, time_skipping: Any, database: Database) -> Any:
    return stack(
        time_skipping, database, data_export_expires_after=LIFETIME, data_export_min_interval=timedelta(days=1)
    )


async def stored(stack: Stack, export_id: str) -> DataExport | None:
    async with stack.database.sessions() as session:
        return await session.scalar(select(DataExport).where(DataExport.id == export_id))


async def test_the_archive_is_mailed_and_deleted_at_its_expiry(export_stack: Any) -> None:
    async with export_stack as stack:
        email, reference = await verified_customer(stack)
        export_id = await stack.accounts.data_exports.request(reference, channel="api", actor="customer")
        message = await stack.mail_to(email, "ready to download")
        link = f"{stack.settings.public_url}/customers/{reference}/data-exports/{export_id}"
        assert link in message.text and "token=" not in message.text  # the sign-in opens it, not the link
        row = await stored(stack, export_id)
        assert row is not None and row.status == data_exports.READY and row.archive_encrypted is not None
        assert row.expires_at - row.requested_at == LIFETIME

        handle = stack.client.get_workflow_handle(data_export_id(reference, export_id))
        await stack.env.sleep(LIFETIME - timedelta(hours=1))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (await stored(stack, export_id)).archive_encrypted is not None  # type: ignore[union-attr]
        await stack.env.sleep(timedelta(hours=1, seconds=1))
        assert await handle.result() is True
        row = await stored(stack, export_id)
        assert row is not None and row.archive_encrypted is None and row.status == data_exports.EXPIRED
        [requested] = await events(stack, reference, data_exports.REQUESTED)
        assert (requested.channel, requested.actor, requested.details["exportId"]) == ("api", "customer", export_id)
        assert len(await events(stack, reference, data_exports.DELETED)) == 1
        # the history carries the reference and the export's id: no address, no name, no archive
        texts = await decoded_payload_texts(stack.client, await handle.fetch_history())
        assert texts and not any(email in text or "Eve" in text for text in texts)


async def test_a_second_request_within_the_interval_starts_nothing_and_support_is_not_limited(
    export_stack: Any,
) -> None:
    async with export_stack as stack:
        _, reference = await verified_customer(stack)
        first = await stack.accounts.data_exports.request(reference, channel="api", actor="customer")
        with pytest.raises(DataExportThrottled) as refused:
            await stack.accounts.data_exports.request(reference, channel="api", actor="customer")
        assert 86_000 < refused.value.retry_after_seconds <= 86_400
        by_support = await stack.accounts.data_exports.request(reference, channel="backoffice", actor="alice")
        for export_id in (first, by_support):
            assert await stack.client.get_workflow_handle(data_export_id(reference, export_id)).describe()
        await stack.env.sleep(LIFETIME)
        requested = {
            e.details["exportId"]: (e.channel, e.actor) for e in await events(stack, reference, data_exports.REQUESTED)
        }
        assert requested == {first: ("api", "customer"), by_support: ("backoffice", "alice")}  # the refused: none
