"""Record the workflow histories that tests/workflows/test_replay.py replays.

    python -m tests.histories.record                          # every branch
    python -m tests.histories.record registration             # every branch of one workflow
    python -m tests.histories.record registration/resend lockout/continue-as-new
    python -m tests.histories.record --list                   # the branches this file knows
    python -m tests.histories.record --replace email-change   # overwrite instead of keeping the old file

Run it from the project root with the project's venv, by hand, when a workflow changes: record the
branches the change touches (and a new branch when it adds one) and commit the files. The test suite
never runs it. Each branch drives the real system, as a customer and support would: the time-skipping
test server (timers of days pass in milliseconds), a migrated SQLite file in a temporary directory,
the in-process SMTP sink and the real worker from worker.build_worker. It waits for each workflow to
close and writes its history as tests/histories/<workflow>/<branch>.json.

A history already at that path stands for runs of an earlier code version that may still be running
in production: it is kept beside the new one as <branch>@<its start time>.json and keeps being
replayed. Delete such a file once no run of that version can be left (or record with --replace).

Payloads are recorded unencrypted (ACCOUNTS_PAYLOAD_ENCRYPTION=false), so that a reviewer (and
test_replay.py) can read them: a history holding a password used here or a token the sink received is
refused, not written.

Adding a branch: a function decorated with @branch("<workflow>/<name>", ...) that drives the system
through the Stack it is given (tests/conftest.py) and returns the handles of the workflows to record,
one per name, in order (a handle with a run_id records that run). `settings` override Settings for
that branch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest imports as under pytest

from conftest import (
    RECORDER_PASSWORDS,
    Stack,
    _binary,
    csv_bytes,
    open_sqlite,
    open_stack,
    payload_texts,
    prefix,
    row,
    spryker_hash,
    start_time_skipping,
    token_from,
    unique_email,
)
from sqlalchemy import select, update
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from accounts import customer_sessions, inactivity, mfa
from accounts.models import AuditEvent, Customer, EmailOutbox, MfaMethod, ReferenceCounter
from accounts.references import CUSTOMER_COUNTER
from accounts.refresh_tokens import RefreshTokenStore
from accounts.staff import StaffDirectory
from accounts.temporal import SEARCH_ATTRIBUTES, dev_server_arguments
from accounts.throttle import customer_subject
from activities.inactivity import InactivityInput, inactivity_id
from api.web.sign_in import StaffSignIn
from devstack.mailsink import MailSink
from starter import AccountsClient, EmailTaken, LoginFailed, Registration
from starter.client import registration_id, registration_timings
from starter.imports import Imports
from starter.login import lockout_id
from starter.mfa import MfaLifecycles, activation_workflow_id, code_workflow_id
from starter.passwords import reset_id
from starter.schedules import INACTIVITY_SWEEP, THROTTLE_CLEANUP
from workflows.anonymization import anonymization_id
from workflows.assist import AssistWorkflow, assist_id
from workflows.data_export import data_export_id
from workflows.email_change import email_change_id
from workflows.inactivity import InactivitySweepWorkflow, InactivityWorkflow, SweepInput
from workflows.lockout import LockoutWindowWorkflow
from workflows.new_device import new_device_alert_id
from workflows.throttle_cleanup import CleanupRequest, ThrottleCleanupWorkflow

HERE = Path(__file__).resolve().parent
PASSWORD, NEW_PASSWORD = RECORDER_PASSWORDS  # the only passwords typed here
IP = "203.0.113.7"
STEP = timedelta(hours=1)  # how far finished() skips time at once


Handle = WorkflowHandle[Any, Any]
BranchFunction = Callable[[Stack], Awaitable[list[Handle]]]


# the recorder's one development-only setting: histories in plain text (the service encrypts by default)
PLAIN = {"payload_encryption": False}


@dataclass
class Branch:
    names: tuple[str, ...]
    record: BranchFunction
    settings: dict[str, Any] = field(default_factory=dict)
    # the dev server instead of the time-skipping one: deletion lists the customer's runs (visibility),
    # which the time-skipping server does not implement; such a branch must not wait on timers
    dev_server: bool = False


BRANCHES: list[Branch] = []


def branch(*names: str, dev_server: bool = False, **settings: Any) -> Callable[[BranchFunction], BranchFunction]:
    def register(function: BranchFunction) -> BranchFunction:
        BRANCHES.append(Branch(names, function, settings, dev_server))
        return function

    return register


# --- steps the branches share ------------------------------------------------------------------------


async def register(stack: Stack, email: str | None = None) -> tuple[str, str]:
    email = email or unique_email()
    registered = await stack.accounts.register(
        Registration(email=email, channel="api", locale="en_US", password=PASSWORD, first_name="Ada", last_name="Byron")
    )
    await stack.mail_to(email, "confirm")
    return email, registered.customer_reference


async def verified_customer(stack: Stack) -> tuple[str, str]:
    email, reference = await register(stack)
    assert (
        await stack.accounts.confirm_email(token_from(await stack.mail_to(email, "confirm")))
    ).outcome == "activated"
    await registration(stack, reference).result()
    return email, reference


def registration(stack: Stack, reference: str) -> Handle:
    return stack.client.get_workflow_handle(registration_id(reference))


def lockout(stack: Stack, reference: str) -> Handle:
    return stack.client.get_workflow_handle(lockout_id(customer_subject(reference)))


async def finished(stack: Stack, *handles: Handle) -> list[Handle]:
    """Let the runs close: skip time an hour at a time, once their activities are done (they run in real time)."""
    for handle in handles:
        skipped = timedelta(0)
        async with asyncio.timeout(120):  # an activity failing over and over would keep its run open
            while True:
                description = await handle.describe()
                status = description.status
                if status is not None and status != WorkflowExecutionStatus.RUNNING:
                    print(f"  {handle.id}: {status.name}")
                    assert status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.CANCELED), status
                    break
                # (the dev server's clock is the real one: a run between two activities is polled, not slept past)
                if description.raw_description.pending_activities or not stack.env.supports_time_skipping:
                    await asyncio.sleep(0.05)
                    continue
                assert skipped < timedelta(days=14), f"{handle.id} still runs after two weeks"
                await stack.env.sleep(STEP)
                skipped += STEP
    return list(handles)


async def fail_sign_ins(stack: Stack, email: str, times: int) -> None:
    for _ in range(times):
        try:
            await stack.accounts.logins.authenticate(email, "wrong password!", client_ip=IP)
        except LoginFailed:
            continue
        raise AssertionError("a wrong password signed in")


async def locked(stack: Stack, reference: str) -> None:
    for _ in range(200):
        status = await lockout(stack, reference).query(LockoutWindowWorkflow.status)
        if status.locked_until is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{reference} was not locked")


async def customer(stack: Stack, reference: str) -> Customer:
    found = await stack.accounts.customer_by_reference(reference)
    assert found is not None
    return found


# --- registration ------------------------------------------------------------------------------------


@branch("registration/verified")
async def registration_verified(stack: Stack) -> list[Handle]:
    _, reference = await verified_customer(stack)
    return [registration(stack, reference)]


@branch("registration/reminded-confirmed")
async def registration_reminded_confirmed(stack: Stack) -> list[Handle]:
    email, reference = await register(stack)
    await stack.env.sleep(stack.settings.verification_reminder_after + timedelta(seconds=1))
    confirmation = await stack.accounts.confirm_email(token_from(await stack.mail_to(email, "reminder")))
    assert confirmation.outcome == "activated"
    return await finished(stack, registration(stack, reference))


@branch("registration/expired-keep", unverified_action="keep")
async def registration_expired_keep(stack: Stack) -> list[Handle]:
    _, reference = await register(stack)
    return await finished(stack, registration(stack, reference))


@branch("registration/expired-anonymize", unverified_action="anonymize")
async def registration_expired_anonymize(stack: Stack) -> list[Handle]:
    _, reference = await register(stack)
    return await finished(stack, registration(stack, reference))


@branch("registration/duplicate-address")
async def registration_duplicate_address(stack: Stack) -> list[Handle]:
    email, _ = await verified_customer(stack)
    try:
        await register(stack, email)
        raise AssertionError("a taken address registered")
    except EmailTaken:
        pass
    async with stack.database.sessions() as session:
        counter = await session.scalar(select(ReferenceCounter.value).where(ReferenceCounter.name == CUSTOMER_COUNTER))
    return await finished(stack, registration(stack, f"{stack.settings.customer_reference_prefix}{counter}"))


@branch("registration/resend")
async def registration_resend(stack: Stack) -> list[Handle]:
    email, reference = await register(stack)
    await stack.env.sleep(stack.settings.verification_resend_min_interval + timedelta(seconds=1))
    await stack.accounts.resend_verification(reference)
    for _ in range(200):
        if len(stack.sink.to(email)) == 2:
            break
        await asyncio.sleep(0.05)
    assert (await stack.accounts.confirm_email(token_from(stack.sink.to(email)[-1]))).outcome == "activated"
    return await finished(stack, registration(stack, reference))


@branch("registration/manual-verify")
async def registration_manual_verify(stack: Stack) -> list[Handle]:
    _, reference = await register(stack)
    await stack.accounts.verify_manually(reference, agent="alice", reason="customer called support")
    return await finished(stack, registration(stack, reference))


# --- password reset ----------------------------------------------------------------------------------


@branch("password-reset/completed")
async def reset_completed(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.forgotten(email)
    await stack.accounts.passwords.complete_reset(token_from(await stack.mail_to(email, "reset")), NEW_PASSWORD)
    return await finished(stack, stack.client.get_workflow_handle(reset_id(reference)))


@branch("password-reset/expired")
async def reset_expired(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.forgotten(email)
    await stack.mail_to(email, "reset")
    return await finished(stack, stack.client.get_workflow_handle(reset_id(reference)))


@branch("password-reset/tell-registration", "registration/email-proven")
async def reset_tell_registration(stack: Stack) -> list[Handle]:
    """The reset link of an unverified account proves its address: the waiting registration hears it."""
    email, reference = await register(stack)
    await stack.accounts.passwords.forgotten(email)
    await stack.accounts.passwords.complete_reset(token_from(await stack.mail_to(email, "reset")), NEW_PASSWORD)
    return await finished(stack, stack.client.get_workflow_handle(reset_id(reference)), registration(stack, reference))


@branch("password-reset/forced")
async def reset_forced(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.force_reset(reference, agent="alice")
    await stack.accounts.passwords.complete_reset(token_from(await stack.mail_to(email, "reset")), NEW_PASSWORD)
    return await finished(stack, stack.client.get_workflow_handle(reset_id(reference)))


@branch("password-reset/forced-over-running")
async def reset_forced_over_running(stack: Stack) -> list[Handle]:
    """Support forces a reset while the customer's own one waits: the run takes it over (`force` update)."""
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.forgotten(email)
    await stack.mail_to(email, "reset")
    await stack.accounts.passwords.force_reset(reference, agent="alice")
    links = []
    for _ in range(200):
        links = [m for m in stack.sink.to(email) if "reset" in m.subject.lower()]
        if len(links) == 2:
            break
        await asyncio.sleep(0.05)
    await stack.accounts.passwords.complete_reset(token_from(links[-1]), NEW_PASSWORD)
    return await finished(stack, stack.client.get_workflow_handle(reset_id(reference)))


