"""The staff lock email over HTTP (issue 14): a member whose name is locked by wrong passwords gets one
email per lock with a one-time link, and the browser that redeems it signs in while the name stays
locked for everyone else (api/web/sign_in.py, workflows/staff_lock_notice.py, api/web/unlock.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, token_from, unique_email
from sqlalchemy import select
from test_backoffice_web import STAFF_PASSWORD, csrf_token, web_sign_in

from accounts.models import EmailOutbox, OneTimeToken, Staff, utcnow
from accounts.staff import StaffDirectory
from accounts.task_queues import TaskQueues
from workflows.staff_lock_notice import staff_lock_notice_id

pytestmark = pytest.mark.e2e
SUBJECT = "paused"
FAILED = "Unknown staff name or wrong password."
LOCKED = "Too many failed sign-ins."


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=3) as built:
        yield built


async def member(stack: Stack, *, email: str | None) -> str:
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    created, _ = await directory.create(f"sam-{os.urandom(4).hex()}", "support", password=STAFF_PASSWORD, email=email)
    return created.name


def guess() -> str:
    return f"guess-{os.urandom(3).hex()}-Qx9!"


def message(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash \w+" role="\w+">([^<]*)</div>', page.text)
    return found[1] if found else ""


async def lock(http: httpx.AsyncClient, name: str) -> list[tuple[int, str]]:
    """Three wrong passwords, then two more attempts (the right one, a wrong one) while the name is locked:
    what a client sees, status and message."""
    answers = []
    for password in (guess(), guess(), guess(), STAFF_PASSWORD, guess()):
        page = await web_sign_in(http, name, password)
        answers.append((page.status_code, message(page).split(" Try again")[0]))
    return answers


SEEN = [(400, FAILED)] * 3 + [(429, LOCKED)] * 2


async def notices(stack: Stack) -> list[str]:
    """The ids of this stack's staff lock notices (visibility: the dev server lists them within a second)."""
    queue = TaskQueues(stack.settings.task_queue).signin
    query = f"WorkflowType = 'StaffLockNoticeWorkflow' AND TaskQueue = '{queue}'"
    return [execution.id async for execution in stack.client.list_workflows(query)]


async def test_a_locked_member_is_mailed_once_and_the_link_trusts_the_browser_that_redeems_it(e2e: Stack) -> None:
    address = unique_email("staff")
    name = await member(e2e, email=address)
    async with e2e.http() as browser, e2e.http() as attacker:
        assert await lock(attacker, name) == SEEN
        notice = await e2e.mail_to(address, SUBJECT)
        assert name in notice.subject and "/backoffice/unlock?token=" in notice.text
        assert "3 failed attempts" in notice.text
        link_token = token_from(notice)
        for _ in range(3):  # more wrong attempts during the lock send no second email
            assert (await web_sign_in(attacker, name, guess())).status_code == 429
        await asyncio.sleep(1.5)
        assert len(e2e.sink.to(address)) == 1
        async with e2e.database.sessions() as session:
            outbox = (await session.scalars(select(EmailOutbox).where(EmailOutbox.recipient == address))).all()
        assert [(row.template, row.status, row.customer_reference) for row in outbox] == [
            ("staff_locked", "sent", None)
        ]
        for _ in range(20):  # visibility lags a little behind the start
            if ids := await notices(e2e):
                break
            await asyncio.sleep(0.25)
        assert len(ids) == 1 and ids[0].startswith("staff-lock-notice:")
        history = await e2e.client.get_workflow_handle(ids[0]).fetch_history()
        assert link_token not in json.dumps(history.to_json_dict())  # minted by the activity
        assert address not in json.dumps(history.to_json_dict())

        # GET changes nothing (mail scanners prefetch): the page shows one button, twice
        page = await browser.get("/backoffice/unlock", params={"token": link_token})
        assert page.status_code == 200 and 'method="post"' in page.text and link_token in page.text
        assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        again = await browser.get("/backoffice/unlock", params={"token": link_token})
        assert again.status_code == 200
        assert "backoffice_device" not in browser.cookies
        async with e2e.database.sessions() as session:
            (used_at,) = (
                await session.scalars(
                    select(OneTimeToken.used_at)
                    .where(OneTimeToken.staff_id.is_not(None))
                    .where(OneTimeToken.issue_key.startswith(ids[0]))
                )
            ).all()
        assert used_at is None

        # without the form's CSRF token the link is not used up
        refused = await browser.post("/backoffice/unlock", data={"token": link_token, "csrf_token": "forged"})
        assert refused.status_code == 400 and "backoffice_device" not in browser.cookies
        trusted = await browser.post("/backoffice/unlock", data={"token": link_token, "csrf_token": csrf_token(again)})
        assert trusted.status_code == 303 and trusted.headers["location"] == "/backoffice/sign-in"
        assert browser.cookies.get("backoffice_device")
        sign_in = await browser.get("/backoffice/sign-in")
        assert "This browser can sign in now" in message(sign_in)

        assert (await web_sign_in(attacker, name, STAFF_PASSWORD)).status_code == 429  # locked for others
        assert (await web_sign_in(browser, name, STAFF_PASSWORD)).status_code == 303  # not for this browser
        assert (await web_sign_in(attacker, name, STAFF_PASSWORD)).status_code == 429

        async with e2e.http() as another:  # the link works once
            used = await another.get("/backoffice/unlock", params={"token": link_token})
            assert used.status_code == 400 and "not valid" in used.text
            form = await another.get("/backoffice/sign-in")  # a valid CSRF token of its own
            replay = await another.post(
                "/backoffice/unlock", data={"token": link_token, "csrf_token": csrf_token(form)}
            )
            assert replay.status_code == 400 and "backoffice_device" not in another.cookies
        # a customer's unlock page knows no staff link (and does not use it up)
        assert (await attacker.post("/account/unlock", data={"token": link_token})).status_code == 400


