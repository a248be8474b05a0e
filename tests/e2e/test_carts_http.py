"""Guest carts and checkout sign-up over HTTP: guest carts, conversion at activation (once), merge at sign-in."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, decoded_payload_texts, registration_body, token_from, unique_email
from sqlalchemy import func, select
from test_login_http import PASSWORD, registered, sign_in

from accounts import carts
from accounts.models import Cart, CartItem, Customer, utcnow
from activities.customers import ActivationInput, CustomerActivities

pytestmark = pytest.mark.e2e

JSONAPI = "application/vnd.api+json"
ANONYMOUS_ID_EMPTY = [{"status": 400, "code": "109", "detail": "Anonymous customer unique id is empty."}]
CART_NOT_FOUND = [{"status": 404, "code": "101", "detail": "Cart with given uuid not found."}]
UNAUTHORIZED = [{"status": 403, "code": "802", "detail": "Unauthorized request."}]


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def guest() -> dict[str, str]:
    return {"X-Anonymous-Customer-Unique-Id": f"anon-{uuid.uuid4()}"}


def item(sku: Any, quantity: Any = 1, **more: Any) -> dict[str, Any]:
    return {"data": {"type": "guest-cart-items", "attributes": {"sku": sku, "quantity": quantity, **more}}}


async def guest_cart(http: httpx.AsyncClient, who: dict[str, str], *items: tuple[str, int, int | None]) -> str:
    created = await http.post("/guest-carts", headers=who)
    assert created.status_code in (200, 201), created.text
    cart_uuid = str(created.json()["data"]["id"])
    for sku, quantity, price in items:
        extra = {} if price is None else {"unitPrice": price}
        added = await http.post(
            f"/guest-carts/{cart_uuid}/guest-cart-items", json=item(sku, quantity, **extra), headers=who
        )
        assert added.status_code == 201, added.text
    return cart_uuid


def lines(document: dict[str, Any]) -> dict[str, int]:
    return {i["attributes"]["sku"]: i["attributes"]["quantity"] for i in document.get("included", [])}


async def checkout_sign_up(stack: Stack, http: httpx.AsyncClient, who: dict[str, str]) -> tuple[str, str, str]:
    """POST /customers with the guest's header: email, reference and the confirmation key from the email."""
    email = unique_email("checkout")
    body = registration_body(email, PASSWORD, salutation="Mr", firstName="Alan", lastName="Turing")
    created = await http.post("/customers", json=body, headers=who)
    assert created.status_code == 201, created.text
    key = token_from(await stack.mail_to(email, "confirm"))
    return email, created.json()["data"]["id"], key


