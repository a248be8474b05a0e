"""Request budgets over HTTP (accounts.rate_limits, api.limits): per client network, for everyone, per address.

Every test connects from 127.0.0.1, which the stack trusts to name the client in X-Forwarded-For (the
default ACCOUNTS_FORWARDED_ALLOW_IPS), so a test plays many clients by that header; one test trusts
another peer and shows that the header of an untrusted client changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import httpx
import pytest
from conftest import Database, Stack, StackFactory, registration_body, unique_email
from sqlalchemy import delete, select
from temporalio.service import RPCError
from test_backoffice_http import staff_key
from test_backoffice_web import staff_with_password, web_sign_in
from test_login_http import PASSWORD, login_body, registered

from accounts.models import RequestCount
from starter.passwords import reset_id
from workflows.password_reset import PasswordResetWorkflow

pytestmark = pytest.mark.e2e


async def fresh_counts(stack: Stack) -> None:
    """The database lives for the whole run: earlier tests' windows must not count here."""
    async with stack.database.sessions.begin() as session:
        await session.execute(delete(RequestCount))


def forgotten(email: str) -> dict[str, Any]:
    return {"data": {"type": "customer-forgotten-password", "attributes": {"email": email}}}


def email_change(email: str) -> dict[str, Any]:
    return {"data": {"type": "customers", "attributes": {"email": email, "password": PASSWORD}}}


def assert_too_many(response: httpx.Response, code: str = "429", window: int = 60) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= window
    error = response.json()["errors"][0]
    assert (error["status"], error["code"]) == (429, code)


def by(client: str) -> dict[str, str]:
    return {"X-Forwarded-For": client}


async def reset_from(http: httpx.AsyncClient, client: str) -> httpx.Response:
    return await http.post("/customer-forgotten-password", json=forgotten(unique_email()), headers=by(client))


async def test_each_kind_of_unauthenticated_work_has_a_per_client_budget(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, rate_limit_per_ip=2) as built, built.http() as http:
        await fresh_counts(built)
        email, _ = await registered(built, http)  # one sign-up from 127.0.0.1

        signups = [await http.post("/customers", json=registration_body(unique_email(), PASSWORD)) for _ in range(2)]
        assert [r.status_code for r in signups] == [201, 429]
        assert_too_many(signups[1])

        # known and unknown addresses alike: the budget is the client's
        resets = [await http.post("/customer-forgotten-password", json=forgotten(a)) for a in (email, "no@example.com")]
        assert [r.status_code for r in resets] == [204, 204]
        for address in (email, unique_email("nobody")):
            assert_too_many(await http.post("/customer-forgotten-password", json=forgotten(address)))

        sign_ins = [await http.post("/access-tokens", json=login_body(email, PASSWORD)) for _ in range(3)]
        assert [r.status_code for r in sign_ins] == [201, 201, 429]
        assert_too_many(sign_ins[2], code="4401")  # what Glue clients read for a blocked sign-in
        oauth = await http.post("/token", data={"grant_type": "password", "username": email, "password": PASSWORD})
        assert (oauth.status_code, oauth.json()["error"]) == (429, "invalid_grant") and oauth.headers["Retry-After"]

        # another client (by its proxy-named address) has budgets of its own
        other = await http.post("/access-tokens", json=login_body(email, PASSWORD), headers=by("203.0.113.7"))
        assert other.status_code == 201
        bearer = {"Authorization": f"Bearer {other.json()['data']['attributes']['accessToken']}"}
        me = (await http.get("/customers", headers=bearer)).json()["data"][0]["id"]
        changes = [
            await http.patch(f"/customers/{me}", json=email_change(unique_email("new")), headers=bearer)
            for _ in range(3)
        ]
        assert [r.status_code for r in changes] == [200, 200, 429]
        assert_too_many(changes[2])

        name, password = await staff_with_password(built)
        staff = [await web_sign_in(http, name, "wrong password, twelve+") for _ in range(3)]
        assert [r.status_code for r in staff] == [400, 400, 429] and staff[2].headers["Retry-After"]
        assert (await web_sign_in(http, name, password)).status_code == 429  # counted before any password

        key = {"Authorization": f"Bearer {await staff_key(built, 'resender')}"}
        resends = [await http.post(f"/backoffice/customers/{me}/resend-verification", headers=key) for _ in range(3)]
        assert [r.status_code for r in resends][2] == 429
        assert_too_many(resends[2])


