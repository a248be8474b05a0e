"""Inactive accounts over HTTP, on both databases: a sign-in ends the customer's running lifecycle (and an
active customer's sign-in writes nothing more), the back office shows where a customer stands, and
support's exemption ends the lifecycle, is audited, and is answered with Glue errors when it is wrong."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import select, update
from temporalio.client import WorkflowHandle
from test_backoffice_cli import cli
from test_backoffice_http import staff_key
from test_backoffice_web import csrf_token, flash, staff_with_password, web_sign_in
from test_customer_sessions_http import refresh
from test_login_http import registered, sign_in

from accounts import inactivity
from accounts.models import AuditEvent, Customer, utcnow
from activities.inactivity import InactivityInput, inactivity_id
from workflows.inactivity import InactivityWorkflow

pytestmark = pytest.mark.e2e
MONTH = timedelta(days=30)


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(
        dev_server,
        database,
        api=True,
        inactive_remind_after="P23M",
        inactive_warn_after=23 * MONTH + timedelta(days=14),
        inactive_retire_after="P2Y",
        inactive_action="keep",
    ) as built:
        yield built


async def dormant(stack: Stack, reference: str) -> WorkflowHandle[Any, Any]:
    """The customer last signed in two years ago, and the sweep started their lifecycle."""
    async with stack.database.sessions.begin() as session:
        await session.execute(
            update(Customer)
            .where(Customer.customer_reference == reference)
            .values(last_signed_in_at=utcnow() - 24 * MONTH, registered_at=utcnow() - 25 * MONTH)
        )
    settings = stack.settings
    assert settings.inactive_remind_after and settings.inactive_warn_after and settings.inactive_retire_after
    return await stack.client.start_workflow(
        InactivityWorkflow.run,
        InactivityInput(
            reference,
            utcnow() - settings.inactive_remind_after,
            settings.inactive_warn_after - settings.inactive_remind_after,
            settings.inactive_retire_after - settings.inactive_warn_after,
            settings.inactive_action,
        ),
        id=inactivity_id(reference),
        task_queue=settings.task_queue,
    )


async def standing(http: Any, key: str, reference: str) -> dict[str, Any]:
    answer = await http.get(f"/backoffice/customers/{reference}", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["data"]["attributes"]["inactivity"])


async def last_sign_in(stack: Stack, reference: str) -> Any:
    async with stack.database.sessions() as session:
        return await session.scalar(select(Customer.last_signed_in_at).where(Customer.customer_reference == reference))


async def test_a_sign_in_ends_the_lifecycle_the_back_office_shows(e2e: Stack) -> None:
    async with e2e.http() as http:
        key = await staff_key(e2e, "sam", "support")
        email, reference = await registered(e2e, http)
        assert (await sign_in(http, email)).status_code == 201
        first = await last_sign_in(e2e, reference)
        assert first is not None and (await standing(http, key, reference))["stage"] == "active"
        assert (await sign_in(http, email)).status_code == 201
        assert await last_sign_in(e2e, reference) == first  # an active customer's sign-in writes no more

        lifecycle = await dormant(e2e, reference)
        await e2e.mail_to(email, "sign in to keep")
        shown = await standing(http, key, reference)
        assert shown["stage"] == "reminded"
        since = shown["since"]
        assert shown["warningDue"] > since and shown["retirementDue"] > shown["warningDue"]

        assert (await sign_in(http, email)).status_code == 201
        assert (await lifecycle.result()).outcome == "signed_in"
        assert (await standing(http, key, reference))["stage"] == "active"
        assert await last_sign_in(e2e, reference) > first


async def test_support_exempts_a_customer_audited_and_the_lifecycle_ends(e2e: Stack) -> None:
    async with e2e.http() as http:
        key = await staff_key(e2e, "sue", "support")
        auth = {"Authorization": f"Bearer {key}"}
        email, reference = await registered(e2e, http)
        lifecycle = await dormant(e2e, reference)
        await e2e.mail_to(email, "sign in to keep")
        url = f"/backoffice/customers/{reference}/inactivity-exemption"

        missing = await http.post(url, json={}, headers=auth)
        assert missing.status_code == 422, missing.text
        unknown = await http.post("/backoffice/customers/DE--nobody/inactivity-exemption", json={"reason": "r"},
                                  headers=auth)  # fmt: skip
        assert unknown.status_code == 404
        assert (await standing(http, key, reference))["stage"] == "reminded"  # nothing changed

        assert (await http.post(url, json={"reason": "asked by phone"}, headers=auth)).status_code == 204
        assert (await lifecycle.result()).outcome == "exempt"
        assert (await http.post(url, json={"reason": "again"}, headers=auth)).status_code == 204
        assert (await standing(http, key, reference))["stage"] == "exempt"
        async with e2e.database.sessions() as session:
            rows = (
                await session.execute(
                    select(AuditEvent.actor, AuditEvent.channel, AuditEvent.details).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "inactivity_exempted"
                    )
                )
            ).all()
        assert [(actor.startswith("sue"), channel, details) for actor, channel, details in rows] == [
            (True, "backoffice", {"reason": "asked by phone", "ended": "reminded"})
        ]
        assert (await sign_in(http, email)).status_code == 201  # a sign-in keeps the exemption
        assert (await standing(http, key, reference))["stage"] == "exempt"


async def test_the_web_back_office_shows_the_standing_and_exempts(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e, "support", name="sid")
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        lifecycle = await dormant(e2e, reference)
        await e2e.mail_to(email, "sign in to keep")
        await web_sign_in(http, name, password)
        customer = f"/backoffice/ui/customers/{reference}"
        page = await http.get(customer)
        shown = re.search(r'data-testid="customer-inactivity">([^<]*)<', page.text)
        assert shown is not None and shown[1].startswith("reminded on ") and "last warning due" in shown[1]
        assert "kept due" in shown[1]  # ACCOUNTS_INACTIVE_ACTION=keep here
        exempted = await http.post(
            f"{customer}/inactivity-exemption", data={"reason": "orders by phone", "csrf_token": csrf_token(page)}
        )
        after = await http.get(exempted.headers["location"])
        assert flash(after) == f"success: {reference} is exempt from the inactivity lifecycle."
        assert (await lifecycle.result()).outcome == "exempt"
        shown = re.search(r'data-testid="customer-inactivity">([^<]*)<', after.text)
        assert shown is not None and shown[1].startswith("exempt on ")
        assert f"{customer}/inactivity-exemption" not in after.text


async def test_the_cli_exempts_and_shows_the_standing(e2e: Stack, tmp_path: Path) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        lifecycle = await dormant(e2e, reference)
        await e2e.mail_to(email, "sign in to keep")
        code, out, err = await cli(e2e, tmp_path, "customers", "show", reference)
        assert code == 0, err
        assert "inactivity" in out and "reminded since" in out
        blank = await cli(e2e, tmp_path, "customers", "exempt-inactivity", reference, "--reason", " ")
        assert blank[0] != 0 and "give a reason" in blank[2]
        code, out, err = await cli(
            e2e, tmp_path, "customers", "exempt-inactivity", reference, "--reason", "VIP", "--agent", "alice"
        )
        assert (code, out.strip()) == (0, f"{reference} is exempt from the inactivity lifecycle"), err
        assert (await lifecycle.result()).outcome == "exempt"
        async with e2e.database.sessions() as session:
            actors = (
                await session.scalars(
                    select(AuditEvent.actor).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "inactivity_exempted"
                    )
                )
            ).all()
        assert actors == ["alice"]


async def test_a_sign_in_after_the_retirement_step_is_refused_not_followed_by_the_deletion(e2e: Stack) -> None:
    """The last step stood the customer `retired` (their deletion starts next): a sign-in now would get a
    session that the deletion scrubs moments (or, while SMTP is down, hours) later. It is refused under the
    row lock, so a customer either signs in before the step (which then finds them active) or not at all."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        async with e2e.database.sessions.begin() as session:
            await session.execute(
                update(Customer)
                .where(Customer.customer_reference == reference)
                .values(last_signed_in_at=utcnow() - 24 * MONTH, inactivity_stage="warned")
            )
        async with e2e.database.sessions.begin() as session:  # the lifecycle's last step
            assert await inactivity.advance(
                session,
                reference,
                from_stage="warned",
                to_stage="retired",
                inactive_before=utcnow() - 23 * MONTH,
                open_statuses=[],
                now=utcnow(),
            )
        refused = await sign_in(http, email)
        assert refused.status_code == 401, refused.text
        assert refused.json()["errors"][0]["code"] == "003"
        async with e2e.database.sessions() as session:
            row = (
                await session.execute(
                    select(Customer.inactivity_stage, Customer.last_signed_in_at).where(
                        Customer.customer_reference == reference
                    )
                )
            ).one()
        assert row.inactivity_stage == "retired" and row.last_signed_in_at < utcnow() - 23 * MONTH

        # nor can support's exemption undo the decision (and so let the sign-in through before the scrub)
        key = await staff_key(e2e, "sol", "support")
        exempting = await http.post(
            f"/backoffice/customers/{reference}/inactivity-exemption",
            json={"reason": "asked by phone"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert exempting.status_code == 409, exempting.text
        assert (await standing(http, key, reference))["stage"] == "retired"


async def test_a_customer_who_stays_signed_in_by_refreshing_is_not_inactive(e2e: Stack) -> None:
    """An app keeps its session by refreshing (each refresh token lives 30 days from its rotation): the
    customer uses the shop without typing the password again. A refresh counts as the sign-in it prolongs
    (once a day, as a sign-in writes), as migration 0022's backfill counted it, and ends the standing."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        answer = await sign_in(http, email)
        assert answer.status_code == 201, answer.text
        refresh_token = answer.json()["data"]["attributes"]["refreshToken"]
        long_ago = utcnow() - 24 * MONTH
        async with e2e.database.sessions.begin() as session:
            await session.execute(
                update(Customer)
                .where(Customer.customer_reference == reference)
                .values(last_signed_in_at=long_ago, inactivity_stage="reminded", inactivity_since=utcnow())
            )
        refreshed = await refresh(http, refresh_token)
        assert refreshed.status_code == 201, refreshed.text
        assert await last_sign_in(e2e, reference) > long_ago + MONTH
        key = await staff_key(e2e, "sal", "support")
        assert (await standing(http, key, reference))["stage"] == "active"
