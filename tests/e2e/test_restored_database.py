"""A database restored from a backup while Temporal keeps its runs: sign-ups go on under fresh references."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Database, Stack, StackFactory, follow_link, registration_body, unique_email
from sqlalchemy import delete, select, update

from accounts.models import AuditEvent, Customer, EmailOutbox, ReferenceCounter
from accounts.references import CUSTOMER_COUNTER
from starter.client import registration_id
from workflows.registration import RegistrationWorkflow

pytestmark = pytest.mark.e2e
PASSWORD = "Vq8#nT2!pLm4-kettle"


async def test_sign_ups_after_a_restore_get_references_temporal_has_never_seen(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True) as e2e, e2e.http() as http:
        backup = await _counter(e2e)  # the backup is taken here
        waiting_email, verified_email = unique_email(), unique_email()
        waiting = await _sign_up(e2e, waiting_email)  # its registration keeps running
        verified = await _sign_up(e2e, verified_email)
        page = await follow_link(http, await _link(e2e, verified_email))
        assert page.status_code == 200 and "Your account is active" in page.text
        handle = e2e.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(verified))
        assert (await handle.result()).outcome == "verified"  # its registration is closed

        await _restore(e2e, backup, forgetting=[waiting, verified])

        email = unique_email()
        reference = await _sign_up(e2e, email)
        # neither the running registration's id nor the closed one's (that one's history would
        # show up in the UI and the back office as the new customer's)
        assert reference not in (waiting, verified)
        page = await follow_link(http, await _link(e2e, email))
        assert page.status_code == 200 and "Your account is active" in page.text
        async with e2e.database.sessions() as session:
            customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
        assert customer is not None and customer.email == email and customer.registered_at is not None

        # the counter moved past the references it skipped: the next sign-up needs no second try
        assert await _counter(e2e) == _number(reference)
        following = await _sign_up(e2e, unique_email())
        assert _number(following) == _number(reference) + 1


async def _sign_up(e2e: Stack, email: str) -> str:
    async with e2e.http() as http:
        response = await http.post("/customers", json=registration_body(email, PASSWORD))
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def _link(e2e: Stack, email: str) -> str:
    message = await e2e.mail_to(email, "confirm")
    return next(link for link in message.links if "/register/confirm?token=" in link)


async def _restore(e2e: Stack, counter: int, *, forgetting: list[str]) -> None:
    """What the database looks like when restored from the backup: those customers never happened."""
    async with e2e.database.sessions.begin() as session:
        for table in (AuditEvent, EmailOutbox):
            await session.execute(delete(table).where(table.customer_reference.in_(forgetting)))
        # tokens, addresses and carts go with the rows (ON DELETE CASCADE)
        await session.execute(delete(Customer).where(Customer.customer_reference.in_(forgetting)))
        await session.execute(
            update(ReferenceCounter).where(ReferenceCounter.name == CUSTOMER_COUNTER).values(value=counter)
        )


async def _counter(e2e: Stack) -> int:
    async with e2e.database.sessions() as session:
        value = await session.scalar(select(ReferenceCounter.value).where(ReferenceCounter.name == CUSTOMER_COUNTER))
    return int(value or 0)


def _number(reference: str) -> int:
    return int(reference.rsplit("-", 1)[1])
