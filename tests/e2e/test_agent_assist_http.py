"""Agent assistance over HTTP (issue 18): Spryker's agent-auth-rest-api answers and codes, the customer search,
the impersonation token (its `act` claim, what it may not do, its end and expiry), the audit naming the
agent, the `assist:{ref}:{id}` workflow recording each step, and the back office's "Assist this customer"."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, registration_body, unique_email
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from test_backoffice_web import csrf_token, web_sign_in
from test_login_http import JSONAPI, PASSWORD, registered

from accounts.models import AuditEvent
from accounts.staff import StaffDirectory
from workflows.assist import AssistWorkflow, assist_id

pytestmark = pytest.mark.e2e
AGENT_PASSWORD = "Agent-pass#2026-teal!"
HEADER = "X-Agent-Authorization"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


async def member(stack: Stack, role: str = "agent", **options: Any) -> tuple[str, str]:
    """A staff member with a web password; returns (name, API key)."""
    directory = StaffDirectory.from_settings(stack.database.sessions, stack.settings)
    name = f"agnes-{os.urandom(4).hex()}"
    created, key = await directory.create(name, role, password=AGENT_PASSWORD, **options)
    return created.name, key


def agent_login(username: str, password: str = AGENT_PASSWORD) -> dict[str, Any]:
    return {"data": {"type": "agent-access-tokens", "attributes": {"username": username, "password": password}}}


async def agent_token(http: httpx.AsyncClient, name: str) -> str:
    answer = await http.post("/agent-access-tokens", json=agent_login(name), headers={"Content-Type": JSONAPI})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["attributes"]["accessToken"])


def as_agent(token: str) -> dict[str, str]:
    return {HEADER: f"Bearer {token}", "Content-Type": JSONAPI}


def impersonation(reference: str) -> dict[str, Any]:
    return {
        "data": {"type": "agent-customer-impersonation-access-tokens", "attributes": {"customerReference": reference}}
    }


def errors(answer: httpx.Response) -> list[tuple[int, str, str]]:
    return [(e["status"], e["code"], e["detail"]) for e in answer.json()["errors"]]


async def impersonate(http: httpx.AsyncClient, token: str, reference: str) -> httpx.Response:
    return await http.post(
        "/agent-customer-impersonation-access-tokens", json=impersonation(reference), headers=as_agent(token)
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": JSONAPI}


async def audit_of(stack: Stack, reference: str) -> list[AuditEvent]:
    async with stack.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.customer_reference == reference).order_by(AuditEvent.id)
        )
        return list(rows)


async def eventually(check: Any, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.05)
    return found


async def test_agent_sign_in_answers_as_glue_and_only_agents_get_a_token(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    support, _ = await member(e2e, "support")
    async with e2e.http() as http:
        answer = await http.post("/agent-access-tokens", json=agent_login(agent), headers={"Content-Type": JSONAPI})
        assert answer.status_code == 201, answer.text
        data = answer.json()["data"]
        assert data["type"] == "agent-access-tokens" and data["id"] is None
        attributes = data["attributes"]
        assert attributes["tokenType"] == "Bearer"
        assert attributes["expiresIn"] == int(e2e.settings.access_token_lifetime.total_seconds())
        assert attributes["accessToken"] and attributes["refreshToken"] is None
        claims = jwt.decode(attributes["accessToken"], options={"verify_signature": False})
        assert claims["aud"] == "shop-agent" and claims["sub"].startswith("staff:")
        for username, password in ((agent, "wrong password, surely"), (support, AGENT_PASSWORD), ("nobody", "x" * 12)):
            refused = await http.post(
                "/agent-access-tokens", json=agent_login(username, password), headers={"Content-Type": JSONAPI}
            )
            assert refused.status_code == 401
            assert errors(refused) == [(401, "4101", "Failed to authenticate an agent.")]
        # the agent token is no customer token
        assert (await http.get("/customers", headers=bearer(attributes["accessToken"]))).status_code == 401


async def test_agent_sign_in_is_throttled_like_staff_sign_in(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, lockout_max_failures=3) as built, built.http() as http:
        agent, _ = await member(built)
        for _ in range(3):
            wrong = await http.post(
                "/agent-access-tokens",
                json=agent_login(agent, "wrong password, surely"),
                headers={"Content-Type": JSONAPI},
            )
            assert wrong.status_code == 401
        blocked = await http.post("/agent-access-tokens", json=agent_login(agent), headers={"Content-Type": JSONAPI})
        assert blocked.status_code == 429, blocked.text
        assert errors(blocked)[0][1] == "4401" and int(blocked.headers["Retry-After"]) > 0


async def test_the_agent_header_tells_invalid_tokens_from_credentials_that_are_not_an_agents(e2e: Stack) -> None:
    agent, agent_key = await member(e2e)
    _, support_key = await member(e2e, "support")
    _, admin_key = await member(e2e, "admin")
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        customer = await http.post(
            "/access-tokens",
            json={"data": {"type": "access-tokens", "attributes": {"username": email, "password": PASSWORD}}},
            headers={"Content-Type": JSONAPI},
        )
        customer_token = customer.json()["data"]["attributes"]["accessToken"]
        token = await agent_token(http, agent)
        not_an_agent = [(401, "4103", "Action is available to agent user only.")]
        invalid = [(401, "4102", "Agent access token is invalid.")]
        cases: list[tuple[dict[str, str], list[tuple[int, str, str]]]] = [
            ({}, not_an_agent),
            ({HEADER: "Bearer"}, not_an_agent),
            ({HEADER: "Bearer not-a-token"}, invalid),
            ({HEADER: f"Bearer {token[:-4]}AAAA"}, invalid),
            ({HEADER: f"Bearer {customer_token}"}, not_an_agent),
            ({HEADER: f"Bearer {support_key}"}, not_an_agent),
            ({HEADER: f"Bearer {admin_key}"}, not_an_agent),
        ]
        for headers, expected in cases:
            search = await http.get("/agent-customer-search", params={"q": "x"}, headers=headers)
            assert errors(search) == expected, headers
            start = await http.post(
                "/agent-customer-impersonation-access-tokens",
                json=impersonation(reference),
                headers={**headers, "Content-Type": JSONAPI},
            )
            assert errors(start) == expected, headers
        # an agent's own API key and token both work
        for credential in (agent_key, token):
            assert (
                await http.get("/agent-customer-search", headers={HEADER: f"Bearer {credential}"})
            ).status_code == 200
        # a disabled agent's token is dead, and so is what they were doing for a customer
        acting = bearer((await impersonate(http, token, reference)).json()["data"]["attributes"]["accessToken"])
        assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
        directory = StaffDirectory.from_settings(e2e.database.sessions, e2e.settings)
        await directory.set_disabled(agent, True)
        dead = await http.get("/agent-customer-search", headers={HEADER: f"Bearer {token}"})
        assert errors(dead) == invalid
        assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
            (401, "001", "Invalid access token.")
        ]
        # for good: enabling the member again revives neither their web sessions nor the impersonation
        await directory.set_disabled(agent, False)
        assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
            (401, "001", "Invalid access token.")
        ]
        # and the back office does not list it as running
        listed = await http.get(f"/backoffice/customers/{reference}/assists", headers=bearer(admin_key))
        assert listed.status_code == 200 and listed.json()["data"] == []


async def test_customer_search_pages_through_prefix_matches_of_email_and_names(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    tag = uuid.uuid4().hex[:8]
    async with e2e.http() as http:
        emails = [f"{tag}{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(3)]
        for email in emails:
            created = await http.post("/customers", json=registration_body(email, PASSWORD))
            assert created.status_code == 201, created.text
        named = unique_email()
        assert (
            await http.post("/customers", json=registration_body(named, PASSWORD, firstName=f"Zed{tag}", lastName="Q"))
        ).status_code == 201
        token = await agent_token(http, agent)

        async def search(q: str, **page: int) -> dict[str, Any]:
            params: dict[str, Any] = {"q": q, **{f"page[{k}]": v for k, v in page.items()}}
            answer = await http.get("/agent-customer-search", params=params, headers=as_agent(token))
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        first = await search(tag, limit=2)
        [resource] = first["data"]
        assert resource["type"] == "agent-customer-search" and resource["id"] is None
        customers = resource["attributes"]["customers"]
        assert [c["email"] for c in customers] == emails[:2]
        assert set(customers[0]) == {"customerReference", "email", "firstName", "lastName"}
        assert customers[0]["firstName"] == "Ada" and customers[0]["lastName"] == "Byron"
        assert "page%5Boffset%5D=2" in first["links"]["next"] and "prev" not in first["links"]
        second = await search(tag, offset=2, limit=2)
        assert [c["email"] for c in second["data"][0]["attributes"]["customers"]] == emails[2:]
        assert "next" not in second["links"] and "page%5Boffset%5D=0" in second["links"]["prev"]
        # a prefix of the first name finds that customer, in any case; the middle of a word finds nobody
        by_name = (await search(f"zed{tag.upper()}"))["data"][0]["attributes"]["customers"]
        assert [c["email"] for c in by_name] == [named]
        assert (await search(tag[2:] + "0"))["data"][0]["attributes"]["customers"] == []
        # the default page is Spryker's ten; a page too large is a schema error
        refused = await http.get("/agent-customer-search", params={"page[limit]": 1000}, headers=as_agent(token))
        assert refused.status_code == 422


async def test_an_impersonation_acts_for_the_customer_is_audited_as_the_agent_and_ends_on_delete(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        _, unverified = await registered(e2e, http, confirm=False)
        token = await agent_token(http, agent)
        for wrong in ("DE--999999999", unverified):
            refused = await impersonate(http, token, wrong)
            assert errors(refused) == [(401, "4104", "Failed to impersonate a customer.")]
        answer = await impersonate(http, token, reference)
        assert answer.status_code == 201, answer.text
        data = answer.json()["data"]
        assert data["type"] == "agent-customer-impersonation-access-tokens" and data["id"] is None
        tokens = data["attributes"]
        assert tokens["tokenType"] == "Bearer" and tokens["refreshToken"] is None
        # what is left of the session, which began a moment before the token was issued
        ttl = int(e2e.settings.agent_impersonation_ttl.total_seconds())
        assert ttl - 2 <= tokens["expiresIn"] <= ttl
        claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
        assert claims["sub"] == reference and claims["act"] == {"sub": f"agent:{agent}"}
        session_id = claims["sid"]
        acting = bearer(tokens["accessToken"])
        assert (await e2e.mail_to(email, "customer support")).to == [email]

        # what the customer may do, the agent may do: read and edit the profile, add an address
        assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
        edit = {"data": {"type": "customers", "attributes": {"firstName": "Augusta"}}}
        assert (await http.patch(f"/customers/{reference}", json=edit, headers=acting)).status_code == 200
        # what only the customer may do is refused, and changes nothing
        in_person = [(403, "4105", "This action is not available to an agent acting for a customer.")]
        new_password = "An0ther-long-pass!word"
        forbidden = [
            await http.patch(
                f"/customer-password/{reference}",
                json={
                    "data": {
                        "type": "customer-password",
                        "attributes": {
                            "password": PASSWORD,
                            "newPassword": new_password,
                            "confirmPassword": new_password,
                        },
                    }
                },
                headers=acting,
            ),
            await http.patch(
                f"/customers/{reference}",
                json={"data": {"type": "customers", "attributes": {"email": unique_email(), "password": PASSWORD}}},
                headers=acting,
            ),
            await http.request(
                "DELETE",
                f"/customers/{reference}",
                json={"data": {"type": "customers", "attributes": {"password": PASSWORD}}},
                headers=acting,
            ),
            await http.get("/multi-factor-auth-types", headers=acting),
            await http.post(
                "/multi-factor-auth-type-activate",
                json={"data": {"type": "multi-factor-auth-type-activate", "attributes": {"type": "email"}}},
                headers=acting,
            ),
            # a copy of everything the service holds on the customer: theirs to ask for and download
            await http.post(f"/customers/{reference}/data-exports", headers=acting),
            await http.get(f"/customers/{reference}/data-exports/{'0' * 32}", headers=acting),
        ]
        for refused in forbidden:
            assert errors(refused) == in_person, refused.request.url
        assert (await http.get(f"/customers/{reference}", headers=acting)).json()["data"]["attributes"][
            "email"
        ] == email

        handle = e2e.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, session_id))

        async def one_action() -> bool:
            return (await handle.query(AssistWorkflow.status)).actions == ["PATCH /customers/{customer_reference}"]

        await eventually(one_action)
        # the end: DELETE of the token (this service's extension); from then on it is refused
        other = await http.delete(f"/agent-customer-impersonation-access-tokens/{session_id}", headers=acting)
        assert errors(other)[0][:2] == (404, "404")
        ended = await http.delete("/agent-customer-impersonation-access-tokens/mine", headers=acting)
        assert ended.status_code == 204, ended.text
        assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
            (401, "001", "Invalid access token.")
        ]
        status = await handle.result()
        assert status.ended == "token_deleted" and status.actions == ["PATCH /customers/{customer_reference}"]
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    trail = await audit_of(e2e, reference)
    by_agent = [(e.event, e.channel) for e in trail if e.actor == f"agent:{agent}"]
    # the start may be recorded before or after the change the agent made at once; the rest has its order
    assert sorted(by_agent[:2]) == [("assist_started", "agent"), ("profile_updated", "api")]
    assert by_agent[2:] == [("assist_action", "agent"), ("assist_ended", "agent")]
    assert all(e.details["assist"] == session_id for e in trail if e.actor == f"agent:{agent}")
    assert not [e for e in trail if e.event == "profile_updated" and e.actor != f"agent:{agent}"]


async def test_an_impersonation_expires_without_refresh(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    # long enough for the first request on a loaded machine, short enough to wait for
    settings = {"agent_impersonation_ttl": timedelta(seconds=5), "agent_assist_notify_customer": False}
    async with stack(dev_server, database, api=True, **settings) as built:
        agent, _ = await member(built)
        async with built.http() as http:
            email, reference = await registered(built, http)
            answer = await impersonate(http, await agent_token(http, agent), reference)
            tokens = answer.json()["data"]["attributes"]
            assert 3 <= tokens["expiresIn"] <= 5 and tokens["refreshToken"] is None
            acting = bearer(tokens["accessToken"])
            assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
            session_id = jwt.decode(tokens["accessToken"], options={"verify_signature": False})["sid"]
            handle = built.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, session_id))
            status = await asyncio.wait_for(handle.result(), 30)
            assert status.ended == "expired"
            # ACCOUNTS_AGENT_ASSIST_NOTIFY_CUSTOMER=false: the run is over and it mailed nothing
            assert not [m for m in built.sink.to(email) if "customer support" in m.subject.lower()]
            # refused as soon as the session ended (the row), whatever the token's own `exp` says
            assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 401
            # nothing to refresh with: the impersonation gave no refresh token, and the session is over
            refreshed = await http.post(
                "/refresh-tokens",
                json={"data": {"type": "refresh-tokens", "attributes": {"refreshToken": tokens["accessToken"][:200]}}},
                headers={"Content-Type": JSONAPI},
            )
            assert refreshed.status_code == 401
        ended = [e for e in await audit_of(built, reference) if e.event == "assist_ended"]
        assert [(e.actor, e.details["reason"]) for e in ended] == [(f"agent:{agent}", "expired")]


async def test_the_back_office_assists_a_customer_and_an_admin_ends_the_session(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    support, _ = await member(e2e, "support")
    admin, _ = await member(e2e, "admin")
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
    page_url = f"/backoffice/ui/customers/{reference}"
    async with e2e.http() as agent_http, e2e.http() as admin_http, e2e.http() as support_http:
        for client, name in ((agent_http, agent), (admin_http, admin), (support_http, support)):
            assert (await web_sign_in(client, name, AGENT_PASSWORD)).status_code == 303
        # an agent lands on the customer list (without the group filter, which is support's) and finds them
        listed = await agent_http.get("/backoffice")
        assert listed.status_code == 200 and page_url in listed.text, listed.text
        page = await agent_http.get(page_url)
        assert "Assist this customer" in page.text
        assert "Assist this customer" not in (await support_http.get(page_url)).text
        assisted = await agent_http.post(f"{page_url}/impersonation-tokens", data={"csrf_token": csrf_token(page)})
        assert assisted.status_code == 200, assisted.text
        assert assisted.headers["Cache-Control"] == "no-store"  # the page shows a token
        token = assisted.text.split('aria-label="Access token">', 1)[1].split("<", 1)[0]
        acting = bearer(token)
        assert (await agent_http.get(f"/customers/{reference}", headers=acting)).status_code == 200
        # a support member may not start one
        support_page = await support_http.get(page_url)
        refused = await support_http.post(
            f"{page_url}/impersonation-tokens", data={"csrf_token": csrf_token(support_page)}
        )
        assert refused.status_code == 403
        # every staff member sees the running session; only an admin may end it
        admin_page = await admin_http.get(page_url)
        assert agent in admin_page.text and "End assistance" in admin_page.text
        assert "End assistance" not in (await agent_http.get(page_url)).text
        session_id = jwt.decode(token, options={"verify_signature": False})["sid"]
        ended = await admin_http.post(
            f"{page_url}/assists/{session_id}/end", data={"csrf_token": csrf_token(admin_page)}
        )
        assert ended.status_code == 303
        assert (await agent_http.get(f"/customers/{reference}", headers=acting)).status_code == 401
        after = await admin_http.get(page_url)
        assert "No agent is assisting this customer." in after.text
        assert f"by agent {agent} for customer {reference}" in after.text
    ended_rows = [e for e in await audit_of(e2e, reference) if e.event == "assist_ended"]
    assert [(e.details["reason"], e.details["ended_by"]) for e in ended_rows] == [("ended_by_admin", admin)]


async def test_the_back_office_api_lists_running_sessions_and_an_admin_key_ends_one(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    _, admin_key = await member(e2e, "admin")
    _, support_key = await member(e2e, "support")
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        tokens = (await impersonate(http, await agent_token(http, agent), reference)).json()["data"]["attributes"]
        session_id = jwt.decode(tokens["accessToken"], options={"verify_signature": False})["sid"]
        admin = {"Authorization": f"Bearer {admin_key}"}
        listed = await http.get(f"/backoffice/customers/{reference}/assists", headers=admin)
        assert [(a["id"], a["attributes"]["agent"]) for a in listed.json()["data"]] == [(session_id, agent)]
        url = f"/backoffice/customers/{reference}/assists/{session_id}"
        refused = await http.delete(url, headers={"Authorization": f"Bearer {support_key}"})
        assert refused.status_code == 403
        assert (await http.delete(url, headers=admin)).status_code == 204
        assert (await http.get(f"/customers/{reference}", headers=bearer(tokens["accessToken"]))).status_code == 401
        assert (await http.delete(url, headers=admin)).status_code == 404
        assert (await http.get(f"/backoffice/customers/{reference}/assists", headers=admin)).json()["data"] == []


async def test_ending_a_session_whose_run_is_gone_still_kills_its_token(e2e: Stack) -> None:
    # the run terminated by an operator (or otherwise closed) while its row still says "live": the DELETE
    # answers 204 "the token is refused from now on", and so does an admin's end; both must hold
    agent, _ = await member(e2e)
    _, admin_key = await member(e2e, "admin")
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        token = await agent_token(http, agent)
        for end_by_admin in (False, True):
            tokens = (await impersonate(http, token, reference)).json()["data"]["attributes"]
            acting = bearer(tokens["accessToken"])
            session_id = jwt.decode(tokens["accessToken"], options={"verify_signature": False})["sid"]
            handle = e2e.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, session_id))
            await handle.terminate(reason="test: the run is gone")
            assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
            if end_by_admin:
                url = f"/backoffice/customers/{reference}/assists/{session_id}"
                ended = await http.delete(url, headers={"Authorization": f"Bearer {admin_key}"})
            else:
                ended = await http.delete("/agent-customer-impersonation-access-tokens/mine", headers=acting)
            assert ended.status_code == 204, ended.text
            assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
                (401, "001", "Invalid access token.")
            ]
    ended_rows = [e for e in await audit_of(e2e, reference) if e.event == "assist_ended"]
    assert [(e.actor, e.details["reason"]) for e in ended_rows] == [
        (f"agent:{agent}", "token_deleted"),
        (f"agent:{agent}", "ended_by_admin"),
    ]


async def test_control_characters_in_what_an_agent_types_are_refused_as_glue_errors(e2e: Stack) -> None:
    # PostgreSQL refuses a NUL in a string: it answered a bare 500 in all three
    agent, _ = await member(e2e)
    async with e2e.http() as http:
        token = await agent_token(http, agent)
        answers = [
            await http.get("/agent-customer-search", params={"q": "a\x00b"}, headers=as_agent(token)),
            await impersonate(http, token, "DE--\x001"),
            await http.post(
                "/agent-access-tokens", json=agent_login(f"{agent}\x00"), headers={"Content-Type": JSONAPI}
            ),
        ]
        for answer in answers:
            assert answer.status_code == 422, (answer.request.url, answer.text)
            assert [(e["code"], e["detail"].split(" => ")[1]) for e in answer.json()["errors"]] == [
                ("901", "This value contains control characters.")
            ]


async def test_a_new_password_for_the_agent_ends_their_tokens_and_assistance_sessions(e2e: Stack) -> None:
    # the admin's answer to a leaked agent password: what was signed in with the old one must not work on
    agent, _ = await member(e2e)
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        token = await agent_token(http, agent)
        acting = bearer((await impersonate(http, token, reference)).json()["data"]["attributes"]["accessToken"])
        assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
        directory = StaffDirectory.from_settings(e2e.database.sessions, e2e.settings)
        await directory.set_password(agent, "A-new-agent-pass#2026-rust!")
        dead = await http.get("/agent-customer-search", headers={HEADER: f"Bearer {token}"})
        assert errors(dead) == [(401, "4102", "Agent access token is invalid.")]
        assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
            (401, "001", "Invalid access token.")
        ]
        # signed in again at once, within the second of the new password: that token works
        again = await http.post(
            "/agent-access-tokens",
            json=agent_login(agent, "A-new-agent-pass#2026-rust!"),
            headers={"Content-Type": JSONAPI},
        )
        assert again.status_code == 201, again.text
        fresh = {HEADER: f"Bearer {again.json()['data']['attributes']['accessToken']}"}
        assert (await http.get("/agent-customer-search?q=a", headers=fresh)).status_code == 200


async def test_a_new_key_for_the_agent_ends_what_the_old_key_started(e2e: Stack) -> None:
    # an agent's API key works as their agent token: a leaked one may have started assistance sessions, and
    # `accounts staff new-key` is the admin's answer to it, so those end with it, as with a new password
    agent, key = await member(e2e)
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        started = await impersonate(http, key, reference)
        assert started.status_code == 201, started.text
        acting = bearer(started.json()["data"]["attributes"]["accessToken"])
        token = await agent_token(http, agent)
        assert (await http.get(f"/customers/{reference}", headers=acting)).status_code == 200
        await StaffDirectory.from_settings(e2e.database.sessions, e2e.settings).new_key(agent)
        assert errors(await http.get(f"/customers/{reference}", headers=acting)) == [
            (401, "001", "Invalid access token.")
        ]
        dead = await http.get("/agent-customer-search", headers={HEADER: f"Bearer {token}"})
        assert errors(dead) == [(401, "4102", "Agent access token is invalid.")]
        fresh = {HEADER: f"Bearer {await agent_token(http, agent)}"}  # signed in after it: works
        assert (await http.get("/agent-customer-search", headers=fresh)).status_code == 200


async def test_changes_past_the_sessions_action_cap_are_audited_all_the_same(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """The run lists at most ACCOUNTS_AGENT_ASSIST_MAX_ACTIONS changes (its history stays bounded); the audit
    trail has every one, the ones past the cap written by the request itself."""
    settings = {"agent_assist_max_actions": 1, "agent_assist_notify_customer": False}
    async with stack(dev_server, database, api=True, **settings) as built:
        agent, _ = await member(built)
        async with built.http() as http:
            _, reference = await registered(built, http)
            answer = await impersonate(http, await agent_token(http, agent), reference)
            tokens = answer.json()["data"]["attributes"]
            acting = bearer(tokens["accessToken"])
            for name in ("Ada", "Bea", "Cid"):
                edit = {"data": {"type": "customers", "attributes": {"firstName": name}}}
                assert (await http.patch(f"/customers/{reference}", json=edit, headers=acting)).status_code == 200
            session_id = jwt.decode(tokens["accessToken"], options={"verify_signature": False})["sid"]
            handle = built.client.get_workflow_handle_for(AssistWorkflow.run, assist_id(reference, session_id))

        async def audited() -> list[tuple[str, str, str]]:  # written after each answer went out
            actions = [e for e in await audit_of(built, reference) if e.event == "assist_action"]
            return [(e.actor, e.details["method"], e.details["route"]) for e in actions]

        async def all_three() -> bool:
            return len(await audited()) == 3

        await eventually(all_three)
        assert await audited() == [(f"agent:{agent}", "PATCH", "/customers/{customer_reference}")] * 3
        assert (await handle.query(AssistWorkflow.status)).actions == ["PATCH /customers/{customer_reference}"]


async def test_asking_again_while_a_session_runs_joins_it_no_second_run_no_second_email(e2e: Stack) -> None:
    agent, _ = await member(e2e)
    other, _ = await member(e2e)
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        token = await agent_token(http, agent)

        def sid(answer: httpx.Response) -> str:
            access = answer.json()["data"]["attributes"]["accessToken"]
            return str(jwt.decode(access, options={"verify_signature": False})["sid"])

        first = await impersonate(http, token, reference)
        again = [await impersonate(http, token, reference) for _ in range(3)]
        assert {sid(answer) for answer in again} == {sid(first)}  # one session, however often asked
        assert sid(await impersonate(http, await agent_token(http, other), reference)) != sid(first)  # another agent's
        await e2e.mail_to(email, "customer support")

        async def started() -> list[str]:  # each run audits its start: one run per session
            return [e.actor for e in await audit_of(e2e, reference) if e.event == "assist_started"]

        async def both() -> bool:
            return len(await started()) == 2

        await eventually(both)
        assert sorted(await started()) == sorted([f"agent:{agent}", f"agent:{other}"])

        # once ended (the token's DELETE), asking again is a new session
        acting = bearer(again[-1].json()["data"]["attributes"]["accessToken"])
        ended = await http.delete("/agent-customer-impersonation-access-tokens/mine", headers=acting)
        assert ended.status_code == 204
        assert sid(await impersonate(http, token, reference)) != sid(first)
