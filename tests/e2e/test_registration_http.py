"""Registration end to end over HTTP: Temporal dev server, worker, uvicorn, SMTP sink, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from conftest import (
    ACCOUNTS,
    Database,
    Stack,
    StackFactory,
    checkout_env,
    decoded_payload_texts,
    press_the_button,
    registration_body,
    token_from,
    unique_email,
)
from sqlalchemy import func, select, text

from accounts.models import Base, Customer, EmailOutbox, ReferenceCounter
from starter.client import registration_id
from workflows.registration import RegistrationWorkflow

pytestmark = pytest.mark.e2e
PASSWORD = "Vq8#nT2!pLm4-kettle"
JSONAPI = "application/vnd.api+json"


def customer_body(email: str, **overrides: Any) -> dict[str, Any]:
    hans = {"salutation": "Mr", "firstName": "Hans", "lastName": "Müller", "gender": "Male"}
    return registration_body(email, PASSWORD, **{**hans, **overrides})


def confirmation_body(key: str) -> dict[str, Any]:
    return {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": key}}}


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def customer_by_email(stack: Stack, email: str) -> Customer | None:
    async with stack.database.sessions() as session:
        return await session.scalar(select(Customer).where(Customer.email_key == email.lower()))


async def test_register_read_the_email_follow_the_link_in_the_customers_language(e2e: Stack) -> None:
    email = unique_email()
    async with e2e.http() as http:
        response = await http.post(
            "/customers",
            json=customer_body(email),
            headers={"Content-Type": JSONAPI, "Accept-Language": "de-DE,de;q=0.9,en;q=0.5"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith(JSONAPI)
        data = response.json()["data"]
        reference = data["id"]
        assert reference.startswith("DE-")
        assert data["type"] == "customers"
        assert data["links"]["self"] == f"{e2e.api_url}/customers/{reference}"
        assert {k: data["attributes"][k] for k in ("firstName", "lastName", "email", "salutation", "gender")} == {
            "firstName": "Hans",
            "lastName": "Müller",
            "email": email,
            "salutation": "Mr",
            "gender": "Male",
        }
        assert data["attributes"]["createdAt"] and data["attributes"]["updatedAt"]
        assert "password" not in json.dumps(data).lower()

        verification = await e2e.mail_to(email, "bestätigen")
        link = next(link for link in verification.links if "/register/confirm?token=" in link)
        assert link.startswith(f"{e2e.api_url}/register/confirm?token=")

        # what the customer's browser (or a mail scanner before it) does: the page shows one button
        page = await http.get(link)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'lang="de"' in page.text and "E-Mail-Adresse bestätigen</button>" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script" not in page.text  # a plain form
        assert (await http.get(link)).status_code == 200  # opened twice, still nothing confirmed
        customer = await customer_by_email(e2e, email)
        assert customer is not None and customer.registered_at is None

        confirmed = await press_the_button(http, page)
        assert confirmed.status_code == 200
        assert 'lang="de"' in confirmed.text and "Ihr Kundenkonto ist aktiv" in confirmed.text
        customer = await customer_by_email(e2e, email)
        assert customer is not None and customer.registered_at is not None and customer.locale == "de_DE"
        await e2e.mail_to(email, "Willkommen")

        # the same key again: Glue's "invalid or already used"
        again = await http.post("/customer-confirmation", json=confirmation_body(token_from(verification)))
        assert again.status_code == 422
        assert again.json() == {
            "errors": [
                {
                    "status": 422,
                    "code": "423",
                    "detail": "This email confirmation code is invalid or has been already used.",
                }
            ]
        }
        assert (await http.get(link)).text.count("bereits bestätigt") >= 1


async def test_api_clients_confirm_with_the_registration_key(e2e: Stack) -> None:
    email = unique_email()
    async with e2e.http() as http:
        created = await http.post("/customers", json=customer_body(email))
        assert created.status_code == 201, created.text
        reference = created.json()["data"]["id"]
        key = token_from(await e2e.mail_to(email, "confirm"))

        confirmed = await http.post("/customer-confirmation", json=confirmation_body(key))

        assert confirmed.status_code == 204 and confirmed.content == b""
        handle = e2e.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
        assert (await handle.result()).outcome == "verified"
        # Ops find the run by customer reference and see its stage (visibility is eventually consistent).
        for _ in range(100):
            runs = [r async for r in e2e.client.list_workflows(f"CustomerReference = '{reference}'")]
            stages = [r.typed_search_attributes.get(_stage_key()) for r in runs]
            if stages == ["verified"]:
                break
            await asyncio.sleep(0.1)
        assert stages == ["verified"]
        assert [r.id for r in runs] == [registration_id(reference)]


def _stage_key() -> Any:
    from accounts.temporal import LIFECYCLE_STAGE

    return LIFECYCLE_STAGE


async def test_a_new_worker_finishes_what_a_stopped_one_started(e2e: Stack) -> None:
    email = unique_email()
    async with e2e.http() as http:
        created = await http.post("/customers", json=customer_body(email))
        reference = created.json()["data"]["id"]
        verification = await e2e.mail_to(email, "confirm")

        await e2e.restart_worker()  # a deploy: the old worker stops, a new process takes over

        confirmed = await http.post("/customer-confirmation", json=confirmation_body(token_from(verification)))
        assert confirmed.status_code == 204
        await e2e.mail_to(email, "active")
    handle = e2e.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
    assert (await handle.result()).outcome == "verified"
    assert len([m for m in e2e.sink.to(email) if "confirm your email" in m.subject]) == 1
    async with e2e.database.sessions() as session:
        sent = (
            await session.execute(
                select(EmailOutbox.template, func.count())
                .where(EmailOutbox.customer_reference == reference)
                .group_by(EmailOutbox.template)
            )
        ).all()
        events = await session.scalar(
            text("SELECT count(*) FROM audit_events WHERE customer_reference = :r AND event = 'email_verified'"),
            {"r": reference},
        )
    assert dict(sent) == {"verify": 1, "welcome": 1}
    assert events == 1


async def test_twenty_concurrent_registrations_of_one_address_make_one_account(e2e: Stack) -> None:
    email = unique_email()
    async with e2e.http() as http:
        responses = await asyncio.gather(
            *(
                http.post("/customers", json=customer_body(email.upper() if i % 2 else email, firstName=f"Hans{i}"))
                for i in range(20)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [422] * 19, [r.text for r in responses if r.status_code not in (201, 422)]
    assert {r.json()["errors"][0]["code"] for r in responses if r.status_code == 422} == {"400"}
    async with e2e.database.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.email_key == email.lower())
        )
    assert count == 1
    await e2e.mail_to(email, "tried to register")
    await asyncio.sleep(0.5)
    assert len([m for m in e2e.sink.to(email) if "tried to register" in m.subject]) == 1


async def test_no_plaintext_password_or_token_in_histories_or_the_database(e2e: Stack) -> None:
    email = unique_email()
    async with e2e.http() as http:
        created = await http.post("/customers", json=customer_body(email))
        reference = created.json()["data"]["id"]
        token = token_from(await e2e.mail_to(email, "confirm"))
        assert (await http.post("/customer-confirmation", json=confirmation_body(token))).status_code == 204
    handle = e2e.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_id(reference))
    await handle.result()

    history = await handle.fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    plain = "\n".join(await decoded_payload_texts(e2e.client, history))
    assert reference in plain  # the input names the customer by reference
    assert email not in plain and email.encode() not in raw  # the profile waited in pending_credentials
    for secret in (PASSWORD, token):
        assert secret.encode() not in raw
        assert secret not in history.to_json()
        assert secret not in plain

    async with e2e.database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in (await connection.execute(table.select())).all():
                dumped = json.dumps([str(value) for value in row])
                assert PASSWORD not in dumped and token not in dumped, table.name


BAD_INPUTS: list[tuple[str, Any, int, str | None, str]] = [
    # Glue's envelope check, before the schema: 400 without a code (tests/e2e/test_glue_contract_http.py)
    ("malformed JSON", b'{"data": {"type": "customers", "attributes": {', 400, None, "Post data is invalid."),
    ("no data", {}, 400, None, "Post data is invalid."),
    ("wrong type name", {"data": {"type": "carts", "attributes": {}}}, 400, None, "Invalid type."),
    ("firstName a number", {"firstName": 42}, 422, "901", "firstName => This value should be of type string."),
    ("missing lastName", {"lastName": None}, 422, "901", "lastName => This value should not be blank."),
    ("overlong name", {"lastName": "x" * 101}, 422, "901", "lastName => This value is too long."),
    ("control characters", {"firstName": "Ha\x00ns\x1b[31m"}, 422, "901", "firstName => This value contains"),
    ("bad salutation", {"salutation": "King"}, 422, "901", "salutation => The value you selected is not"),
    ("acceptedTerms a string", {"acceptedTerms": "yes"}, 422, "901", "acceptedTerms =>"),
    ("terms refused", {"acceptedTerms": False}, 422, "901", "acceptedTerms => This value should be true."),
    ("terms not accepted", {"acceptedTerms": None}, 400, "413", "Terms and Conditions was not accepted."),
    ("bad email", {"email": "not-an-email"}, 422, "416", "Invalid Email address format."),
    ("email too long", {"email": "a" * 95 + "@example.com"}, 422, "417", "Email is too long."),
    ("bad gender", {"gender": "Robot"}, 422, "901", "gender => The value you selected is not a valid choice."),
    ("no gender", {"gender": None}, 422, "901", "gender => This value should not be blank."),
    ("passwords differ", {"confirmPassword": PASSWORD + "x"}, 422, "406", "should be identical"),
    # the schema's length rule comes before the policy's 418/419: one 901 per field
    (
        "short password",
        {"password": "Ab1!", "confirmPassword": "Ab1!"},
        422,
        "901",
        "confirmPassword => This value is too short",
    ),
    (
        "1 MB password",
        {"password": "x" * 1_000_000, "confirmPassword": "x" * 1_000_000},
        422,
        "901",
        "password => This value is too long",
    ),
    ("repeated characters", {"password": "aaaBcd9!kLm2x", "confirmPassword": "aaaBcd9!kLm2x"}, 400, "421", "sequence"),
    ("common password", {"password": "password1234", "confirmPassword": "password1234"}, 400, "422", "common"),
    ("a 3 MB body", {"company": "x" * 3_000_000}, 413, "901", "exceeds"),
]


@pytest.mark.parametrize(("case", "change", "status", "code", "detail"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_gets_the_documented_error_and_writes_nothing(
    e2e: Stack, case: str, change: Any, status: int, code: str | None, detail: str
) -> None:
    email = unique_email()
    if isinstance(change, bytes):
        content = change
    elif change == {} or "data" in change:
        content = json.dumps(change).encode()
    else:
        email = change.get("email", email)
        body = customer_body(email, **{k: v for k, v in change.items() if k != "email"})
        body["data"]["attributes"] = {
            k: v for k, v in body["data"]["attributes"].items() if v is not None or k in change
        }
        content = json.dumps(body).encode()
    counter_before = await _counter(e2e)
    async with e2e.http() as http:
        response = await http.post("/customers", content=content, headers={"Content-Type": JSONAPI})
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors[0].get("code") == code and errors[0]["status"] == status
    assert any(detail in e["detail"] for e in errors), errors
    assert await _counter(e2e) == counter_before  # no reference allocated, so no workflow started
    assert await customer_by_email(e2e, email) is None


async def _counter(stack: Stack) -> int:
    async with stack.database.sessions() as session:
        return int(await session.scalar(select(ReferenceCounter.value)) or 0)


async def test_invalid_keys_are_refused_with_423_and_schema_errors_with_901(e2e: Stack) -> None:
    async with e2e.http() as http:
        unknown = await http.post("/customer-confirmation", json=confirmation_body("no-such-key"))
        too_long = await http.post("/customer-confirmation", json=confirmation_body("k" * 151))
        page = await http.get("/register/confirm", params={"token": "no-such-key"})
        pressed = await http.post("/register/confirm", data={"token": "no-such-key"})
    assert pressed.status_code == 400 and "invalid" in pressed.text
    assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (422, "423")
    assert (too_long.status_code, too_long.json()["errors"][0]["code"]) == (422, "901")
    assert page.status_code == 400 and "invalid" in page.text


async def test_openapi_schema_is_served_and_unknown_paths_answer_in_the_glue_envelope(e2e: Stack) -> None:
    async with e2e.http() as http:
        schema = (await http.get("/openapi.json")).json()
        missing = await http.get("/no-such-resource")
        wrong_method = await http.delete("/customer-confirmation")
    assert missing.status_code == 404 and missing.json()["errors"][0]["status"] == 404
    assert wrong_method.status_code == 405 and wrong_method.json()["errors"][0]["status"] == 405
    assert {"/customers", "/customer-confirmation", "/register/confirm"} <= set(schema["paths"])


async def test_support_cli_shows_status_resends_and_verifies(
    stack: StackFactory, dev_server: Any, database: Database, tmp_path: Any
) -> None:
    async with stack(dev_server, database, api=True, verification_resend_min_interval=timedelta(0)) as e2e:
        await _support_cli_session(e2e, tmp_path)


async def _support_cli_session(e2e: Stack, tmp_path: Any) -> None:
    email = unique_email()
    async with e2e.http() as http:
        reference = (await http.post("/customers", json=customer_body(email))).json()["data"]["id"]
    await e2e.mail_to(email, "confirm")
    environment = {
        "ACCOUNTS_DATABASE_URL": e2e.settings.database_url,
        "ACCOUNTS_VAR_DIR": str(e2e.settings.var_dir),  # the development payload key the stack encrypts with
        "ACCOUNTS_TEMPORAL_ADDRESS": e2e.env.client.service_client.config.target_host,
        "ACCOUNTS_TASK_QUEUE": e2e.settings.task_queue,
    }

    status = await _cli(tmp_path, environment, "status", reference, "--json")
    assert status["returncode"] == 0, status
    shown = json.loads(status["stdout"])
    assert shown["stage"] == "awaiting_verification"
    assert shown["temporal_ui"].endswith(f"/workflows/{registration_id(reference)}")

    resent = await _cli(tmp_path, environment, "resend", reference)
    assert resent["returncode"] == 0 and "sent" in resent["stdout"], resent
    assert len([m for m in await _wait_count(e2e, email, 2)]) == 2

    verified = await _cli(tmp_path, environment, "verify", reference, "--agent", "alice", "--reason", "called in")
    assert verified["returncode"] == 0 and "verified" in verified["stdout"], verified
    customer = await customer_by_email(e2e, email)
    assert customer is not None and customer.registered_at is not None

    again = await _cli(tmp_path, environment, "verify", reference, "--agent", "alice", "--reason", "twice")
    assert again["returncode"] == 1 and "NotAwaitingVerification" in again["stdout"]


async def _wait_count(stack: Stack, email: str, count: int) -> list[Any]:
    for _ in range(100):
        found = [m for m in stack.sink.to(email) if "confirm your email" in m.subject]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def _cli(cwd: Any, environment: dict[str, str], *arguments: str) -> dict[str, Any]:
    import os

    process = await asyncio.create_subprocess_exec(
        *ACCOUNTS,
        *arguments,
        cwd=str(cwd),
        env=checkout_env({**os.environ, **environment, "COLUMNS": "200"}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return {"returncode": process.returncode, "stdout": stdout.decode(), "stderr": stderr.decode()}


async def test_confirming_one_registration_leaves_another_untouched(e2e: Stack) -> None:
    first, second = unique_email(), unique_email()
    async with e2e.http() as http:
        await http.post("/customers", json=customer_body(first))
        await http.post("/customers", json=customer_body(second))
        key_of_first = token_from(await e2e.mail_to(first, "confirm"))
        await e2e.mail_to(second, "confirm")
        assert (await http.post("/customer-confirmation", json=confirmation_body(key_of_first))).status_code == 204
    second_customer = await customer_by_email(e2e, second)
    assert second_customer is not None and second_customer.registered_at is None


async def test_http_client_errors_never_leak_a_500(e2e: Stack) -> None:
    async with e2e.http() as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await http.post("/customers", content=b"email=a@b.c", headers={"Content-Type": content_type})
            assert (response.status_code, response.json()["errors"]) == (
                400,
                [{"status": 400, "detail": "Post data is invalid."}],
            )
        response = await http.post("/customers", content=b"[1,2,3]", headers={"Content-Type": JSONAPI})
        assert response.status_code == 400