async def confirm(http: httpx.AsyncClient, key: str) -> None:
    body = {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": key}}}
    assert (await http.post("/customer-confirmation", json=body)).status_code == 204


async def bearer_of(http: httpx.AsyncClient, email: str, **headers: str) -> dict[str, str]:
    signed = await http.post(
        "/access-tokens",
        json={"data": {"type": "access-tokens", "attributes": {"username": email, "password": PASSWORD}}},
        headers={"Content-Type": JSONAPI, **headers},
    )
    assert signed.status_code == 201, signed.text
    return {"Authorization": f"Bearer {signed.json()['data']['attributes']['accessToken']}"}


async def cart_rows(stack: Stack) -> list[tuple[str, str | None, int | None, list[tuple[str, int, int]]]]:
    """Every cart with its lines, as the database holds them."""
    async with stack.database.sessions() as session:
        found = []
        for cart in await session.scalars(select(Cart).order_by(Cart.id)):
            items = await session.scalars(select(CartItem).where(CartItem.cart_id == cart.id).order_by(CartItem.id))
            found.append(
                (cart.uuid, cart.guest_key, cart.customer_id, [(i.sku, i.quantity, i.unit_price) for i in items])
            )
        return found


async def customer_row(stack: Stack, reference: str) -> Customer:
    async with stack.database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def test_a_guest_creates_a_cart_adds_items_and_reads_it(e2e: Stack) -> None:
    who = guest()
    async with e2e.http() as http:
        created = await http.post("/guest-carts", headers=who)
        assert created.status_code == 201, created.text
        assert created.headers["content-type"].startswith(JSONAPI)
        data = created.json()["data"]
        cart_uuid = data["id"]
        assert (data["type"], data["links"]["self"]) == ("guest-carts", f"{e2e.api_url}/guest-carts/{cart_uuid}")
        assert data["attributes"] == {
            "priceMode": "GROSS_MODE",
            "currency": "EUR",
            "store": "DE",
            "name": "Shopping cart",
            "isDefault": True,
            "totals": {
                "expenseTotal": 0,
                "discountTotal": 0,
                "taxTotal": 0,
                "subtotal": 0,
                "grandTotal": 0,
                "priceToPay": 0,
            },
            "discounts": [],
            "thresholds": [],
        }
        # the same guest again: the same cart (200), never a second one
        again = await http.post("/guest-carts", headers=who)
        assert (again.status_code, again.json()["data"]["id"]) == (200, cart_uuid)

        path = f"/guest-carts/{cart_uuid}/guest-cart-items"
        first = await http.post(path, json=item("tea-green_1.5", 2, unitPrice=1250), headers=who)
        assert first.status_code == 201, first.text
        assert first.json()["data"]["attributes"]["totals"]["grandTotal"] == 2500
        # the same SKU again raises its quantity; Glue sends numbers as strings too
        await http.post(path, json=item("tea-green_1.5", "1"), headers=who)
        added = await http.post(path, json=item("cup-2", 3, unitPrice=400), headers=who)
        document = added.json()
        assert document["data"]["attributes"]["totals"] == {
            "expenseTotal": 0,
            "discountTotal": 0,
            "taxTotal": 0,
            "subtotal": 3 * 1250 + 3 * 400,
            "grandTotal": 3 * 1250 + 3 * 400,
            "priceToPay": 3 * 1250 + 3 * 400,
        }
        assert document["data"]["relationships"] == {
            "guest-cart-items": {
                "data": [
                    {"type": "guest-cart-items", "id": "tea-green_1.5"},
                    {"type": "guest-cart-items", "id": "cup-2"},
                ]
            }
        }
        tea = document["included"][0]
        assert tea["type"] == "guest-cart-items"
        assert tea["attributes"]["calculations"]["unitPrice"] == 1250
        assert tea["attributes"]["calculations"]["sumPrice"] == 3750
        assert lines(document) == {"tea-green_1.5": 3, "cup-2": 3}

        read = await http.get(f"/guest-carts/{cart_uuid}", headers=who)
        assert read.status_code == 200
        assert read.json() == document
        listed = (await http.get("/guest-carts", headers=who)).json()
        assert [c["id"] for c in listed["data"]] == [cart_uuid]
        assert listed["links"]["self"] == f"{e2e.api_url}/guest-carts"
        assert lines(listed) == {"tea-green_1.5": 3, "cup-2": 3}

        # Glue's way: POST /guest-cart-items creates the cart when the guest has none
        newcomer = guest()
        implicit = await http.post("/guest-cart-items", json=item("cup-2"), headers=newcomer)
        assert implicit.status_code == 201, implicit.text
        assert lines(implicit.json()) == {"cup-2": 1}

    # only the hash of the anonymous id is stored
    rows = {row[0]: row for row in await cart_rows(e2e)}
    anonymous_id = who["X-Anonymous-Customer-Unique-Id"]
    assert rows[cart_uuid][1] == hashlib.sha256(anonymous_id.encode()).hexdigest()


async def test_guest_routes_without_the_anonymous_id_answer_109(e2e: Stack) -> None:
    before = await cart_rows(e2e)
    async with e2e.http() as http:
        for headers in ({}, {"X-Anonymous-Customer-Unique-Id": ""}):
            answers = [
                await http.post("/guest-carts", headers=headers),
                await http.get("/guest-carts", headers=headers),
                await http.get(f"/guest-carts/{uuid.uuid4()}", headers=headers),
                # the missing id answers before the body's attributes are looked at
                await http.post(
                    f"/guest-carts/{uuid.uuid4()}/guest-cart-items",
                    json={"data": {"type": "guest-cart-items", "attributes": {}}},
                    headers=headers,
                ),
                await http.post("/guest-cart-items", json=item("tea"), headers=headers),
            ]
            for answer in answers:
                assert (answer.status_code, answer.json()["errors"]) == (400, ANONYMOUS_ID_EMPTY)
            # Glue's envelope check comes first of all
            no_data = await http.post(f"/guest-carts/{uuid.uuid4()}/guest-cart-items", json={}, headers=headers)
            assert (no_data.status_code, no_data.json()["errors"]) == (
                400,
                [{"status": 400, "detail": "Post data is invalid."}],
            )
    assert await cart_rows(e2e) == before


BAD_ITEMS = [
    (
        "no sku",
        {"data": {"type": "guest-cart-items", "attributes": {"quantity": 1}}},
        "sku => This value should not be blank.",
    ),
    ("blank sku", item(""), "sku => This value should not be blank."),
    ("sku with spaces", item("tea cup"), "sku => This value is not a valid SKU (letters, digits and - _ . inside)."),
    ("sku not text", item(42), "sku => This value should be of type string."),
    ("sku too long", item("a" * 256), "sku => This value is too long. It should have 255 characters or less."),
    (
        "no quantity",
        {"data": {"type": "guest-cart-items", "attributes": {"sku": "tea"}}},
        "quantity => This value should not be blank.",
    ),
    ("zero", item("tea", 0), "quantity => This value should be greater than 0."),
    ("negative", item("tea", "-3"), "quantity => This value should be greater than 0."),
    ("too many", item("tea", 10_001), "quantity => This value should be less than or equal to 10000."),
    ("blank quantity", item("tea", ""), "quantity => This value should not be blank."),
    ("fraction", item("tea", 1.5), "quantity => This value should be of type integer."),
    ("boolean", item("tea", True), "quantity => This value should be of type integer."),
    ("word", item("tea", "two"), "quantity => This value should be of type integer."),
    ("negative price", item("tea", 1, unitPrice=-1), "unitPrice => This value should be between 0 and 100000000."),
]  # a wrong type is Glue's envelope check (400): tests/e2e/test_glue_contract_http.py


@pytest.mark.parametrize(("case", "body", "detail"), BAD_ITEMS, ids=[case for case, _, _ in BAD_ITEMS])
async def test_bad_items_get_901_and_change_nothing(e2e: Stack, case: str, body: Any, detail: str) -> None:
    who = guest()
    async with e2e.http() as http:
        cart_uuid = await guest_cart(http, who, ("tea", 2, 300))
        before = await cart_rows(e2e)
        answer = await http.post(f"/guest-carts/{cart_uuid}/guest-cart-items", json=body, headers=who)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [{"status": 422, "code": "901", "detail": detail}]
    assert await cart_rows(e2e) == before


async def test_a_line_beyond_the_maximum_and_bad_cart_attributes_change_nothing(e2e: Stack) -> None:
    who = guest()
    async with e2e.http() as http:
        cart_uuid = await guest_cart(http, who, ("tea", 9_999, 300))
        before = await cart_rows(e2e)
        answer = await http.post(
            f"/guest-carts/{cart_uuid}/guest-cart-items", json=item("tea", 2, unitPrice=1), headers=who
        )
        assert answer.status_code == 422
        assert answer.json()["errors"] == [
            {"status": 422, "code": "102", "detail": "The quantity of tea would exceed 10000."},
            {"status": 422, "code": "113", "detail": "Cart item could not be added."},
        ]
        assert await cart_rows(e2e) == before  # not even the price changed

        newcomer = guest()
        for attributes, error in [
            ({"priceMode": "BRUTTO"}, {"status": 422, "code": "119", "detail": "Price mode is incorrect."}),
            ({"currency": "eur"}, {"status": 422, "code": "117", "detail": "Currency is incorrect."}),
            ({"store": "Germany"}, {"status": 422, "code": "112", "detail": "Store data is invalid."}),
            ({"name": ""}, {"status": 422, "code": "901", "detail": "name => This value should not be blank."}),
        ]:
            body = {"data": {"type": "guest-carts", "attributes": attributes}}
            refused = await http.post("/guest-carts", json=body, headers=newcomer)
            assert (refused.status_code, refused.json()["errors"]) == (422, [error])
        assert (await http.get("/guest-carts", headers=newcomer)).json()["data"] == []
        chosen = {"priceMode": "NET_MODE", "currency": "CHF", "store": "AT", "name": "Birthday"}
        made = await http.post(
            "/guest-carts", json={"data": {"type": "guest-carts", "attributes": chosen}}, headers=newcomer
        )
        assert made.status_code == 201
        assert {k: made.json()["data"]["attributes"][k] for k in chosen} == chosen
    assert len(await cart_rows(e2e)) == len(before) + 1


async def test_unknown_and_other_guests_carts_are_not_found(e2e: Stack) -> None:
    owner, stranger = guest(), guest()
    async with e2e.http() as http:
        cart_uuid = await guest_cart(http, owner, ("tea", 1, None))
        before = await cart_rows(e2e)
        for who, path in [(stranger, f"/guest-carts/{cart_uuid}"), (owner, f"/guest-carts/{uuid.uuid4()}")]:
            read = await http.get(path, headers=who)
            assert (read.status_code, read.json()["errors"]) == (404, CART_NOT_FOUND)
            added = await http.post(f"{path}/guest-cart-items", json=item("tea", 5), headers=who)
            assert (added.status_code, added.json()["errors"]) == (404, CART_NOT_FOUND)
        assert (await http.get("/guest-carts", headers=stranger)).json()["data"] == []
    assert await cart_rows(e2e) == before


async def test_checkout_sign_up_converts_the_guest_cart_once_at_activation(e2e: Stack) -> None:
    who = guest()
    anonymous_id = who["X-Anonymous-Customer-Unique-Id"]
    key = carts.guest_key(anonymous_id)
    assert key is not None
    async with e2e.http() as http:
        cart_uuid = await guest_cart(http, who, ("tea", 2, 500), ("cup", 1, 900))
        email, reference, registration_key = await checkout_sign_up(e2e, http, who)
        assert (await customer_row(e2e, reference)).channel == "checkout"

        # until the address is confirmed the cart stays the guest's
        assert lines((await http.get(f"/guest-carts/{cart_uuid}", headers=who)).json()) == {"tea": 2, "cup": 1}
        added = await http.post(f"/guest-carts/{cart_uuid}/guest-cart-items", json=item("tea"), headers=who)
        assert added.status_code == 201
        await confirm(http, registration_key)

        gone = await http.get(f"/guest-carts/{cart_uuid}", headers=who)
        assert (gone.status_code, gone.json()["errors"]) == (404, CART_NOT_FOUND)
        bearer = await bearer_of(http, email)
        mine = await http.get(f"/customers/{reference}/carts", headers=bearer)
        assert mine.status_code == 200, mine.text
        document = mine.json()
        assert [(c["type"], c["id"]) for c in document["data"]] == [("carts", cart_uuid)]
        assert document["data"][0]["attributes"]["isDefault"] is True
        assert document["data"][0]["attributes"]["totals"]["grandTotal"] == 3 * 500 + 900
        assert document["data"][0]["links"]["self"] == f"{e2e.api_url}/carts/{cart_uuid}"
        assert document["links"]["self"] == f"{e2e.api_url}/customers/{reference}/carts"
        assert {i["type"] for i in document["included"]} == {"items"}
        assert lines(document) == {"tea": 3, "cup": 1}
        one = await http.get(f"/carts/{cart_uuid}", headers=bearer)
        assert (one.status_code, lines(one.json())) == (200, {"tea": 3, "cup": 1})
        assert [c["id"] for c in (await http.get("/carts", headers=bearer)).json()["data"]] == [cart_uuid]

        # the conversion matches a guest cart once: the converted one has no guest key any more, and the
        # customer row no longer names one
        customer = await customer_row(e2e, reference)
        assert customer.guest_cart_key is None
        async with e2e.database.sessions.begin() as session:
            assert (
                await carts.convert_guest_cart(session, guest_key=key, customer_id=customer.id, now=utcnow()) is False
            )
        # the guest shops on with the same id; a retried or second activation must not take that cart too
        later = await guest_cart(http, who, ("spoon", 4, None))
        activities = CustomerActivities(e2e.database.sessions)
        for _ in range(2):
            again = await activities.activate_customer(ActivationInput(reference, "checkout", "link", reference))
            assert again.registered_at == customer.registered_at
        assert lines((await http.get(f"/guest-carts/{later}", headers=who)).json()) == {"spoon": 4}
        assert lines((await http.get(f"/customers/{reference}/carts", headers=bearer)).json()) == {"tea": 3, "cup": 1}

        # the workflow history carries neither the anonymous id nor its hash (the hash waited with the
        # sign-up in pending_credentials, then on the customer row until the activation)
        history = await e2e.client.get_workflow_handle(f"registration:{reference}").fetch_history()
        raw = b"".join(event.SerializeToString() for event in history.events)
        plain = "\n".join(await decoded_payload_texts(e2e.client, history))  # and not under the encryption
        assert key not in plain and key.encode() not in raw
        assert anonymous_id not in plain and anonymous_id.encode() not in raw

        # deleting the account deletes its carts
        deletion = {"data": {"type": "customers", "attributes": {"password": PASSWORD}}}
        assert (
            await http.request("DELETE", f"/customers/{reference}", json=deletion, headers=bearer)
        ).status_code == 204
    async with e2e.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Cart).where(Cart.customer_id == customer.id)) == 0
        assert (
            await session.scalar(select(func.count()).select_from(CartItem).join(Cart).where(Cart.uuid == cart_uuid))
            == 0
        )