@branch(
    "password-reset/continue-as-new",
    "password-reset/continued",
    password_reset_history_limit=40,  # stands in for the server's suggestion after thousands of events
    password_reset_resends_per_hour=100,
)
async def reset_continue_as_new(stack: Stack) -> list[Handle]:
    """A customer who keeps asking for links: accepted `request_link` updates until the reset continues as
    new; its first run, and the last one (started from the carried links, completed with one of them)."""
    email, reference = await verified_customer(stack)
    handle = stack.client.get_workflow_handle(reset_id(reference))
    await stack.accounts.passwords.forgotten(email)
    await stack.mail_to(email, "reset")
    first = (await handle.describe()).run_id
    assert first is not None
    for sent in range(2, 20):
        await stack.env.sleep(timedelta(minutes=1, seconds=1))
        await stack.accounts.passwords.forgotten(email)
        for _ in range(200):
            if len([m for m in stack.sink.to(email) if "reset" in m.subject.lower()]) == sent:
                break
            await asyncio.sleep(0.05)
        if (await handle.describe()).run_id != first:
            break
    else:
        raise AssertionError("the reset never continued as new")
    links = [m for m in stack.sink.to(email) if "reset" in m.subject.lower()]
    await stack.accounts.passwords.complete_reset(token_from(links[-1]), NEW_PASSWORD)
    await finished(stack, handle)
    last = (await handle.describe()).run_id
    return [stack.client.get_workflow_handle(handle.id, run_id=r) for r in (first, last)]


