"""Spryker's own Glue contract over HTTP: the demo shop's acceptance tests, ported.

The cases, bodies and expected answers are those of `spryker-shop/b2c-demo-shop`
(`tests/PyzTest/Glue/{Auth,Customer,Carts}/RestApi/`): status, code, detail and order of errors.
Where this service deliberately answers otherwise, the case says so (see docs/glue.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, unique_email
from test_login_http import PASSWORD, registered, sign_in

pytestmark = pytest.mark.e2e

JSONAPI = "application/vnd.api+json"
# the demo's RestCustomersAttributesBuilder fixture; its password 'Change!23456' is refused here as common
SPRYKER_PASSWORD = "Change!234564"
POST_DATA_INVALID = [{"status": 400, "detail": "Post data is invalid."}]
INVALID_TYPE = [{"status": 400, "detail": "Invalid type."}]
ID_NOT_SPECIFIED = [{"status": 400, "detail": "Resource id is not specified."}]
TOO_LONG_128 = "Change!23456pqwertyuiopqwertyuiopqwertyuiopqwertyuiopqwertyuiopqwertyuioppqwertyuiopqwertyuiopqwertyuiopqwertyuiopqwertyuiopqwert"  # noqa: E501


def schema(*details: str) -> list[dict[str, Any]]:
    return [{"status": 422, "code": "901", "detail": detail} for detail in details]


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def customer_attributes(**attributes: Any) -> dict[str, Any]:
    """What RestCustomersAttributesBuilder builds: every attribute set (the demo's faker values)."""
    return {
        "email": unique_email(),
        "gender": "Female",
        "salutation": "Ms",
        "firstName": "Ada",
        "lastName": "Byron",
        "password": SPRYKER_PASSWORD,
        "confirmPassword": SPRYKER_PASSWORD,
        "acceptedTerms": True,
        **attributes,
    }


def envelope(type_: str, **attributes: Any) -> dict[str, Any]:
    return {"data": {"type": type_, "attributes": attributes}}


# --- the envelope: GlueApplication's check runs before any schema, on every resource ------------------

RESOURCES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", "/customers", "customers", customer_attributes()),
    ("POST", "/access-tokens", "access-tokens", {"username": "a@example.com", "password": PASSWORD}),
    ("POST", "/refresh-tokens", "refresh-tokens", {"refreshToken": "x"}),
    ("POST", "/customer-confirmation", "customer-confirmation", {"registrationKey": "x"}),
    ("POST", "/customer-forgotten-password", "customer-forgotten-password", {"email": "a@example.com"}),
    ("PATCH", "/customer-restore-password/x", "customer-restore-password", {"password": PASSWORD}),
    ("PATCH", "/customer-password/DE--1", "customer-password", {"password": PASSWORD}),
    ("PATCH", "/customers/DE--1", "customers", {"firstName": "Ada"}),
    ("POST", "/customers/DE--1/addresses", "addresses", {"city": "Berlin"}),
    ("POST", "/guest-cart-items", "guest-cart-items", {"sku": "177_25913296", "quantity": 1}),
    ("PATCH", "/guest-carts/x/guest-cart-items/177_25913296", "guest-cart-items", {"quantity": 2}),
]


async def test_a_body_without_data_or_with_another_type_is_refused_before_the_schema(e2e: Stack) -> None:
    async with e2e.http() as http:
        for method, path, type_, attributes in RESOURCES:
            # AccessTokensRestApiCest::requestAccessTokenWithInvalidPostData: type and attributes, no data
            flat = await http.request(method, path, json={"type": type_, "attributes": attributes})
            # ...::requestAccessTokenWithInvalidType, RefreshTokensRestApiCest::requestRefreshTokenWithEmptyType
            other = "refresh-tokens" if type_ == "access-tokens" else "access-tokens"
            wrong = await http.request(method, path, json=envelope(other, **attributes))
            empty = await http.request(method, path, json=envelope("", **attributes))
            no_attributes = await http.request(method, path, json={"data": {"type": type_}})
            not_json = await http.request(method, path, content=b'{"data": {', headers={"Content-Type": JSONAPI})
            for answer, expected in (
                (flat, POST_DATA_INVALID),
                (wrong, INVALID_TYPE),
                (empty, INVALID_TYPE),
                (no_attributes, POST_DATA_INVALID),
                (not_json, POST_DATA_INVALID),
            ):
                assert (answer.status_code, answer.json()["errors"]) == (400, expected), (method, path, answer.text)


