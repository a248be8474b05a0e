"""The email activities against a real SMTP server that refuses: a 5xx is final and recorded, a 4xx is retried.

The activities run in the SDK's ActivityEnvironment (a real activity context, no worker) with real
databases and a MailSink told through its constructor which recipients to refuse and how.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, unique_email
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from accounts.emails import EmailRenderer, MailDeferred, SmtpMailer
from accounts.models import AuditEvent, EmailOutbox, OneTimeToken, utcnow
from accounts.settings import PROJECT_ROOT, Settings
from activities.customers import CustomerActivities, NewCustomer
from activities.emails import EmailActivities, NoticeInput, TokenLinkInput
from devstack.mailsink import MailSink

REFUSED: dict[str, str] = {}  # address -> the reply the sink gives it; each test uses its own addresses


def refusal(address: str) -> str | None:
    return REFUSED.get(address.lower())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def refusing_sink() -> AsyncIterator[MailSink]:
    async with MailSink(refuse_recipient=refusal, refuse_data=lambda a: REFUSED.get(f"data:{a.lower()}")) as sink:
        yield sink


def activities(database: Database, sink: MailSink) -> EmailActivities:
    settings = Settings(_env_file=None, public_url="http://shop.test")  # type: ignore[call-arg]
    renderer = EmailRenderer(PROJECT_ROOT / "templates", default_locale="en_US")
    return EmailActivities(database.sessions, renderer, SmtpMailer("127.0.0.1", sink.port), settings)


def environment(activity_id: str = "1") -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id=f"registration:test-{uuid.uuid4().hex[:8]}", activity_id=activity_id
    )
    return env


async def new_customer(database: Database, email: str) -> str:
    reference = f"{database.reference_prefix}B-{uuid.uuid4().hex[:10]}"
    await CustomerActivities(database.sessions).create_customer(
        NewCustomer(customer_reference=reference, email=email, locale="en_US", channel="api")
    )
    return reference


def link_request(reference: str, key: str) -> TokenLinkInput:
    return TokenLinkInput(
        reference, "email_verification", "verify", "/register/confirm", utcnow() + timedelta(days=3), key
    )


async def outbox(database: Database, key: str) -> EmailOutbox:
    async with database.sessions() as session:
        return (await session.execute(select(EmailOutbox).where(EmailOutbox.idempotency_key == key))).scalar_one()


async def bounce_events(database: Database, reference: str) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.customer_reference == reference, AuditEvent.event == "email_bounced")
        )
        return [{"channel": e.channel, "actor": e.actor, **e.details} for e in rows]


async def test_a_550_for_the_recipient_is_recorded_once_and_the_activity_returns(
    database: Database, refusing_sink: MailSink
) -> None:
    email = unique_email("nosuchuser")
    REFUSED[email] = f"550 5.1.1 <{email}>: Recipient address rejected: User unknown"
    reference = await new_customer(database, email)
    key = f"registration:{reference}/run/verify/1"
    env, emails = environment(), activities(database, refusing_sink)

    sent = await env.run(emails.send_token_link, link_request(reference, key))

    async with database.sessions() as session:
        token = (await session.execute(select(OneTimeToken).where(OneTimeToken.issue_key == key))).scalar_one()
    assert sent.token_hash == token.token_hash  # the workflow is told what it always was
    row = await outbox(database, key)
    assert (row.status, row.smtp_code, row.attempts, row.sent_at) == ("bounced", 550, 1, None)
    assert row.smtp_reply == "5.1.1 <<address>>: Recipient address rejected: User unknown"
    assert email not in (row.smtp_reply or "")
    assert await bounce_events(database, reference) == [
        {"channel": "email", "actor": "system", "template": "verify", "smtpCode": 550}
    ]
    assert refusing_sink.to(email) == []

    # a retry of the same key (the activity's result was lost, say) sends nothing and records nothing
    del REFUSED[email]
    again = await env.run(emails.send_token_link, link_request(reference, key))
    assert again.token_hash == sent.token_hash
    assert (await outbox(database, key)).attempts == 1
    assert len(await bounce_events(database, reference)) == 1
    assert refusing_sink.to(email) == []


async def test_a_5xx_at_the_end_of_data_bounces_a_notice(database: Database, refusing_sink: MailSink) -> None:
    email = unique_email("rejected")
    REFUSED[f"data:{email}"] = "554 5.7.1 Message rejected by policy"
    reference = await new_customer(database, email)
    key = f"registration:{reference}/run/welcome"

    delivered = await environment().run(
        activities(database, refusing_sink).send_notice, NoticeInput(reference, "welcome", key)
    )

    assert delivered is False
    row = await outbox(database, key)
    assert (row.status, row.smtp_code, row.smtp_reply) == ("bounced", 554, "5.7.1 Message rejected by policy")
    assert [e["template"] for e in await bounce_events(database, reference)] == ["welcome"]


async def test_a_451_raises_for_a_retry_that_delivers_once_the_server_accepts(
    database: Database, refusing_sink: MailSink
) -> None:
    email = unique_email("greylisted")
    REFUSED[email] = f"451 4.7.1 <{email}>: greylisted, try again later"
    reference = await new_customer(database, email)
    key = f"registration:{reference}/run/verify/1"
    env, emails = environment(), activities(database, refusing_sink)

    with pytest.raises(MailDeferred) as deferred:
        await env.run(emails.send_token_link, link_request(reference, key))
    assert deferred.value.code == 451 and email not in str(deferred.value)  # failure messages reach Temporal
    assert (await outbox(database, key)).status == "failed"  # no handover under way: a deletion need not wait for it

    del REFUSED[email]
    await env.run(emails.send_token_link, link_request(reference, key))

    row = await outbox(database, key)
    assert (row.status, row.attempts, row.smtp_code) == ("sent", 2, None)
    assert len(refusing_sink.to(email)) == 1
    assert await bounce_events(database, reference) == []


async def test_no_send_starts_once_the_worker_shuts_down(database: Database, refusing_sink: MailSink) -> None:
    """The graceful shutdown covers a handover under way; one that started after it could be cut."""
    email = unique_email("shutdown")
    reference = await new_customer(database, email)
    key = f"registration:{reference}/run/welcome"
    env, emails = environment(), activities(database, refusing_sink)
    env.worker_shutdown()

    with pytest.raises(RuntimeError, match="shutting down"):
        await env.run(emails.send_notice, NoticeInput(reference, "welcome", key))
    assert refusing_sink.to(email) == []

    retry = ActivityEnvironment()  # the same activity's next attempt, on a worker that runs
    retry.info = env.info
    assert await retry.run(emails.send_notice, NoticeInput(reference, "welcome", key)) is True
    assert len(refusing_sink.to(email)) == 1
    assert (await outbox(database, key)).status == "sent"
