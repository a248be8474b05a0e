"""Email change on the time-skipping server, with real activities: confirmed, expired, superseded, taken,
undone from the old address."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from conftest import Stack, StackFactory, free_port, token_from, unique_email
from sqlalchemy import select, update
from temporalio.client import WithStartWorkflowOperation, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from test_anonymization_workflow import closed_status
from test_lockout_workflow import IP, PASSWORD, verified_customer

from accounts.models import AuditEvent, Customer, LoginThrottle, OneTimeToken, utcnow
from accounts.refresh_tokens import InvalidRefreshToken, RefreshTokenStore
from starter import LoginFailed, Registration
from starter.email_changes import email_change_subject
from starter.errors import EmailChangeThrottled
from workflows.email_change import (
    TAKEN,
    EmailChangeConfirm,
    EmailChangeInput,
    EmailChangeRequest,
    EmailChangeWorkflow,
    email_change_id,
)


@pytest.fixture
def ec_stack(stack: StackFactory, time_skipping: Any, sqlite_database: Any) -> Any:
    def build(**overrides: Any) -> Any:
        return stack(time_skipping, sqlite_database, **{"email_change_expires_after": timedelta(hours=24), **overrides})

    return build


async def customer(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def events(stack: Stack, reference: str, event: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        return list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.customer_reference == reference, AuditEvent.event == event)
            )
        )


async def request_change(stack: Stack, reference: str, new_email: str) -> None:
    await stack.accounts.email_changes.request(
        await customer(stack, reference), new_email, channel="api", actor=reference
    )


async def outcomes(stack: Stack, reference: str) -> list[str]:
    """The run's outcomes once it closed: an undo link still open is let expire first (simulated time)."""
    handle = stack.client.get_workflow_handle_for(EmailChangeWorkflow.run, email_change_id(reference))
    status = await handle.query(EmailChangeWorkflow.status)
    if status.undo_open_until is not None:
        await stack.env.sleep(stack.settings.email_change_undo_lifetime + timedelta(seconds=1))
    return await handle.result()


async def test_a_confirmed_change_switches_the_address_tells_the_old_one_and_ends_every_session(
    ec_stack: Any,
) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        version = (await customer(stack, reference)).token_version
        new_email = unique_email("moved")

        await request_change(stack, reference, new_email)
        link = await stack.mail_to(new_email, "confirm your new email")
        assert (await customer(stack, reference)).email == email  # nothing changes before the click

        confirmed = await stack.accounts.email_changes.confirm(token_from(link))
        assert (confirmed.outcome, confirmed.customer_reference) == ("changed", reference)
        after = await customer(stack, reference)
        # the link came without a session: every one ends (access tokens by their version)
        assert (after.email, after.email_key, after.token_version) == (new_email, new_email.lower(), version + 1)
        told = await stack.mail_to(email, "was changed")
        assert new_email not in told.text and new_email[:1] + "***@" in told.text  # masked
        assert await outcomes(stack, reference) == ["changed"]
        assert [e.actor for e in await events(stack, reference, "email_changed")] == [reference]

        # sign-in uses the new address from now on; the old one is unknown
        assert (await stack.accounts.logins.authenticate(new_email, PASSWORD, client_ip=IP)).customer_reference == (
            reference
        )
        with pytest.raises(LoginFailed):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        # the link is single-use
        assert (await stack.accounts.email_changes.confirm(token_from(link))).outcome == "invalid"


async def test_an_unconfirmed_change_expires_and_its_link_dies(ec_stack: Any) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        new_email = unique_email("late")
        await request_change(stack, reference, new_email)
        token = token_from(await stack.mail_to(new_email, "confirm your new email"))

        await stack.env.sleep(timedelta(hours=24, seconds=1))
        assert await outcomes(stack, reference) == ["expired"]
        assert (await stack.accounts.email_changes.confirm(token)).outcome == "invalid"
        assert (await customer(stack, reference)).email == email
        async with stack.database.sessions() as session:
            link = await session.scalar(
                select(OneTimeToken)
                .join(Customer, Customer.id == OneTimeToken.customer_id)
                .where(OneTimeToken.purpose == "email_change", Customer.customer_reference == reference)
            )
        assert link is not None and link.used_at is not None  # the database agrees the link is dead


