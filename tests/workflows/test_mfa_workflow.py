"""MFA lifecycles on the time-skipping server with real activities: an activation nobody verified expires
(and is audited), a verified one stays, one started again for months continues as new; an emailed code's
history holds no code. Both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, decoded_payload_texts
from sqlalchemy import select, update
from temporalio.client import WorkflowExecutionStatus
from test_email_change_workflow import customer
from test_lockout_workflow import verified_customer

from accounts import mfa
from accounts.models import AuditEvent, MfaMethod
from starter.mfa import MfaLifecycles, activation_workflow_id, code_workflow_id


@pytest.fixture
def mfa_stack(stack: StackFactory, time_skipping: Any, database: Database) -> Any:
    return stack(time_skipping, database, mfa_activation_expires_after=timedelta(hours=1))


async def started(stack: Stack) -> tuple[str, str, mfa.EmailActivation, str]:
    """An email activation begun as the API begins it: code emailed, deadline running. Returns the code."""
    email, reference = await verified_customer(stack)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    activation = await mfa.start_email_activation(stack.database.sessions, policy, await customer(stack, reference))
    assert activation.code_id is not None
    await stack.accounts.mfa.send_code(reference, activation.code_id)
    await stack.accounts.mfa.activation_started(reference, mfa.EMAIL, activation.expires_at)
    message = await stack.mail_to(email, "security code")
    found = re.search(r"\b(\d{6})\b", message.text)
    assert found
    return email, reference, activation, found.group(1)


async def method(stack: Stack, reference: str) -> MfaMethod | None:
    row = await customer(stack, reference)
    async with stack.database.sessions() as session:
        return await session.scalar(select(MfaMethod).where(MfaMethod.customer_id == row.id))


async def test_an_activation_nobody_verified_expires(mfa_stack: Any) -> None:
    async with mfa_stack as stack:
        _, reference, activation, code = await started(stack)
        handle = stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL))
        await stack.env.sleep(timedelta(hours=1, seconds=1))
        assert await handle.result() is True
        assert await method(stack, reference) is None
        async with stack.database.sessions() as session:
            expired = await session.scalar(
                select(AuditEvent).where(
                    AuditEvent.customer_reference == reference, AuditEvent.event == "mfa_activation_expired"
                )
            )
        assert expired is not None and expired.details == {"type": "email"}
        policy = mfa.MfaPolicy.from_settings(stack.settings)
        with pytest.raises(mfa.MfaRefused):
            await mfa.verify_activation(
                stack.database.sessions, policy, await customer(stack, reference), mfa.EMAIL, code
            )
        # the code's own run carried the row id, never the code
        code_run = stack.client.get_workflow_handle(code_workflow_id(reference, activation.code_id or 0))
        texts = await decoded_payload_texts(stack.client, await code_run.fetch_history())
        assert texts and not any(code in text for text in texts)


async def test_a_verified_activation_outlives_its_deadline(mfa_stack: Any) -> None:
    async with mfa_stack as stack:
        _, reference, _, code = await started(stack)
        policy = mfa.MfaPolicy.from_settings(stack.settings)
        row = await customer(stack, reference)
        assert await mfa.verify_activation(stack.database.sessions, policy, row, mfa.EMAIL, code)
        handle = stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL))
        await stack.env.sleep(timedelta(hours=1, seconds=1))
        assert await handle.result() is False
        found = await method(stack, reference)
        assert found is not None and found.status == mfa.ACTIVE


async def test_an_activation_started_again_lives_until_its_own_deadline(mfa_stack: Any) -> None:
    async with mfa_stack as stack:
        _, reference, first, _ = await started(stack)
        handle = stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL))
        # started again (its deadline two hours after the first): the same run waits on
        policy = mfa.MfaPolicy.from_settings(stack.settings)
        again = await mfa.start_email_activation(stack.database.sessions, policy, await customer(stack, reference))
        later = first.expires_at + timedelta(hours=2)
        row = await customer(stack, reference)
        async with stack.database.sessions.begin() as session:
            await session.execute(update(MfaMethod).where(MfaMethod.customer_id == row.id).values(expires_at=later))
        await stack.accounts.mfa.activation_started(reference, mfa.EMAIL, again.expires_at)
        assert (
            await stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL)).describe()
        ).run_id == (await handle.describe()).run_id
        await stack.env.sleep(timedelta(hours=1, seconds=1))
        assert await method(stack, reference) is not None  # the first deadline passed: the second holds
        await stack.env.sleep(timedelta(hours=2))
        assert await handle.result() is True
        assert await method(stack, reference) is None


async def test_an_activation_started_again_for_months_continues_as_new_and_expires_on_time(mfa_stack: Any) -> None:
    """Each restart before the deadline costs the run one timer and one activity; past its history limit
    (small here, standing in for months of hourly restarts) the run continues as new with the later
    deadline, and the last deadline still drops the method, not earlier."""
    async with mfa_stack as stack:
        _, reference = await verified_customer(stack)
        policy = mfa.MfaPolicy.from_settings(stack.settings)
        row = await customer(stack, reference)
        await mfa.start_email_activation(stack.database.sessions, policy, row)
        deadline = await stack.env.get_current_time() + timedelta(hours=1)  # the server's clock
        async with stack.database.sessions.begin() as session:
            await session.execute(update(MfaMethod).where(MfaMethod.customer_id == row.id).values(expires_at=deadline))
        lifecycles = MfaLifecycles(stack.client, stack.settings, activation_history_limit=30)
        await lifecycles.activation_started(reference, mfa.EMAIL, deadline)
        handle = stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL))
        first_run = (await handle.describe()).run_id
        for _ in range(12):  # started again each hour, before the deadline passes
            deadline += timedelta(hours=1)
            async with stack.database.sessions.begin() as session:
                await session.execute(
                    update(MfaMethod).where(MfaMethod.customer_id == row.id).values(expires_at=deadline)
                )
            await lifecycles.activation_started(reference, mfa.EMAIL, deadline)
            await stack.env.sleep(timedelta(hours=1))
        await stack.env.sleep(timedelta(minutes=59))  # just before the last deadline: still pending
        assert await method(stack, reference) is not None
        current = await handle.describe()
        assert current.run_id != first_run  # continued as new
        first_handle = stack.client.get_workflow_handle(handle.id, run_id=first_run)
        assert (await first_handle.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        assert len((await handle.fetch_history()).events) <= 45  # the latest run's history stays short
        await stack.env.sleep(timedelta(minutes=1, seconds=2))
        assert await handle.result() is True
        assert await method(stack, reference) is None
        async with stack.database.sessions() as session:
            expired = list(
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "mfa_activation_expired"
                    )
                )
            )
        assert len(expired) == 1
