"""Data exports as callers start them (workflows/data_export.py): the customer at most once per
ACCOUNTS_DATA_EXPORT_MIN_INTERVAL (refused before any workflow starts), support whenever asked."""

from __future__ import annotations

import uuid

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from accounts import rate_limits
from accounts.db import SessionFactory
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from starter.errors import DataExportThrottled
from workflows.data_export import DataExportInput, DataExportWorkflow, data_export_id


def budget_subject(customer_reference: str) -> str:
    return f"customer:data-export:{customer_reference}"


class DataExports:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions

    async def request(self, customer_reference: str, *, channel: str, actor: str) -> str:
        """Start an export of the customer's data; returns its id. The customer's own request (channel
        `api`) raises DataExportThrottled within the interval of their last one, starting nothing.

        The interval is a one-request window in `request_counts` (accounts/rate_limits.spend, always the
        database's: it must hold for a day across every API process), counted before the start and given
        back when the start fails."""
        subject = budget_subject(customer_reference)
        if channel == "api":
            budget = rate_limits.Budget(1, self._settings.data_export_min_interval)
            try:
                await rate_limits.spend(self._sessions, subject, budget)
            except rate_limits.OverBudget as refused:
                raise DataExportThrottled(refused.retry_after_seconds) from None
        export_id = uuid.uuid4().hex
        lifetime = self._settings.data_export_expires_after
        try:
            await self._client.start_workflow(
                DataExportWorkflow.run,
                DataExportInput(customer_reference, export_id, channel, actor, lifetime),
                id=data_export_id(customer_reference, export_id),
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Data export of {customer_reference} ({channel})",
                search_attributes=lifecycle_attributes(customer_reference, channel),
            )
        except Exception:
            if channel == "api":
                await rate_limits.give_back(self._sessions, subject)
            raise
        return export_id
