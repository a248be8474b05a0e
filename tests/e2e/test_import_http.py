"""Customer imports over the back-office JSON API (`/backoffice/imports`, issue 13): a Spryker customer.csv
uploaded as multipart form data, followed to its end, its rejected rows downloaded; a refused file, a
support member and an oversized upload change nothing. On SQLite and PostgreSQL (the `database` fixture).

The file helpers here are shared with test_import_cli.py and test_import_web.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import bcrypt
import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import func, select
from test_backoffice_http import staff_key
from test_login_http import sign_in

from accounts.models import Customer

pytestmark = pytest.mark.e2e

HEADER = (
    "customer_reference,locale_name,phone,email,salutation,first_name,last_name,company,gender,date_of_birth,"
    "password,registered"
)
DEMO_PASSWORD = "change123"  # the password Spryker's demo hashes were made from (here: made again, cost 4)


def spryker_hash(password: str = DEMO_PASSWORD) -> str:
    """A bcrypt hash as PHP writes it (`$2y$`), like the password column of Spryker's demo customer.csv."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


class ImportFile:
    """A customer.csv of a test's own: unique references (`SPR{tag}-{n}`) and emails, Spryker's header."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.rows: list[list[str]] = []

    def reference(self, number: int) -> str:
        return f"SPR{self.tag}-{number}"

    def email(self, number: int) -> str:
        return f"import-{self.tag}-{number}@example.com"

    def add(self, number: int, *, email: str | None = None, password: str = "", registered: str = "2016-01-01",
            salutation: str = "Mr", locale: str = "en_US", company: str = "") -> ImportFile:  # fmt: skip
        self.rows.append([self.reference(number), locale, "", email or self.email(number), salutation, "Spencor",
                          f"Hopkin {number}", company, "Male", "1982-07-09", password, registered])  # fmt: skip
        return self

    def content(self, header: str = HEADER, delimiter: str = ",") -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header.split(","))
        writer.writerows(self.rows)
        return out.getvalue().encode()


def demo_file() -> ImportFile:
    """Spryker's demo shape: verified rows with `$2y$10$`-style hashes, an unverified row without a password
    (a quoted company with a comma), and the fourth row repeating the third's email: a row error, line 5."""
    f = ImportFile()
    f.add(1, password=spryker_hash()).add(2, password=spryker_hash(), locale="de_DE")
    f.add(3, registered="", salutation="Ms", company="Spryker, Inc")
    f.add(4, email=f.email(3))
    return f


async def customers_with(stack: Stack, prefix: str) -> dict[str, Customer]:
    async with stack.database.sessions() as session:
        found = await session.scalars(select(Customer).where(Customer.customer_reference.startswith(prefix)))
        return {customer.customer_reference: customer for customer in found}


async def customer_count(stack: Stack) -> int:
    async with stack.database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def until_done(read: Callable[[], Awaitable[dict[str, Any]]], timeout: float = 60) -> dict[str, Any]:
    """Poll an import's attributes until it leaves `running`."""
    deadline = time.monotonic() + timeout
    while True:
        attributes = await read()
        if attributes["state"] != "running":
            return attributes
        assert time.monotonic() < deadline, attributes
        await asyncio.sleep(0.3)


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def upload(content: bytes, **form: str) -> dict[str, Any]:
    return {"files": {"file": ("customer.csv", content, "text/csv")}, "data": form}


async def progress(http: httpx.AsyncClient, admin: dict[str, str], import_id: str) -> dict[str, Any]:
    response = await http.get(f"/backoffice/imports/{import_id}", headers=admin)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["type"], data["id"]) == ("customer-imports", import_id)
    return dict(data["attributes"])


async def test_an_admin_imports_a_spryker_file_follows_it_and_downloads_the_rejected_row(e2e: Stack) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
    f = demo_file()
    async with e2e.http() as http:
        started = await http.post("/backoffice/imports", headers=admin, **upload(f.content()))
        assert started.status_code == 202, started.text
        data = started.json()["data"]
        import_id = data["id"]
        assert data["type"] == "customer-imports" and import_id.startswith("imp_")
        assert (data["attributes"]["rowsTotal"], data["attributes"]["dryRun"]) == (4, False)

        done = await until_done(lambda: progress(http, admin, import_id))
        assert (done["state"], done["rowsRead"], done["rowsWritten"], done["rowsRejected"]) == ("completed", 4, 3, 1)
        assert (
            done["errors"] == [{"line": 5, "column": "email", "message": done["errors"][0]["message"]}]
            and done["errors"][0]["message"]
        )
        assert done["finishedAt"] is not None and done["uiUrl"].startswith("http")

        over = await http.post(f"/backoffice/imports/{import_id}/cancel", headers=admin)
        assert (over.status_code, over.json()["errors"][0]["code"]) == (409, "409")  # nothing left to cancel

        listed = await http.get("/backoffice/imports", headers=admin)
        assert import_id in [item["id"] for item in listed.json()["data"]]

        rejected = await http.get(f"/backoffice/imports/{import_id}/rejected.csv", headers=admin)
        assert rejected.status_code == 200 and rejected.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(rejected.text)))
        assert [(r["customer_reference"], r["error_line"], r["error_column"]) for r in rows] == [
            (f.reference(4), "5", "email")
        ]

        # the imported bcrypt hash signs in; the unverified row got its verification email
        assert (await sign_in(http, f.email(1), DEMO_PASSWORD)).status_code == 201
    await e2e.mail_to(f.email(3))  # the verification (here: set-password) link
    imported = await customers_with(e2e, f"SPR{f.tag}-")
    assert sorted(imported) == [f.reference(n) for n in (1, 2, 3)]
    assert imported[f.reference(3)].registered_at is None and imported[f.reference(1)].registered_at is not None
    assert imported[f.reference(3)].company == "Spryker, Inc"


