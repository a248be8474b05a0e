"""Inactive accounts: the whole `inactivity:{ref}` timeline on the time-skipping server (months pass in
milliseconds), the sweep and the retirement through the deletion lifecycle on the dev server, with real
activities, the real database (both) and the SMTP sink."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, unique_email
from sqlalchemy import select, update
from temporalio.api.enums.v1 import EventType
from temporalio.client import ScheduleActionStartWorkflow, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from accounts import inactivity
from accounts.email_address import email_key
from accounts.models import AuditEvent, Customer, Order, utcnow
from accounts.references import allocate_customer_reference
from activities.inactivity import InactivityInput, inactivity_id
from starter.schedules import INACTIVITY_SWEEP, THROTTLE_CLEANUP, ensure_schedules
from workflows.inactivity import InactivitySweepWorkflow, InactivityWorkflow, SweepInput

MONTH = timedelta(days=30)
REMIND, WARN, RETIRE = 23 * MONTH, 23 * MONTH + timedelta(days=14), 24 * MONTH
ON = {"inactive_remind_after": REMIND, "inactive_warn_after": WARN, "inactive_retire_after": RETIRE}


async def dormant_customer(
    database: Database, *, signed_in: datetime, locale: str = "en_US", order_status: str | None = None
) -> tuple[str, str]:
    """A verified customer whose last sign-in was `signed_in` (optionally with an order in a status)."""
    reference = await allocate_customer_reference(database.sessions, prefix=database.reference_prefix)
    email = unique_email("dormant")
    async with database.sessions.begin() as session:
        customer = Customer(
            customer_reference=reference,
            email=email,
            email_key=email_key(email),
            locale=locale,
            channel="api",
            registered_at=signed_in - timedelta(days=1),
            last_signed_in_at=signed_in,
        )
        session.add(customer)
        await session.flush()
        if order_status is not None:
            session.add(
                Order(
                    order_reference=f"ORD-{uuid.uuid4().hex[:10]}",
                    customer_id=customer.id,
                    created_at=signed_in,
                    status=order_status,
                    currency="EUR",
                    totals={"grandTotal": 1000},
                    items=[],
                )
            )
    return email, reference


async def stage(database: Database, reference: str) -> str | None:
    async with database.sessions() as session:
        return await session.scalar(select(Customer.inactivity_stage).where(Customer.customer_reference == reference))


async def events(database: Database, reference: str) -> list[tuple[str, dict[str, Any]]]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(AuditEvent.event, AuditEvent.details)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event.startswith("inactivity_"))
            .order_by(AuditEvent.id)
        )
        return [(row.event, row.details) for row in rows]


async def start_lifecycle(stack: Stack, reference: str, *, action: str = "keep") -> WorkflowHandle[Any, Any]:
    return await stack.client.start_workflow(
        InactivityWorkflow.run,
        InactivityInput(reference, utcnow() - REMIND, WARN - REMIND, RETIRE - WARN, action, ["new"]),
        id=inactivity_id(reference),
        task_queue=stack.settings.task_queue,
    )


@pytest.fixture
def skipping(stack: StackFactory, time_skipping: Any, database: Database) -> Any:
    return stack(time_skipping, database, **ON)


async def test_a_kept_account_is_reminded_warned_and_kept_months_later(skipping: Any, database: Database) -> None:
    async with skipping as built:
        email, reference = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        handle = await start_lifecycle(built, reference)
        reminder = await built.mail_to(email, "sign in to keep")
        assert "Last reminder" not in reminder.subject
        assert await stage(database, reference) == inactivity.REMINDED
        result = await handle.result()  # a month of simulated time passes
        assert result.outcome == "kept"
        warning = await built.mail_to(email, "last reminder")
        assert "/login" in warning.text and "delete" not in warning.text  # keep: no deletion is announced
        assert await stage(database, reference) == inactivity.KEPT
        assert [event for event, _ in await events(database, reference)] == [
            "inactivity_reminded",
            "inactivity_warned",
            "inactivity_kept",
            "inactivity_ended",
        ]


async def test_a_sign_in_ends_the_lifecycle_and_a_lost_signal_ends_it_at_the_next_step(
    skipping: Any, database: Database
) -> None:
    async with skipping as built:
        told, told_ref = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        silent, silent_ref = await dormant_customer(
            database, signed_in=utcnow() - REMIND - timedelta(days=1), locale="de_DE"
        )
        told_run = await start_lifecycle(built, told_ref, action="anonymize")
        silent_run = await start_lifecycle(built, silent_ref, action="anonymize")
        assert "Melden Sie sich an" in (await built.mail_to(silent, "Kundenkonto")).subject
        await built.mail_to(told, "sign in to keep")
        for reference in (told_ref, silent_ref):  # the sign-in's own write (api/routes/access_tokens.py)
            async with database.sessions.begin() as session:
                customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
                assert customer is not None
                await inactivity.record_sign_in(session, customer.id, utcnow())
        await built.accounts.inactivity.signed_in(told_ref)  # the other's signal was lost
        assert (await told_run.result()).outcome == "signed_in"
        assert (await silent_run.result()).outcome == "active"  # at the warning step, without its email
        for reference in (told_ref, silent_ref):
            assert await stage(database, reference) is None
        assert [e for e, _ in await events(database, silent_ref)] == ["inactivity_reminded", "inactivity_ended"]
        assert [m for m in built.sink.messages if silent in m.to and "Letzte" in m.subject] == []
        async with database.sessions() as session:
            anonymized = await session.scalar(
                select(Customer.anonymized_at).where(Customer.customer_reference == told_ref)
            )
        assert anonymized is None


async def test_a_sign_in_that_lands_while_a_step_runs_gets_no_email(
    stack: StackFactory, time_skipping: Any, postgres_database: Database
) -> None:
    """The step's write came first (the customer still stood inactive), the sign-in's signal landed before
    the step's result: the lifecycle ends there, without asking a customer who is back to sign in. The
    customer's row is held locked, so the step waits in its UPDATE while the signal arrives."""
    database = postgres_database
    async with stack(time_skipping, database, **ON) as built:
        email, reference = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        async with database.sessions() as holder:
            await holder.execute(select(Customer.id).where(Customer.customer_reference == reference).with_for_update())
            handle = await start_lifecycle(built, reference)
            for _ in range(500):
                pending = (await handle.describe()).raw_description.pending_activities
                if [p for p in pending if p.activity_type.name == "advance_inactivity"]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the first step was not scheduled within 5 s")
            await built.accounts.inactivity.signed_in(reference)
            await holder.rollback()  # the step's UPDATE goes on: the customer still stands inactive
        assert (await handle.result()).outcome == "signed_in"
        assert [e for e, _ in await events(database, reference)] == ["inactivity_reminded", "inactivity_ended"]
        assert await stage(database, reference) is None  # the end cleared the stage the step had set
        assert [m for m in built.sink.messages if email in m.to] == []