async def test_a_newer_request_replaces_the_pending_one(ec_stack: Any) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        first, second = unique_email("first"), unique_email("second")
        await request_change(stack, reference, first)
        first_token = token_from(await stack.mail_to(first, "confirm your new email"))
        await request_change(stack, reference, second)
        second_token = token_from(await stack.mail_to(second, "confirm your new email"))

        assert (await stack.accounts.email_changes.confirm(first_token)).outcome == "invalid"
        assert (await customer(stack, reference)).email == email
        assert (await stack.accounts.email_changes.confirm(second_token)).outcome == "changed"
        assert (await customer(stack, reference)).email == second
        assert await outcomes(stack, reference) == ["superseded", "changed"]


async def test_a_taken_address_gets_the_same_answer_and_its_owner_is_told(ec_stack: Any) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        other_email, other_reference = await verified_customer(stack)

        await request_change(stack, reference, other_email.upper())  # returns like any other request
        await stack.mail_to(other_email, "someone tried")
        assert await outcomes(stack, reference) == ["taken"]
        assert not [m for m in stack.sink.to(other_email) if "confirm your new email" in m.subject.lower()]
        assert (await customer(stack, reference)).email == email
        assert (await customer(stack, other_reference)).email == other_email


async def test_asking_for_the_current_address_starts_nothing(ec_stack: Any) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        await request_change(stack, reference, email.upper())
        assert await stack.accounts.email_changes.status(reference) is None


async def test_anonymization_ends_a_pending_change(stack: StackFactory, dev_server: Any, sqlite_database: Any) -> None:
    """On the dev server: deletion lists the customer's runs, which the time-skipping server cannot."""
    async with stack(dev_server, sqlite_database, email_change_expires_after=timedelta(hours=24)) as built:
        _, reference = await verified_customer(built)
        new_email = unique_email("gone")
        await request_change(built, reference, new_email)
        token = token_from(await built.mail_to(new_email, "confirm your new email"))

        await built.accounts.deletions.delete(reference, channel="api", actor=reference)
        handle = built.client.get_workflow_handle(email_change_id(reference))
        # ended before the answer (and then deleted from Temporal with the customer's other closed runs)
        assert await closed_status(handle) in (WorkflowExecutionStatus.CANCELED, "deleted")
        assert (await built.accounts.email_changes.confirm(token)).outcome == "invalid"
        assert (await customer(built, reference)).email != new_email


