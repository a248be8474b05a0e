"""What Temporal keeps of a customer (issue 15): no run's history holds a password hash or the profile,
queries answer views, and a deletion removes the customer's closed runs, so that listing by the
customer's reference afterwards finds nothing personal. On the dev server (listing and deletion need
visibility, which the time-skipping server lacks), with the real worker, SMTP sink and database.

Histories are read raw (`fetch_history`), each payload decoded by the client's codec if it has one:
the check is on what the payloads say, not on whether they happen to be encrypted."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import date
from typing import Any

import pytest
from conftest import Stack, StackFactory, token_from, unique_email
from google.protobuf import json_format
from sqlalchemy import func, select
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from accounts import pending_credentials
from accounts.models import Customer, PendingCredential
from starter import AccountsClient, Registration
from starter.client import registration_id
from starter.passwords import reset_id
from workflows.anonymization import anonymization_id
from workflows.email_change import email_change_id
from workflows.password_reset import PasswordResetWorkflow

PASSWORDS = ("Vq8#nT2!pLm4-privacy", "Zx7$kQ9!mWp2-privacy", "Lk3%hG8!rTe5-privacy")
IP = "192.0.2.44"
# what a history must not say about this customer (besides the address, which is unique per test)
PERSONAL = ("$argon2", "Hopper", "1906-12-09", "555 0100")


@pytest.fixture
def privacy_stack(stack: StackFactory, dev_server: Any, sqlite_database: Any) -> Any:
    return lambda **overrides: stack(dev_server, sqlite_database, **overrides)


async def history_texts(client: Client, handle: WorkflowHandle[Any, Any]) -> str:
    """The history as JSON plus every payload in it decoded (through the client's codec when it has one)."""
    text = (await handle.fetch_history()).to_json()
    payloads: list[Payload] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
                payloads.append(json_format.ParseDict(node, Payload()))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(text))
    codec = client.data_converter.payload_codec
    decoded = await codec.decode(payloads) if codec is not None and payloads else payloads
    return "\n".join([text, *(p.data.decode("utf-8", "replace") for p in decoded)])


async def runs_of(client: Client, reference: str) -> list[WorkflowHandle[Any, Any]]:
    return [
        client.get_workflow_handle(e.id, run_id=e.run_id)
        async for e in client.list_workflows(f'CustomerReference = "{reference}"')
    ]


async def all_closed(client: Client, reference: str, kinds: set[str]) -> list[WorkflowHandle[Any, Any]]:
    for _ in range(200):
        runs = await runs_of(client, reference)
        statuses = [(await run.describe()).status for run in runs]
        if {run.id.split(":", 1)[0] for run in runs} >= kinds and WorkflowExecutionStatus.RUNNING not in statuses:
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"runs of {reference} did not all close: {[run.id for run in runs]}")


async def sign_up_and_reset(stack: Stack) -> tuple[str, str]:
    """A customer with a full profile and a password registers, confirms and resets the password."""
    email = unique_email("private")
    registered = await stack.accounts.register(
        Registration(
            email=email,
            channel="api",
            locale="en_US",
            password=PASSWORDS[0],
            first_name="Grace",
            last_name="Hopper",
            date_of_birth=date(1906, 12, 9),
            phone="+1 202 555 0100",
        )
    )
    reference = registered.customer_reference
    assert (
        await stack.accounts.confirm_email(token_from(await stack.mail_to(email, "confirm")))
    ).outcome == "activated"
    await stack.client.get_workflow_handle(registration_id(reference)).result()

    await stack.accounts.passwords.forgotten(email)
    token = token_from(await stack.mail_to(email, "reset"))
    reset = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
    waiting = await reset.query(PasswordResetWorkflow.status)
    await stack.accounts.passwords.complete_reset(token, PASSWORDS[1])
    await reset.result()
    completed = await reset.query(PasswordResetWorkflow.status)
    for status in (waiting, completed):  # a view: no completion (it held the hash), no token hashes
        fields = dataclasses.asdict(status)
        assert "completion" not in fields and "token_hashes" not in fields, fields
        assert "$argon2" not in repr(fields)
    assert completed.completed and completed.stage == "password_set"
    return email, reference