# --- lockout -----------------------------------------------------------------------------------------


@branch("lockout/window-closed", lockout_max_failures=3)
async def lockout_window_closed(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await fail_sign_ins(stack, email, 2)
    return await finished(stack, lockout(stack, reference))


@branch("lockout/lock-timer", lockout_max_failures=3)
async def lockout_lock_timer(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await fail_sign_ins(stack, email, 3)
    await stack.mail_to(email, "paused")
    return await finished(stack, lockout(stack, reference))


@branch("lockout/lock-unlock", lockout_max_failures=3)
async def lockout_lock_unlock(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await fail_sign_ins(stack, email, 3)
    await locked(stack, reference)
    await stack.accounts.logins.unlock(reference, agent="alice", reason="customer called support")
    return await finished(stack, lockout(stack, reference))


@branch(
    "lockout/continue-as-new",
    "lockout/continued",
    lockout_max_failures=3,
    lockout_escalation_factor=1.0,
    lockout_history_limit=40,  # stands in for the server's suggestion after thousands of events
)
async def lockout_continue_as_new(stack: Stack) -> list[Handle]:
    """Locks and support unlocks until the window continues as new: its first run, and its last one (which
    started from the carried state and ended the window)."""
    email, reference = await verified_customer(stack)
    runs: list[str] = []
    for _ in range(12):
        await fail_sign_ins(stack, email, 3)
        await locked(stack, reference)
        run_id = (await lockout(stack, reference).describe()).run_id
        assert run_id is not None
        runs.append(run_id)
        await stack.accounts.logins.unlock(reference, agent="alice", reason="customer called support")
        if run_id != runs[0]:
            break
    else:
        raise AssertionError("the lockout window never continued as new")
    await finished(stack, lockout(stack, reference))
    last = (await lockout(stack, reference).describe()).run_id
    workflow_id = lockout(stack, reference).id
    return [stack.client.get_workflow_handle(workflow_id, run_id=r) for r in (runs[0], last)]


# --- email change ------------------------------------------------------------------------------------


async def request_change(stack: Stack, reference: str, new_email: str) -> None:
    await stack.accounts.email_changes.request(
        await customer(stack, reference), new_email, channel="storefront", actor=reference
    )


@branch("email-change/confirmed")
async def email_change_confirmed(stack: Stack) -> list[Handle]:
    _, reference = await verified_customer(stack)
    new_email = unique_email("new")
    await request_change(stack, reference, new_email)
    link = token_from(await stack.mail_to(new_email, "confirm your new email"))
    assert (await stack.accounts.email_changes.confirm(link)).outcome == "changed"
    return await finished(stack, stack.client.get_workflow_handle(email_change_id(reference)))


@branch("email-change/undone")
async def email_change_undone(stack: Stack) -> list[Handle]:
    """Confirmed, then undone from the old address (its link): the address comes back, every session ends."""
    email, reference = await verified_customer(stack)
    new_email = unique_email("new")
    await request_change(stack, reference, new_email)
    link = token_from(await stack.mail_to(new_email, "confirm your new email"))
    assert (await stack.accounts.email_changes.confirm(link)).outcome == "changed"
    undo = token_from(await stack.mail_to(email, "was changed"))
    assert (await stack.accounts.email_changes.undo(undo)).outcome == "undone"
    return await finished(stack, stack.client.get_workflow_handle(email_change_id(reference)))


@branch("email-change/superseded")
async def email_change_superseded(stack: Stack) -> list[Handle]:
    """A second request replaces the first (its link dies); the second one is confirmed."""
    _, reference = await verified_customer(stack)
    first, second = unique_email("first"), unique_email("second")
    await request_change(stack, reference, first)
    await stack.mail_to(first, "confirm your new email")
    await request_change(stack, reference, second)
    link = token_from(await stack.mail_to(second, "confirm your new email"))
    assert (await stack.accounts.email_changes.confirm(link)).outcome == "changed"
    return await finished(stack, stack.client.get_workflow_handle(email_change_id(reference)))


@branch("email-change/taken")
async def email_change_taken(stack: Stack) -> list[Handle]:
    other_email, _ = await verified_customer(stack)
    _, reference = await verified_customer(stack)
    await request_change(stack, reference, other_email)
    return await finished(stack, stack.client.get_workflow_handle(email_change_id(reference)))


@branch("email-change/expired")
async def email_change_expired(stack: Stack) -> list[Handle]:
    _, reference = await verified_customer(stack)
    new_email = unique_email("new")
    await request_change(stack, reference, new_email)
    await stack.mail_to(new_email, "confirm your new email")
    return await finished(stack, stack.client.get_workflow_handle(email_change_id(reference)))


# --- deletion, passwords -----------------------------------------------------------------------------


@branch("anonymization/anonymized", dev_server=True)
async def anonymized(stack: Stack) -> list[Handle]:
    _, reference = await verified_customer(stack)
    await stack.accounts.deletions.delete(reference, channel="storefront", actor=reference)
    return await finished(stack, stack.client.get_workflow_handle(anonymization_id(reference)))


@branch("anonymization/running-lifecycles", dev_server=True)
async def anonymized_running_lifecycles(stack: Stack) -> list[Handle]:
    """Deleted while a password reset and an email change wait: both are canceled first."""
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.forgotten(email)
    await stack.mail_to(email, "reset")
    new_email = unique_email("new")
    await request_change(stack, reference, new_email)
    await stack.mail_to(new_email, "confirm your new email")
    await stack.accounts.deletions.delete(reference, channel="storefront", actor=reference)
    # (the reset closed before the deletion went on; the deletion then removed it from Temporal)
    return await finished(stack, stack.client.get_workflow_handle(anonymization_id(reference)))


@branch("password-change/changed")
async def password_changed(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)
    await stack.accounts.passwords.change(await customer(stack, reference), current=PASSWORD, new=NEW_PASSWORD,
                                          client_ip=IP)  # fmt: skip
    async with stack.database.sessions() as session:  # the workflow id is random; its key starts with it
        key = await session.scalar(
            select(AuditEvent.idempotency_key).where(
                AuditEvent.customer_reference == reference, AuditEvent.event == "password_changed"
            )
        )
    assert key is not None
    await stack.mail_to(email, "was changed")
    return await finished(stack, stack.client.get_workflow_handle(key.split("/", 1)[0]))


@branch("password-rehash/rehashed")
async def rehashed(stack: Stack) -> list[Handle]:
    email, reference = await verified_customer(stack)  # hashed with the recorder's time_cost=1
    stronger = stack.settings.model_copy(update={"argon2_time_cost": 2})
    await AccountsClient(stack.client, stronger, stack.database.sessions).logins.authenticate(
        email, PASSWORD, client_ip=IP
    )
    return await finished(stack, stack.client.get_workflow_handle(f"password-rehash:{reference}"))


# --- staff lock notice ----------------------------------------------------------------------------------


@branch("staff-lock-notice/mailed", lockout_max_failures=3)
async def staff_lock_mailed(stack: Stack) -> list[Handle]:
    """A staff name locked by wrong passwords at the back-office sign-in; its member has an email."""
    address = unique_email("staff")
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    member, _ = await directory.create(f"sam-{uuid.uuid4().hex[:8]}", "support", password=PASSWORD, email=address)
    sign_in = StaffSignIn(stack.settings, stack.database.sessions, directory, stack.accounts.staff_locks)
    for _ in range(3):
        assert await sign_in.authenticate(member.name, NEW_PASSWORD, client_ip=IP) is None
    await stack.mail_to(address, "paused")
    async with stack.database.sessions() as session:
        key = await session.scalar(select(EmailOutbox.idempotency_key).where(EmailOutbox.recipient == address))
    assert key is not None
    return await finished(stack, stack.client.get_workflow_handle(key))


# --- new-device alert ---------------------------------------------------------------------------------


@branch("new-device/alerted")
async def new_device_alerted(stack: Stack) -> list[Handle]:
    """A second sign-in from another browser: its session recorded as POST /access-tokens records it, then
    the alert the route starts after its answer."""
    email, reference = await verified_customer(stack)
    store = RefreshTokenStore.from_settings(stack.settings, stack.database.sessions)
    for user_agent in ("Mozilla/5.0 (Windows NT 10.0; rv:133.0) Gecko/20100101 Firefox/133.0", "curl/8.5.0"):
        who = await stack.accounts.logins.authenticate(email, PASSWORD, client_ip=IP)
        family_id = uuid.uuid4().hex
        device = customer_sessions.SignInDevice(
            customer_sessions.device_name(user_agent), customer_sessions.network_prefix(IP), None, False
        )

        async def started(
            session: Any,
            now: datetime,
            customer_id: int = who.customer_id,
            family_id: str = family_id,
            device: Any = device,
        ) -> None:
            await customer_sessions.record(
                session, customer_id=customer_id, family_id=family_id, device=device, now=now
            )

        await store.issue(who.customer_id, family_id=family_id, token_version=who.token_version, started=started)
    await stack.accounts.customer_sessions.alert_new_device(reference, family_id, datetime.now(UTC))
    await stack.mail_to(email, "new sign-in")
    return await finished(stack, stack.client.get_workflow_handle(new_device_alert_id(reference, family_id)))


# --- agent assistance ---------------------------------------------------------------------------------


async def assisting(stack: Stack) -> tuple[str, Handle]:
    """An agent starts assisting a verified customer (as POST /agent-customer-impersonation-access-tokens)."""
    _, reference = await verified_customer(stack)
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    agent, _ = await directory.create(f"agnes-{uuid.uuid4().hex[:8]}", "agent")
    started = await stack.accounts.assists.begin(agent, reference)
    return reference, stack.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, started.assist_id))


@branch("assist/ended")
async def assist_ended(stack: Stack) -> list[Handle]:
    """Two changes made with the token, then the token deleted."""
    reference, handle = await assisting(stack)
    session_id = handle.id.rsplit(":", 1)[1]
    for method, route in (("PATCH", "/customers/{customer_reference}"), ("POST", "/carts")):
        await stack.accounts.assists.record_action(reference, session_id, method, route, timeout=30)
    assert await stack.accounts.assists.end(reference, session_id, reason="token_deleted", ended_by="agent:agnes")
    return await finished(stack, handle)


@branch("assist/expired")
async def assist_expired(stack: Stack) -> list[Handle]:
    """Nobody ends the session: its time runs out."""
    _, handle = await assisting(stack)
    return await finished(stack, handle)


# --- data export --------------------------------------------------------------------------------------


@branch("data-export/expired")
async def data_export_expired(stack: Stack) -> list[Handle]:
    """The customer's own request: the archive stored, the link mailed, the archive deleted at its expiry."""
    email, reference = await verified_customer(stack)
    export_id = await stack.accounts.data_exports.request(reference, channel="api", actor="customer")
    await stack.mail_to(email, "ready to download")
    return await finished(stack, stack.client.get_workflow_handle(data_export_id(reference, export_id)))


# --- throttle cleanup ---------------------------------------------------------------------------------


@branch("throttle-cleanup/cleaned")
async def throttle_cleaned(stack: Stack) -> list[Handle]:
    """One run as the `throttle-cleanup` Schedule starts it (the time-skipping server has no schedules)."""
    handle = await stack.client.start_workflow(
        ThrottleCleanupWorkflow.run,
        CleanupRequest(retention=stack.settings.throttle_retention),
        id=f"{THROTTLE_CLEANUP}-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )
    return await finished(stack, handle)


# --- customer import ----------------------------------------------------------------------------------


def import_rows(count: int, *, unverified_every: int = 0) -> bytes:
    p = prefix()
    return csv_bytes(
        [
            row(
                f"{p}{n}",
                unique_email("imported"),
                registered="" if unverified_every and n % unverified_every == 0 else "2020-01-01",
            )
            for n in range(1, count + 1)
        ]
    )


@branch("customer-import/completed", "registration/imported")
async def import_completed(stack: Stack) -> list[Handle]:
    p = prefix()
    email = unique_email("imported")
    content = csv_bytes(
        [
            row(f"{p}1", unique_email("imported")),
            row(f"{p}2", email, registered="", password=spryker_hash()),  # a verification link
            row(f"{p}3", unique_email("imported"), registered=""),  # no password: a set-password link
            row("X", email),
        ]
    )
    started = await stack.accounts.imports.start(content)
    imported = await finished(stack, stack.client.get_workflow_handle(started.workflow_id))
    confirmation = await stack.accounts.confirm_email(token_from(await stack.mail_to(email)))
    assert confirmation.outcome == "activated"
    return [*imported, *await finished(stack, registration(stack, f"{p}2"))]


@branch("registration/imported-without-password")
async def imported_without_password(stack: Stack) -> list[Handle]:
    """A customer imported unverified without a password: its one link sets the password (no reminder)."""
    p, email = prefix(), unique_email("imported")
    started = await stack.accounts.imports.start(csv_bytes([row(f"{p}1", email, registered="")]))
    await finished(stack, stack.client.get_workflow_handle(started.workflow_id))
    await stack.accounts.passwords.complete_reset(token_from(await stack.mail_to(email)), NEW_PASSWORD)
    handle = registration(stack, f"{p}1")
    # it closes at once (email_proven); finished()'s time skipping timed out here while the reset's
    # activities ran, so wait in real time
    async with asyncio.timeout(60):
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await asyncio.sleep(0.2)
    return [handle]


@branch("customer-import/continue-as-new", "customer-import/continued")
async def import_continued(stack: Stack) -> list[Handle]:
    imports = Imports(
        stack.client, stack.settings, registration_timings(stack.settings), batch_size=2, history_limit=30
    )
    started = await imports.start(import_rows(12, unverified_every=3))
    (last,) = await finished(stack, stack.client.get_workflow_handle(started.workflow_id))
    history = await last.fetch_history()
    first_run = history.events[0].workflow_execution_started_event_attributes.first_execution_run_id
    return [stack.client.get_workflow_handle(started.workflow_id, run_id=first_run), last]


@branch("customer-import/cancelled")
async def import_cancelled(stack: Stack) -> list[Handle]:
    imports = Imports(stack.client, stack.settings, registration_timings(stack.settings), batch_size=1)
    started = await imports.start(import_rows(40))
    while (await imports.progress(started.import_id)).rows_read < 2:
        await asyncio.sleep(0.02)
    assert (await imports.cancel(started.import_id)).stopped_at_line is not None
    return await finished(stack, stack.client.get_workflow_handle(started.workflow_id))


# --- multi-factor authentication ---------------------------------------------------------------------


async def mfa_email_activation(stack: Stack) -> tuple[str, str, int, str]:
    """An email activation as the API begins it: the code's run and the deadline's run. Returns the code."""
    email, reference = await verified_customer(stack)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    started = await mfa.start_email_activation(stack.database.sessions, policy, await customer(stack, reference))
    assert started.code_id is not None
    await stack.accounts.mfa.send_code(reference, started.code_id)
    await stack.accounts.mfa.activation_started(reference, mfa.EMAIL, started.expires_at)
    message = await stack.mail_to(email, "security code")
    code = next(word for word in message.text.split() if len(word) == 6 and word.isdigit())
    return email, reference, started.code_id, code


@branch("mfa-code/sent", "mfa-activation/expired")
async def mfa_activation_expired(stack: Stack) -> list[Handle]:
    _, reference, code_id, _ = await mfa_email_activation(stack)
    return await finished(
        stack,
        stack.client.get_workflow_handle(code_workflow_id(reference, code_id)),
        stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL)),
    )


