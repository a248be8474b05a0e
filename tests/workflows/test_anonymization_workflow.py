"""Account deletion on the dev server, with real activities: what is left of a customer afterwards, and
that every lifecycle of the customer has ended before the deletion answers. (The dev server, because
deletion lists the customer's runs by search attribute: the time-skipping server has no
ListWorkflowExecutions.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import pytest
from conftest import Stack, StackFactory, token_from, unique_email
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode
from test_lockout_workflow import fail, verified_customer

from accounts.anonymization import ANONYMIZED_EMAIL_DOMAIN
from accounts.emails import EmailContent, Mailer, SmtpMailer
from accounts.models import Address, AuditEvent, Customer, EmailOutbox, LoginThrottle, OneTimeToken, utcnow
from accounts.refresh_tokens import RefreshToken, RefreshTokenStore
from accounts.throttle import customer_subject
from starter import Registration
from starter.client import registration_id
from starter.errors import InvalidResetKey
from starter.login import lockout_id
from starter.passwords import reset_id
from worker import build_worker
from workflows.anonymization import AnonymizationInput, AnonymizationWorkflow, anonymization_id
from workflows.email_change import email_change_id
from workflows.registration import RegistrationWorkflow

PASSWORD = "Vq8#nT2!pLm4-kettle"
# every column of `customers` that may hold something about the person: empty after anonymization
PERSONAL = ("salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company", "password_hash")


@pytest.fixture
def deletion_stack(stack: StackFactory, dev_server: Any, sqlite_database: Any) -> Any:
    def build(**overrides: Any) -> Any:
        return stack(dev_server, sqlite_database, **overrides)

    return build


async def pending_customer(stack: Stack) -> tuple[str, str]:
    """A customer with every personal field set, an address, a session and a login failure on record,
    whose registration still awaits verification."""
    email = unique_email("deleted")
    registered = await stack.accounts.register(
        Registration(
            email=email,
            channel="storefront",
            locale="en_US",
            password=PASSWORD,
            salutation="Ms",
            first_name="Ada",
            last_name="Byron",
            gender="Female",
            date_of_birth=date(1815, 12, 10),
            phone="+44 20 7946 0958",
            company="Analytical Engines Ltd",
        )
    )
    await stack.mail_to(email, "confirm")
    reference = registered.customer_reference
    async with stack.database.sessions.begin() as session:
        customer = await row(session, reference)
        address = Address(
            uuid=str(uuid.uuid4()),
            customer_id=customer.id,
            salutation="Ms",
            first_name="Ada",
            last_name="Byron",
            address1="12 St James's Square",
            address2="",
            zip_code="SW1Y 4JH",
            city="London",
            iso2_code="GB",
        )
        session.add(address)
        await session.flush()
        customer.default_billing_address_id = customer.default_shipping_address_id = address.id
        session.add(LoginThrottle(subject=customer_subject(reference), attempts=2, window_ends_at=utcnow()))
    await RefreshTokenStore(stack.database.sessions, lifetime=timedelta(days=1)).issue(customer.id)
    return email, reference


async def closed_status(run: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | str | None:
    """A run's status, or "deleted": the deletion removes a customer's closed runs from Temporal (only
    closed ones), so a run gone by the time it is described has closed before."""
    try:
        return (await run.describe()).status
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return "deleted"


async def row(session: Any, reference: str) -> Customer:
    return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def customer(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return await row(session, reference)


async def count(stack: Stack, statement: Any) -> int:
    async with stack.database.sessions() as session:
        return int(await session.scalar(statement) or 0)


async def anonymized_events(stack: Stack, reference: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.customer_reference == reference, AuditEvent.event == "customer_anonymized"
            )
        )
        return list(rows)


def deletion_emails(stack: Stack, email: str) -> list[Any]:
    return [m for m in stack.sink.to(email) if "was deleted" in m.subject]


async def assert_no_personal_data_left(stack: Stack, reference: str, email: str, version_before: int) -> None:
    after = await customer(stack, reference)
    for column in Customer.__table__.columns:
        value = getattr(after, column.key)
        if column.key in PERSONAL:
            assert value is None, column.key
        elif column.key in ("email", "email_key"):
            assert value.endswith(f"@{ANONYMIZED_EMAIL_DOMAIN}") and email.split("@")[0] not in value
        elif column.key in (
            "default_billing_address_id",
            "default_shipping_address_id",
            "preferred_shipping_method",
            "guest_cart_key",
            "last_signed_in_at",
        ):
            assert value is None, column.key
        elif column.key == "token_version":
            assert value == version_before + 1
        elif column.key == "anonymized_at":
            assert value is not None
        else:  # bookkeeping that says nothing about the person
            assert column.key in ("id", "customer_reference", "locale", "channel", "registered_at", "created_at",
                                  "updated_at", "password_reset_required", "inactivity_stage",
                                  "inactivity_since"), column.key  # fmt: skip
    assert after.email == after.email_key and after.status == "anonymized"
    assert await count(stack, select(func.count()).select_from(Address).where(Address.customer_id == after.id)) == 0
    live_tokens = select(func.count()).where(OneTimeToken.customer_id == after.id, OneTimeToken.used_at.is_(None))
    assert await count(stack, live_tokens) == 0
    assert await count(stack, select(func.count()).where(OneTimeToken.customer_id == after.id)) >= 1
    live_sessions = select(func.count()).where(RefreshToken.customer_id == after.id, RefreshToken.revoked_at.is_(None))
    assert await count(stack, live_sessions) == 0
    assert await count(stack, select(func.count()).where(RefreshToken.customer_id == after.id)) == 1
    throttle = select(func.count()).where(LoginThrottle.subject == customer_subject(reference))
    assert await count(stack, throttle) == 0


async def test_deletion_ends_the_pending_registration_and_leaves_no_personal_data(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        email, reference = await pending_customer(stack)
        version_before = (await customer(stack, reference)).token_version

        await stack.accounts.deletions.delete(reference, channel="storefront", actor=reference)

        registration = stack.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
        assert await closed_status(registration) in (WorkflowExecutionStatus.CANCELED, "deleted")
        confirmation = await stack.mail_to(email, "was deleted")  # to the address before it was scrubbed
        assert confirmation.to == [email]
        await assert_no_personal_data_left(stack, reference, email, version_before)
        events = await anonymized_events(stack, reference)
        assert [(e.channel, e.actor) for e in events] == [("storefront", reference)]

        # the address is free again: a new account, a new reference
        again = await stack.accounts.register(Registration(email=email, channel="api", locale="en_US"))
        assert again.customer_reference != reference
        for _ in range(100):  # the new registration's link arrives
            if len([m for m in stack.sink.to(email) if "confirm" in m.subject.lower()]) == 2:
                break
            await asyncio.sleep(0.1)
        # the cancelled registration sent nothing after the deletion (no reminder, no welcome)
        assert [m.subject for m in stack.sink.to(email) if "confirm" not in m.subject.lower()] == [confirmation.subject]


async def test_deleting_again_is_harmless(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        email, reference = await pending_customer(stack)
        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)
        scrubbed = await customer(stack, reference)

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)  # starts nothing
        handle = stack.client.get_workflow_handle_for(AnonymizationWorkflow.run, anonymization_id(reference))
        first_run = (await handle.describe()).run_id
        await handle.result()  # the run goes on after its answer: it deletes the customer's closed runs
        # even a second run of the workflow itself (a client that raced the check) changes nothing
        rerun = await stack.client.start_workflow(
            AnonymizationWorkflow.run,
            AnonymizationInput(reference, "api", reference),
            id=anonymization_id(reference),
            task_queue=stack.settings.task_queue,
        )
        await rerun.result()
        assert rerun.result_run_id != first_run

        after = await customer(stack, reference)
        assert (after.email, after.token_version, after.anonymized_at) == (
            scrubbed.email,
            scrubbed.token_version,
            scrubbed.anonymized_at,
        )
        assert len(await anonymized_events(stack, reference)) == 1
        await asyncio.sleep(0.3)
        assert len(deletion_emails(stack, email)) == 1


class StopAfterDeletionEmail:
    """Hands every email to the SMTP sink; tells the test when the deletion email was handed over."""

    def __init__(self, inner: Mailer) -> None:
        self._inner = inner
        self.sent = asyncio.Event()

    async def send(
        self, *, sender: str, to: str, content: EmailContent, headers: Mapping[str, str] | None = None
    ) -> None:
        await self._inner.send(sender=sender, to=to, content=content, headers=headers)
        if "was deleted" in content.subject:
            self.sent.set()


async def test_a_worker_stopped_after_the_email_step_still_anonymizes_exactly_once(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    """On the dev server: the time-skipping server drops an update that finds no worker."""
    async with stack(dev_server, sqlite_database) as running:
        email, reference = await pending_customer(running)
        version_before = (await customer(running, reference)).token_version
        assert running.worker is not None
        await running.worker.shutdown()
        mailer = StopAfterDeletionEmail(SmtpMailer.from_settings(running.settings))
        running.worker = build_worker(running.client, running.settings, running.database.sessions, mailer=mailer)
        worker_task = asyncio.get_running_loop().create_task(running.worker.run())

        deletion = asyncio.create_task(running.accounts.deletions.delete(reference, channel="api", actor=reference))
        await asyncio.wait_for(mailer.sent.wait(), 15)
        await running.worker.shutdown()  # the email activity finishes (graceful shutdown), nothing after it runs
        await worker_task
        await asyncio.sleep(0.5)
        assert not deletion.done()
        assert (await customer(running, reference)).anonymized_at is None
        outbox = select(EmailOutbox.status).where(
            EmailOutbox.idempotency_key == f"{anonymization_id(reference)}/deleted"
        )
        async with running.database.sessions() as session:
            assert await session.scalar(outbox) == "sent"

        await running.restart_worker()
        handle = running.client.get_workflow_handle_for(AnonymizationWorkflow.run, anonymization_id(reference))
        await asyncio.wait_for(handle.result(), 30)
        with contextlib.suppress(WorkflowUpdateRPCTimeoutOrCancelledError):
            await deletion
        await assert_no_personal_data_left(running, reference, email, version_before)
        assert len(await anonymized_events(running, reference)) == 1
        await asyncio.sleep(0.3)
        assert len(deletion_emails(running, email)) == 1


# --- deletion while other lifecycles of the customer run ---------------------------------------------


class RefusingPasswordNotices:
    """An SMTP server that cannot take the "password changed" email (it is retried forever); the rest passes."""

    def __init__(self, inner: Mailer) -> None:
        self._inner = inner

    async def send(
        self, *, sender: str, to: str, content: EmailContent, headers: Mapping[str, str] | None = None
    ) -> None:
        if "password" in content.subject and "changed" in content.subject:
            raise ConnectionRefusedError("SMTP refuses this message for now")
        await self._inner.send(sender=sender, to=to, content=content, headers=headers)


async def use_mailer(stack: Stack, mailer: Mailer) -> None:
    assert stack.worker is not None
    await stack.worker.shutdown()
    stack.worker = build_worker(stack.client, stack.settings, stack.database.sessions, mailer=mailer)
    asyncio.get_running_loop().create_task(stack.worker.run())


async def active_customer(stack: Stack) -> tuple[str, str]:
    """A verified customer whose registration has finished (its welcome email arrived)."""
    email, reference = await verified_customer(stack)
    await stack.mail_to(email, "welcome")
    registration = stack.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
    await registration.result()
    return email, reference


async def running_run(stack: Stack, reference: str, workflow_type: str) -> WorkflowHandle[Any, Any]:
    query = f'CustomerReference = "{reference}" AND WorkflowType = "{workflow_type}" AND ExecutionStatus = "Running"'
    for _ in range(100):
        runs = [run async for run in stack.client.list_workflows(query)]
        if runs:
            return stack.client.get_workflow_handle(runs[0].id, run_id=runs[0].run_id)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no running {workflow_type} for {reference}")


async def assert_closed_and_nothing_after_deletion(
    stack: Stack, reference: str, addresses: list[str], *runs: WorkflowHandle[Any, Any]
) -> None:
    """Each run closed before the deletion answered; the row holds no hash and no address; nothing
    reached any address of the customer after the deletion email."""
    for run in runs:  # describe right away: the deletion must have waited for them, not merely asked
        status = await closed_status(run)
        closed = (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.COMPLETED, "deleted")
        assert status in closed, (run.id, status)
    after = await customer(stack, reference)
    assert after.password_hash is None and after.email.endswith(f"@{ANONYMIZED_EMAIL_DOMAIN}")
    await asyncio.sleep(1.5)  # long enough for a straggler (a retried send, a reminder) to arrive
    received = sorted((m for a in addresses for m in stack.sink.to(a)), key=lambda m: m.received_at)
    assert received and "was deleted" in received[-1].subject, [m.subject for m in received]
    assert len(deletion_emails(stack, addresses[0])) == 1


async def test_deletion_ends_a_password_change_whose_email_cannot_go_out(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        await use_mailer(stack, RefusingPasswordNotices(SmtpMailer.from_settings(stack.settings)))
        email, reference = await active_customer(stack)
        await stack.accounts.passwords.set_by_support(reference, "Zr7!wQ2#lantern-Kettle", agent="support")
        change = await running_run(stack, reference, "PasswordChangeWorkflow")  # stuck on its email step

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)

        assert await closed_status(change) in (WorkflowExecutionStatus.CANCELED, "deleted")
        await assert_closed_and_nothing_after_deletion(stack, reference, [email], change)


class SlowHandover:
    """An SMTP handover that takes a while for one kind of message: deletion arrives while it is on its way."""

    def __init__(self, inner: Mailer, subject_contains: str, seconds: float = 1.0) -> None:
        self._inner = inner
        self._subject = subject_contains
        self._seconds = seconds
        self.entered = asyncio.Event()

    async def send(
        self, *, sender: str, to: str, content: EmailContent, headers: Mapping[str, str] | None = None
    ) -> None:
        if self._subject in content.subject.lower():
            self.entered.set()
            await asyncio.sleep(self._seconds)
        await self._inner.send(sender=sender, to=to, content=content, headers=headers)


async def test_deletion_ends_a_password_reset_whose_link_is_on_its_way(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        email, reference = await active_customer(stack)
        slow = SlowHandover(SmtpMailer.from_settings(stack.settings), "reset the password")
        await use_mailer(stack, slow)
        await stack.accounts.passwords.forgotten(email)
        await asyncio.wait_for(slow.entered.wait(), 15)

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)

        reset = stack.client.get_workflow_handle(reset_id(reference))
        await assert_closed_and_nothing_after_deletion(stack, reference, [email], reset)
        token = token_from(await stack.mail_to(email, "reset the password"))  # it went out, before the deletion
        with pytest.raises(InvalidResetKey):
            await stack.accounts.passwords.complete_reset(token, "Zr7!wQ2#lantern-Kettle")


async def test_deletion_ends_an_email_change_whose_link_is_on_its_way(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        email, reference = await active_customer(stack)
        slow = SlowHandover(SmtpMailer.from_settings(stack.settings), "confirm your new email")
        await use_mailer(stack, slow)
        new_email = unique_email("new-address")
        await stack.accounts.email_changes.request(
            await customer(stack, reference), new_email, channel="api", actor=reference
        )
        await asyncio.wait_for(slow.entered.wait(), 15)

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)

        change = stack.client.get_workflow_handle(email_change_id(reference))
        await assert_closed_and_nothing_after_deletion(stack, reference, [email, new_email], change)
        token = token_from(await stack.mail_to(new_email, "confirm your new email"))
        assert (await stack.accounts.email_changes.confirm(token)).outcome == "invalid"


async def test_deletion_ends_a_registration_whose_link_is_on_its_way(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        slow = SlowHandover(SmtpMailer.from_settings(stack.settings), "confirm your email")
        await use_mailer(stack, slow)
        email = unique_email("deleted")
        registered = await stack.accounts.register(
            Registration(email=email, channel="storefront", locale="en_US", password=PASSWORD)
        )
        reference = registered.customer_reference
        await asyncio.wait_for(slow.entered.wait(), 15)

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)

        registration = stack.client.get_workflow_handle(registration_id(reference))
        await assert_closed_and_nothing_after_deletion(stack, reference, [email], registration)


async def test_deletion_ends_an_open_lockout_window(deletion_stack: Any) -> None:
    async with deletion_stack() as stack:
        email, reference = await active_customer(stack)
        # the threshold starts the customer's lockout workflow (failures below it live in the database only)
        await fail(stack, email, stack.settings.lockout_max_failures)
        window = await running_run(stack, reference, "LockoutWindowWorkflow")
        assert window.id == lockout_id(customer_subject(reference))

        await stack.accounts.deletions.delete(reference, channel="api", actor=reference)

        await assert_closed_and_nothing_after_deletion(stack, reference, [email], window)
