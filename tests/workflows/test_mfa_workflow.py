"""MFA lifecycles on the time-skipping server with real activities: an activation nobody verified expires
(and is audited), a verified one stays; an emailed code's history holds no code. Both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, decoded_payload_texts
from sqlalchemy import select
from test_email_change_workflow import customer
from test_lockout_workflow import verified_customer

from accounts import mfa
from accounts.models import AuditEvent, MfaMethod
from starter.mfa import activation_workflow_id, code_workflow_id


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