async def test_a_signal_after_the_end_and_an_exempt_customer_change_nothing(skipping: Any, database: Database) -> None:
    async with skipping as built:
        await built.accounts.inactivity.signed_in("DE--none")  # no lifecycle: nothing to tell, no error
        _, reference = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        async with database.sessions.begin() as session:
            await session.execute(
                update(Customer).where(Customer.customer_reference == reference).values(inactivity_stage="exempt")
            )
        assert (await (await start_lifecycle(built, reference)).result()).outcome == "active"
        assert await stage(database, reference) == inactivity.EXEMPT


async def test_a_lifecycle_an_open_order_ends_leaves_no_stage_behind(skipping: Any, database: Database) -> None:
    """The standing says what runs: a step that finds an open order ends the lifecycle and clears the stage
    it had set, so the back office shows no reminder that leads nowhere and a later sweep can start anew."""
    async with skipping as built:
        email, reference = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        handle = await start_lifecycle(built, reference)
        await built.mail_to(email, "sign in to keep")
        async with database.sessions.begin() as session:
            customer_id = await session.scalar(select(Customer.id).where(Customer.customer_reference == reference))
            assert customer_id is not None
            session.add(
                Order(
                    order_reference=f"ORD-{uuid.uuid4().hex[:10]}",
                    customer_id=customer_id,
                    created_at=utcnow(),
                    status="new",
                    currency="EUR",
                    totals={"grandTotal": 1000},
                    items=[],
                )
            )
        assert (await handle.result()).outcome == "active"
        assert await stage(database, reference) is None


@pytest.mark.parametrize("now", [{}, {**ON, "inactive_action": "keep"}], ids=["turned-off", "turned-to-keep"])
async def test_a_run_the_settings_no_longer_want_deletes_nobody(
    stack: StackFactory, time_skipping: Any, database: Database, now: dict[str, Any]
) -> None:
    """The operator turned the feature off, or to keep, after this run began (its input says anonymize):
    the worker's settings decide at the next step, so the customer is not deleted and stands nowhere."""
    async with stack(time_skipping, database, **now) as built:
        _, reference = await dormant_customer(database, signed_in=utcnow() - REMIND - timedelta(days=1))
        handle = await built.client.start_workflow(
            InactivityWorkflow.run,
            InactivityInput(reference, utcnow() - REMIND, timedelta(0), RETIRE - WARN, "anonymize", []),
            id=inactivity_id(reference),
            task_queue=built.settings.task_queue,
        )
        assert (await handle.result()).outcome == "active"
        assert await stage(database, reference) is None
        async with database.sessions() as session:
            anonymized = await session.scalar(
                select(Customer.anonymized_at).where(Customer.customer_reference == reference)
            )
        assert anonymized is None


# --- on the dev server: the sweep (lists no runs, but schedules and many starts) and the deletion -------------


def sweep_input(cutoff: datetime, **overrides: Any) -> SweepInput:
    """A sweep whose cutoff is `cutoff`: only customers last signed in before it are inactive (so the
    database's other tests' customers are not)."""
    remind = utcnow() - cutoff
    return SweepInput(
        remind, remind + 14 * timedelta(days=1), remind + MONTH, "keep", ["new", "confirmed"], **overrides
    )


