"""A lock that the owner gets through, over HTTP: device tokens on POST /access-tokens and the back-office
sign-in, and the lock email's one-time link (accounts/device_tokens.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, token_from
from test_backoffice_web import staff_with_password, web_sign_in
from test_login_http import JSONAPI, PASSWORD, login_body, registered, sign_in

from starter.login import lockout_id
from workflows.lockout import LockoutWindowWorkflow

pytestmark = pytest.mark.e2e
DEVICE = "X-Device-Token"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=3, lockout_device_max_failures=2) as built:
        yield built


async def lock(http: httpx.AsyncClient, email: str) -> None:
    """An attacker without a device token: three wrong passwords lock the account for every untrusted client."""
    for _ in range(3):
        assert (await sign_in(http, email, "wrong password!")).status_code == 401
    blocked = await sign_in(http, email)
    assert blocked.status_code == 429
    assert blocked.json()["errors"][0]["code"] == "4401"  # Glue's answer, as before, for clients without a token


async def test_the_owner_signs_in_from_a_known_device_while_the_account_is_locked(e2e: Stack) -> None:
    async with e2e.http() as owner, e2e.http() as attacker:
        email, _ = await registered(e2e, owner)
        first = await sign_in(owner, email)
        assert first.status_code == 201
        device_token = first.headers[DEVICE]
        assert len(device_token) >= 43 and "deviceToken" not in first.json()["data"]["attributes"]

        await lock(attacker, email)

        by_header = await owner.post(
            "/access-tokens", json=login_body(email, PASSWORD), headers={"Content-Type": JSONAPI, DEVICE: device_token}
        )
        assert by_header.status_code == 201, by_header.text
        assert by_header.headers[DEVICE] == device_token  # the known device keeps its token
        body = login_body(email, PASSWORD)
        body["data"]["attributes"]["deviceToken"] = device_token
        by_attribute = await owner.post("/access-tokens", json=body, headers={"Content-Type": JSONAPI})
        assert by_attribute.status_code == 201
        oauth = await owner.post(
            "/token",
            data={"grant_type": "password", "username": email, "password": PASSWORD},
            headers={DEVICE: device_token},
        )
        assert oauth.status_code == 200 and oauth.headers[DEVICE] == device_token
        # the account stays locked for everyone else, a made-up token included
        assert (await sign_in(attacker, email)).status_code == 429
        forged = await attacker.post(
            "/access-tokens", json=login_body(email, PASSWORD), headers={"Content-Type": JSONAPI, DEVICE: "x" * 43}
        )
        assert forged.status_code == 429


async def test_a_known_device_is_bounded_on_its_own_and_binds_to_its_account(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        other, _ = await registered(e2e, http)
        device_token = (await sign_in(http, email)).headers[DEVICE]
        headers = {"Content-Type": JSONAPI, DEVICE: device_token}

        async def with_token(username: str, password: str) -> httpx.Response:
            return await http.post("/access-tokens", json=login_body(username, password), headers=headers)

        # the token of one account counts as none on another: the other's untrusted bound applies
        await lock(http, other)
        assert (await with_token(other, PASSWORD)).status_code == 429
        # a stolen device token buys two guesses per window (lockout_device_max_failures), then the device locks
        assert [(await with_token(email, "wrong!")).status_code for _ in range(2)] == [401, 401]
        assert (await with_token(email, PASSWORD)).status_code == 429
        # ...while the account itself was never locked: a sign-in without the token still gets through
        assert (await sign_in(http, email)).status_code == 201


async def test_the_lock_email_link_trusts_the_browser_that_opens_it_once(e2e: Stack) -> None:
    async with e2e.http() as browser, e2e.http() as attacker:
        email, reference = await registered(e2e, browser)
        await lock(attacker, email)
        notice = await e2e.mail_to(email, "paused")
        link_token = token_from(notice)
        assert "/account/unlock?token=" in notice.text

        page = await browser.get("/account/unlock", params={"token": link_token})
        assert page.status_code == 200 and 'method="post"' in page.text
        assert (await browser.get("/account/unlock", params={"token": link_token})).status_code == 200  # unused
        assert (await sign_in(browser, email)).status_code == 429  # nor does it trust the browser

        trusted = await browser.post("/account/unlock", data={"token": link_token})
        assert trusted.status_code == 200
        assert "accounts_device" in browser.cookies
        assert (await sign_in(browser, email)).status_code == 201  # the cookie makes this browser a known device
        assert (await sign_in(attacker, email)).status_code == 429  # the lock holds for everyone else

        async with e2e.http() as another:
            assert (await another.post("/account/unlock", data={"token": link_token})).status_code == 400  # used up
            assert "accounts_device" not in another.cookies
        history = await e2e.client.get_workflow_handle_for(
            LockoutWindowWorkflow.run, lockout_id(f"customer:{reference}")
        ).fetch_history()
        assert link_token not in json.dumps(history.to_json_dict())  # minted by the activity: never in history


async def test_a_staff_member_signs_in_from_their_browser_while_their_name_is_locked(e2e: Stack) -> None:
    name, password = await staff_with_password(e2e)
    async with e2e.http() as own, e2e.http() as attacker:
        assert (await web_sign_in(own, name, password)).status_code == 303
        assert own.cookies.get("backoffice_device")
        for _ in range(3):
            assert (await web_sign_in(attacker, name, f"guess-{os.urandom(3).hex()}")).status_code == 400
        assert (await web_sign_in(attacker, name, password)).status_code == 429
        assert (await web_sign_in(own, name, password)).status_code == 303  # the device cookie gets through


async def test_an_unlock_link_expires(stack: StackFactory, dev_server: Any, database: Database) -> None:
    settings = {"lockout_max_failures": 3, "unlock_link_expires_after": timedelta(seconds=1)}
    async with stack(dev_server, database, api=True, **settings) as built, built.http() as browser:
        email, _ = await registered(built, browser)
        await lock(browser, email)
        link_token = token_from(await built.mail_to(email, "paused"))
        await asyncio.sleep(1.2)
        assert (await browser.get("/account/unlock", params={"token": link_token})).status_code == 400
        assert (await browser.post("/account/unlock", data={"token": link_token})).status_code == 400
        assert "accounts_device" not in browser.cookies
