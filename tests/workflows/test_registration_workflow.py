"""The registration lifecycle on the time-skipping server: days pass in an instant, activities are real."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from conftest import StackFactory, token_from, unique_email
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from accounts.models import AuditEvent, Customer, EmailOutbox, OneTimeToken, ReferenceCounter
from starter import (
    EmailTaken,
    NotAwaitingVerification,
    PasswordRejected,
    Registration,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)
from starter.client import registration_id
from workflows.registration import RegistrationWorkflow

PASSWORD = "Vq8#nT2!pLm4-kettle"


def signup(email: str, **extra: object) -> Registration:
    fields: dict[str, object] = {
        "email": email,
        "channel": "storefront",
        "locale": "en_US",
        "password": PASSWORD,
        "salutation": "Ms",
        "first_name": "Ada",
        "last_name": "Lovelace",
    }
    fields.update(extra)
    return Registration(**fields)  # type: ignore[arg-type]


async def customer_row(stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def emails_sent(stack, reference: str, template: str) -> int:
    async with stack.database.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(EmailOutbox)
                .where(
                    EmailOutbox.customer_reference == reference,
                    EmailOutbox.template == template,
                    EmailOutbox.status == "sent",
                )
            )
            or 0
        )


@pytest.fixture
def ts_stack(stack: StackFactory, time_skipping, sqlite_database):
    def build(**overrides: object):
        return stack(time_skipping, sqlite_database, **overrides)

    return build


async def test_confirming_the_link_activates_the_account_and_sends_a_welcome(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        verify = await stack.mail_to(email, "confirm")
        assert (await customer_row(stack, registered.customer_reference)).registered_at is None

        confirmation = await stack.accounts.confirm_email(token_from(verify))

        assert confirmation.outcome == "activated"
        assert (await customer_row(stack, registered.customer_reference)).registered_at is not None
        await stack.mail_to(email, "active")
        handle = stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )
        result = await handle.result()
        assert result.outcome == "verified"
        assert (await handle.query(RegistrationWorkflow.status)).stage == "verified"
        # a used link is dead, and says so
        assert (await stack.accounts.confirm_email(token_from(verify))).outcome == "already_active"


async def test_a_reminder_with_a_fresh_link_goes_out_after_24_hours(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        await stack.env.sleep(timedelta(hours=23))
        assert await emails_sent(stack, registered.customer_reference, "reminder") == 0

        await stack.env.sleep(timedelta(hours=1, minutes=1))
        reminder = await stack.mail_to(email, "reminder")

        status = await stack.accounts.registration_status(registered.customer_reference)
        assert status.stage == "reminded"
        assert status.links_sent == 2
        assert await emails_sent(stack, registered.customer_reference, "reminder") == 1
        assert (await stack.accounts.confirm_email(token_from(reminder))).outcome == "activated"


@pytest.mark.parametrize("action", ["keep", "anonymize"])
async def test_after_72_hours_the_links_die(ts_stack, action: str) -> None:
    async with ts_stack(unverified_action=action) as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        verify = await stack.mail_to(email, "confirm")
        handle = stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )

        await stack.env.sleep(timedelta(hours=72, minutes=1))

        assert (await handle.result()).outcome == "expired"
        assert (await stack.accounts.confirm_email(token_from(verify))).outcome == "invalid"
        customer = await customer_row(stack, registered.customer_reference)
        assert customer.registered_at is None
        async with stack.database.sessions() as session:
            live = await session.scalar(
                select(func.count())
                .select_from(OneTimeToken)
                .where(OneTimeToken.customer_id == customer.id, OneTimeToken.used_at.is_(None))
            )
        assert live == 0
        if action == "keep":
            assert customer.anonymized_at is None and customer.email == email
            with pytest.raises(EmailTaken):
                await stack.accounts.register(signup(email))
        else:
            assert customer.anonymized_at is not None
            assert customer.email != email and customer.first_name is None and customer.password_hash is None
            again = await stack.accounts.register(signup(email))  # the address is free again
            assert again.customer_reference != registered.customer_reference


async def test_a_confirm_after_expiry_is_refused_even_if_the_link_was_reminded(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.env.sleep(timedelta(hours=25))
        reminder = await stack.mail_to(email, "reminder")
        await stack.env.sleep(timedelta(hours=48))
        await stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        ).result()
        assert (await stack.accounts.confirm_email(token_from(reminder))).outcome == "invalid"
        assert (await customer_row(stack, registered.customer_reference)).registered_at is None


async def test_support_verifies_manually_with_agent_and_reason(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        with pytest.raises(Exception, match="agent and a reason"):
            await stack.accounts.verify_manually(registered.customer_reference, agent="alice", reason="  ")

        activation = await stack.accounts.verify_manually(
            registered.customer_reference, agent="alice", reason="ticket 4711: customer called"
        )

        assert activation.registered_at is not None
        async with stack.database.sessions() as session:
            event = (
                await session.execute(
                    select(AuditEvent).where(
                        AuditEvent.customer_reference == registered.customer_reference,
                        AuditEvent.event == "verified_manually",
                    )
                )
            ).scalar_one()
        assert (event.actor, event.channel, event.details) == (
            "alice",
            "backoffice",
            {"reason": "ticket 4711: customer called"},
        )
        status = await stack.accounts.registration_status(registered.customer_reference)
        assert status.verified_by == "support:alice"
        with pytest.raises(NotAwaitingVerification):
            await stack.accounts.verify_manually(registered.customer_reference, agent="bob", reason="again")


async def test_resend_is_throttled_and_capped(ts_stack) -> None:
    async with ts_stack(verification_resend_min_interval=timedelta(minutes=5), verification_resend_max=2) as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        first = await stack.mail_to(email, "confirm")
        with pytest.raises(ResendThrottled) as throttled:
            await stack.accounts.resend_verification(registered.customer_reference)
        assert 0 < throttled.value.retry_after_seconds <= 300

        await stack.env.sleep(timedelta(minutes=5, seconds=1))
        resent = await stack.accounts.resend_verification(registered.customer_reference)
        assert resent.resends_left == 1
        await stack.env.sleep(timedelta(minutes=5, seconds=1))
        assert (await stack.accounts.resend_verification(registered.customer_reference)).resends_left == 0
        await stack.env.sleep(timedelta(minutes=5, seconds=1))
        with pytest.raises(ResendLimitReached):
            await stack.accounts.resend_verification(registered.customer_reference)

        assert await emails_sent(stack, registered.customer_reference, "verify") == 3
        links = {token_from(m) for m in stack.sink.to(email) if "token=" in m.text}
        assert len(links) == 3  # every resend carries a fresh token; the first still works
        assert (await stack.accounts.confirm_email(token_from(first))).outcome == "activated"


async def test_a_wrong_token_and_an_unknown_reference_are_refused(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        assert (await stack.accounts.confirm_email("not-a-token")).outcome == "invalid"
        assert (await customer_row(stack, registered.customer_reference)).registered_at is None
        with pytest.raises(RegistrationNotFound):
            await stack.accounts.resend_verification("DE--999999999")


async def test_an_address_that_has_an_account_gets_one_notice_and_no_second_account(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        owner = await stack.accounts.register(signup(email))
        for variant in (email.upper(), email):
            with pytest.raises(EmailTaken):
                await stack.accounts.register(signup(variant, first_name="Mallory"))
        notice = await stack.mail_to(email, "tried to register")
        assert "Mallory" not in notice.text
        async with stack.database.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(Customer).where(Customer.email_key == email))
        assert count == 1
        assert await emails_sent(stack, owner.customer_reference, "already_registered") == 1


async def test_a_weak_password_is_refused_before_anything_starts(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        counter_before = await reference_counter(stack)
        with pytest.raises(PasswordRejected) as rejected:
            await stack.accounts.register(signup(email, password="password1234"))
        assert [v.code for v in rejected.value.violations] == ["422"]
        # no reference was allocated, so no workflow can have started and no row was written
        assert await reference_counter(stack) == counter_before
        async with stack.database.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Customer).where(Customer.email == email)) == 0


async def reference_counter(stack) -> int:
    async with stack.database.sessions() as session:
        return int(await session.scalar(select(ReferenceCounter.value)) or 0)


async def test_the_workflow_is_findable_by_its_search_attributes(ts_stack) -> None:
    async with ts_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        handle = stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )
        while (await handle.query(RegistrationWorkflow.status)).stage != "awaiting_verification":
            await asyncio.sleep(0.05)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        attributes = {k.name: v for k, v in description.typed_search_attributes}
        # no TemporalChangeVersion: a new run took no patch (its input's revision answers instead)
        assert attributes == {
            "CustomerReference": registered.customer_reference,
            "LifecycleStage": "awaiting_verification",
            "Channel": "storefront",
        }


async def test_a_resend_and_a_verification_queued_together_both_finish(stack, dev_server, sqlite_database) -> None:
    """Updates that pile up while no worker runs (a deploy) arrive in one task: none may hang.

    On the dev server: the time-skipping test server does not hold updates for a worker-less run."""
    async with stack(dev_server, sqlite_database, verification_resend_min_interval=timedelta(0)) as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        handle = stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )
        while (await handle.query(RegistrationWorkflow.status)).stage != "awaiting_verification":
            await asyncio.sleep(0.05)
        assert stack.worker is not None
        await stack.worker.shutdown()
        resend = asyncio.create_task(stack.accounts.resend_verification(registered.customer_reference))
        verify = asyncio.create_task(
            stack.accounts.verify_manually(registered.customer_reference, agent="alice", reason="deploy race")
        )
        await asyncio.sleep(1)
        await stack.restart_worker()

        assert (await asyncio.wait_for(verify, 30)).registered_at is not None
        try:
            await asyncio.wait_for(resend, 30)  # either it went out first, or it is refused: never pending
        except NotAwaitingVerification:
            pass
        assert (await asyncio.wait_for(handle.result(), 30)).outcome == "verified"


async def test_with_a_payload_key_the_history_holds_no_readable_customer_data(ts_stack) -> None:
    import base64
    import os

    key = base64.b64encode(os.urandom(32)).decode()
    async with ts_stack(payload_encryption_key=key) as stack:
        email = unique_email()
        registered = await stack.accounts.register(signup(email))
        await stack.mail_to(email, "confirm")
        handle = stack.client.get_workflow_handle_for(
            RegistrationWorkflow.run, registration_id(registered.customer_reference)
        )
        raw = b"".join(event.SerializeToString() for event in (await handle.fetch_history()).events)
        assert email.encode() not in raw and b"Lovelace" not in raw and b"argon2" not in raw
        # while the service itself, holding the key, reads it fine
        assert (await handle.query(RegistrationWorkflow.status)).customer_reference == registered.customer_reference
