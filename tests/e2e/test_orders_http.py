"""Order history end to end: imports through the CLI and the back office, and customers reading their own."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import ACCOUNTS, Database, Stack, StackFactory, checkout_env
from test_backoffice_http import staff_key
from test_profile_http import signed_in

pytestmark = pytest.mark.e2e

NOT_FOUND = [{"status": 404, "code": "1101", "detail": "Cant find order by the given order reference"}]
UNAUTHORIZED = [{"status": 403, "code": "411", "detail": "Unauthorized request."}]
TOTALS = {"grandTotal": 2598, "subtotal": 2299, "taxTotal": 415, "shippingTotal": 299}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def new_reference() -> str:
    return f"ORD-{uuid.uuid4().hex[:10].upper()}"


def order(customer_reference: str, **overrides: Any) -> dict[str, Any]:
    return {
        "orderReference": new_reference(),
        "customerReference": customer_reference,
        "createdAt": "2026-03-01T10:00:00+00:00",
        "status": "shipped",
        "currency": "EUR",
        "totals": TOTALS,
        "items": [{"sku": "tea-1", "name": "Green tea", "quantity": 2, "unitPrice": 1000, "sumPrice": 2000}],
        **overrides,
    }


async def accounts_cli(stack: Stack, cwd: Path, *args: str) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        *args,
        cwd=cwd,
        env=checkout_env({**os.environ, "ACCOUNTS_DATABASE_URL": stack.settings.database_url}),
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode().strip().splitlines()


async def orders_of(http: httpx.AsyncClient, reference: str, bearer: dict[str, str], **page: int) -> dict[str, Any]:
    params = {f"page[{name}]": value for name, value in page.items()}
    response = await http.get(f"/customers/{reference}/orders", params=params, headers=bearer)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    return dict(response.json())


async def test_cli_imports_json_idempotently_and_names_each_rejection(e2e: Stack, tmp_path: Path) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        good = [order(reference), order(reference, createdAt="2026-04-01T09:30:00Z")]
        bad = [
            order("DE--unknown"),
            order(reference, currency="eur"),
            order(reference, totals={**TOTALS, "taxTotal": -1}),
            {k: v for k, v in order(reference).items() if k != "status"},
        ]
        path = tmp_path / "orders.json"
        path.write_text(json.dumps([good[0], *bad, good[1]]))

        code, lines = await accounts_cli(e2e, tmp_path, "orders", "import", str(path))
        assert code == 1
        assert lines == [
            "2 created, 0 updated, 0 unchanged, 4 rejected",
            "rejected order 1: unknown customer DE--unknown",
            "rejected order 2: currency must be three upper-case letters (ISO 4217)",
            "rejected order 3: totals.taxTotal must not be negative",
            "rejected order 4: status is missing",
        ]
        # the same file again changes nothing
        code, lines = await accounts_cli(e2e, tmp_path, "orders", "import", str(path))
        assert (code, lines[0]) == (1, "0 created, 0 updated, 2 unchanged, 4 rejected")

        path.write_text(json.dumps([{**good[0], "status": "delivered"}]))
        assert await accounts_cli(e2e, tmp_path, "orders", "import", str(path)) == (
            0,
            ["0 created, 1 updated, 0 unchanged, 0 rejected"],
        )
        listed = await orders_of(http, reference, bearer)
    assert [(o["id"], o["attributes"]["status"]) for o in listed["data"]] == [
        (good[1]["orderReference"], "shipped"),
        (good[0]["orderReference"], "delivered"),
    ]
    assert listed["data"][1]["attributes"] == {
        "createdAt": "2026-03-01T10:00:00+00:00",
        "status": "delivered",
        "currency": "EUR",
        "totals": TOTALS,
        "items": good[0]["items"],
    }


async def test_cli_imports_csv_with_one_row_per_item(e2e: Stack, tmp_path: Path) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        two_items, one_item, disagreeing, negative = (new_reference() for _ in range(4))
        header = ["orderReference", "customerReference", "createdAt", "status", "currency", "grandTotal", "subtotal",
                  "taxTotal", "shippingTotal", "sku", "name", "quantity", "unitPrice"]  # fmt: skip
        head = [reference, "2026-05-02T08:00:00+02:00", "paid", "CHF", "3599", "3300", "527", "299"]
        rows = [
            [two_items, *head, "mug-1", "Mug", "2", "1200"],
            [one_item, reference, "2026-05-01T08:00:00Z", "new", "CHF", "1499", "1200", "0", "299", "pot-1", "Pot", "1",
             "1200"],
            [two_items, *head, "cup-9", "Cup", "1", "900"],
            [disagreeing, *head, "mug-1", "Mug", "1", "1200"],
            [disagreeing, reference, "2026-05-02T08:00:00+02:00", "cancelled", *head[3:], "cup-9", "Cup", "1", "900"],
            [negative, *head, "mug-1", "Mug", "1", "-5"],
        ]  # fmt: skip
        path = tmp_path / "orders.csv"
        with path.open("w", newline="") as file:
            csv.writer(file).writerows([header, *rows])

        code, lines = await accounts_cli(e2e, tmp_path, "orders", "import", str(path))
        assert code == 1
        assert lines == [
            "2 created, 0 updated, 0 unchanged, 2 rejected",
            "rejected line 5: line 6 disagrees with line 5 on status",
            "rejected line 7: items[0].unitPrice must not be negative",
        ]
        code, lines = await accounts_cli(e2e, tmp_path, "orders", "import", str(path))
        assert lines[0] == "0 created, 0 updated, 2 unchanged, 2 rejected"

        listed = await orders_of(http, reference, bearer)
    assert [o["id"] for o in listed["data"]] == [two_items, one_item]
    attributes = listed["data"][0]["attributes"]
    assert attributes["createdAt"] == "2026-05-02T06:00:00+00:00"
    assert attributes["totals"] == {"grandTotal": 3599, "subtotal": 3300, "taxTotal": 527, "shippingTotal": 299}
    assert attributes["items"] == [
        {"sku": "mug-1", "name": "Mug", "quantity": 2, "unitPrice": 1200, "sumPrice": 2400},
        {"sku": "cup-9", "name": "Cup", "quantity": 1, "unitPrice": 900, "sumPrice": 900},
    ]


async def test_back_office_import_upserts_and_rejects_with_reasons(e2e: Stack) -> None:
    staff = {"Authorization": f"Bearer {await staff_key(e2e, 'orders')}"}
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        first, second = order(reference), order(reference, createdAt="2026-03-02T10:00:00Z")
        batch = [first, "not an order", order(reference, createdAt="yesterday"), second, {**first, "status": "x"}]

        imported = await http.post("/backoffice/orders", json={"orders": batch}, headers=staff)
        assert imported.status_code == 200, imported.text
        assert imported.json() == {
            "created": 2,
            "updated": 0,
            "unchanged": 0,
            "rejected": [
                {"index": 1, "reason": "an order must be an object"},
                {"index": 2, "reason": "createdAt is not an ISO 8601 date-time"},
                {"index": 4, "reason": f"orderReference {first['orderReference']} appears more than once"},
            ],
        }
        again = await http.post("/backoffice/orders", json={"orders": [first, second]}, headers=staff)
        assert again.json() == {"created": 0, "updated": 0, "unchanged": 2, "rejected": []}
        changed = await http.post(
            "/backoffice/orders", json={"orders": [{**second, "status": "returned"}]}, headers=staff
        )
        assert changed.json() == {"created": 0, "updated": 1, "unchanged": 0, "rejected": []}
        one = await http.get(f"/orders/{second['orderReference']}", headers=bearer)
        assert one.status_code == 200 and one.json()["data"]["attributes"]["status"] == "returned"
        assert one.json()["data"]["links"]["self"] == f"{e2e.api_url}/orders/{second['orderReference']}"

        not_a_list = await http.post("/backoffice/orders", json={"orders": {}}, headers=staff)
        assert (not_a_list.status_code, not_a_list.json()["errors"][0]["code"]) == (422, "901")
        anonymous = await http.post("/backoffice/orders", json={"orders": [order(reference)]})
        as_customer = await http.post("/backoffice/orders", json={"orders": [order(reference)]}, headers=bearer)
        assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (403, "002")
        assert (as_customer.status_code, as_customer.json()["errors"][0]["code"]) == (401, "001")
        assert len((await orders_of(http, reference, bearer))["data"]) == 2


async def test_orders_are_paged_newest_first(e2e: Stack) -> None:
    staff = {"Authorization": f"Bearer {await staff_key(e2e, 'orders')}"}
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        days = [3, 5, 1, 4, 2]
        batch = [order(reference, createdAt=f"2026-01-0{day}T12:00:00Z") for day in days]
        assert (await http.post("/backoffice/orders", json={"orders": batch}, headers=staff)).json()["created"] == 5
        newest_first = [batch[days.index(day)]["orderReference"] for day in (5, 4, 3, 2, 1)]
        base = f"{e2e.api_url}/customers/{reference}/orders"

        default = await orders_of(http, reference, bearer)
        assert [o["id"] for o in default["data"]] == newest_first
        assert default["links"] == {"self": f"{base}?page[offset]=0&page[limit]=10"}
        assert default["meta"] == {"totalItems": 5, "totalPages": 1}

        pages = [await orders_of(http, reference, bearer, offset=offset, limit=2) for offset in (0, 2, 4)]
        assert [[o["id"] for o in page["data"]] for page in pages] == [
            newest_first[:2],
            newest_first[2:4],
            newest_first[4:],
        ]
        assert [page["links"].get("next") for page in pages] == [
            f"{base}?page[offset]=2&page[limit]=2",
            f"{base}?page[offset]=4&page[limit]=2",
            None,
        ]
        assert {json.dumps(page["meta"]) for page in pages} == {json.dumps({"totalItems": 5, "totalPages": 3})}
        assert (await orders_of(http, reference, bearer, offset=10))["data"] == []

        for params in ({"page[limit]": 0}, {"page[limit]": 101}, {"page[offset]": -1}):
            bad = await http.get(f"/customers/{reference}/orders", params=params, headers=bearer)
            assert (bad.status_code, bad.json()["errors"][0]["code"]) == (422, "901"), params


async def test_a_customer_never_sees_another_customers_orders(e2e: Stack) -> None:
    staff = {"Authorization": f"Bearer {await staff_key(e2e, 'orders')}"}
    async with e2e.http() as http:
        _, ref_a, bearer_a = await signed_in(e2e, http)
        _, ref_b, bearer_b = await signed_in(e2e, http)
        mine, theirs = order(ref_a), order(ref_b)
        assert (await http.post("/backoffice/orders", json={"orders": [mine, theirs]}, headers=staff)).json()[
            "created"
        ] == 2

        assert [o["id"] for o in (await orders_of(http, ref_a, bearer_a))["data"]] == [mine["orderReference"]]
        assert [o["id"] for o in (await orders_of(http, ref_b, bearer_b))["data"]] == [theirs["orderReference"]]
        other = await http.get(f"/customers/{ref_b}/orders", headers=bearer_a)
        assert (other.status_code, other.json()["errors"]) == (403, UNAUTHORIZED)
        for unknown in (theirs["orderReference"], new_reference()):
            answer = await http.get(f"/orders/{unknown}", headers=bearer_a)
            assert (answer.status_code, answer.json()["errors"]) == (404, NOT_FOUND)
        assert (await http.get(f"/orders/{theirs['orderReference']}", headers=bearer_b)).status_code == 200

        for path in (f"/customers/{ref_a}/orders", f"/orders/{mine['orderReference']}"):
            anonymous = await http.get(path)
            assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (403, "002")
