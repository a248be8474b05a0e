"""The back-office import pages over HTTP (issue 13): an admin uploads a customer.csv, watches its progress
(a page that reloads itself while the import runs, no scripts), downloads the rejected rows and cancels a
running import; forms need the session's CSRF token; a support member is refused (403) and writes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from test_backoffice_web import csrf_token, flash, staff_with_password, web_sign_in
from test_import_http import HEADER, ImportFile, customer_count, customers_with, demo_file

pytestmark = pytest.mark.e2e
IMPORTS = "/backoffice/ui/imports"
REFRESH = '<meta http-equiv="refresh" content="2">'


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    # batches of 500 (not the default 2,000): the cancel test reads six of them
    async with stack(dev_server, database, api=True, import_batch_size=500) as built:
        yield built


async def signed_in(stack: Stack, http: httpx.AsyncClient, role: str) -> None:
    name, password = await staff_with_password(stack, role, name=role)
    assert (await web_sign_in(http, name, password)).status_code == 303


async def post_file(http: httpx.AsyncClient, content: bytes, token: str, **form: str) -> httpx.Response:
    return await http.post(IMPORTS, files={"file": ("customer.csv", content, "text/csv")},
                           data={"csrf_token": token, **form})  # fmt: skip


async def until_finished(http: httpx.AsyncClient, url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        page = await http.get(url)
        assert page.status_code == 200, page.text
        if REFRESH not in page.text:
            return page
        assert time.monotonic() < deadline, page.text
        await asyncio.sleep(0.3)


def state(page: httpx.Response) -> str:
    found = re.search(r'<span class="status" id="state">(\w+)</span>', page.text)
    assert found is not None, page.text
    return found[1]


async def test_an_admin_uploads_watches_and_downloads_the_rejected_rows(e2e: Stack) -> None:
    f = demo_file()
    async with e2e.http() as http:
        await signed_in(e2e, http, "admin")
        listing = await http.get(IMPORTS)
        assert listing.status_code == 200 and 'enctype="multipart/form-data"' in listing.text
        assert f'href="{IMPORTS}"' in (await http.get("/backoffice")).text  # the admin's top bar links it

        uploaded = await post_file(http, f.content(), csrf_token(listing))
        assert uploaded.status_code == 303, uploaded.text
        page_url = uploaded.headers["location"]
        assert re.fullmatch(rf"{IMPORTS}/imp_\S+", page_url)
        first = await http.get(page_url)
        assert flash(first) == "success: customer.csv: 4 rows are being imported."
        assert "<script" not in first.text

        done = await until_finished(http, page_url)
        assert state(done) == "completed" and "Cancel the import" not in done.text
        assert 'id="rows-written">3 ' in done.text and 'id="rows-rejected">1<' in done.text
        assert re.search(r"<td>5</td><td>email</td><td>[^<]+</td>", done.text), done.text
        assert f'href="{page_url}/rejected.csv"' in done.text
        rejected = await http.get(f"{page_url}/rejected.csv")
        assert rejected.status_code == 200 and rejected.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(rejected.text)))
        assert [(r["customer_reference"], r["error_line"]) for r in rows] == [(f.reference(4), "5")]

        import_id = page_url.rsplit("/", 1)[1]
        assert f'href="{page_url}"' in (await http.get(IMPORTS)).text and import_id in (await http.get(IMPORTS)).text
    assert sorted(await customers_with(e2e, f"SPR{f.tag}-")) == [f.reference(n) for n in (1, 2, 3)]


async def test_a_running_import_reloads_itself_and_can_be_cancelled(e2e: Stack) -> None:
    f = ImportFile()
    # six batches: the cancel lands while the file is read (else: refused, below)
    rows = 6 * e2e.settings.import_batch_size
    for number in range(1, rows + 1):
        f.add(number)
    async with e2e.http() as http:
        await signed_in(e2e, http, "admin")
        uploaded = await post_file(http, f.content(), csrf_token(await http.get("/backoffice")))
        page_url = uploaded.headers["location"]
        running = await http.get(page_url)
        assert state(running) == "running" and REFRESH in running.text and "Cancel the import" in running.text
        forged = await http.post(f"{page_url}/cancel", data={"csrf_token": "forged"})
        assert forged.status_code == 403 and "Form refused" in forged.text
        cancelled = await http.post(f"{page_url}/cancel", data={"csrf_token": csrf_token(running)})
        assert (cancelled.status_code, cancelled.headers["location"]) == (303, page_url)
        answer = flash(await http.get(page_url))
        after = await until_finished(http, page_url)
    written = len(await customers_with(e2e, f"SPR{f.tag}-"))
    if answer.startswith("success: "):
        stopped = re.search(r'id="stopped-at">after line (\d+)<', after.text)
        assert answer.startswith("success: The import is cancelled after line ") and state(after) == "cancelled"
        assert stopped is not None and written == int(stopped[1]) - 1 < rows  # lines 2 to the stop stay
    else:  # the file was read already: nothing left to cancel, and the page says so
        assert answer.startswith("error: Nothing was done: ") and state(after) == "completed" and written == rows


async def test_a_refused_file_and_a_form_without_the_token_import_nothing(e2e: Stack) -> None:
    before = await customer_count(e2e)
    async with e2e.http() as http:
        await signed_in(e2e, http, "admin")
        token = csrf_token(await http.get("/backoffice"))
        missing = HEADER.replace("email,", "").encode() + b"\nDE--1,en_US,,Mr,A,B,,Male,,,\n"
        refused = await post_file(http, missing, token)
        assert refused.status_code == 422
        assert "The file was refused, nothing was imported: " in refused.text and "email" in refused.text
        forged = await post_file(http, ImportFile().add(1).content(), "not-the-token")
        assert forged.status_code == 403 and "Form refused" in forged.text
    assert await customer_count(e2e) == before


async def test_a_support_member_is_refused_every_import_page(e2e: Stack) -> None:
    f = ImportFile().add(1, registered="")
    async with e2e.http() as http:
        await signed_in(e2e, http, "support")
        home = await http.get("/backoffice")
        assert home.status_code == 200 and f'href="{IMPORTS}"' not in home.text
        page = await http.get(IMPORTS)
        assert page.status_code == 403 and "admin role" in page.text
        posted = await post_file(http, f.content(), csrf_token(home))
        assert posted.status_code == 403
        for path in ("/imp_0000", "/imp_0000/rejected.csv"):
            assert (await http.get(f"{IMPORTS}{path}")).status_code == 403
        cancel = await http.post(f"{IMPORTS}/imp_0000/cancel", data={"csrf_token": csrf_token(home)})
        assert cancel.status_code == 403
    assert await customers_with(e2e, f"SPR{f.tag}-") == {}
    assert e2e.sink.to(f.email(1)) == []