@branch("mfa-activation/verified")
async def mfa_activation_verified(stack: Stack) -> list[Handle]:
    _, reference, _, code = await mfa_email_activation(stack)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    found = await customer(stack, reference)
    assert await mfa.verify_activation(stack.database.sessions, policy, found, mfa.EMAIL, code)
    return await finished(stack, stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL)))


@branch("mfa-activation/continue-as-new", "mfa-activation/continued")
async def mfa_activation_continued(stack: Stack) -> list[Handle]:
    """An activation started again each hour until its run continues as new (a history limit of 30 stands
    in for months of restarts): its first run, and the last one, which drops the method at its deadline."""
    _, reference = await verified_customer(stack)
    found = await customer(stack, reference)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    await mfa.start_email_activation(stack.database.sessions, policy, found)
    deadline = await stack.env.get_current_time() + timedelta(hours=1)  # the server's clock, skipped ahead
    async with stack.database.sessions.begin() as session:
        await session.execute(update(MfaMethod).where(MfaMethod.customer_id == found.id).values(expires_at=deadline))
    lifecycles = MfaLifecycles(stack.client, stack.settings, activation_history_limit=30)
    await lifecycles.activation_started(reference, mfa.EMAIL, deadline)
    handle = stack.client.get_workflow_handle(activation_workflow_id(reference, mfa.EMAIL))
    first = (await handle.describe()).run_id
    assert first is not None
    for _ in range(12):
        deadline += timedelta(hours=1)
        async with stack.database.sessions.begin() as session:
            await session.execute(
                update(MfaMethod).where(MfaMethod.customer_id == found.id).values(expires_at=deadline)
            )
        await lifecycles.activation_started(reference, mfa.EMAIL, deadline)
        await stack.env.sleep(timedelta(hours=1))
        if (await handle.describe()).run_id != first:
            break
    else:
        raise AssertionError("the activation never continued as new")
    await finished(stack, handle)
    last = (await handle.describe()).run_id
    return [stack.client.get_workflow_handle(handle.id, run_id=r) for r in (first, last)]


