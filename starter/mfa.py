"""The MFA lifecycles as callers start them (workflows/mfa.py): a code's email, an activation's deadline."""

from __future__ import annotations

import uuid
from datetime import datetime

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from workflows.mfa import (
    MfaActivatedInput,
    MfaActivatedWorkflow,
    MfaActivationInput,
    MfaActivationWorkflow,
    MfaCodeRequest,
    MfaCodeWorkflow,
    MfaRemovedInput,
    MfaRemovedWorkflow,
)


def code_workflow_id(customer_reference: str, code_id: int) -> str:
    return f"mfa-code:{customer_reference}:{code_id}"


def activation_workflow_id(customer_reference: str, kind: str) -> str:
    return f"mfa-activation:{customer_reference}:{kind}"


class MfaLifecycles:
    def __init__(self, client: Client, settings: Settings, *, activation_history_limit: int = 1000) -> None:
        self._client = client
        self._settings = settings
        self._activation_history_limit = activation_history_limit  # a test's small one stands in for months

    async def send_code(self, customer_reference: str, code_id: int, *, channel: str = "api") -> None:
        """Email the code of this row (the row id is all the workflow carries)."""
        await self._client.start_workflow(
            MfaCodeWorkflow.run,
            MfaCodeRequest(customer_reference, code_id),
            id=code_workflow_id(customer_reference, code_id),
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # a retried request sends once
            static_summary=f"MFA code for {customer_reference}",
            search_attributes=lifecycle_attributes(customer_reference, channel),
        )

    async def activation_started(
        self, customer_reference: str, kind: str, expires_at: datetime, *, channel: str = "api"
    ) -> None:
        """The activation's deadline: a new run, or the running one (which finds the later deadline itself)."""
        await self._client.start_workflow(
            MfaActivationWorkflow.run,
            MfaActivationInput(customer_reference, kind, expires_at, self._activation_history_limit),
            id=activation_workflow_id(customer_reference, kind),
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"MFA activation ({kind}) of {customer_reference}",
            search_attributes=lifecycle_attributes(customer_reference, channel),
        )

    async def removed_by_support(self, customer_reference: str, removed: list[str]) -> str:
        """Tell the customer (workflows/mfa.py MfaRemoved); returns the run's id."""
        workflow_id = f"mfa-removed:{customer_reference}:{uuid.uuid4().hex[:12]}"
        await self._client.start_workflow(
            MfaRemovedWorkflow.run,
            MfaRemovedInput(customer_reference, removed),
            id=workflow_id,
            task_queue=self._settings.task_queue,
            static_summary=f"MFA removed from {customer_reference}",
            search_attributes=lifecycle_attributes(customer_reference, "backoffice"),
        )
        return workflow_id

    async def activated(self, customer_reference: str, kind: str, *, channel: str = "api") -> str:
        """Tell the customer a method became active (workflows/mfa.py MfaActivated); returns the run's id."""
        workflow_id = f"mfa-activated:{customer_reference}:{uuid.uuid4().hex[:12]}"
        await self._client.start_workflow(
            MfaActivatedWorkflow.run,
            MfaActivatedInput(customer_reference, kind),
            id=workflow_id,
            task_queue=self._settings.task_queue,
            static_summary=f"MFA ({kind}) activated for {customer_reference}",
            search_attributes=lifecycle_attributes(customer_reference, channel),
        )
        return workflow_id