async def test_a_confirm_arriving_while_a_newer_request_is_checked_neither_hangs_nor_blocks_the_change(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    """The API checked the link in the database, then a newer request replaced it before the confirm
    reached the workflow: the confirm meets a request that sends no link (here: a taken address)."""
    async with stack(dev_server, sqlite_database) as built:
        _, reference = await verified_customer(built)
        other_email, _ = await verified_customer(built)
        smtp_port = built.settings.smtp_port
        built.settings = built.settings.model_copy(update={"smtp_port": free_port()})  # SMTP down
        await built.restart_worker()
        await request_change(built, reference, other_email)  # taken: the owner's notice is retried
        handle = built.client.get_workflow_handle_for(EmailChangeWorkflow.run, email_change_id(reference))
        for _ in range(100):
            if (await handle.query(EmailChangeWorkflow.status)).stage == TAKEN:
                break
            await asyncio.sleep(0.1)
        confirm = asyncio.create_task(handle.execute_update(EmailChangeWorkflow.confirm, EmailChangeConfirm("0" * 64)))
        await asyncio.sleep(1)  # accepted: it waits for the request under way

        built.settings = built.settings.model_copy(update={"smtp_port": smtp_port})
        await built.restart_worker()
        await built.mail_to(other_email, "someone tried", timeout=120)  # the next retry
        with pytest.raises(WorkflowUpdateFailedError):
            await asyncio.wait_for(confirm, timeout=30)
        assert await asyncio.wait_for(outcomes(built, reference), timeout=30) == ["taken"]


async def test_a_long_series_of_requests_continues_as_new_with_the_newest_one(ec_stack: Any) -> None:
    """One run takes a bounded number of requests (its history must stay small); the newest goes on."""
    async with ec_stack() as stack:
        _, reference = await verified_customer(stack)
        addresses = [unique_email(f"series{i}") for i in range(3)]
        start = WithStartWorkflowOperation(
            EmailChangeWorkflow.run,
            EmailChangeInput(reference, timedelta(hours=24), timedelta(hours=1), requests_per_run=2),
            id=email_change_id(reference),
            task_queue=stack.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        await stack.client.execute_update_with_start_workflow(
            EmailChangeWorkflow.request,
            EmailChangeRequest(addresses[0], "api", reference),
            start_workflow_operation=start,
        )
        first_run = (await start.workflow_handle()).first_execution_run_id
        tokens = [token_from(await stack.mail_to(addresses[0], "confirm your new email"))]
        for address in addresses[1:]:
            await request_change(stack, reference, address)
            tokens.append(token_from(await stack.mail_to(address, "confirm your new email")))

        handle = stack.client.get_workflow_handle_for(EmailChangeWorkflow.run, email_change_id(reference))
        assert (await handle.describe()).run_id != first_run  # continued as new
        assert (await handle.query(EmailChangeWorkflow.status)).requests == 3
        assert (await stack.accounts.email_changes.confirm(tokens[1])).outcome == "invalid"
        assert (await stack.accounts.email_changes.confirm(tokens[2])).outcome == "changed"
        assert (await customer(stack, reference)).email == addresses[2]
        assert await outcomes(stack, reference) == ["changed"]


async def test_requests_beyond_the_hourly_bound_are_refused_until_the_hour_passes(ec_stack: Any) -> None:
    """The bound is the customer's, across workflow runs: a run that ends (a confirmed change, a taken
    address) must not start the count again, which once let requests through without limit."""
    async with ec_stack(email_change_requests_per_hour=3) as stack:
        _, reference = await verified_customer(stack)
        other_email, _ = await verified_customer(stack)
        first = unique_email("first")
        await request_change(stack, reference, first)
        await stack.accounts.email_changes.confirm(token_from(await stack.mail_to(first, "confirm your new email")))
        assert await outcomes(stack, reference) == ["changed"]  # that run ended
        await request_change(stack, reference, other_email)  # taken: this run ends too
        assert await outcomes(stack, reference) == ["taken"]
        await request_change(stack, reference, unique_email("third"))
        with pytest.raises(EmailChangeThrottled) as refused:
            await request_change(stack, reference, unique_email("one-too-many"))
        assert 3000 < refused.value.retry_after_seconds <= 3600
        status = await stack.accounts.email_changes.status(reference)
        assert status is not None and status.requests == 1  # the refused one never reached the workflow

        async with stack.database.sessions.begin() as session:  # the hour passes (the window is wall-clock)
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.subject == email_change_subject(reference))
                .values(window_ends_at=utcnow() - timedelta(seconds=1))
            )
        await request_change(stack, reference, unique_email("next-hour"))


# --- the undo link sent to the old address ----------------------------------------------------------


async def changed_by_link(stack: Stack, reference: str, new_email: str, old_email: str) -> str:
    """Request and confirm a change; the undo token from the notice to the old address."""
    await request_change(stack, reference, new_email)
    confirm = token_from(await stack.mail_to(new_email, "confirm your new email"))
    assert (await stack.accounts.email_changes.confirm(confirm)).outcome == "changed"
    told = [m for m in stack.sink.to(old_email) if "was changed" in m.subject.lower()]
    if not told:
        told = [await stack.mail_to(old_email, "was changed")]
    return token_from(told[-1])


async def refresh_token_of(stack: Stack, reference: str) -> str:
    store = RefreshTokenStore.from_settings(stack.settings, stack.database.sessions)
    return await store.issue((await customer(stack, reference)).id)


async def test_the_undo_link_restores_the_old_address_ends_every_session_and_sends_a_reset_link(
    ec_stack: Any,
) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        thief = unique_email("thief")
        undo = await changed_by_link(stack, reference, thief, email)
        session = await refresh_token_of(stack, reference)  # the thief's sign-in with the new address
        version = (await customer(stack, reference)).token_version

        assert (await stack.accounts.email_changes.preview_undo(undo)).outcome == "pending"
        assert (await customer(stack, reference)).email == thief  # a preview (a GET) changes nothing
        undone = await stack.accounts.email_changes.undo(undo)
        assert (undone.outcome, undone.customer_reference) == ("undone", reference)
        after = await customer(stack, reference)
        assert (after.email, after.email_key, after.token_version) == (email, email.lower(), version + 1)
        store = RefreshTokenStore.from_settings(stack.settings, stack.database.sessions)
        with pytest.raises(InvalidRefreshToken):
            await store.rotate(session)
        await stack.mail_to(email, "reset the password")  # leads to a new password
        assert [e.actor for e in await events(stack, reference, "email_change_undone")] == ["customer"]

        assert (await stack.accounts.email_changes.undo(undo)).outcome == "invalid"  # single use
        assert await outcomes(stack, reference) == ["changed", "undone"]