async def test_a_member_without_email_and_an_unknown_name_get_the_same_answers_and_no_email(e2e: Stack) -> None:
    without = await member(e2e, email=None)
    async with e2e.http() as attacker:
        assert await lock(attacker, without) == SEEN
        assert await lock(attacker, f"nobody-{os.urandom(4).hex()}") == SEEN
    await asyncio.sleep(1.5)  # the notice would have started by now, and be visible
    assert await notices(e2e) == []
    async with e2e.database.sessions() as session:  # the database is shared with other tests: this member's
        staff_id = await session.scalar(select(Staff.id).where(Staff.name == without))
        key = f"staff-lock-notice:{staff_id}:%"
        assert (await session.scalars(select(EmailOutbox).where(EmailOutbox.idempotency_key.like(key)))).all() == []


async def test_a_staff_unlock_link_expires(stack: StackFactory, dev_server: Any, database: Database) -> None:
    settings = {"lockout_max_failures": 3, "unlock_link_expires_after": timedelta(seconds=1)}
    async with stack(dev_server, database, api=True, **settings) as built, built.http() as browser:
        address = unique_email("staff")
        name = await member(built, email=address)
        assert await lock(browser, name) == SEEN
        link_token = token_from(await built.mail_to(address, SUBJECT))
        form = await browser.get("/backoffice/sign-in")
        await asyncio.sleep(1.2)
        assert (await browser.get("/backoffice/unlock", params={"token": link_token})).status_code == 400
        posted = await browser.post("/backoffice/unlock", data={"token": link_token, "csrf_token": csrf_token(form)})
        assert posted.status_code == 400 and "backoffice_device" not in browser.cookies
        assert (await web_sign_in(browser, name, STAFF_PASSWORD)).status_code == 429


async def test_a_second_start_for_the_same_lock_starts_nothing(e2e: Stack) -> None:
    address = unique_email("staff")
    name = await member(e2e, email=address)
    async with e2e.database.sessions() as session:
        staff_id = await session.scalar(select(Staff.id).where(Staff.name == name))
    assert staff_id is not None
    window = utcnow()
    lock: dict[str, Any] = {
        "staff_id": staff_id,
        "window_ends_at": window,
        "locked_until": window + timedelta(minutes=15),
        "failures": 3,
    }
    assert await e2e.accounts.staff_locks.start(**lock) is True
    assert await e2e.accounts.staff_locks.start(**lock) is False  # running: refused by id
    await e2e.mail_to(address, SUBJECT)
    assert await e2e.client.get_workflow_handle(staff_lock_notice_id(staff_id, window)).result() is True
    assert await e2e.accounts.staff_locks.start(**lock) is False  # closed: its id is not reused
    await asyncio.sleep(1)
    assert len(e2e.sink.to(address)) == 1
