"""Where a customer is signed in (accounts/customer_sessions.py): the new-device alert's start, and the
customer's own list and end of their sessions.

The alert starts after the sign-in's answer (a background task of the route), so a sign-in waits for no
round trip to Temporal; a start that fails is logged and the sign-in stands, as a rehash's does.
"""

from __future__ import annotations

import logging
from datetime import datetime

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from accounts import customer_sessions
from accounts.db import SessionFactory
from accounts.models import CustomerSession
from accounts.settings import Settings
from accounts.temporal import lifecycle_attributes
from workflows.new_device import NewDeviceAlert, NewDeviceAlertWorkflow, new_device_alert_id

log = logging.getLogger("accounts.sessions")


class CustomerSessions:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions

    async def alert_new_device(self, customer_reference: str, session_id: str, signed_in_at: datetime) -> None:
        """Email the customer about a sign-in from a new device (once per sign-in: the id names it)."""
        if not self._settings.new_device_alerts:
            return
        try:
            await self._client.start_workflow(
                NewDeviceAlertWorkflow.run,
                NewDeviceAlert(customer_reference, session_id, signed_in_at),
                id=new_device_alert_id(customer_reference, session_id),
                task_queue=self._settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=lifecycle_attributes(customer_reference),
            )
        except (RPCError, RuntimeError) as error:  # RuntimeError: the client could not connect at all
            log.warning("new-device alert for %s not started: %s", customer_reference, type(error).__name__)

    async def live(self, customer_id: int) -> list[CustomerSession]:
        async with self._sessions() as session:
            return await customer_sessions.live_sessions(session, customer_id)

    async def end(self, customer_id: int, session_id: str) -> bool:
        """End one of the customer's live sessions; False when it is none of theirs (or over already)."""
        async with self._sessions.begin() as session:
            return await customer_sessions.end(session, customer_id, session_id)

    async def not_me_link_locale(self, link_token: str) -> str | None:
        """The language of a live "this wasn't me" link's customer (its page speaks it); None for a dead link."""
        customer = await customer_sessions.not_me_link_customer(self._sessions, link_token)
        return customer.locale if customer is not None else None

    async def end_everywhere(self, link_token: str) -> bool:
        """The new-device email's link, used once: every session of its customer ends. False for a dead link."""
        return await customer_sessions.redeem_not_me_link(self._sessions, link_token) is not None