async def test_an_undo_link_used_after_its_lifetime_is_refused(ec_stack: Any) -> None:
    async with ec_stack(email_change_undo_lifetime=timedelta(days=7)) as stack:
        email, reference = await verified_customer(stack)
        thief = unique_email("thief")
        undo = await changed_by_link(stack, reference, thief, email)
        await stack.env.sleep(timedelta(days=7, seconds=1))
        assert await outcomes(stack, reference) == ["changed"]  # the lifecycle waited for it, then ended
        assert (await stack.accounts.email_changes.undo(undo)).outcome == "invalid"
        assert (await customer(stack, reference)).email == thief
        assert not await events(stack, reference, "email_change_undone")


async def test_undoing_a_change_undoes_the_later_ones_and_kills_their_links(ec_stack: Any) -> None:
    """A -> B -> C: A's link brings A back, and B's link (the thief's first address) dies with it."""
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        first, second = unique_email("first"), unique_email("second")
        undo_first = await changed_by_link(stack, reference, first, email)
        undo_second = await changed_by_link(stack, reference, second, first)

        assert (await stack.accounts.email_changes.undo(undo_first)).outcome == "undone"
        assert (await customer(stack, reference)).email == email
        assert (await stack.accounts.email_changes.undo(undo_second)).outcome == "invalid"
        assert (await customer(stack, reference)).email == email


async def test_an_undo_to_an_address_another_account_confirmed_meanwhile_still_shuts_everyone_out(
    ec_stack: Any,
) -> None:
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        _, other_reference = await verified_customer(stack)
        thief = unique_email("thief")
        undo = await changed_by_link(stack, reference, thief, email)
        async with stack.database.sessions.begin() as session:  # another account got the released address
            await session.execute(
                update(Customer)
                .where(Customer.customer_reference == other_reference)
                .values(email=email, email_key=email.lower())
            )
        version = (await customer(stack, reference)).token_version

        assert (await stack.accounts.email_changes.undo(undo)).outcome == "undo_blocked"
        after = await customer(stack, reference)
        assert (after.email, after.token_version, after.password_reset_required) == (thief, version + 1, True)
        [blocked] = await events(stack, reference, "email_change_undo_blocked")
        assert blocked.details["heldBy"] == other_reference
        assert not [m for m in stack.sink.to(thief) if "reset" in m.subject.lower()]  # no link to the thief


async def test_a_sign_up_never_confirmed_cannot_block_the_undo(ec_stack: Any) -> None:
    """The thief registers the released address to keep it: that sign-up never proved it, the undo's reader did."""
    async with ec_stack() as stack:
        email, reference = await verified_customer(stack)
        thief = unique_email("thief")
        undo = await changed_by_link(stack, reference, thief, email)
        squatter = await stack.accounts.register(
            Registration(email=email, channel="api", locale="en_US", password=PASSWORD, first_name="Eve")
        )
        for _ in range(100):  # the address's second verification email (the first was the customer's own)
            verifications = [m for m in stack.sink.to(email) if "confirm your email" in m.subject.lower()]
            if len(verifications) == 2:
                break
            await asyncio.sleep(0.1)
        squatter_link = token_from(verifications[-1])

        assert (await stack.accounts.email_changes.undo(undo)).outcome == "undone"
        assert (await customer(stack, reference)).email == email
        displaced = await customer(stack, squatter.customer_reference)
        assert displaced.email.endswith("@released.invalid") and displaced.registered_at is None
        assert [e.details for e in await events(stack, squatter.customer_reference, "email_released")] == [
            {"to": reference}
        ]
        assert (await stack.accounts.confirm_email(squatter_link)).outcome == "invalid"  # its link died
