"""The agent assistance lifecycle (workflows/assist.py) on the time-skipping server: each step recorded, the
cap on recorded actions, expiry after ACCOUNTS_AGENT_IMPERSONATION_TTL, payloads free of personal data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, decoded_payload_texts
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from test_lockout_workflow import verified_customer

from accounts.models import AgentAssist, AuditEvent
from accounts.staff import StaffDirectory
from starter.assists import AssistNotRunning, ImpersonationRefused
from workflows.assist import AssistAction, AssistWorkflow, assist_id


@pytest.fixture
def assist_stack(stack: StackFactory, time_skipping: Any, database: Database) -> Any:
    return stack(time_skipping, database, agent_assist_max_actions=2)


async def started(stack: Stack) -> tuple[str, str, Any]:
    email, reference = await verified_customer(stack)
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    agent, _ = await directory.create(f"agnes-{reference}", "agent")
    session = await stack.accounts.assists.begin(agent, reference)
    handle = stack.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, session.assist_id))
    return email, reference, handle


async def trail(stack: Stack, reference: str) -> list[tuple[str, str, str]]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.customer_reference == reference).order_by(AuditEvent.id)
        )
        return [(e.event, e.actor, e.details.get("route") or e.details.get("reason", "")) for e in rows]


async def test_a_session_records_each_action_up_to_its_cap_and_expires(assist_stack: Any) -> None:
    async with assist_stack as stack:
        email, reference, handle = await started(stack)
        assert "customer support" in (await stack.mail_to(email, "customer support")).subject
        for route in ("/customers/{customer_reference}", "/carts"):
            assert await handle.execute_update(AssistWorkflow.record_action, AssistAction("PATCH", route))
        with pytest.raises(WorkflowUpdateFailedError):  # the cap: refused in the validator, no history
            await handle.execute_update(AssistWorkflow.record_action, AssistAction("PATCH", "/carts"))
        await stack.env.sleep(stack.settings.agent_impersonation_ttl + timedelta(seconds=1))
        status = await handle.result()
        assert status.ended == "expired"
        assert status.actions == ["PATCH /customers/{customer_reference}", "PATCH /carts"]
        agent = f"agent:agnes-{reference}"
        assert [(event, actor) for event, actor, _ in await trail(stack, reference) if actor == agent] == [
            ("assist_started", agent),
            ("assist_action", agent),
            ("assist_action", agent),
            ("assist_ended", agent),
        ]
        async with stack.database.sessions() as session:
            row = await session.scalar(select(AgentAssist).where(AgentAssist.customer_reference == reference))
        assert row is not None and row.ended_reason == "expired" and row.ended_at is not None
        # the history names ids and routes, never the customer's address or the agent's name
        texts = "\n".join(await decoded_payload_texts(stack.client, await handle.fetch_history()))
        assert email not in texts and "agnes" not in texts


async def test_an_end_returns_once_the_row_is_closed_and_unknown_customers_are_refused(assist_stack: Any) -> None:
    async with assist_stack as stack:
        _, reference, handle = await started(stack)
        session_id = handle.id.rsplit(":", 1)[1]
        ended = await stack.accounts.assists.end(reference, session_id, reason="ended_by_admin", ended_by="ada")
        assert ended
        async with stack.database.sessions() as session:  # no waiting: closed before the update answered
            row = await session.scalar(select(AgentAssist).where(AgentAssist.id == session_id))
        assert row is not None and row.ended_reason == "ended_by_admin"
        assert (await handle.result()).ended == "ended_by_admin"
        with pytest.raises(AssistNotRunning):  # the back office answers "no running session"
            await stack.accounts.assists.end(reference, session_id, reason="ended_by_admin", ended_by="ada")
        with pytest.raises(RPCError):  # an ended session records nothing more (its run is closed)
            await handle.execute_update(AssistWorkflow.record_action, AssistAction("PATCH", "/carts"))
        directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
        other, _ = await directory.create(f"otto-{reference}", "agent")
        with pytest.raises(ImpersonationRefused):
            await stack.accounts.assists.begin(other, "DE--no-such-customer")
