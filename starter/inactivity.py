"""Inactive accounts for every entry point: tell a customer's running inactivity lifecycle that it ends.

Both messages go only where the customer's standing says a lifecycle runs (accounts/inactivity.RUNNING),
so a sign-in of an active customer never reaches Temporal. A signal that fails is logged: the lifecycle's
next step re-checks the database and ends there (workflows/inactivity.py).
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.inactivity import inactivity_id
from workflows.inactivity import InactivityWorkflow

log = logging.getLogger("accounts.inactivity")


class InactivityLifecycles:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def signed_in(self, customer_reference: str) -> None:
        await self._tell(customer_reference, exempted=False)

    async def exempted(self, customer_reference: str) -> None:
        await self._tell(customer_reference, exempted=True)

    async def _tell(self, customer_reference: str, *, exempted: bool) -> None:
        handle = self._client.get_workflow_handle_for(InactivityWorkflow.run, inactivity_id(customer_reference))
        try:
            await handle.signal(InactivityWorkflow.exempted if exempted else InactivityWorkflow.signed_in)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # closed already: nothing to end
                log.warning("inactivity of %s not told: %s", customer_reference, type(error).__name__)
        except RuntimeError as error:  # the client could not connect at all
            log.warning("inactivity of %s not told: %s", customer_reference, type(error).__name__)
