"""A run is findable by customer in the Temporal UI from its start, even while no worker runs it."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import StackFactory, unique_email

from accounts.temporal import CHANNEL, CUSTOMER_REFERENCE
from starter import Registration


async def test_a_registration_started_while_workers_are_down_is_findable_by_customer(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    async with stack(dev_server, sqlite_database) as built:
        assert built.worker is not None
        await built.worker.shutdown()  # workers down: no workflow task runs, nothing is upserted
        registering = asyncio.create_task(
            built.accounts.register(Registration(email=unique_email(), channel="api", locale="en_US"))
        )
        query = f'WorkflowType = "RegistrationWorkflow" AND TaskQueue = "{built.settings.task_queue}"'
        found: list[Any] = []
        for _ in range(100):
            found = [run async for run in built.client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.1)
        await built.restart_worker()  # and once a worker is up, the sign-up it waited for completes
        registered = await asyncio.wait_for(registering, timeout=30)
        assert len(found) == 1
        attributes = found[0].typed_search_attributes
        reference = attributes.get(CUSTOMER_REFERENCE)
        assert reference is not None and found[0].id == f"registration:{reference}"
        assert attributes.get(CHANNEL) == "api"
        by_customer = [run async for run in built.client.list_workflows(f'CustomerReference = "{reference}"')]
        assert [run.id for run in by_customer] == [found[0].id]
        assert registered.customer_reference == reference