async def test_a_registration_without_the_header_has_channel_api_and_converts_nothing(e2e: Stack) -> None:
    who = guest()
    async with e2e.http() as http:
        cart_uuid = await guest_cart(http, who, ("tea", 1, None))
        email, reference = await registered(e2e, http)
        assert (await customer_row(e2e, reference)).channel == "api"
        bearer = await bearer_of(http, email)
        assert (await http.get(f"/customers/{reference}/carts", headers=bearer)).json()["data"] == []
        assert (await http.get(f"/guest-carts/{cart_uuid}", headers=who)).status_code == 200


async def test_sign_in_with_the_header_merges_the_guest_cart(e2e: Stack) -> None:
    who = guest()
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        first = await guest_cart(http, who, ("tea", 2, 500), ("cup", 1, None))
        bearer = await bearer_of(http, email, **who)
        carts_of = f"/customers/{reference}/carts"
        merged = (await http.get(carts_of, headers=bearer)).json()
        # the customer had no cart: the guest's cart becomes their default cart
        assert [(c["id"], c["attributes"]["isDefault"]) for c in merged["data"]] == [(first, True)]
        target = first
        assert lines(merged) == {"tea": 2, "cup": 1}
        assert (await http.get("/guest-carts", headers=who)).json()["data"] == []

        # the guest shops again under the same id: quantities are summed into the same cart
        await guest_cart(http, who, ("tea", 3, 450), ("spoon", 1, 100))
        bearer = await bearer_of(http, email, **who)
        merged = (await http.get(carts_of, headers=bearer)).json()
        assert [c["id"] for c in merged["data"]] == [target]
        assert lines(merged) == {"tea": 5, "cup": 1, "spoon": 1}
        assert merged["data"][0]["attributes"]["totals"]["grandTotal"] == 5 * 450 + 100

        # a failed sign-in merges nothing; a sign-in of a guest without a cart changes nothing
        other = guest()
        kept = await guest_cart(http, other, ("cake", 1, None))
        failed = await http.post(
            "/access-tokens",
            json={
                "data": {"type": "access-tokens", "attributes": {"username": email, "password": "wrong-" + PASSWORD}}
            },
            headers=other,
        )
        assert failed.status_code == 401
        assert lines((await http.get(f"/guest-carts/{kept}", headers=other)).json()) == {"cake": 1}
        await bearer_of(http, email, **guest())
        assert lines((await http.get(carts_of, headers=bearer)).json()) == {"tea": 5, "cup": 1, "spoon": 1}