async def test_a_control_character_in_any_path_answers_404_never_500(e2e: Stack) -> None:
    """PostgreSQL refuses a NUL in a query; one check before every route keeps it from the database."""
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        bearer = {"Authorization": f"Bearer {token}"}
        for method, path in (
            ("GET", f"/customers/{reference}%00"),
            ("DELETE", f"/customers/{reference}/sessions/%00"),
            ("GET", f"/customers/{reference}/addresses/a%01b"),
            ("GET", "/backoffice/customers/%7F"),
        ):
            answer = await http.request(method, path, headers=bearer)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["errors"] == [{"status": 404, "code": "404", "detail": "Not Found"}]


async def test_patch_and_delete_without_the_resource_id_answer_400(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        bearer = {"Authorization": f"Bearer {token}"}
        # CustomerUpdateCest::requestPatchCustomerFailsWithoutCustomerReference
        body = {"data": {"type": "customers", "id": reference, "attributes": {"firstName": "X", "gender": "Female"}}}
        anon = {"X-Anonymous-Customer-Unique-Id": f"anon-{uuid.uuid4()}"}
        item = envelope("guest-cart-items", quantity=2)
        answers = [
            await http.patch("/customers/", json=body, headers=bearer),
            await http.patch("/customers", json=body, headers=bearer),
            await http.delete("/customers", headers=bearer),
            # GuestCartsRestApiCest: ...WithoutGuestCartUuid, ...WithoutItemSku
            await http.patch("/guest-carts", json=envelope("guest-carts", name="x"), headers=anon),
            await http.patch("/guest-carts//guest-cart-items/177_25913296", json=item, headers=anon),
            await http.patch("/guest-carts/some-uuid/guest-cart-items/", json=item, headers=anon),
            await http.delete("/guest-carts//guest-cart-items/177_25913296", headers=anon),
            await http.delete("/guest-carts/some-uuid/guest-cart-items/", headers=anon),
        ]
        for answer in answers:
            assert (answer.status_code, answer.json()["errors"]) == (400, ID_NOT_SPECIFIED), answer.request.url
        # the envelope is checked first, as in Glue
        wrong = await http.patch("/customers", json=envelope("addresses", firstName="X"), headers=bearer)
        assert (wrong.status_code, wrong.json()["errors"]) == (400, INVALID_TYPE)
        unchanged = await http.get(f"/customers/{reference}", headers=bearer)
        assert unchanged.json()["data"]["attributes"]["firstName"] == "Ada"


# --- POST /customers: CustomerRegistrationCest::requestPostCustomerFailsValidationDataProvider ----------

NULL_BODY = {
    key: None
    for key in (
        "email",
        "gender",
        "salutation",
        "firstName",
        "lastName",
        "dateOfBirth",
        "password",
        "confirmPassword",
        "acceptedTerms",
        "phone",
        "company",
    )
}
REGISTRATION_CASES: list[tuple[str, dict[str, Any], int, list[dict[str, Any]]]] = [
    (
        "terms false",
        customer_attributes(acceptedTerms=False),
        422,
        schema("acceptedTerms => This value should be true."),
    ),
    (
        "salutation xyz",
        customer_attributes(salutation="xyz"),
        422,
        schema("salutation => The value you selected is not a valid choice."),
    ),
    (
        "terms left out",
        {k: v for k, v in customer_attributes().items() if k != "acceptedTerms"},
        400,
        [{"status": 400, "code": "413", "detail": "Terms and Conditions was not accepted."}],
    ),
    (
        "terms null",
        customer_attributes(acceptedTerms=None),
        400,
        [{"status": 400, "code": "413", "detail": "Terms and Conditions was not accepted."}],
    ),
    (
        "passwords differ",
        customer_attributes(password="Change!23456", confirmPassword="Change!234564"),
        422,
        [
            {
                "status": 422,
                "code": "406",
                "detail": "Value in field password should be identical to value in the confirmPassword field.",
            }
        ],
    ),
    ("password null", customer_attributes(password=None), 422, schema("password => This value should not be blank.")),
    (
        "confirmPassword null",
        customer_attributes(confirmPassword=None),
        422,
        schema("confirmPassword => This value should not be blank."),
    ),
    (
        "password left out",
        {k: v for k, v in customer_attributes().items() if k != "password"},
        422,
        schema("password => This value should not be blank."),
    ),
    ("password blank", customer_attributes(password=""), 422, schema("password => This value should not be blank.")),
    (
        "129 characters",
        customer_attributes(password=TOO_LONG_128, confirmPassword=TOO_LONG_128),
        422,
        schema(
            "password => This value is too long. It should have 128 characters or less.",
            "confirmPassword => This value is too long. It should have 128 characters or less.",
        ),
    ),
    (
        # Spryker's demo adds a composition regex to its schema; here that rule is optional and off (420)
        "3 characters",
        customer_attributes(password="qwe", confirmPassword="qwe"),
        422,
        schema(
            "password => This value is too short. It should have 12 characters or more.",
            "confirmPassword => This value is too short. It should have 12 characters or more.",
        ),
    ),
    (
        "too short among other violations, in the schema's order",
        customer_attributes(gender="xyz", lastName=None, password="qwe", confirmPassword="qwe"),
        422,
        schema(
            "gender => The value you selected is not a valid choice.",
            "lastName => This value should not be blank.",
            "password => This value is too short. It should have 12 characters or more.",
            "confirmPassword => This value is too short. It should have 12 characters or more.",
        ),
    ),
    (
        "eee",
        customer_attributes(password="qwertyuI1!eee", confirmPassword="qwertyuI1!eee"),
        400,
        [{"status": 400, "code": "421", "detail": "The password contains sequence of the same character."}],
    ),
    (
        "gender xyz",
        customer_attributes(gender="xyz"),
        422,
        schema("gender => The value you selected is not a valid choice."),
    ),
    (
        "gender left out",
        {k: v for k, v in customer_attributes().items() if k != "gender"},
        422,
        schema("gender => This value should not be blank."),
    ),
    (
        "all null",
        NULL_BODY,
        422,
        schema(
            "email => This value should not be blank.",
            "gender => This value should not be blank.",
            "salutation => This value should not be blank.",
            "firstName => This value should not be blank.",
            "lastName => This value should not be blank.",
            "password => This value should not be blank.",
            "confirmPassword => This value should not be blank.",
        ),
    ),
]


async def test_registration_answers_as_spryker_in_status_code_detail_and_order(e2e: Stack) -> None:
    async with e2e.http() as http:
        for case, attributes, status, errors in REGISTRATION_CASES:
            answer = await http.post("/customers", json=envelope("customers", **attributes))
            assert (answer.status_code, answer.json()["errors"]) == (status, errors), (case, answer.text)

        # requestPostCustomerFailsOnExistingEmailUsage: status and code as Spryker's, the text neutral
        taken = customer_attributes()
        assert (await http.post("/customers", json=envelope("customers", **taken))).status_code == 201
        again = await http.post("/customers", json=envelope("customers", **taken))
        assert again.status_code == 422
        [error] = again.json()["errors"]
        assert (error["status"], error["code"]) == (422, "400")
        assert error["detail"].startswith("If this email address is already in use, you will receive an email")


# --- PATCH /customers/{ref}: CustomerUpdateCest --------------------------------------------------------


async def test_a_profile_patch_validates_the_passwords_and_never_changes_them(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        bearer = {"Authorization": f"Bearer {token}"}
        before = (await http.get(f"/customers/{reference}", headers=bearer)).json()

        def patch(**attributes: Any) -> dict[str, Any]:
            return {"data": {"type": "customers", "id": reference, "attributes": attributes}}

        cases = [
            # requestPatchCustomerFailsWhenPasswordsDoNotMatch
            (
                patch(password="Change!23456", confirmPassword="Change!234564", gender="Female", salutation="Ms"),
                [
                    {
                        "status": 422,
                        "code": "406",
                        "detail": "Value in field password should be identical to value in the confirmPassword field.",
                    }
                ],
            ),
            # requestPatchCustomerFailsValidationDataProvider
            (
                patch(password=TOO_LONG_128, confirmPassword=TOO_LONG_128, gender="Male", salutation="Mr"),
                schema(
                    "password => This value is too long. It should have 128 characters or less.",
                    "confirmPassword => This value is too long. It should have 128 characters or less.",
                ),
            ),
            (
                patch(password="qwe", confirmPassword="qwe", gender="Male", salutation="Mr"),
                schema(
                    "password => This value is too short. It should have 12 characters or more.",
                    "confirmPassword => This value is too short. It should have 12 characters or more.",
                ),
            ),
            (
                patch(salutation="xyz", password="qwe", confirmPassword="qwe"),
                schema(
                    "salutation => The value you selected is not a valid choice.",
                    "password => This value is too short. It should have 12 characters or more.",
                    "confirmPassword => This value is too short. It should have 12 characters or more.",
                ),
            ),
        ]
        for body, errors in cases:
            answer = await http.patch(f"/customers/{reference}", json=body, headers=bearer)
            assert (answer.status_code, answer.json()["errors"]) == (errors[0]["status"], errors), answer.text
        assert (await http.get(f"/customers/{reference}", headers=bearer)).json() == before

        # valid passwords pass and change nothing: the old password still signs in
        same = await http.patch(
            f"/customers/{reference}",
            json=patch(
                firstName="Augusta", password="Brand-new#passphrase-9", confirmPassword="Brand-new#passphrase-9"
            ),
            headers=bearer,
        )
        assert same.status_code == 200 and same.json()["data"]["attributes"]["firstName"] == "Augusta"
        assert (await sign_in(http, email)).status_code == 201
        assert "password" not in json.dumps(same.json()).lower()


# --- guest carts: GuestCartsRestApiCest ----------------------------------------------------------------


async def test_guest_cart_and_its_items_are_changed_and_removed_as_in_spryker(e2e: Stack) -> None:
    anon = {"X-Anonymous-Customer-Unique-Id": f"anon-{uuid.uuid4()}"}
    async with e2e.http() as http:
        empty_cart = (await http.post("/guest-carts", headers=anon)).json()["data"]["id"]
        # requestUpdateGuestCart
        renamed = await http.patch(
            f"/guest-carts/{empty_cart}",
            json=envelope("guest-carts", name="Test guest cart name", currency="EUR", priceMode="NET_MODE"),
            headers=anon,
        )
        assert renamed.status_code == 200, renamed.text
        data = renamed.json()["data"]
        assert (data["type"], data["id"]) == ("guest-carts", empty_cart)
        assert data["links"]["self"] == f"{e2e.api_url}/guest-carts/{empty_cart}"
        assert (data["attributes"]["name"], data["attributes"]["priceMode"]) == ("Test guest cart name", "NET_MODE")

        added = await http.post(
            f"/guest-carts/{empty_cart}/guest-cart-items",
            json=envelope("guest-cart-items", sku="177_25913296", quantity=1),
            headers=anon,
        )
        assert added.status_code == 201, added.text
        # requestUpdatePriceModeOfNonEmptyGuestCart
        locked = await http.patch(
            f"/guest-carts/{empty_cart}",
            json=envelope("guest-carts", name="x", currency="EUR", priceMode="GROSS_MODE"),
            headers=anon,
        )
        assert (locked.status_code, locked.json()["errors"]) == (
            422,
            [
                {
                    "status": 422,
                    "code": "111",
                    "detail": "Can\u2019t switch price mode when there are items in the cart.",
                }
            ],
        )
        # requestUpdateGuestCartWithoutAnonymousCustomerUniqueId
        no_anon = await http.patch(f"/guest-carts/{empty_cart}", json=envelope("guest-carts", name="x"))
        assert (no_anon.status_code, no_anon.json()["errors"][0]["code"]) == (400, "109")

        item_path = f"/guest-carts/{empty_cart}/guest-cart-items/177_25913296"
        # requestUpdateItemsInGuestCart
        updated = await http.patch(
            f"{item_path}?include=guest-cart-items", json=envelope("guest-cart-items", quantity=4), headers=anon
        )
        assert updated.status_code == 200, updated.text
        body = updated.json()
        assert body["data"]["id"] == empty_cart
        assert body["data"]["links"]["self"] == f"{e2e.api_url}/guest-carts/{empty_cart}"
        assert [(i["id"], i["attributes"]["quantity"]) for i in body["included"]] == [("177_25913296", 4)]
        # ...WithoutQuantity, ...WithoutAnonymousCustomerUniqueId
        no_quantity = await http.patch(item_path, json=envelope("guest-cart-items"), headers=anon)
        assert (no_quantity.status_code, no_quantity.json()["errors"]) == (
            422,
            schema("quantity => This value should not be blank."),
        )
        for answer in (
            await http.patch(item_path, json=envelope("guest-cart-items", quantity=2)),
            await http.delete(item_path),
        ):
            assert (answer.status_code, answer.json()["errors"][0]["code"]) == (400, "109")
        unknown = await http.patch(
            f"/guest-carts/{empty_cart}/guest-cart-items/no-such-sku",
            json=envelope("guest-cart-items", quantity=2),
            headers=anon,
        )
        assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (422, "103")
        stranger = {"X-Anonymous-Customer-Unique-Id": f"anon-{uuid.uuid4()}"}
        theirs = await http.delete(item_path, headers=stranger)
        assert (theirs.status_code, theirs.json()["errors"][0]["code"]) == (404, "101")

        # requestDeleteItemsFromGuestCart
        removed = await http.delete(item_path, headers=anon)
        assert (removed.status_code, removed.content) == (204, b"")
        cart = (await http.get(f"/guest-carts/{empty_cart}", headers=anon)).json()
        assert "included" not in cart and cart["data"]["attributes"]["totals"]["grandTotal"] == 0
        gone = await http.delete(item_path, headers=anon)
        assert (gone.status_code, gone.json()["errors"][0]["code"]) == (422, "103")


async def test_an_access_token_request_of_spryker_shape_gets_spryker_answers(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        # AccessTokensRestApiCest: empty password, empty username: 422; unknown customer: 401
        empty_password = await http.post("/access-tokens", json=envelope("access-tokens", username=email, password=""))
        empty_username = await http.post("/access-tokens", json=envelope("access-tokens", username="", password="x"))
        unknown = await http.post(
            "/access-tokens", json=envelope("access-tokens", username=unique_email(), password=PASSWORD)
        )
        # RefreshTokensRestApiCest::requestRefreshTokenWithEmptyRefreshTokenValue
        empty_refresh = await http.post("/refresh-tokens", json=envelope("refresh-tokens", refreshToken=""))
    assert [a.status_code for a in (empty_password, empty_username, unknown, empty_refresh)] == [422, 422, 401, 422]
    assert empty_password.json()["errors"] == schema("password => This value should not be blank.")
    assert unknown.json()["errors"] == [{"status": 401, "code": "003", "detail": "Failed to authenticate user."}]
