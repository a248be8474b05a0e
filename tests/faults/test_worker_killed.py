"""Fault 1: the worker process is SIGKILLed at an activity of every lifecycle, then a new worker starts.

How the kill lands "at" an activity without a test hook in production code: the activity is made to fail
first (the SMTP sink stopped for email steps; the worker's database connection cut at the proxy for database
steps, while the API keeps its own), and the worker is killed once Temporal reports that activity failed at
least once and waits for its next attempt. Then the fault is repaired and a new worker process starts; it
must finish every lifecycle with each email sent once, one activation and one audit row per event.

Every kill point of one fault runs in the same round (one customer each, all prepared first, one kill for
all of them), which keeps the suite within its time budget; a failure names the kill points it hit.
Killed *while an attempt runs*, an activity would wait out its 90 s start-to-close timeout (an email send
its 10 s heartbeat timeout), too long for this suite: see the README's "Reliability" notes.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from accounts.models import Customer, ReferenceCounter
from starter.client import registration_id
from starter.passwords import reset_id
from workflows.anonymization import anonymization_id
from workflows.email_change import email_change_id
from workflows.lockout import lockout_workflow_id

from . import flows
from .conftest import LIFECYCLES, Harness, HarnessFactory

pytestmark = pytest.mark.faults


@dataclass
class Outcome:
    """What must hold once the lifecycle finished."""

    references: list[str]
    results: dict[str, Callable[[Any], bool]]  # workflow id -> a check of its result
    events: set[str]  # audit events that must exist exactly once


@dataclass
class KillPoint:
    lifecycle: str
    activity: str
    fault: str  # smtp | database
    scenario: Callable[[Harness, httpx.AsyncClient, KillPoint], Coroutine[Any, Any, Outcome]]
    workflow_id: str | None = None
    prepared: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"{self.lifecycle}/{self.activity}"

    async def at_step(self, h: Harness, reference: str | None, *, settled: bool = True) -> None:
        """The customer stands right before the step: once every earlier step is done and recorded
        (unless the step is already under way, `settled=False`), wait until the fault is in place."""
        if reference is not None:
            if settled:
                await h.quiescent(reference)
            self.workflow_id = LIFECYCLES[self.lifecycle](reference)
        self.prepared.set()
        await self.go.wait()


async def reference_of(h: Harness, email: str, timeout: float = 60) -> str:
    """The customer's reference, once the worker created the row (a 503 answer did not name it)."""
    for _ in range(int(timeout * 5)):
        async with h.sessions() as session:
            found = await session.scalar(select(Customer.customer_reference).where(Customer.email_key == email.lower()))
        if found is not None:
            return str(found)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no customer row for {email}")


def answered(response: httpx.Response, *ok: int) -> None:
    """The request succeeded, or (once the API bounds its waits) said 503 with Retry-After: the lifecycle
    goes on in the worker either way."""
    if response.status_code == 503:
        assert "retry-after" in response.headers, response.headers
        return
    assert response.status_code in ok, f"{response.status_code}: {response.text}"


VERIFIED = {"registration_started", "email_verified"}


def outcome_is(value: str) -> Callable[[Any], bool]:
    return lambda result: result["outcome"] == value


# --- scenarios: one customer each, prepared up to the step, then the step under the fault -----------


