"""A bounce is visible where support looks: the customer's page in the back office and `accounts status`."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, unique_email
from sqlalchemy import select
from test_backoffice_cli import cli
from test_backoffice_web import staff_with_password, web_sign_in

from accounts.models import EmailOutbox
from devstack.mailsink import MailSink
from starter import Registration

pytestmark = pytest.mark.e2e
REFUSED: set[str] = set()


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    refuse = lambda address: "550 5.1.1 no such user" if address.lower() in REFUSED else None  # noqa: E731
    async with (
        MailSink(refuse_recipient=refuse) as sink,
        stack(dev_server, database, api=True, mail_sink=sink) as built,
    ):
        yield built


async def bounced_registration(stack: Stack) -> str:
    email = unique_email("bounce")
    REFUSED.add(email)
    registration = Registration(email=email, channel="storefront", locale="en_US", password="Vq8#nT2!pLm4-kettle")
    reference = (await stack.accounts.register(registration)).customer_reference
    async with asyncio.timeout(30):
        while True:
            async with stack.database.sessions() as session:
                status = await session.scalar(
                    select(EmailOutbox.status).where(EmailOutbox.customer_reference == reference)
                )
            if status == "bounced":
                return reference
            await asyncio.sleep(0.1)


async def test_the_customer_page_lists_the_bounce_among_the_events(e2e: Stack) -> None:
    reference = await bounced_registration(e2e)
    async with e2e.http() as http:
        await web_sign_in(http, *await staff_with_password(e2e))
        page = await http.get(f"/backoffice/ui/customers/{reference}")

    assert page.status_code == 200
    events = html.unescape(page.text.split('id="events-heading"', 1)[1])
    assert "<td>email bounced</td>" in events
    assert "template: verify, smtpCode: 550" in events


async def test_accounts_status_counts_sent_and_bounced_emails(e2e: Stack, tmp_path: Path) -> None:
    reference = await bounced_registration(e2e)

    code, stdout, stderr = await cli(e2e, tmp_path, "status", reference, columns=80)
    assert code == 0, stderr
    assert "emails: 0 sent, 1 bounced (last: verify, 550)" in stdout.splitlines()

    code, stdout, stderr = await cli(e2e, tmp_path, "status", reference, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["emails"] == {
        "sent": 0,
        "bounced": 1,
        "last_bounce": {"template": "verify", "smtp_code": 550},
    }