async def test_a_dry_run_and_a_tab_separated_file_write_nothing(e2e: Stack) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
    f = ImportFile().add(1).add(2, registered="")
    async with e2e.http() as http:
        started = await http.post("/backoffice/imports", headers=admin,
                                  **upload(f.content(delimiter="\t"), delimiter="tab", dryRun="true"))  # fmt: skip
        assert started.status_code == 202, started.text
        import_id = started.json()["data"]["id"]
        done = await until_done(lambda: progress(http, admin, import_id))
    assert (done["state"], done["dryRun"], done["rowsRead"], done["rowsWritten"], done["rowsRejected"]) == (
        "completed", True, 2, 0, 0)  # fmt: skip
    assert await customers_with(e2e, f"SPR{f.tag}-") == {}
    assert e2e.sink.to(f.email(2)) == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (HEADER.replace("email,", "").encode() + b"\nDE--1,en_US,,Mr,A,B,,Male,,,\n", "email"),
        (b"", "empty"),
        (HEADER.encode("utf-16"), "UTF-8"),
    ],
    ids=["missing-column", "empty", "not-utf8"],
)
async def test_a_refused_file_answers_422_in_glue_format_and_writes_nothing(
    e2e: Stack, content: bytes, why: str
) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
    before = await customer_count(e2e)
    async with e2e.http() as http:
        refused = await http.post("/backoffice/imports", headers=admin, **upload(content))
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert (error["status"], error["code"]) == (422, "901") and error["detail"].startswith("file => ")
    assert why.lower() in error["detail"].lower()
    assert await customer_count(e2e) == before


async def test_a_bad_delimiter_is_refused_before_anything_starts(e2e: Stack) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
    async with e2e.http() as http:
        refused = await http.post("/backoffice/imports", headers=admin,
                                  **upload(ImportFile().add(1).content(), delimiter=";;"))  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["detail"].startswith("file => the delimiter")


async def test_a_support_member_may_not_import_and_nothing_is_written(e2e: Stack) -> None:
    support = {"Authorization": f"Bearer {await staff_key(e2e, 'helper', 'support')}"}
    f = ImportFile().add(1, registered="")
    async with e2e.http() as http:
        refused = await http.post("/backoffice/imports", headers=support, **upload(f.content()))
        listing = await http.get("/backoffice/imports", headers=support)
    assert (refused.status_code, refused.json()["errors"][0]["code"]) == (403, "403")
    assert listing.status_code == 403
    assert await customers_with(e2e, f"SPR{f.tag}-") == {}


async def test_an_unknown_import_answers_404(e2e: Stack) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
    async with e2e.http() as http:
        for method, path in (("GET", ""), ("POST", "/cancel"), ("GET", "/rejected.csv")):
            answer = await http.request(method, f"/backoffice/imports/imp_{uuid.uuid4().hex}{path}", headers=admin)
            assert (answer.status_code, answer.json()["errors"][0]["detail"]) == (404, "Import not found."), path


async def test_uploads_have_their_own_size_bound(stack: StackFactory, dev_server: Any, database: Database) -> None:
    """A customer.csv may be larger than ACCOUNTS_MAX_REQUEST_BYTES (but not than ACCOUNTS_IMPORT_MAX_BYTES);
    every other body keeps the general bound."""
    f = ImportFile()
    for number in range(1, 41):
        f.add(number)
    content = f.content()
    assert 4000 < len(content) < 8000
    async with stack(dev_server, database, api=True, max_request_bytes=2000, import_max_bytes=10_000) as e2e:
        admin = {"Authorization": f"Bearer {await staff_key(e2e, 'importer', 'admin')}"}
        async with e2e.http() as http:
            accepted = await http.post("/backoffice/imports", headers=admin, **upload(content))
            too_big = await http.post("/backoffice/imports", headers=admin, **upload(content * 3))
            other = await http.post("/backoffice/customers", headers=admin, json={"email": "x" * 3000})
            if accepted.status_code == 202:
                await until_done(lambda: progress(http, admin, accepted.json()["data"]["id"]))
    assert accepted.status_code == 202, accepted.text
    assert (too_big.status_code, too_big.json()["errors"][0]["detail"]) == (
        413, "data => The request body exceeds 10000 bytes.")  # fmt: skip
    assert other.status_code == 413
