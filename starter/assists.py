"""Agent assistance (workflows/assist.py): start a session, record its actions, end it, list the running ones.

`begin` writes the session's row (the token's `sid` must name a live row before the token leaves) and
starts `assist:{ref}:{id}`; a start Temporal refuses closes the row again, so no token lives without its
lifecycle. `end` waits for the workflow's update, which returns once the row is closed: when it returns,
the token is refused. `record_action` runs after the answer was sent (api/routes/agents.py); a refused or
failed record is logged, the change itself is audited by its request (accounts/audit.py) either way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from accounts import assists
from accounts.db import SessionFactory
from accounts.models import AgentAssist, Customer, utcnow
from accounts.settings import Settings
from accounts.staff import StaffMember
from accounts.temporal import lifecycle_attributes
from starter.errors import AccountsError
from workflows.assist import AssistAction, AssistEnd, AssistInput, AssistWorkflow, assist_id

log = logging.getLogger("accounts.assists")


class ImpersonationRefused(AccountsError):
    """Unknown, anonymized or unverified customer: Glue's 401 `4104` whichever it was."""


class AssistNotRunning(AccountsError):
    """No running assistance session with this id for this customer."""


@dataclass(frozen=True)
class Impersonation:
    assist_id: str
    customer_reference: str
    token_version: int
    agent: str
    expires_at: datetime


class Assists:
    def __init__(self, client: Client, settings: Settings, sessions: SessionFactory) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions

    async def begin(self, agent: StaffMember, customer_reference: str) -> Impersonation:
        """A new assistance session of `agent` for the customer; raises ImpersonationRefused.

        While the agent has one running for this customer, a new token joins it (same session, same end):
        asking again and again starts no second workflow and emails the customer no second time."""
        now = utcnow()
        session_id = uuid.uuid4().hex
        expires_at = now + self._settings.agent_impersonation_ttl
        async with self._sessions.begin() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == customer_reference))
            if customer is None or customer.status != "verified":
                raise ImpersonationRefused(customer_reference)
            running = next(
                (row for row in await assists.live_assists(session, customer.id, now) if row.staff_id == agent.id), None
            )
            if running is not None:
                return Impersonation(
                    running.id, customer_reference, customer.token_version, agent.name, running.expires_at
                )
            session.add(
                AgentAssist(
                    id=session_id,
                    customer_id=customer.id,
                    customer_reference=customer.customer_reference,
                    staff_id=agent.id,
                    agent=agent.name,
                    started_at=now,
                    expires_at=expires_at,
                )
            )
            token_version = customer.token_version
        try:
            await self._client.start_workflow(
                AssistWorkflow.run,
                AssistInput(
                    session_id,
                    customer_reference,
                    expires_at,
                    notify_customer=self._settings.agent_assist_notify_customer,
                    max_actions=self._settings.agent_assist_max_actions,
                ),
                id=assist_id(customer_reference, session_id),
                task_queue=self._settings.task_queue,
                static_summary=f"Agent assistance for {customer_reference}",
                search_attributes=lifecycle_attributes(customer_reference, "agent"),
            )
        except BaseException:
            async with self._sessions.begin() as session:
                await assists.close(session, session_id, reason="not_started", now=utcnow())
            raise
        return Impersonation(session_id, customer_reference, token_version, agent.name, expires_at)

    async def record_action(
        self, customer_reference: str, session_id: str, method: str, route: str, *, timeout: float
    ) -> None:
        """The session's workflow records the change (and audits it). When it cannot (past its
        ACCOUNTS_AGENT_ASSIST_MAX_ACTIONS, Temporal down or slow, the run gone), the change is audited here
        all the same: every change made with an impersonation token is in the customer's audit trail (an
        update that timed out but went through after all is audited twice, never not at all)."""
        handle = self._client.get_workflow_handle_for(AssistWorkflow.run, assist_id(customer_reference, session_id))
        try:
            await asyncio.wait_for(
                handle.execute_update(AssistWorkflow.record_action, AssistAction(method, route)), timeout
            )
            return
        except (RPCError, WorkflowUpdateFailedError, RuntimeError, TimeoutError) as error:
            log.warning("assist action of %s not recorded by its run: %s", customer_reference, type(error).__name__)
        async with self._sessions.begin() as session:
            row = await session.get(AgentAssist, session_id)
            if row is None:  # the customer was deleted meanwhile (the row went with them)
                return
            assists.record_for(session, row, "assist_action", {"method": method, "route": route})

    async def end(self, customer_reference: str, session_id: str, *, reason: str, ended_by: str) -> bool:
        """End the session; returns once its token is refused. False when it had ended before; raises
        AssistNotRunning when no run of it is running (it expired, or never was). A row whose run is gone
        (terminated by an operator) is closed here, so the token dies all the same."""
        handle = self._client.get_workflow_handle_for(AssistWorkflow.run, assist_id(customer_reference, session_id))
        try:
            return await handle.execute_update(AssistWorkflow.end, AssistEnd(reason, ended_by))
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        except WorkflowUpdateFailedError:  # the run completed before the update reached it
            pass
        async with self._sessions.begin() as session:  # a run that completed closed its row: this finds none
            row = await session.get(AgentAssist, session_id)
            if row is not None and await assists.close(session, session_id, reason=reason, now=utcnow()):
                log.warning("assistance session of %s ended without its run", customer_reference)
                assists.record_for(session, row, "assist_ended", {"reason": reason, "ended_by": ended_by})
                return True
        raise AssistNotRunning(session_id)

    async def running(self, customer_id: int) -> list[AgentAssist]:
        async with self._sessions() as session:
            return await assists.live_assists(session, customer_id, utcnow())