async def test_everyone_together_has_a_budget_too(stack: StackFactory, dev_server: Any, database: Database) -> None:
    async with (
        stack(dev_server, database, api=True, rate_limit_per_ip=2, rate_limit_global=3) as built,
        built.http() as http,
    ):
        await fresh_counts(built)
        answers = [
            await http.post(
                "/customer-forgotten-password", json=forgotten(unique_email()), headers=by(f"198.51.100.{n}")
            )
            for n in range(1, 5)
        ]
        assert [r.status_code for r in answers] == [204, 204, 204, 429]  # four clients, one request each
        assert_too_many(answers[3])


async def test_ipv6_clients_are_counted_by_their_64_network(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, rate_limit_per_ip=2) as built, built.http() as http:
        await fresh_counts(built)

        async def reset(client: str) -> int:
            response = await http.post(
                "/customer-forgotten-password", json=forgotten(unique_email()), headers=by(client)
            )
            return response.status_code

        one_subscriber = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:3"]
        assert [await reset(client) for client in one_subscriber] == [204, 204, 429]
        assert await reset("2001:db8:1:3::1") == 204  # the next /64 is someone else


async def test_an_untrusted_peer_cannot_choose_its_address_and_one_warning_says_so(
    stack: StackFactory, dev_server: Any, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="accounts.api")
    # 127.0.0.1 is no trusted proxy here: its X-Forwarded-For must be ignored
    async with (
        stack(dev_server, database, api=True, rate_limit_per_ip=2, forwarded_allow_ips="192.0.2.1") as built,
        built.http() as http,
    ):
        await fresh_counts(built)
        answers = [await reset_from(http, f"192.0.2.{n}") for n in range(10, 14)]
        assert [r.status_code for r in answers] == [204, 204, 429, 429]
    warnings = [r for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert len(warnings) == 1 and "ACCOUNTS_FORWARDED_ALLOW_IPS" in warnings[0].getMessage()
    assert "127.0.0.1" in warnings[0].getMessage()


async def test_a_trusted_proxy_gets_no_warning(
    stack: StackFactory, dev_server: Any, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="accounts.api")
    async with stack(dev_server, database, api=True) as built, built.http() as http:
        response = await http.post(
            "/customer-forgotten-password", json=forgotten(unique_email()), headers=by("192.0.2.9")
        )
        assert response.status_code == 204
    assert not [r for r in caplog.records if "X-Forwarded-For" in r.getMessage()]


async def registrations_started(stack: Stack, expected_at_least: int) -> int:
    """RegistrationWorkflow runs on this test's task queue (the dev server's visibility lags a little)."""
    query = f"WorkflowType = 'RegistrationWorkflow' AND TaskQueue = '{stack.settings.task_queue}'"
    count = 0
    for _ in range(50):
        count = (await stack.client.count_workflows(query)).count
        if count >= expected_at_least:
            await asyncio.sleep(0.5)  # and nothing more arrives
            return (await stack.client.count_workflows(query)).count
        await asyncio.sleep(0.1)
    return count


async def test_sign_ups_for_one_address_start_no_workflow_past_its_budget_taken_or_not(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    """Each sign-up with a taken address used to start a registration workflow (that found the address
    taken and emailed its owner); a flood of them now stops at the address's budget, before Temporal."""
    async with stack(dev_server, database, api=True, address_requests_per_hour=2) as built, built.http() as http:
        await fresh_counts(built)
        taken, _ = await registered(built, http)  # the first request of this address
        free = unique_email("free")
        for address in (taken, free):
            answers = [await http.post("/customers", json=registration_body(address, PASSWORD)) for _ in range(12)]
            codes = [r.status_code for r in answers]
            # the taken address already spent one request on its own sign-up
            assert codes == ([422] if address == taken else [201, 422]) + [429] * (11 if address == taken else 10)
            assert_too_many(answers[-1], window=3600)
        # one workflow per admitted request: 2 for each address, not 13 and 12
        assert await registrations_started(built, 4) == 4
        await built.mail_to(taken, "someone tried to register")
        await asyncio.sleep(0.5)
        assert len([m for m in built.sink.to(taken) if "someone tried to register" in m.subject]) == 1


def resets_to(stack: Stack, email: str) -> list[Any]:
    return [m for m in stack.sink.to(email) if "Reset the password" in m.subject]


async def test_forgotten_passwords_for_one_address_past_its_budget_reach_no_workflow(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with (
        stack(
            dev_server, database, api=True, address_requests_per_hour=2, password_reset_resend_min_interval=0
        ) as built,
        built.http() as http,
    ):
        await fresh_counts(built)
        email, reference = await registered(built, http)
        reset = built.client.get_workflow_handle_for(PasswordResetWorkflow.run, reset_id(reference))
        known = []
        for sent in (1, 2):  # each admitted request mails a link (the second one once the first is out)
            known.append(await http.post("/customer-forgotten-password", json=forgotten(email)))
            for _ in range(200):
                with contextlib.suppress(RPCError):
                    if len((await reset.query(PasswordResetWorkflow.status)).sent_at) == sent:
                        break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the workflow task after the send is done
        known += [await http.post("/customer-forgotten-password", json=forgotten(email)) for _ in range(8)]
        nobody = unique_email("nobody")
        unknown = [await http.post("/customer-forgotten-password", json=forgotten(nobody)) for _ in range(10)]
        assert [r.status_code for r in known] == [r.status_code for r in unknown] == [204, 204] + [429] * 8
        # nothing tells the two apart
        assert known[-1].json()["errors"][0]["code"] == unknown[-1].json()["errors"][0]["code"] == "429"
        await asyncio.sleep(0.5)
        assert len(resets_to(built, email)) == 2


async def test_email_changes_to_one_address_are_bounded_whoever_asks(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, address_requests_per_hour=2) as built, built.http() as http:
        await fresh_counts(built)
        victim = unique_email("victim")
        answers = []
        for _ in range(3):  # three accounts of one attacker, each within its own per-customer bound
            email, reference = await registered(built, http)
            signed_in = await http.post("/access-tokens", json=login_body(email, PASSWORD))
            bearer = {"Authorization": f"Bearer {signed_in.json()['data']['attributes']['accessToken']}"}
            answers.append(await http.patch(f"/customers/{reference}", json=email_change(victim), headers=bearer))
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert_too_many(answers[2], window=3600)


async def test_with_a_redis_url_the_budgets_live_in_redis(
    stack: StackFactory, dev_server: Any, database: Database, redis_url: str
) -> None:
    async with (
        stack(dev_server, database, api=True, rate_limit_per_ip=2, rate_limit_redis_url=redis_url) as built,
        built.http() as http,
    ):
        await fresh_counts(built)
        client = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"  # one Redis serves the whole run
        answers = [await reset_from(http, client) for _ in range(3)]
        assert [r.status_code for r in answers] == [204, 204, 429]
        assert_too_many(answers[2])
        async with built.database.sessions() as session:
            assert (await session.scalars(select(RequestCount))).all() == []  # nothing counted in the database


async def test_the_per_ip_lockout_counts_ipv6_clients_by_their_64_network_too(
    stack: StackFactory, dev_server: Any, database: Database
) -> None:
    async with stack(dev_server, database, api=True, lockout_ip_max_failures=2) as built, built.http() as http:
        prefix = f"2001:db8:{uuid.uuid4().int % 65000:x}:{uuid.uuid4().int % 65000:x}"

        async def wrong(client: str) -> int:
            body = login_body(unique_email("nobody"), "Wrong-password-123!")
            return (await http.post("/access-tokens", json=body, headers=by(client))).status_code

        assert [await wrong(f"{prefix}::{n}") for n in (1, 2, 3)] == [401, 401, 429]
        assert await wrong(f"{prefix[:-1]}{'0' if prefix[-1] != '0' else '1'}::1") == 401  # another /64