@branch("mfa-removed/notified")
async def mfa_removed(stack: Stack) -> list[Handle]:
    _, reference, _, code = await mfa_email_activation(stack)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    found = await customer(stack, reference)
    assert await mfa.verify_activation(stack.database.sessions, policy, found, mfa.EMAIL, code)
    removed = await mfa.deactivate(stack.database.sessions, found, None, channel="backoffice", actor="support")
    workflow_id = await stack.accounts.mfa.removed_by_support(reference, removed)
    return await finished(stack, stack.client.get_workflow_handle(workflow_id))


@branch("mfa-activated/notified")
async def mfa_activated(stack: Stack) -> list[Handle]:
    _, reference, _, code = await mfa_email_activation(stack)
    policy = mfa.MfaPolicy.from_settings(stack.settings)
    found = await customer(stack, reference)
    assert await mfa.verify_activation(stack.database.sessions, policy, found, mfa.EMAIL, code)
    workflow_id = await stack.accounts.mfa.activated(reference, mfa.EMAIL)
    return await finished(stack, stack.client.get_workflow_handle(workflow_id))


# --- inactive accounts ----------------------------------------------------------------------------------

LONG_AGO = datetime(2000, 6, 1, tzinfo=UTC)  # the dormant customers' last sign-in
CUTOFF = datetime(2001, 1, 1, tzinfo=UTC)  # the recorded sweeps' and lifecycles' `inactive_before`
# the worker's settings with the feature on (a lifecycle's step ends it while the worker's settings are off)
INACTIVE_ON: dict[str, Any] = {
    "inactive_remind_after": "P23M",
    "inactive_warn_after": "P23M14D",
    "inactive_retire_after": "P2Y",
}


