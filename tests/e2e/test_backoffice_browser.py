"""The back-office web UI in a real browser: Debian's headless Chromium driven by Playwright.

The browser is the system's (/usr/bin/chromium, installed by .ci/run), never one Playwright downloads.
Without it the test skips, unless ACCOUNTS_TEST_REQUIRE_BROWSER=1 (CI sets it), which makes it fail.
Screenshots of the list and the detail page go to tests/artifacts/screenshots/ (kept by the run, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import select
from test_backoffice_web import customer_row, staff_with_password
from test_login_http import registered

from accounts.models import AuditEvent

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("ACCOUNTS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


def _browser_missing() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ACCOUNTS_TEST_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def test_sign_in_filter_search_and_verify_manually_in_chromium(e2e: Stack, browser: Any) -> None:
    name, password = await staff_with_password(e2e, "support")
    async with e2e.http() as http:
        verified_email, verified = await registered(e2e, http)
        unverified_email, unverified = await registered(e2e, http, confirm=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kind = e2e.database.kind
    context = await browser.new_context(base_url=e2e.api_url, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(15_000)

    # signing in: a wrong password is refused in words, the right one opens the customer list
    await page.goto("/backoffice")
    assert page.url.endswith("/backoffice/sign-in?next=%2Fbackoffice")
    await page.get_by_label("Staff name", exact=True).fill(name)
    await page.get_by_label("Password", exact=True).fill("not the password, sorry")
    await page.get_by_role("button", name="Sign in").click()
    assert await page.get_by_role("alert").inner_text() == "Unknown staff name or wrong password."
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Customers", level=1).wait_for()
    assert await page.get_by_text(f"{name} (support)").is_visible()

    # the status filter: only unverified customers, ours among them (newest first)
    await page.get_by_label("Status", exact=True).select_option("unverified")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(lambda url: "status=unverified" in url)
    statuses = await page.locator("tbody td:nth-child(4)").all_inner_texts()
    assert statuses and set(statuses) == {"Unverified"}
    assert unverified_email in await page.locator("tbody").inner_text()
    assert verified_email not in await page.locator("tbody").inner_text()
    await page.screenshot(path=str(SCREENSHOTS / f"backoffice-list-{kind}.png"), full_page=True)

    # search (case-insensitive, any status)
    await page.get_by_label("Status", exact=True).select_option("")
    await page.get_by_label("Search", exact=True).fill(verified_email.upper())
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(lambda url: "q=" in url and "status=unverified" not in url)
    assert await page.locator("tbody tr td:first-child").all_inner_texts() == [verified]

    # the detail page: verify manually with a reason; the status changes to Verified
    await page.get_by_label("Search", exact=True).fill(unverified)
    await page.get_by_role("button", name="Show").click()
    await page.get_by_role("link", name=unverified, exact=True).click()
    await page.get_by_role("heading", name="Lifecycle").wait_for()
    assert await page.get_by_test_id("customer-status").inner_text() == "Unverified"
    await page.get_by_label("Verify manually", exact=True).fill("ticket 4711: customer called")
    await page.get_by_role("button", name="Verify manually").click()
    await page.get_by_role("status").filter(has_text="is verified").wait_for()
    assert await page.get_by_role("status").first.inner_text() == f"{unverified} is verified (by {name})."
    assert await page.get_by_test_id("customer-status").inner_text() == "Verified"
    events = page.locator("section", has=page.get_by_role("heading", name="Events"))
    assert "verified manually" in await events.inner_text() and name in await events.inner_text()
    await page.screenshot(path=str(SCREENSHOTS / f"backoffice-detail-{kind}.png"), full_page=True)
    await context.close()

    assert (await customer_row(e2e, unverified)).registered_at is not None
    async with e2e.database.sessions() as session:
        event = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.customer_reference == unverified, AuditEvent.event == "verified_manually"
            )
        )
    assert event is not None and (event.actor, event.channel) == (name, "backoffice")
    assert event.details.get("reason") == "ticket 4711: customer called"
    for shot in ("list", "detail"):
        assert (SCREENSHOTS / f"backoffice-{shot}-{kind}.png").stat().st_size > 10_000
