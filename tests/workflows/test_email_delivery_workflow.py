"""Lifecycles under SMTP failures: a bounce is final and the lifecycle goes on; a 4xx is retried until
delivered; a send under way when the worker stops is delivered once. Real Temporal, SMTP and database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from conftest import Stack, StackFactory, unique_email
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from test_email_change_workflow import customer, outcomes, request_change
from test_lockout_workflow import verified_customer
from test_registration_workflow import signup

from accounts.models import AuditEvent, EmailOutbox
from devstack.mailsink import MailSink
from starter.client import registration_id
from workflows.registration import AWAITING_VERIFICATION, RegistrationWorkflow


async def outbox_row(stack: Stack, reference: str, template: str, status: str, timeout: float = 30) -> EmailOutbox:
    """The customer's outbox row for the template, once it has the status."""
    async with asyncio.timeout(timeout):
        while True:
            async with stack.database.sessions() as session:
                row = await session.scalar(
                    select(EmailOutbox).where(
                        EmailOutbox.customer_reference == reference, EmailOutbox.template == template
                    )
                )
            if row is not None and row.status == status:
                return row
            await asyncio.sleep(0.1)


async def bounces(stack: Stack, reference: str) -> list[dict[str, Any]]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event == "email_bounced")
            .order_by(AuditEvent.id)
        )
        return [event.details for event in rows]


async def settled(handle: WorkflowHandle[Any, Any], timeout: float = 30) -> None:
    """Until the run has no activity pending (no attempt scheduled or running, no retry waiting)."""
    async with asyncio.timeout(timeout):
        while (await handle.describe()).raw_description.pending_activities:
            await asyncio.sleep(0.1)


async def completed_attempts(handle: WorkflowHandle[Any, Any], activity_type: str) -> list[int]:
    """The attempt that completed, for each completed activity of the type (its started event says)."""
    events = (await handle.fetch_history()).events
    started = {e.event_id: e.activity_task_started_event_attributes.attempt for e in events if e.event_type == 11}
    scheduled = {
        e.event_id for e in events if e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return [
        started[e.activity_task_completed_event_attributes.started_event_id]
        for e in events
        if e.event_type == 12 and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]


async def test_a_bounced_verification_email_leaves_the_registration_waiting_for_support(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    email = unique_email("nosuchuser")
    refuse = {email: "550 5.1.1 no such user"}
    async with (
        MailSink(refuse_recipient=lambda address: refuse.get(address.lower())) as sink,
        stack(time_skipping, sqlite_database, mail_sink=sink) as built,
    ):
        reference = (await built.accounts.register(signup(email))).customer_reference
        handle = built.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))

        row = await outbox_row(built, reference, "verify", "bounced")
        await settled(handle)

        assert (row.smtp_code, row.attempts) == (550, 1)  # one attempt: no retry of a permanent refusal
        assert await bounces(built, reference) == [{"template": "verify", "smtpCode": 550}]
        status = await built.accounts.registration_status(reference)
        assert (status.stage, status.links_sent) == (AWAITING_VERIFICATION, 1)

        activation = await built.accounts.verify_manually(reference, agent="alice", reason="ticket 12: address checked")
        assert activation.registered_at is not None
        assert (await handle.result()).outcome == "verified"
        # the welcome goes to the same dead address: recorded too, and the run still ends
        assert await bounces(built, reference) == [
            {"template": "verify", "smtpCode": 550},
            {"template": "welcome", "smtpCode": 550},
        ]
        assert sink.to(email) == []


async def test_an_email_change_to_an_address_that_bounces_waits_for_its_expiry(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    new_email = unique_email("typo")
    refuse = {new_email: "550 5.1.1 no such user"}
    async with (
        MailSink(refuse_recipient=lambda address: refuse.get(address.lower())) as sink,
        stack(time_skipping, sqlite_database, mail_sink=sink, email_change_expires_after=timedelta(hours=24)) as built,
    ):
        email, reference = await verified_customer(built)
        await request_change(built, reference, new_email)

        row = await outbox_row(built, reference, "email_change_confirm", "bounced")
        assert (row.attempts, row.recipient) == (1, new_email)
        assert await bounces(built, reference) == [{"template": "email_change_confirm", "smtpCode": 550}]

        await built.env.sleep(timedelta(hours=24, seconds=1))
        assert await outcomes(built, reference) == ["expired"]
        assert (await customer(built, reference)).email == email


async def test_a_451_is_retried_with_backoff_and_delivered_once_the_server_accepts(
    stack: StackFactory, time_skipping: Any, sqlite_database: Any
) -> None:
    email = unique_email("greylisted")
    refused: list[str] = []

    def greylist(address: str) -> str | None:  # the first two attempts are told to come back later
        if address.lower() != email or len(refused) == 2:
            return None
        refused.append(address)
        return "451 4.7.1 greylisted, try again later"

    async with (
        MailSink(refuse_recipient=greylist) as sink,
        stack(time_skipping, sqlite_database, mail_sink=sink) as built,
    ):
        reference = (await built.accounts.register(signup(email))).customer_reference

        await built.mail_to(email, "confirm")

        row = await outbox_row(built, reference, "verify", "sent")
        assert (row.attempts, row.smtp_code, len(refused)) == (3, None, 2)
        assert len(sink.to(email)) == 1
        assert await bounces(built, reference) == []
        assert (await built.accounts.registration_status(reference)).stage == AWAITING_VERIFICATION


async def test_a_send_under_way_when_the_worker_stops_is_delivered_once(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    """The sink stores the message, then holds its DATA reply longer than the old 10-second shutdown."""
    email = unique_email("shutdown")
    async with (
        MailSink(data_reply_delay=11) as sink,
        stack(dev_server, sqlite_database, mail_sink=sink) as built,
    ):
        reference = (await built.accounts.register(signup(email))).customer_reference
        handle = built.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
        await built.mail_to(email, "confirm")  # stored by the sink; the client still waits for "250"

        await built.restart_worker()  # a redeploy: the old worker stops, a new one polls
        row = await outbox_row(built, reference, "verify", "sent", timeout=60)
        await settled(handle, timeout=60)

        assert row.attempts == 1
        assert len(sink.to(email)) == 1
        assert (await built.accounts.registration_status(reference)).links_sent == 1
        # the 11 s handover outlasts the send's 10 s heartbeat timeout: it heartbeated, so no second attempt
        assert await completed_attempts(handle, "send_token_link") == [1]