async def pending_of(stack: Stack, reference: str) -> int:
    async with stack.database.sessions() as session:
        where = PendingCredential.customer_reference == reference
        return int(await session.scalar(select(func.count()).select_from(PendingCredential).where(where)) or 0)


async def test_no_run_holds_a_password_hash_or_the_profile(privacy_stack: Any) -> None:
    async with privacy_stack() as stack:
        email, reference = await sign_up_and_reset(stack)
        async with stack.database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None
        await stack.accounts.passwords.change(customer, current=PASSWORDS[1], new=PASSWORDS[2], client_ip=IP)
        # a sign-in with outdated argon2 parameters starts the rehash lifecycle
        stronger = stack.settings.model_copy(update={"argon2_time_cost": stack.settings.argon2_time_cost + 1})
        await AccountsClient(stack.client, stronger, stack.database.sessions).logins.authenticate(
            email, PASSWORDS[2], client_ip=IP
        )

        runs = await all_closed(stack.client, reference, {"registration", "password-reset", "password-change"})
        for _ in range(100):  # the rehash run is started after the sign-in's answer is decided
            runs = await all_closed(stack.client, reference, set())
            if any(run.id.startswith("password-rehash:") for run in runs):
                break
            await asyncio.sleep(0.1)
        runs = await all_closed(stack.client, reference, {"password-rehash"})
        async with stack.database.sessions() as session:
            stored = await session.scalar(
                select(Customer.password_hash).where(Customer.customer_reference == reference)
            )
        assert stored is not None and f",t={stronger.argon2_time_cost}," in stored  # every hash was applied

        for run in runs:
            text = await history_texts(stack.client, run)
            assert email.lower() not in text.lower(), run.id
            assert [p for p in (*PERSONAL, *PASSWORDS) if p in text] == [], run.id
        assert await pending_of(stack, reference) == 0  # applied credentials are deleted


async def test_a_deletion_leaves_no_run_with_personal_data_in_temporal(privacy_stack: Any) -> None:
    async with privacy_stack() as stack:
        email, reference = await sign_up_and_reset(stack)
        async with stack.database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None
        before = await all_closed(stack.client, reference, {"registration", "password-reset"})
        new_email = unique_email("private-new")  # an email change still waiting: its run holds the new address
        await stack.accounts.email_changes.request(customer, new_email, channel="api", actor=reference)
        await stack.mail_to(new_email, "confirm your new email")
        await pending_credentials.store(  # an abandoned one (its caller died)
            stack.database.sessions,
            lifetime=stack.settings.pending_credential_lifetime,
            customer_reference=reference,
            password_hash="$argon2id$abandoned",
        )

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)
        await stack.client.get_workflow_handle(anonymization_id(reference)).result()

        left: list[WorkflowHandle[Any, Any]] = []
        for _ in range(200):  # Temporal deletes a run's history and visibility record by itself, soon after
            left = await runs_of(stack.client, reference)
            if all(run.id == anonymization_id(reference) for run in left):
                break
            await asyncio.sleep(0.1)
        assert [run.id for run in left] == [anonymization_id(reference)]
        text = await history_texts(stack.client, left[0])
        for personal in (email, new_email):
            assert personal.lower() not in text.lower()
        assert [p for p in PERSONAL if p in text] == []

        for gone in [*before, stack.client.get_workflow_handle(email_change_id(reference))]:
            with pytest.raises(RPCError) as missing:
                await gone.fetch_history()
            assert missing.value.status == RPCStatusCode.NOT_FOUND, gone.id
        assert await pending_of(stack, reference) == 0
