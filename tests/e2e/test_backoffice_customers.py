"""Back-office API end to end: each action's workflow effect and its audit event, lists, CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, token_from
from test_backoffice_http import staff_key
from test_login_http import PASSWORD, registered, sign_in
from test_profile_http import profile, signed_in

from accounts.models import Customer
from backoffice import CSV_COLUMNS, GROUP_SEPARATOR
from workflows.lockout import LockoutInput, LockoutPolicy, LockoutState, LockoutWindowWorkflow
from workflows.registration import RegistrationWorkflow

pytestmark = pytest.mark.e2e
NEW_PASSWORD = "Lantern-7#quiet-harbor"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, verification_resend_min_interval=0) as built:
        yield built


@pytest_asyncio.fixture
async def keys(e2e: Stack) -> dict[str, dict[str, str]]:
    return {
        role: {"Authorization": f"Bearer {await staff_key(e2e, f'bo-{role}', role)}"} for role in ("support", "admin")
    }


def marker() -> str:
    return uuid.uuid4().hex[:10]


async def create(http: httpx.AsyncClient, staff: dict[str, str], email: str, **extra: Any) -> str:
    body = {"email": email, "firstName": "Grace", "lastName": "Hopper", **extra}
    response = await http.post("/backoffice/customers", json=body, headers=staff)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def detail(http: httpx.AsyncClient, staff: dict[str, str], reference: str) -> dict[str, Any]:
    response = await http.get(f"/backoffice/customers/{reference}", headers=staff)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"]["attributes"])


async def events(http: httpx.AsyncClient, staff: dict[str, str], reference: str) -> list[dict[str, Any]]:
    response = await http.get(f"/backoffice/customers/{reference}/events", headers=staff)
    assert response.status_code == 200, response.text
    return [item["attributes"] for item in response.json()["data"]]


def staff_name(events_: list[dict[str, Any]], event: str) -> str:
    return str(next(e["actor"] for e in events_ if e["event"] == event))


async def registration_run(
    http: httpx.AsyncClient, staff: dict[str, str], reference: str, status: str
) -> dict[str, Any]:
    """The customer's registration run once Temporal's visibility reports it in `status`."""
    for _ in range(100):
        attributes = await detail(http, staff, reference)
        assert attributes["lifecycle"]["status"] == "ok"
        runs = [run for run in attributes["lifecycle"]["runs"] if run["kind"] == "registration"]
        if runs and runs[0]["status"] == status:
            return dict(runs[0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"registration of {reference} never {status}: {attributes['lifecycle']}")


async def test_create_emails_the_link_and_a_manual_verify_makes_the_customer_verified(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    support = keys["support"]
    email = f"created-{marker()}@example.com"
    async with e2e.http() as http:
        reference = await create(http, support, email, salutation="Dr", locale="de")
        await e2e.mail_to(email, "bestätigen")  # the customer's language: the verification email
        attributes = await detail(http, support, reference)
        assert (attributes["status"], attributes["channel"], attributes["passwordSet"], attributes["locale"]) == (
            "unverified", "backoffice", False, "de_DE",
        )  # fmt: skip
        run = await registration_run(http, support, reference, "running")
        assert run["stage"] == "awaiting_verification"
        assert set(run["deadlines"]) >= {"reminder", "expiry"} and "verify manually" in run["pendingActions"]
        assert run["workflowId"] == f"registration:{reference}" and run["workflowId"] in run["temporalUi"]
        listed = await http.get("/backoffice/customers", params={"q": email, "status": "unverified"}, headers=support)
        assert [row["id"] for row in listed.json()["data"]] == [reference]

        taken = await http.post("/backoffice/customers", json={"email": email.upper(), "firstName": "A",
                                                                "lastName": "B"}, headers=support)  # fmt: skip
        assert (taken.status_code, taken.json()["errors"][0]["code"]) == (409, "409")
        bad = await http.post("/backoffice/customers", json={"email": "no-at-sign", "firstName": "A",
                                                              "lastName": "B"}, headers=support)  # fmt: skip
        assert bad.json()["errors"] == [
            {"status": 422, "code": "901", "detail": "email => is not a valid email address"}
        ]

        verified = await http.post(f"/backoffice/customers/{reference}/verify", json={"reason": "ID checked in store"},
                                   headers=support)  # fmt: skip
        assert verified.status_code == 200, verified.text
        await e2e.mail_to(email, "willkommen")
        assert (await detail(http, support, reference))["status"] == "verified"
        assert (await registration_run(http, support, reference, "completed"))["stage"] == "verified"
        listed = await http.get("/backoffice/customers", params={"q": email, "status": "verified"}, headers=support)
        assert [row["id"] for row in listed.json()["data"]] == [reference]
        trail = await events(http, support, reference)

    times = [e["occurredAt"] for e in trail]
    assert times == sorted(times, reverse=True)
    name = staff_name(trail, "customer_created")
    assert name.startswith("bo-support-")
    found = {(e["event"], e["channel"], e["actor"]) for e in trail}
    assert {("registration_started", "backoffice", reference), ("customer_created", "backoffice", name),
            ("verified_manually", "backoffice", name)} <= found  # fmt: skip
    assert next(e for e in trail if e["event"] == "verified_manually")["details"] == {"reason": "ID checked in store"}


async def test_a_customer_who_only_uses_the_set_password_link_is_verified_and_can_sign_in(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    email = f"token-only-{marker()}@example.com"
    async with e2e.http() as http:
        reference = await create(http, keys["support"], email, sendPasswordToken=True)
        await e2e.mail_to(email, "confirm")
        link = await e2e.mail_to(email, "choose your password")
        restored = await http.patch(
            f"/customer-restore-password/{token_from(link)}",
            json={"data": {"type": "customer-restore-password",
                           "attributes": {"password": NEW_PASSWORD, "confirmPassword": NEW_PASSWORD}}},
        )  # fmt: skip
        assert restored.status_code == 204, restored.text
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201
        # the link proved the address: the registration stops waiting (no reminder) and welcomes
        registration = e2e.client.get_workflow_handle_for(RegistrationWorkflow.run, f"registration:{reference}")
        assert (await asyncio.wait_for(registration.result(), 30)).outcome == "verified"
        await e2e.mail_to(email, "welcome")
        attributes = await detail(http, keys["support"], reference)
        trail = await events(http, keys["support"], reference)
    assert (attributes["status"], attributes["passwordSet"]) == ("verified", True)
    assert ("email_verified", "password_link") in {(e["event"], (e.get("details") or {}).get("by")) for e in trail}
    assert staff_name(trail, "password_token_sent").startswith("bo-support-")
    assert {"customer_created", "password_token_sent", "password_set"} <= {e["event"] for e in trail}


async def test_a_customer_who_confirms_first_can_still_set_the_password(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    email = f"confirm-first-{marker()}@example.com"
    async with e2e.http() as http:
        reference = await create(http, keys["support"], email, sendPasswordToken=True)
        verification = await e2e.mail_to(email, "confirm")
        link = await e2e.mail_to(email, "choose your password")
        confirmation = {"data": {"type": "customer-confirmation",
                                 "attributes": {"registrationKey": token_from(verification)}}}  # fmt: skip
        assert (await http.post("/customer-confirmation", json=confirmation)).status_code == 204
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 401  # no password yet
        await e2e.accounts.passwords.complete_reset(token_from(link), NEW_PASSWORD)
        assert (await sign_in(http, email, NEW_PASSWORD)).status_code == 201
        assert (await detail(http, keys["support"], reference))["passwordSet"] is True


async def test_resend_and_password_token_are_recorded_with_the_staff_member(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    support = keys["support"]
    async with e2e.http() as http:
        email, reference = await registered(e2e, http, confirm=False)
        for _ in range(50):  # 429 while the first link is still being recorded
            resent = await http.post(f"/backoffice/customers/{reference}/resend-verification", headers=support)
            if resent.status_code != 429:
                break
            await asyncio.sleep(0.1)
        assert resent.status_code == 204
        assert (
            await http.post(f"/backoffice/customers/{reference}/password-token", headers=support)
        ).status_code == 204
        await e2e.mail_to(email, "choose your password")
        trail = await events(http, support, reference)
    assert staff_name(trail, "verification_resent") == staff_name(trail, "password_token_sent")
    assert staff_name(trail, "verification_resent").startswith("bo-support-")


async def test_profile_addresses_notes_and_groups(e2e: Stack, keys: dict[str, dict[str, str]]) -> None:
    support, admin = keys["support"], keys["admin"]
    group_name = f"VIP {marker()}"
    address = {"salutation": "Ms", "firstName": "Ada", "lastName": "Byron", "address1": "Main St", "address2": "1",
               "zipCode": "10115", "city": "Berlin", "iso2Code": "DE"}  # fmt: skip
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        base = f"/backoffice/customers/{reference}"

        edited = await http.patch(base, json={"firstName": "Augusta", "phone": "+49 30 1234"}, headers=support)
        assert edited.status_code == 200 and edited.json()["data"]["attributes"]["firstName"] == "Augusta"
        for bad in ({"gender": "X"}, {"firstName": None}, {"email": "new@example.com"}, {"locale": "fr"}):
            refused = await http.patch(base, json=bad, headers=support)
            assert (refused.status_code, refused.json()["errors"][0]["code"]) == (422, "901"), (bad, refused.text)

        first = await http.post(f"{base}/addresses", json=address, headers=support)
        second = await http.post(f"{base}/addresses", json={**address, "address2": "2"}, headers=support)
        assert first.status_code == second.status_code == 201
        first_id, second_id = first.json()["data"]["id"], second.json()["data"]["id"]
        moved = await http.patch(f"{base}/addresses/{second_id}", json={"isDefaultShipping": True}, headers=support)
        assert moved.json()["data"]["attributes"]["isDefaultShipping"] is True
        missing = await http.patch(f"{base}/addresses/{uuid.uuid4()}", json={"isDefaultBilling": True}, headers=support)
        assert missing.status_code == 404
        book = {a["uuid"]: a for a in (await detail(http, support, reference))["addresses"]}
        assert (book[first_id]["isDefaultBilling"], book[first_id]["isDefaultShipping"]) == (True, False)
        assert (book[second_id]["isDefaultBilling"], book[second_id]["isDefaultShipping"]) == (False, True)

        for bad_note in ({"message": ""}, {"message": "x" * 5001}, {}):
            assert (await http.post(f"{base}/notes", json=bad_note, headers=support)).status_code == 422
        note = await http.post(f"{base}/notes", json={"message": "Prefers phone calls"}, headers=support)
        assert note.status_code == 201
        notes = (await http.get(f"{base}/notes", headers=support)).json()["data"]
        assert [n["attributes"]["message"] for n in notes] == ["Prefers phone calls"]
        assert notes[0]["attributes"]["author"].startswith("bo-support-")

        too_long = await http.post("/backoffice/customer-groups", json={"name": "g" * 71}, headers=admin)
        assert (
            too_long.json()["errors"][0]["detail"]
            == "name => This value is too long. It should have 70 characters or less."
        )
        blank = await http.post("/backoffice/customer-groups", json={"name": "  "}, headers=admin)
        assert blank.json()["errors"][0]["detail"] == "name => must not be blank"
        long_description = await http.post(
            "/backoffice/customer-groups", json={"name": group_name, "description": "d" * 256}, headers=admin
        )
        assert long_description.status_code == 422
        groups = (await http.get("/backoffice/customer-groups", headers=support)).json()["data"]
        assert not [g for g in groups if g["attributes"]["name"] in ("g" * 71, group_name)]  # nothing written

        created = await http.post("/backoffice/customer-groups", json={"name": group_name}, headers=admin)
        assert created.status_code == 201
        group_id = created.json()["data"]["id"]
        duplicate = await http.post("/backoffice/customer-groups", json={"name": group_name}, headers=admin)
        assert (duplicate.status_code, duplicate.json()["errors"][0]["code"]) == (409, "409")
        assert (await http.post("/backoffice/customer-groups", json={"name": "x"}, headers=support)).status_code == 403
        described = await http.patch(f"/backoffice/customer-groups/{group_id}",
                                     json={"description": "Top customers"}, headers=admin)  # fmt: skip
        assert described.json()["data"]["attributes"]["description"] == "Top customers"

        membership = f"/backoffice/customer-groups/{group_id}/customers/{reference}"
        assert (await http.post(membership, headers=support)).status_code == 204
        assert (await http.post(membership, headers=support)).status_code == 204  # idempotent
        members = await http.get("/backoffice/customers", params={"group": group_name}, headers=support)
        assert [row["id"] for row in members.json()["data"]] == [reference]
        assert members.json()["data"][0]["attributes"]["groups"] == [group_name]
        renamed = await http.patch(f"/backoffice/customer-groups/{group_id}", json={"name": f"{group_name}+"},
                                   headers=admin)  # fmt: skip
        assert renamed.json()["data"]["attributes"] == {"id": int(group_id), "name": f"{group_name}+",
                                                        "description": "Top customers", "members": 1}  # fmt: skip
        assert (await http.delete(membership, headers=support)).status_code == 204
        assert (await http.delete(f"/backoffice/customer-groups/{group_id}", headers=admin)).status_code == 204
        assert (await http.get(f"/backoffice/customer-groups/{group_id}", headers=support)).status_code == 404
        trail = await events(http, support, reference)

    by_event = {e["event"]: e for e in trail}
    assert by_event["profile_updated"]["details"] == {"fields": ["first_name", "phone"]}
    for event in (
        "profile_updated",
        "address_added",
        "address_updated",
        "note_added",
        "group_assigned",
        "group_unassigned",
    ):
        assert (by_event[event]["channel"], by_event[event]["actor"][:11]) == ("backoffice", "bo-support-"), event


async def test_delete_is_for_admins_and_takes_notes_and_memberships(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    support, admin = keys["support"], keys["admin"]
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        group = await http.post("/backoffice/customer-groups", json={"name": f"del {marker()}"}, headers=admin)
        group_id = group.json()["data"]["id"]
        await http.post(f"/backoffice/customer-groups/{group_id}/customers/{reference}", headers=support)
        await http.post(f"/backoffice/customers/{reference}/notes", json={"message": "lives at Main St 1"},
                        headers=support)  # fmt: skip

        refused = await http.delete(f"/backoffice/customers/{reference}", headers=support)
        assert (refused.status_code, refused.json()["errors"][0]["code"]) == (403, "403")
        assert (await detail(http, admin, reference))["status"] == "verified"

        assert (await http.delete(f"/backoffice/customers/{reference}", headers=admin)).status_code == 204
        await e2e.mail_to(email, "deleted")
        attributes = await detail(http, admin, reference)
        assert (attributes["status"], attributes["notes"], attributes["groups"], attributes["email"] == email) == (
            "anonymized", [], [], False,
        )  # fmt: skip
        assert (await http.get(f"/backoffice/customer-groups/{group_id}", headers=admin)).json()["data"]["attributes"][
            "members"
        ] == 0
        note = await http.post(f"/backoffice/customers/{reference}/notes", json={"message": "x"}, headers=support)
        assert note.status_code == 409
        trail = await events(http, admin, reference)
        assert (await sign_in(http, email)).status_code == 401
    assert staff_name(trail, "customer_anonymized").startswith("bo-admin-")


async def test_csv_export_round_trips_to_the_json_list(e2e: Stack, keys: dict[str, dict[str, str]]) -> None:
    support, admin = keys["support"], keys["admin"]
    tag = marker()
    async with e2e.http() as http:
        references = [await create(http, support, f"csv-{tag}-{index}@example.com", firstName=f"N{index}, \"q\"")
                      for index in range(5)]  # fmt: skip
        group = await http.post("/backoffice/customer-groups", json={"name": f"csv {tag}"}, headers=admin)
        group_id = group.json()["data"]["id"]
        for reference in references[:2]:
            await http.post(f"/backoffice/customer-groups/{group_id}/customers/{reference}", headers=support)

        listed: list[dict[str, Any]] = []
        url: str | None = "/backoffice/customers"
        params: dict[str, Any] | None = {"q": f"csv-{tag}", "sort": "-email", "perPage": 2}
        pages = 0
        while url is not None:
            page = await http.get(url, params=params, headers=support)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["meta"]["total"] == 5 and body["meta"]["pages"] == 3
            listed += [row["attributes"] for row in body["data"]]
            url, params, pages = body["links"].get("next"), None, pages + 1
        assert pages == 3 and [row["email"] for row in listed] == sorted((row["email"] for row in listed), reverse=True)

        exported = await http.get(
            "/backoffice/customers.csv", params={"q": f"csv-{tag}", "sort": "-email"}, headers=admin
        )
        same = await http.get("/backoffice/customers", params={"q": f"csv-{tag}", "sort": "-email", "format": "csv"},
                              headers=admin)  # fmt: skip
        refused = await http.get("/backoffice/customers.csv", params={"q": f"csv-{tag}"}, headers=support)
        refused_format = await http.get("/backoffice/customers", params={"format": "csv"}, headers=support)

    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text == same.text
    assert (refused.status_code, refused_format.status_code) == (403, 403)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and tuple(rows[0]) == CSV_COLUMNS
    assert rows == [
        {
            **{key: "" if value is None else value for key, value in row.items() if key != "groups"},
            "groups": GROUP_SEPARATOR.join(row["groups"]),
        }
        for row in listed
    ]
    assert sum(1 for row in rows if row["groups"] == f"csv {tag}") == 2


async def test_bad_list_parameters_are_refused_in_the_glue_format(e2e: Stack, keys: dict[str, dict[str, str]]) -> None:
    async with e2e.http() as http:
        answers = [
            await http.get("/backoffice/customers", params=params, headers=keys["support"])
            for params in ({"sort": "password_hash"}, {"status": "active"}, {"perPage": 101}, {"page": 0})
        ]
    assert [(a.status_code, a.json()["errors"][0]["code"]) for a in answers] == [(422, "901")] * 4
    assert answers[0].json()["errors"][0]["detail"].startswith("sort => must be one of created_at")


async def test_numbers_beyond_the_databases_range_are_answered_not_crashed_on(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    """A page whose OFFSET or an id no 32/64-bit column holds: a Glue error, never a 500 from the driver."""
    async with e2e.http() as http:
        far_page = await http.get("/backoffice/customers", params={"page": 10**20}, headers=keys["support"])
        groups = [
            await http.get(f"/backoffice/customer-groups/{group_id}", headers=keys["support"])
            for group_id in (2**31, 10**21)
        ]
        big_key = await http.get("/backoffice/customers", headers={"Authorization": f"Bearer stf_{10**11}_{'A' * 43}"})
    assert (far_page.status_code, far_page.json()["errors"][0]["code"]) == (422, "901")
    assert [(g.status_code, g.json()["errors"][0]["detail"]) for g in groups] == [
        (404, "Customer group not found.")
    ] * 2
    assert (big_key.status_code, big_key.json()["errors"][0]["code"]) == (401, "001")


async def test_a_run_whose_status_query_fails_leaves_the_customer_page_working(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    """A run that answers the status query with something else (an old or foreign workflow under a known id
    prefix) is listed without its deadlines; the page does not fail."""
    reference = f"{e2e.database.reference_prefix}Q{uuid.uuid4().hex[:10]}"
    async with e2e.database.sessions.begin() as session:
        email = f"q-{marker()}@example.com"
        session.add(Customer(customer_reference=reference, email=email, email_key=email, first_name="Q",
                             last_name="Query", locale="en_US", channel="api"))  # fmt: skip
    minute = timedelta(minutes=1)
    handle = await e2e.client.start_workflow(
        LockoutWindowWorkflow.run,
        LockoutInput(
            f"customer:{reference}",
            reference,
            LockoutPolicy(3, 15 * minute, minute, 2.0, minute, minute),
            LockoutState(window_ends_at=datetime.now(UTC) + 60 * minute),  # an open window: it keeps running
        ),
        id=f"registration:{reference}",  # a lockout run where a registration is expected
        task_queue=e2e.settings.task_queue,
    )
    try:
        async with e2e.http() as http:
            run = await registration_run(http, keys["support"], reference, "running")
        assert run["pendingActions"] == ["(the run's status could not be read)"] and run["deadlines"] == {}
    finally:
        await handle.terminate("test over")


async def test_a_pending_email_change_shows_its_link_expiry_and_what_it_waits_for(
    e2e: Stack, keys: dict[str, dict[str, str]]
) -> None:
    async with e2e.http() as http:
        _, reference, bearer = await signed_in(e2e, http)
        new_email = f"changed-{marker()}@example.com"
        asked = datetime.now(UTC)
        changed = await http.patch(
            f"/customers/{reference}", json=profile(email=new_email, password=PASSWORD), headers=bearer
        )
        assert changed.status_code == 200, changed.text
        await e2e.mail_to(new_email, "confirm your new email")  # the link is out: awaiting confirmation
        for _ in range(100):
            attributes = await detail(http, keys["support"], reference)
            runs = [run for run in attributes["lifecycle"]["runs"] if run["kind"] == "email-change"]
            if runs and runs[0]["stage"] == "awaiting_confirmation":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no email change awaiting confirmation: {attributes['lifecycle']}")
    run = runs[0]
    assert (run["workflowId"], run["status"]) == (f"email-change:{reference}", "running")
    assert run["pendingActions"] == [f"confirmation of the new address ({new_email})"]
    expiry = datetime.fromisoformat(run["deadlines"]["link_expiry"])
    lifetime = e2e.settings.email_change_expires_after
    assert asked + lifetime - timedelta(seconds=5) <= expiry <= datetime.now(UTC) + lifetime
