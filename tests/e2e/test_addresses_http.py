"""The address book end to end over HTTP: CRUD, Glue's default rules, authorization, bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from sqlalchemy import select
from test_profile_http import signed_in

from accounts.models import AuditEvent

pytestmark = pytest.mark.e2e

NOT_FOUND = [{"status": 404, "code": "404", "detail": "Address not found."}]
UNAUTHORIZED = [{"status": 403, "code": "411", "detail": "Unauthorized request."}]


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def address(**overrides: Any) -> dict[str, Any]:
    attributes = {
        "salutation": "Ms",
        "firstName": "Ada",
        "lastName": "Byron",
        "address1": "Julie-Wolfthorn-Straße",
        "address2": "1",
        "zipCode": "10115",
        "city": "Berlin",
        "iso2Code": "DE",
        **overrides,
    }
    return {"data": {"type": "addresses", "attributes": {k: v for k, v in attributes.items() if v is not ...}}}


async def add(http: httpx.AsyncClient, reference: str, bearer: dict[str, str], **overrides: Any) -> str:
    response = await http.post(f"/customers/{reference}/addresses", json=address(**overrides), headers=bearer)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def defaults(http: httpx.AsyncClient, reference: str, bearer: dict[str, str]) -> tuple[list[str], list[str]]:
    """(uuids flagged default billing, uuids flagged default shipping) in the collection."""
    entries = (await http.get(f"/customers/{reference}/addresses", headers=bearer)).json()["data"]
    billing = [e["id"] for e in entries if e["attributes"]["isDefaultBilling"]]
    shipping = [e["id"] for e in entries if e["attributes"]["isDefaultShipping"]]
    return billing, shipping


async def address_events(stack: Stack, reference: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event.like("address_%"))
            .order_by(AuditEvent.id)
        )
        return [(e.event, e.channel, e.actor, e.details) for e in rows]


async def test_add_read_change_and_remove_addresses(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        base = f"/customers/{reference}/addresses"
        empty = await http.get(base, headers=bearer)
        assert (empty.status_code, empty.json()) == (200, {"data": [], "links": {"self": f"{e2e.api_url}{base}"}})

        body = address(address3="Hinterhaus", company="Engines", phone="+49 30 1234", iso2Code=" de ")
        created = await http.post(base, json=body, headers=bearer)
        assert created.status_code == 201, created.text
        assert created.headers["content-type"].startswith("application/vnd.api+json")
        data = created.json()["data"]
        first = data["id"]
        assert str(uuid.UUID(first)) == first and data["type"] == "addresses"
        assert data["links"]["self"] == f"{e2e.api_url}{base}/{first}"
        assert data["attributes"] == {
            "salutation": "Ms",
            "firstName": "Ada",
            "lastName": "Byron",
            "address1": "Julie-Wolfthorn-Straße",
            "address2": "1",
            "address3": "Hinterhaus",
            "zipCode": "10115",
            "city": "Berlin",
            "country": None,
            "iso2Code": "DE",
            "company": "Engines",
            "phone": "+49 30 1234",
            "isDefaultShipping": True,
            "isDefaultBilling": True,
        }
        one = await http.get(f"{base}/{first}", headers=bearer)
        assert one.status_code == 200 and one.json()["data"] == data

        changed = await http.patch(
            f"{base}/{first}",
            json={"data": {"type": "addresses", "id": first, "attributes": {"city": "Potsdam", "address3": None}}},
            headers=bearer,
        )
        assert changed.status_code == 200, changed.text
        attributes = changed.json()["data"]["attributes"]
        assert (attributes["city"], attributes["address3"], attributes["zipCode"]) == ("Potsdam", None, "10115")
        assert (await http.get(f"{base}/{first}", headers=bearer)).json()["data"]["attributes"] == attributes
        # the same values again change nothing and record nothing
        assert (await http.patch(f"{base}/{first}", json=address(city="Potsdam"), headers=bearer)).status_code == 200

        second = await add(http, reference, bearer, city="Hamburg")
        listed = (await http.get(base, headers=bearer)).json()["data"]
        assert [e["id"] for e in listed] == [first, second]

        removed = await http.delete(f"{base}/{second}", headers=bearer)
        assert (removed.status_code, removed.content) == (204, b"")
        gone = await http.get(f"{base}/{second}", headers=bearer)
        assert (gone.status_code, gone.json()["errors"]) == (404, NOT_FOUND)
        again = await http.delete(f"{base}/{second}", headers=bearer)
        assert (again.status_code, again.json()["errors"]) == (404, NOT_FOUND)

    assert await address_events(e2e, reference) == [
        ("address_added", "api", reference, {"uuid": first}),
        ("address_updated", "api", reference, {"uuid": first}),
        ("address_added", "api", reference, {"uuid": second}),
        ("address_removed", "api", reference, {"uuid": second}),
    ]


async def test_default_rules(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        base = f"/customers/{reference}/addresses"

        # the first address becomes both defaults, even when its flags say false
        a1 = await add(http, reference, bearer, isDefaultBilling=False, isDefaultShipping=False)
        assert await defaults(http, reference, bearer) == ([a1], [a1])
        # a flag set to true moves that default, and only that one
        a2 = await add(http, reference, bearer, isDefaultShipping=True)
        assert await defaults(http, reference, bearer) == ([a1], [a2])
        a3 = await add(http, reference, bearer)
        assert await defaults(http, reference, bearer) == ([a1], [a2])

        moved = await http.patch(f"{base}/{a3}", json=address(isDefaultBilling=True), headers=bearer)
        assert moved.json()["data"]["attributes"]["isDefaultBilling"] is True
        assert await defaults(http, reference, bearer) == ([a3], [a2])
        # false does not unset a default: another address takes it by being set to true
        kept = await http.patch(f"{base}/{a3}", json=address(isDefaultBilling=False), headers=bearer)
        assert kept.json()["data"]["attributes"]["isDefaultBilling"] is True
        assert await defaults(http, reference, bearer) == ([a3], [a2])

        # removing a default hands it to the most recently added remaining address
        assert (await http.delete(f"{base}/{a3}", headers=bearer)).status_code == 204
        assert await defaults(http, reference, bearer) == ([a2], [a2])
        assert (await http.delete(f"{base}/{a2}", headers=bearer)).status_code == 204
        assert await defaults(http, reference, bearer) == ([a1], [a1])
        # removing a non-default leaves the defaults alone
        a4 = await add(http, reference, bearer)
        assert (await http.delete(f"{base}/{a4}", headers=bearer)).status_code == 204
        assert await defaults(http, reference, bearer) == ([a1], [a1])
        # ... and the last one leaves none; the next address is a first address again
        assert (await http.delete(f"{base}/{a1}", headers=bearer)).status_code == 204
        assert await defaults(http, reference, bearer) == ([], [])
        a5 = await add(http, reference, bearer)
        assert await defaults(http, reference, bearer) == ([a5], [a5])


async def test_concurrent_changes_keep_exactly_one_default_of_each_kind(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        added = await asyncio.gather(*(add(http, reference, bearer, city=f"City {n}") for n in range(6)))
        billing, shipping = await defaults(http, reference, bearer)
        assert len(billing) == len(shipping) == 1

        survivor, *doomed = added
        answers = await asyncio.gather(
            *(http.delete(f"/customers/{reference}/addresses/{u}", headers=bearer) for u in doomed)
        )
        assert {a.status_code for a in answers} == {204}
        assert await defaults(http, reference, bearer) == ([survivor], [survivor])


async def test_a_customer_can_never_read_or_change_another_customers_addresses(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, ref_a, bearer_a = await signed_in(e2e, http)
        _, ref_b, bearer_b = await signed_in(e2e, http)
        theirs = await add(http, ref_b, bearer_b, firstName="Bob")
        mine = await add(http, ref_a, bearer_a)
        b_before = (await http.get(f"/customers/{ref_b}/addresses", headers=bearer_b)).json()

        # B's reference: 403 whatever the request
        for answer in (
            await http.get(f"/customers/{ref_b}/addresses", headers=bearer_a),
            await http.post(f"/customers/{ref_b}/addresses", json=address(), headers=bearer_a),
            await http.post(f"/customers/{ref_b}/addresses", json=address(city="x"), headers=bearer_a),
            await http.get(f"/customers/{ref_b}/addresses/{theirs}", headers=bearer_a),
            await http.patch(f"/customers/{ref_b}/addresses/{theirs}", json=address(city="Evil"), headers=bearer_a),
            await http.delete(f"/customers/{ref_b}/addresses/{theirs}", headers=bearer_a),
            await http.get(f"/customers/{ref_b}/addresses/{mine}", headers=bearer_a),
        ):
            assert (answer.status_code, answer.json()["errors"]) == (403, UNAUTHORIZED)

        # B's address under A's own reference: as unknown as a made-up uuid
        for path in (f"/customers/{ref_a}/addresses/{theirs}", f"/customers/{ref_a}/addresses/{uuid.uuid4()}"):
            for answer in (
                await http.get(path, headers=bearer_a),
                await http.patch(path, json=address(city="Evil", isDefaultBilling=True), headers=bearer_a),
                await http.delete(path, headers=bearer_a),
            ):
                assert (answer.status_code, answer.json()["errors"]) == (404, NOT_FOUND)
        listed = (await http.get(f"/customers/{ref_a}/addresses", headers=bearer_a)).json()["data"]
        assert [e["id"] for e in listed] == [mine]

        no_token = await http.get(f"/customers/{ref_b}/addresses")
        assert (no_token.status_code, no_token.json()["errors"][0]["code"]) == (403, "002")
        assert (await http.get(f"/customers/{ref_b}/addresses", headers=bearer_b)).json() == b_before
    assert [event for event, *_ in await address_events(e2e, ref_b)] == ["address_added"]


BAD_ADDRESSES: list[tuple[str, Any, str]] = [
    ("bad salutation", address(salutation="Sir"), "salutation => The value you selected is not a valid choice."),
    ("overlong firstName", address(firstName="x" * 101), "firstName => This value is too long."),
    ("blank address1", address(address1=" "), "address1 => This value should not be blank."),
    ("missing address2", address(address2=...), "address2 => This value should not be blank."),
    ("overlong zipCode", address(zipCode="1" * 16), "zipCode => This value is too long."),
    ("short city", address(city="Ox"), "city => This value is too short. It should have 3 characters or more."),
    ("three-letter iso2Code", address(iso2Code="DEU"), "iso2Code => This value should have exactly 2 characters."),
    ("iso2Code with digits", address(iso2Code="D1"), "iso2Code => This value is not a valid country."),
    ("control characters", address(address3="Hof\x1b[2J"), "address3 => This value contains control characters."),
    ("flag as a string", address(isDefaultBilling="yes"), "isDefaultBilling => This value should be of type bool."),
]


def one_violation(answer: httpx.Response, detail: str, case: str) -> None:
    assert answer.status_code == 422, (case, answer.text)
    [error] = answer.json()["errors"]
    assert (error["status"], error["code"]) == (422, "901") and error["detail"].startswith(detail), (case, error)


async def test_bad_input_gets_901_per_violation_and_writes_nothing(e2e: Stack) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        base = f"/customers/{reference}/addresses"
        existing = await add(http, reference, bearer)
        before = (await http.get(base, headers=bearer)).json()

        nothing = await http.post(base, json={"data": {"type": "addresses", "attributes": {}}}, headers=bearer)
        assert nothing.status_code == 422
        assert nothing.json()["errors"] == [
            {"status": 422, "code": "901", "detail": f"{field} => This value should not be blank."}
            for field in ("salutation", "firstName", "lastName", "address1", "address2", "zipCode", "city", "iso2Code")
        ]
        for case, body, detail in BAD_ADDRESSES:
            one_violation(await http.post(base, json=body, headers=bearer), detail, case)
        for case, body, detail in [
            *BAD_ADDRESSES[0:3],
            *BAD_ADDRESSES[4:],
            ("firstName null", address(firstName=None), "firstName => This value should not be null."),
            ("iso2Code null", address(iso2Code=None), "iso2Code => This value should not be null."),
        ]:
            one_violation(await http.patch(f"{base}/{existing}", json=body, headers=bearer), detail, case)

        assert (await http.get(base, headers=bearer)).json() == before
    assert [event for event, *_ in await address_events(e2e, reference)] == ["address_added"]