async def dormant_customer(stack: Stack) -> tuple[str, str]:
    email, reference = await verified_customer(stack)
    async with stack.database.sessions.begin() as session:
        await session.execute(
            update(Customer).where(Customer.customer_reference == reference).values(last_signed_in_at=LONG_AGO)
        )
    return email, reference


async def inactivity_lifecycle(stack: Stack, reference: str, action: str) -> Handle:
    return await stack.client.start_workflow(
        InactivityWorkflow.run,
        InactivityInput(reference, CUTOFF, timedelta(days=1), timedelta(days=1), action, ["new"]),
        id=inactivity_id(reference),
        task_queue=stack.settings.task_queue,
    )


@branch("inactivity/kept", **INACTIVE_ON)
async def inactivity_kept(stack: Stack) -> list[Handle]:
    _, reference = await dormant_customer(stack)
    return await finished(stack, await inactivity_lifecycle(stack, reference, "keep"))


@branch("inactivity/retired", **INACTIVE_ON)
async def inactivity_retired(stack: Stack) -> list[Handle]:
    """Up to the deletion lifecycle's start (it runs on, abandoned: here without visibility it cannot end)."""
    _, reference = await dormant_customer(stack)
    return await finished(stack, await inactivity_lifecycle(stack, reference, "anonymize"))


