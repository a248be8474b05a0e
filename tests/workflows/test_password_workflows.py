"""Password reset, change and support actions on the time-skipping server, with real activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Stack, StackFactory, open_sqlite, token_from, unique_email
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from test_lockout_workflow import IP, PASSWORD, fail, lock_status, lock_status_now, verified_customer

from accounts.models import AuditEvent, Customer
from accounts.refresh_tokens import InvalidRefreshToken, RefreshTokenStore
from starter import InvalidResetKey, LoginBlocked, LoginFailed, PasswordRejected, PasswordResetRequired, Registration
from starter.passwords import reset_id
from workflows.password_reset import PasswordResetWorkflow

NEW_PASSWORD = "Lantern-7#quiet-harbor"


@pytest.fixture
def pw_stack(stack: StackFactory, time_skipping: Any, sqlite_database: Any) -> Any:
    def build(**overrides: Any) -> Any:
        return stack(time_skipping, sqlite_database, **{"lockout_max_failures": 3, **overrides})

    return build


async def reset_link(stack: Stack, email: str, subject: str = "reset") -> str:
    return token_from(await stack.mail_to(email, subject))


async def customer(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def test_a_forgotten_password_is_reset_with_the_emailed_link(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        signed_in = await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        refresh = RefreshTokenStore(stack.database.sessions, lifetime=timedelta(days=1))
        session_token = await refresh.issue(signed_in.customer_id)
        version_before = (await customer(stack, reference)).token_version

        await stack.accounts.passwords.forgotten(email.upper())
        token = await reset_link(stack, email)
        await stack.accounts.passwords.complete_reset(token, NEW_PASSWORD)

        await stack.mail_to(email, "was changed")
        assert (
            await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
        ).customer_reference == reference
        with pytest.raises(LoginFailed):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        assert (await customer(stack, reference)).token_version == version_before + 1  # access tokens die
        with pytest.raises(InvalidRefreshToken):
            await refresh.rotate(session_token)  # and every session with them
        with pytest.raises(InvalidResetKey):  # single use
            await stack.accounts.passwords.complete_reset(token, "Another-9#fine-password")
        handle = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        assert await handle.result() == "password_set"
        raw = b"".join(e.SerializeToString() for e in (await handle.fetch_history()).events)
        assert NEW_PASSWORD.encode() not in raw and token.encode() not in raw


async def test_the_link_dies_after_two_hours(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        await stack.accounts.passwords.forgotten(email)
        token = await reset_link(stack, email)
        await stack.env.sleep(timedelta(hours=2, minutes=1))
        handle = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        assert await handle.result() == "expired"
        with pytest.raises(InvalidResetKey):
            await stack.accounts.passwords.complete_reset(token, NEW_PASSWORD)


async def test_repeated_requests_resend_through_one_workflow_throttled(pw_stack: Any) -> None:
    async with pw_stack(password_reset_resends_per_hour=3) as stack:
        email, reference = await verified_customer(stack)
        for _ in range(3):
            await stack.accounts.passwords.forgotten(email)
        await reset_link(stack, email)
        await asyncio.sleep(0.5)
        assert len([m for m in stack.sink.to(email) if "Reset the password" in m.subject]) == 1
        for _ in range(4):
            await stack.env.sleep(timedelta(minutes=1, seconds=1))
            await stack.accounts.passwords.forgotten(email)
            await asyncio.sleep(0.3)
        handle = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        assert len((await handle.query(PasswordResetWorkflow.status)).sent_at) == 3  # capped per hour
        links = [token_from(m) for m in stack.sink.to(email) if "Reset the password" in m.subject]
        assert len(links) == 3
        await stack.accounts.passwords.complete_reset(links[0], NEW_PASSWORD)  # any live link works


async def test_two_concurrent_submissions_of_one_key_exactly_one_wins(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, _ = await verified_customer(stack)
        await stack.accounts.passwords.forgotten(email)
        token = await reset_link(stack, email)
        results = await asyncio.gather(
            stack.accounts.passwords.complete_reset(token, NEW_PASSWORD),
            stack.accounts.passwords.complete_reset(token, "Other-4#calm-meadow-x"),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["InvalidResetKey", "str"]


async def test_a_reset_clears_a_lock(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        await fail(stack, email, 3)
        await lock_status(stack, reference)
        with pytest.raises(LoginBlocked):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        await stack.accounts.passwords.forgotten(email)
        await stack.accounts.passwords.complete_reset(await reset_link(stack, email), NEW_PASSWORD)
        assert (
            await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
        ).customer_reference == reference
        # ...through the lockout workflow itself, the same path as a support unlock
        for _ in range(100):
            if (await lock_status_now(stack, reference)).locked_until is None:
                break
            await asyncio.sleep(0.05)
        async with stack.database.sessions() as session:
            unlocks = (
                await session.execute(
                    select(AuditEvent.actor, AuditEvent.channel).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "account_unlocked"
                    )
                )
            ).all()
        assert unlocks == [("password-reset", "storefront")]


async def test_the_policy_applies_to_a_reset(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, _ = await verified_customer(stack)
        await stack.accounts.passwords.forgotten(email)
        token = await reset_link(stack, email)
        with pytest.raises(PasswordRejected) as rejected:
            await stack.accounts.passwords.complete_reset(token, "short")
        assert rejected.value.violations[0].code == "418"
        await stack.accounts.passwords.complete_reset(token, NEW_PASSWORD)  # the link survived the refusal


async def test_support_forces_a_reset(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        await stack.accounts.passwords.force_reset(reference, agent="alice")
        token = await reset_link(stack, email)
        with pytest.raises(PasswordResetRequired):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        with pytest.raises(LoginFailed):  # a wrong password still gets the plain answer
            await stack.accounts.logins.authenticate(email, "wrong password!", client_ip=IP)
        await stack.accounts.passwords.complete_reset(token, NEW_PASSWORD)
        assert (
            await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
        ).customer_reference == reference
        async with stack.database.sessions() as session:
            events = set(
                (
                    await session.execute(select(AuditEvent.event).where(AuditEvent.customer_reference == reference))
                ).scalars()
            )
        assert {"password_reset_forced", "password_reset"} <= events


async def test_support_sets_a_password_and_the_customer_is_told(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        with pytest.raises(PasswordRejected):
            await stack.accounts.passwords.set_by_support(reference, "password1234", agent="alice")
        await stack.accounts.passwords.set_by_support(reference, NEW_PASSWORD, agent="alice")
        assert (
            await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
        ).customer_reference == reference
        await stack.mail_to(email, "was changed")


async def test_set_password_links_go_to_customers_without_one_and_resume(
    stack: StackFactory, time_skipping: Any, tmp_path: Path
) -> None:
    # a database of its own: the session's shared one holds every other test's customers without a
    # password (the imports' among them), and this run would send each of them a link
    database = await open_sqlite(tmp_path / "accounts.db")
    async with stack(time_skipping, database, lockout_max_failures=3) as built:
        emails = []
        for _ in range(3):
            email = unique_email("nopassword")
            registered = await built.accounts.register(
                Registration(email=email, channel="backoffice", locale="de_DE", password=None)
            )
            await built.mail_to(email)
            await built.accounts.verify_manually(registered.customer_reference, agent="setup", reason="imported")
            emails.append(email)
        first = [r async for r in built.accounts.passwords.send_links_to_customers_without_password(agent="alice")]
        again = [r async for r in built.accounts.passwords.send_links_to_customers_without_password(agent="alice")]
        assert sum(sent for _, sent in first) == 3
        assert not any(sent for _, sent in again)  # an interrupted run starts again without mailing twice
        for email in emails:
            link = token_from(await built.mail_to(email, "Passwort fest"))
            await built.accounts.passwords.complete_reset(link, NEW_PASSWORD)
            assert await built.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
    await database.engine.dispose()


async def test_a_reset_link_verifies_an_unverified_account(pw_stack: Any) -> None:
    """The link proves the address: an account whose verification expired is not stuck forever."""
    async with pw_stack() as stack:
        email = unique_email()
        registered = await stack.accounts.register(
            Registration(email=email, channel="api", locale="en_US", password=PASSWORD)
        )
        await stack.mail_to(email, "confirm")
        await stack.env.sleep(timedelta(hours=73))
        with pytest.raises(LoginFailed):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        await stack.accounts.passwords.forgotten(email)
        await stack.accounts.passwords.complete_reset(await reset_link(stack, email), NEW_PASSWORD)
        signed_in = await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)
        assert signed_in.customer_reference == registered.customer_reference


async def test_an_unknown_address_starts_nothing(pw_stack: Any) -> None:
    async with pw_stack() as stack:
        await stack.accounts.passwords.forgotten(unique_email("nobody"))
        await asyncio.sleep(0.3)
        assert not [m for m in stack.sink.messages if "nobody" in m.to[0]]


async def history_length(stack: Stack, workflow_id: str) -> int:
    return len((await stack.client.get_workflow_handle(workflow_id).fetch_history()).events)


async def test_a_refused_forgotten_password_request_costs_no_history(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    """~8,400 signals once reached Temporal's history limit and terminated the live reset; a request the
    throttle refuses is now refused by an Update validator, before anything is written. (On the dev
    server: the time-skipping test server writes a workflow task for every rejected update.)"""
    async with stack(dev_server, sqlite_database) as built:
        email, reference = await verified_customer(built)
        await built.accounts.passwords.forgotten(email)
        token = await reset_link(built, email)
        handle = built.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        while len((await handle.query(PasswordResetWorkflow.status)).sent_at) < 1:  # the send is recorded
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # ... and the workflow task after it is done
        before = await history_length(built, reset_id(reference))
        for _ in range(40):  # all within the minimum interval: every one is refused
            await built.accounts.passwords.forgotten(email)
        assert await history_length(built, reset_id(reference)) == before
        assert len([m for m in built.sink.to(email) if "Reset the password" in m.subject]) == 1
        await built.accounts.passwords.complete_reset(token, NEW_PASSWORD)


async def test_a_reset_that_keeps_being_asked_for_continues_as_new_and_its_links_live_on(pw_stack: Any) -> None:
    async with pw_stack(password_reset_history_limit=40, password_reset_resends_per_hour=100) as stack:
        email, reference = await verified_customer(stack)
        handle = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        await stack.accounts.passwords.forgotten(email)
        await reset_link(stack, email)
        first_run = (await handle.describe()).run_id
        for sent in range(2, 12):
            await stack.env.sleep(timedelta(minutes=1, seconds=1))
            await stack.accounts.passwords.forgotten(email)
            for _ in range(100):
                if len([m for m in stack.sink.to(email) if "Reset the password" in m.subject]) == sent:
                    break
                await asyncio.sleep(0.05)
        links = [token_from(m) for m in stack.sink.to(email) if "Reset the password" in m.subject]
        assert len(links) == 11  # one email per request, none lost or doubled across the runs
        description = await handle.describe()
        assert description.run_id != first_run  # it continued as new
        assert await history_length(stack, reset_id(reference)) < 40 + 15
        await stack.accounts.passwords.complete_reset(links[-2], NEW_PASSWORD)  # a link of an earlier run
        assert await handle.result() == "password_set"
        await stack.mail_to(email, "was changed")
        assert (await stack.accounts.logins.authenticate(email, NEW_PASSWORD, client_ip=IP)).customer_reference


async def test_forcing_a_reset_over_a_running_one_ends_it_through_its_own_path(pw_stack: Any) -> None:
    """Support's forced reset takes over the running reset (old links die, support's link works);
    the run is never terminated halfway."""
    async with pw_stack() as stack:
        email, reference = await verified_customer(stack)
        await stack.accounts.passwords.forgotten(email)
        old_token = await reset_link(stack, email)
        handle = stack.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        first_run = (await handle.describe()).run_id

        await stack.accounts.passwords.force_reset(reference, agent="alice")
        with pytest.raises(PasswordResetRequired):
            await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        for _ in range(100):
            if len([m for m in stack.sink.to(email) if "Reset the password" in m.subject]) == 2:
                break
            await asyncio.sleep(0.05)
        new_token = token_from([m for m in stack.sink.to(email) if "Reset the password" in m.subject][-1])
        with pytest.raises(InvalidResetKey):
            await stack.accounts.passwords.complete_reset(old_token, NEW_PASSWORD)
        await stack.accounts.passwords.complete_reset(new_token, NEW_PASSWORD)
        first = stack.client.get_workflow_handle(reset_id(reference), run_id=first_run)
        assert await first.result() == "password_set"
        assert (await first.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_forgotten_password_with_no_worker_up_gives_up_at_the_request_bound(
    stack: StackFactory, dev_server: Any, sqlite_database: Any
) -> None:
    """It runs after the API's answer, where no request deadline applies: it must not wait forever."""
    async with stack(dev_server, sqlite_database, request_timeout=timedelta(seconds=1)) as built:
        email, _ = await verified_customer(built)
        assert built.worker is not None
        await built.worker.shutdown()
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(built.accounts.passwords.forgotten(email), timeout=10)
        assert asyncio.get_running_loop().time() - started < 5
        await built.restart_worker()  # the reset it started goes on by itself
        await reset_link(built, email)