async def test_the_sweep_pages_skips_open_orders_continues_as_new_and_never_starts_a_second_lifecycle(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC) - timedelta(days=uuid.uuid4().int % 300 + 1)
    cutoff = long_ago + timedelta(hours=1)
    async with stack(dev_server, database, **ON) as built:
        dormant = [await dormant_customer(database, signed_in=long_ago) for _ in range(5)]
        _, open_order = await dormant_customer(database, signed_in=long_ago, order_status="confirmed")
        _, closed_order = await dormant_customer(database, signed_in=long_ago, order_status="delivered")
        _, active = await dormant_customer(database, signed_in=utcnow() - timedelta(days=3))
        swept = [reference for _, reference in dormant] + [closed_order]
        handles = []
        try:
            sweep = await built.client.start_workflow(
                InactivitySweepWorkflow.run,
                sweep_input(cutoff, page_size=2, pages_per_run=2),
                id=f"inactivity-sweep-test-{uuid.uuid4().hex[:8]}",
                task_queue=built.settings.task_queue,
            )
            result = await sweep.result()  # follows the continue-as-new chain
            assert (result.examined, result.started) == (6, 6)
            first = built.client.get_workflow_handle(sweep.id, run_id=sweep.first_execution_run_id)
            first_run = [event async for event in first.fetch_history_events()]
            assert first_run[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            handles = [built.client.get_workflow_handle(inactivity_id(reference)) for reference in swept]
            for email, reference in dormant:
                await built.mail_to(email, "sign in to keep")
                assert await stage(database, reference) == inactivity.REMINDED
            runs = {handle.id: (await handle.describe()).run_id for handle in handles}
            for reference in (open_order, active):
                with pytest.raises(Exception, match="not found"):
                    await built.client.get_workflow_handle(inactivity_id(reference)).describe()
            # a sweep that runs again while they run: the stage keeps them out; one whose stage is gone (a
            # sweep retried before its lifecycle's first step) joins its running lifecycle, never a second
            async with database.sessions.begin() as session:
                await session.execute(
                    update(Customer).where(Customer.customer_reference == swept[0]).values(inactivity_stage=None)
                )
            again = await built.client.execute_workflow(
                InactivitySweepWorkflow.run,
                sweep_input(cutoff),
                id=f"inactivity-sweep-test-{uuid.uuid4().hex[:8]}",
                task_queue=built.settings.task_queue,
            )
            assert (again.examined, again.started) == (1, 1)
            assert {handle.id: (await handle.describe()).run_id for handle in handles} == runs
            assert len([m for m in built.sink.messages if dormant[0][0] in m.to]) == 1
        finally:
            for handle in handles:
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")


async def test_the_retirement_anonymizes_through_the_deletion_lifecycle(
    stack: StackFactory, dev_server: Any, sqlite_database: Database
) -> None:
    database = sqlite_database
    async with stack(dev_server, database, **ON) as built:
        email, reference = await dormant_customer(database, signed_in=utcnow() - timedelta(days=800))
        handle = await built.client.start_workflow(
            InactivityWorkflow.run,
            InactivityInput(
                reference, utcnow() - timedelta(days=700), timedelta(seconds=1), timedelta(seconds=1), "anonymize"
            ),
            id=inactivity_id(reference),
            task_queue=built.settings.task_queue,
        )
        reminder = await built.mail_to(email, "sign in to keep")
        assert "delete" in reminder.text
        await built.mail_to(email, "last reminder")
        assert (await handle.result()).outcome == "retired"
        deleted = await built.mail_to(email, "deleted")
        assert deleted is not None
        anonymization = built.client.get_workflow_handle(f"anonymization:{reference}")
        await anonymization.result()
        async with database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None and customer.anonymized_at is not None and customer.first_name is None
        assert customer.inactivity_stage == inactivity.RETIRED
        recorded = await events(database, reference)
        assert recorded[-1] == ("inactivity_ended", {"outcome": "retired"})


async def test_the_worker_schedules_the_sweep_only_while_the_feature_is_on(
    stack: StackFactory, dev_server: Any, sqlite_database: Database
) -> None:
    on = {"inactive_remind_after": "P23M", "inactive_warn_after": "P23M14D", "inactive_retire_after": "P2Y"}
    async with stack(dev_server, sqlite_database, **on) as built:
        sweep = built.client.get_schedule_handle(INACTIVITY_SWEEP)
        try:
            await ensure_schedules(built.client, built.settings)
            described = await sweep.describe()
            assert described.schedule.spec.intervals[0].every == timedelta(days=1)
            action = described.schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "InactivitySweepWorkflow"
            off = built.settings.model_copy(update={"inactive_remind_after": None})
            await ensure_schedules(built.client, off)
            with pytest.raises(RPCError, match="not found"):
                await sweep.describe()
            await ensure_schedules(built.client, off)  # off and absent: nothing to do
        finally:
            for schedule in (sweep, built.client.get_schedule_handle(THROTTLE_CLEANUP)):
                with contextlib.suppress(RPCError):
                    await schedule.delete()