@branch("inactivity/signed-in", **INACTIVE_ON)
async def inactivity_signed_in(stack: Stack) -> list[Handle]:
    email, reference = await dormant_customer(stack)
    handle = await inactivity_lifecycle(stack, reference, "anonymize")
    await stack.mail_to(email, "sign in to keep")
    async with stack.database.sessions.begin() as session:  # the sign-in's write (api/routes/access_tokens.py)
        await inactivity.record_sign_in(session, (await customer(stack, reference)).id, datetime.now(UTC))
    await stack.accounts.inactivity.signed_in(reference)
    return await finished(stack, handle)


def recorded_sweep(**overrides: Any) -> SweepInput:
    remind = datetime.now(UTC) - CUTOFF
    return SweepInput(remind, remind + timedelta(days=1), remind + timedelta(days=2), "keep", ["new"], **overrides)


@branch("inactivity-sweep/swept")
async def inactivity_swept(stack: Stack) -> list[Handle]:
    await dormant_customer(stack)
    handle = await stack.client.start_workflow(
        InactivitySweepWorkflow.run,
        recorded_sweep(),
        id=f"{INACTIVITY_SWEEP}-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )
    return await finished(stack, handle)


@branch("inactivity-sweep/continue-as-new", "inactivity-sweep/continued")
async def inactivity_sweep_continued(stack: Stack) -> list[Handle]:
    await dormant_customer(stack)
    await dormant_customer(stack)
    handle = await stack.client.start_workflow(
        InactivitySweepWorkflow.run,
        recorded_sweep(page_size=1, pages_per_run=1),
        id=f"{INACTIVITY_SWEEP}-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )
    (last,) = await finished(stack, handle)
    return [stack.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id), last]


# --- writing ------------------------------------------------------------------------------------------


def secrets_in(text: str, sink: MailSink) -> list[str]:
    tokens = [
        link.split("token=", 1)[1].split("&", 1)[0] for m in sink.messages for link in m.links if "token=" in link
    ]
    codes = [m.subject.rsplit(" ", 1)[-1] for m in sink.messages if "security code" in m.subject.lower()]
    readable = "\n".join([text, *payload_texts(json.loads(text))])
    return (
        [f"password {p[:9]}..." for p in RECORDER_PASSWORDS if p in readable]
        + [f"token {t[:6]}..." for t in tokens if t in readable]
        + [f"MFA code {c[:2]}..." for c in codes if c in readable]
    )


def write(name: str, text: str, *, replace: bool) -> Path:
    path = HERE / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    if path.exists() and not replace:
        started = datetime.fromisoformat(json.loads(path.read_text())["events"][0]["eventTime"].replace("Z", "+00:00"))
        kept = path.with_name(f"{path.stem}@{started:%Y-%m-%dT%H%M}.json")
        path.rename(kept)
        print(f"  kept the earlier recording as {kept.relative_to(HERE)}")
    path.write_text(text + "\n")
    return path


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_extra_args=dev_server_arguments(),
    )