async def registration_sign_up(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    await point.at_step(h, None)  # the reference is allocated by the request itself; the test finds it
    email, created = await flows.sign_up(http)
    answered(created, 201)
    reference = await reference_of(h, email)
    token = flows.token_from(await h.mail_to(email, "please confirm", timeout=90))
    answered(await flows.confirm(http, token), 204)
    await h.mail_to(email, "active", timeout=90)
    return Outcome([reference], {registration_id(reference): outcome_is("verified")}, VERIFIED)


async def registration_confirm(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference, token = await flows.registered(h, http)
    await point.at_step(h, reference)
    answered(await flows.confirm(http, token), 204)
    await h.mail_to(email, "active", timeout=90)
    return Outcome([reference], {registration_id(reference): outcome_is("verified")}, VERIFIED)


async def reset_requested(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    await point.at_step(h, reference)
    assert (await flows.forgot_password(http, email)).status_code == 204
    key = flows.token_from(await h.mail_to(email, "reset the password", timeout=90))
    answered(await flows.restore_password(http, key), 204)
    return await _reset_done(h, email, reference)


async def reset_completed(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    assert (await flows.forgot_password(http, email)).status_code == 204
    key = flows.token_from(await h.mail_to(email, "reset the password"))
    await point.at_step(h, reference)
    answered(await flows.restore_password(http, key), 204)
    return await _reset_done(h, email, reference)


async def _reset_done(h: Harness, email: str, reference: str) -> Outcome:
    await h.mail_to(email, "password of your", timeout=90)
    return Outcome([reference], {reset_id(reference): lambda r: r == "password_set"}, {*VERIFIED, "password_reset"})


async def email_change_requested(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    auth = await flows.bearer(http, email)
    new_email = flows.unique_email("new")
    await point.at_step(h, reference)
    answered(await flows.change_email(http, reference, auth, new_email), 200)
    key = flows.token_from(await h.mail_to(new_email, "confirm your new email", timeout=90))
    answered(await flows.confirm_email_change(http, key), 204)
    return await _email_changed(h, email, reference)


async def email_change_confirmed(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    auth = await flows.bearer(http, email)
    new_email = flows.unique_email("new")
    assert (await flows.change_email(http, reference, auth, new_email)).status_code == 200
    key = flows.token_from(await h.mail_to(new_email, "confirm your new email"))
    await point.at_step(h, reference)
    answered(await flows.confirm_email_change(http, key), 204)
    return await _email_changed(h, email, reference)


async def _email_changed(h: Harness, old_email: str, reference: str) -> Outcome:
    await h.mail_to(old_email, "email address of your", timeout=90)
    return Outcome([reference], {email_change_id(reference): lambda r: r == ["changed"]}, {*VERIFIED, "email_changed"})


async def deletion(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    auth = await flows.bearer(http, email)
    await point.at_step(h, reference)
    answered(await flows.delete(http, reference, auth), 204)
    await h.mail_to(email, "was deleted", timeout=90)
    return Outcome(
        [reference],
        {anonymization_id(reference): lambda r: r is None},
        {*VERIFIED, "deletion_started", "customer_anonymized"},
    )


async def deletion_stored(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    """The deletion first marks the row (`deletion_started`, under its lock) and ends the lifecycles; then
    the test holds the row locked, the email goes out (it needs no lock), the scrub waits on the row, and
    the cut ends that attempt: the kill lands after the email and before the scrub."""
    email, reference = await flows.active(h, http)
    auth = await flows.bearer(http, email)
    await h.quiescent(reference)
    deleting = asyncio.create_task(flows.delete(http, reference, auth))
    async with asyncio.timeout(60):
        while not (await h.audit_counts([reference]))[(reference, "deletion_started")]:
            await asyncio.sleep(0.01)
    async with h.row_locked(reference):
        await h.mail_to(email, "was deleted")
        await h.wait_for_activities({anonymization_id(reference): "anonymize_customer"}, retrying=False)
        await point.at_step(h, reference, settled=False)
    answered(await deleting, 204)
    return Outcome(
        [reference],
        {anonymization_id(reference): lambda r: r is None},
        {*VERIFIED, "deletion_started", "customer_anonymized"},
    )


async def lock(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    await point.at_step(h, reference)
    await flows.fail_sign_ins(http, email, h.settings.lockout_max_failures)
    await h.mail_to(email, "paused", timeout=90)
    return _locked_once(reference)


async def lock_lifted(h: Harness, http: httpx.AsyncClient, point: KillPoint) -> Outcome:
    email, reference = await flows.active(h, http)
    await flows.fail_sign_ins(http, email, h.settings.lockout_max_failures)
    await h.mail_to(email, "paused")
    await point.at_step(h, reference)  # the lock's timer fires under the fault
    return _locked_once(reference)


def _locked_once(reference: str) -> Outcome:
    return Outcome(
        [reference],
        {lockout_workflow_id(reference): lambda r: r["locks"] == 1},
        {*VERIFIED, "account_locked", "account_unlocked"},
    )


KILL_POINTS: list[tuple[str, str, str, Callable[..., Coroutine[Any, Any, Outcome]]]] = [
    # lifecycle,       activity,              fault,      scenario
    ("registration", "create_customer", "database", registration_sign_up),
    ("registration", "send_token_link", "smtp", registration_sign_up),
    ("registration", "activate_customer", "database", registration_confirm),
    ("registration", "send_notice", "smtp", registration_confirm),  # welcome
    ("password-reset", "send_token_link", "smtp", reset_requested),
    ("password-reset", "set_password", "database", reset_completed),
    ("password-reset", "send_notice", "smtp", reset_completed),  # password changed
    ("email-change", "check_new_email", "database", email_change_requested),
    ("email-change", "send_token_link", "smtp", email_change_requested),
    ("email-change", "apply_email_change", "database", email_change_confirmed),
    ("email-change", "send_token_link", "smtp", email_change_confirmed),  # told the old address (its undo link)
    ("anonymization", "send_notice", "smtp", deletion),  # account deleted
    ("anonymization", "anonymize_customer", "database", deletion_stored),
    ("lockout", "set_lock", "database", lock),
    ("lockout", "send_notice", "smtp", lock),  # sign-ins paused
    ("lockout", "lift_lock", "database", lock_lifted),
    # (no `close_window`: since issue 14 a window below the threshold ends by the database clock, no run)
    # right after the SMTP handover, before the send is marked "sent" (the reply held back, then the
    # database cut so the mark fails): the retry sends again; one Message-ID per step is what must hold
    ("registration", "send_token_link", "handover", registration_sign_up),
    ("registration", "send_notice", "handover", registration_confirm),  # welcome
    ("password-reset", "send_token_link", "handover", reset_requested),
    ("lockout", "send_notice", "handover", lock),  # sign-ins paused
    ("anonymization", "send_notice", "handover", deletion),  # account deleted
]


@pytest.mark.parametrize("fault", ["smtp", "database", "handover"])
async def test_a_worker_killed_at_each_activity_leaves_nothing_lost_or_doubled(
    harness: HarnessFactory, fault: str
) -> None:
    points = [KillPoint(*row) for row in KILL_POINTS if row[2] == fault]
    # the database faults need the proxy before PostgreSQL; an SMTP outage runs on SQLite too
    async with harness(database="sqlite" if fault == "smtp" else "postgres") as h, h.http(timeout=120) as http:
        counter_before = await _counter(h)
        tasks = {point.name: asyncio.create_task(point.scenario(h, http, point)) for point in points}
        await _all_prepared(points, tasks)
        h.log("every customer stands before its step")

        await _break(h, fault)
        for point in points:
            point.go.set()
        if any(point.workflow_id is None for point in points):  # the sign-up under the fault: find its run
            reference = await _next_reference(h, counter_before + sum(1 for p in points if p.workflow_id))
            h.log(f"the sign-up under the fault is {reference}")
        if fault == "handover":  # every message is in the sink, no sender heard back: now the mark must fail
            await _held(h, len(points))
            h.cut_database()
            h.smtp_gate.release()
            for point in points:
                point.workflow_id = point.workflow_id or registration_id(reference)
        try:
            await h.wait_for_activities({p.workflow_id: p.activity for p in points if p.workflow_id}, retrying=True)
            await h.kill_worker()
            await _repair(h, fault)
            await h.start_worker()
            problems = await _settle(h, points, tasks, repeats_allowed=fault == "handover")
        finally:
            for task in tasks.values():
                task.cancel()
    assert not problems, "\n".join(problems)


async def _all_prepared(points: list[KillPoint], tasks: dict[str, asyncio.Task[Outcome]]) -> None:
    waiting: dict[asyncio.Task[Any], KillPoint] = {
        asyncio.create_task(point.prepared.wait()): point for point in points
    }
    try:
        async with asyncio.timeout(90):
            while waiting:
                done, _ = await asyncio.wait([*waiting, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in waiting:
                        del waiting[task]
                    elif task.exception() is not None:  # a scenario failed while preparing
                        raise task.exception()  # type: ignore[misc]
    finally:
        for task in waiting:
            task.cancel()


async def _break(h: Harness, fault: str) -> None:
    if fault == "smtp":
        await h.stop_sink()
    elif fault == "database":
        h.cut_database()
    else:
        h.smtp_gate.arm()


async def _repair(h: Harness, fault: str) -> None:
    if fault == "smtp":
        await h.start_sink()
    else:
        h.restore_database()


async def _held(h: Harness, count: int) -> None:
    for _ in range(600):
        if h.smtp_gate.held >= count:
            h.log(f"{count} messages handed over, their replies held back")
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{h.smtp_gate.held} of {count} messages reached the SMTP server")


async def _counter(h: Harness) -> int:
    async with h.sessions() as session:
        return int(await session.scalar(select(ReferenceCounter.value)) or 0)


async def _next_reference(h: Harness, after: int) -> str:
    for _ in range(300):
        value = await _counter(h)
        if value > after:
            return f"{h.settings.customer_reference_prefix}{value}"
        await asyncio.sleep(0.1)
    raise AssertionError("the sign-up under the fault allocated no reference")


async def _settle(
    h: Harness, points: list[KillPoint], tasks: dict[str, asyncio.Task[Outcome]], *, repeats_allowed: bool
) -> list[str]:
    """Every lifecycle finished, one email per step, one audit row per event: the problems, per kill point."""
    problems: list[str] = []
    outcomes: dict[str, Outcome] = {}
    done, pending = await asyncio.wait(tasks.values(), timeout=150)
    h.log(f"{len(done)} of {len(tasks)} customers finished their steps")
    for point in points:
        task = tasks[point.name]
        if task in pending:
            task.cancel()
            problems.append(f"{point.name}: the customer's steps did not finish within 150 s")
        elif task.exception() is not None:
            error = task.exception()
            problems.append(f"{point.name}: {''.join(traceback.format_exception_only(error)).strip()}")
        else:
            outcomes[point.name] = task.result()
    for name, outcome in outcomes.items():
        for workflow_id, check in outcome.results.items():
            try:
                result = await h.result(workflow_id, timeout=30)
            except Exception as error:
                problems.append(f"{name}: {workflow_id} did not complete: {error!r}")
                continue
            if not check(result):
                problems.append(f"{name}: {workflow_id} ended with {result!r}")
        delivery = await h.delivery_problems(outcome.references, repeats_allowed=repeats_allowed)
        problems += [f"{name}: {p}" for p in delivery]
        counts = await h.audit_counts(outcome.references)
        for reference in outcome.references:
            for event in outcome.events:
                if counts[(reference, event)] != 1:
                    problems.append(f"{name}: audit {event!r} recorded {counts[(reference, event)]} times")
        problems += [f"{name}: audit {event!r} recorded {n} times" for (_, event), n in counts.items() if n > 1]
    return problems


async def test_a_sign_up_while_no_worker_runs_is_findable_and_finishes_once_one_starts(
    harness: HarnessFactory,
) -> None:
    """Ops look for a customer's run in the Temporal UI by reference while the workers are down."""
    async with harness(database="sqlite") as h, h.http(timeout=120) as http:
        await h.kill_worker()
        counter = await _counter(h)
        signing_up = asyncio.create_task(flows.sign_up(http))
        reference = await _next_reference(h, counter)
        found: list[str] = []
        for _ in range(50):  # visibility is eventually consistent
            found = [run.id async for run in h.client.list_workflows(f"CustomerReference = '{reference}'")]
            if found:
                break
            await asyncio.sleep(0.2)
        await h.start_worker()
        email, created = await signing_up
        answered(created, 201)
        token = flows.token_from(await h.mail_to(email, "please confirm"))
        answered(await flows.confirm(http, token), 204)
        assert (await h.result(registration_id(reference)))["outcome"] == "verified"
        assert found == [registration_id(reference)], "no run carries CustomerReference while no worker runs"
