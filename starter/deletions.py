"""Account deletion for every entry point: start (or join) the anonymization and wait until the data is gone."""

from __future__ import annotations

from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from accounts.db import SessionFactory
from accounts.models import Customer
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from starter.errors import RegistrationNotFound
from workflows.anonymization import AnonymizationInput, AnonymizationWorkflow, anonymization_id


class Deletions:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions

    async def delete(self, customer_reference: str, *, channel: str, actor: str) -> None:
        """Returns once the customer is anonymized (the confirmation email went out before). Nothing
        happens for an account anonymized before; raises RegistrationNotFound for an unknown reference."""
        async with self._sessions() as session:
            anonymized_at = (
                await session.execute(
                    select(Customer.anonymized_at).where(Customer.customer_reference == customer_reference)
                )
            ).one_or_none()
        if anonymized_at is None:
            raise RegistrationNotFound(customer_reference)
        if anonymized_at[0] is not None:
            return
        start = WithStartWorkflowOperation(
            AnonymizationWorkflow.run,
            AnonymizationInput(customer_reference, channel, actor),
            id=anonymization_id(customer_reference),
            task_queue=self._settings.task_queue,
            # a second request while the first runs joins it instead of failing or starting over
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"Anonymization of {customer_reference} ({channel})",
            search_attributes=lifecycle_attributes(customer_reference, channel),
        )
        await self._client.execute_update_with_start_workflow(
            AnonymizationWorkflow.anonymized, start_workflow_operation=start
        )