async def record(selected: list[Branch], *, replace: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="record-histories-") as tmp:
        database = await open_sqlite(Path(tmp) / "accounts.db")
        try:
            async with MailSink("127.0.0.1", 0) as sink:
                for chosen in selected:
                    print(", ".join(chosen.names))
                    env = await (start_dev_server() if chosen.dev_server else start_time_skipping())
                    try:
                        var = Path(tmp) / "var"
                        async with open_stack(env, database, sink, var, **PLAIN, **chosen.settings) as stack:
                            handles = await chosen.record(stack)
                            assert len(handles) == len(chosen.names), chosen.names
                            for name, handle in zip(chosen.names, handles, strict=True):
                                text = (await handle.fetch_history()).to_json()
                                leaked = secrets_in(text, sink)
                                if leaked:
                                    raise SystemExit(f"{name}: the history holds {', '.join(leaked)}; not written")
                                print(f"  wrote {write(name, text, replace=replace).relative_to(HERE)}")
                    finally:
                        await env.shutdown()
        finally:
            await database.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.histories.record", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="<workflow> or <workflow>/<branch>; none: every branch")
    parser.add_argument("--list", action="store_true", help="list the branches and exit")
    parser.add_argument("--replace", action="store_true", help="overwrite an existing recording instead of keeping it")
    args = parser.parse_args()
    if args.list:
        for known in BRANCHES:
            print("  ".join(known.names))
        return
    selected = [
        b
        for b in BRANCHES
        if not args.names or any(n == w or n == w.split("/")[0] for n in args.names for w in b.names)
    ]
    unknown = [n for n in args.names if not any(n in (w, w.split("/")[0]) for b in BRANCHES for w in b.names)]
    if unknown:
        parser.error(f"no such branch: {', '.join(unknown)} (see --list)")
    asyncio.run(record(selected, replace=args.replace))


if __name__ == "__main__":
    main()