async def test_a_customer_never_reads_another_customers_carts(e2e: Stack) -> None:
    async with e2e.http() as http:
        email_a, reference_a = await registered(e2e, http)
        email_b, reference_b = await registered(e2e, http)
        bearer_a = await bearer_of(http, email_a)
        who = guest()
        await guest_cart(http, who, ("tea", 1, None))
        bearer_b = await bearer_of(http, email_b, **who)
        b_cart = (await http.get(f"/customers/{reference_b}/carts", headers=bearer_b)).json()["data"][0]["id"]

        foreign = await http.get(f"/customers/{reference_b}/carts", headers=bearer_a)
        assert (foreign.status_code, foreign.json()["errors"]) == (403, UNAUTHORIZED)
        by_uuid = await http.get(f"/carts/{b_cart}", headers=bearer_a)
        assert (by_uuid.status_code, by_uuid.json()["errors"]) == (404, CART_NOT_FOUND)
        assert (await http.get("/carts", headers=bearer_a)).json()["data"] == []
        assert (await http.get(f"/customers/{reference_a}/carts", headers=bearer_a)).json()["data"] == []

        anonymous = await http.get(f"/customers/{reference_b}/carts")
        assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (403, "002")
        combined = await http.get(f"/customers/{reference_a}/carts", headers={**bearer_a, **guest()})
        assert (combined.status_code, combined.json()["errors"][0]["code"]) == (400, "005")
        await sign_in(http, email_a)  # still fine afterwards
