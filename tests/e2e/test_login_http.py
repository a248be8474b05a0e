"""Sign-in end to end over HTTP: access and refresh tokens, JWKS, OAuth, lockout answers, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, registration_body, token_from, unique_email
from sqlalchemy import update

from accounts.models import Customer

pytestmark = pytest.mark.e2e
PASSWORD = "Vq8#nT2!pLm4-kettle"
JSONAPI = "application/vnd.api+json"


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True, lockout_max_failures=4) as built:
        yield built


async def registered(stack: Stack, http: httpx.AsyncClient, *, confirm: bool = True) -> tuple[str, str]:
    email = unique_email()
    created = await http.post("/customers", json=registration_body(email, PASSWORD))
    assert created.status_code == 201, created.text
    key = token_from(await stack.mail_to(email, "confirm"))
    if confirm:
        confirmation = {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": key}}}
        assert (await http.post("/customer-confirmation", json=confirmation)).status_code == 204
    return email, created.json()["data"]["id"]


def login_body(username: Any, password: Any) -> dict[str, Any]:
    return {"data": {"type": "access-tokens", "attributes": {"username": username, "password": password}}}


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/access-tokens", json=login_body(email, password), headers={"Content-Type": JSONAPI})


async def sign_in_after_lift(stack: Stack, http: httpx.AsyncClient, email: str) -> httpx.Response:
    """The sign-in right after a lock was lifted from another process (support's CLI, another API process):
    the API's memory of refusals lets go within ACCOUNTS_LOCKOUT_REFUSAL_MEMORY (accounts/refusals.py)."""
    deadline = asyncio.get_running_loop().time() + stack.settings.lockout_refusal_memory.total_seconds() + 1
    while (answer := await sign_in(http, email)).status_code == 429 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return answer


async def test_sign_in_read_the_account_and_verify_the_token_with_the_published_keys(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        response = await sign_in(http, email.upper())  # addresses are case-insensitive
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        assert data["type"] == "access-tokens" and data["links"]["self"].endswith("/access-tokens")
        tokens = data["attributes"]
        assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 28800
        bearer = {"Authorization": f"Bearer {tokens['accessToken']}"}

        mine = await http.get("/customers", headers=bearer)
        assert mine.status_code == 200
        assert [c["id"] for c in mine.json()["data"]] == [reference]
        assert mine.json()["links"]["self"] == f"{e2e.api_url}/customers"
        one = await http.get(f"/customers/{reference}", headers=bearer)
        assert one.status_code == 200 and one.json()["data"]["attributes"]["email"] == email

        other = await http.get("/customers/DE--424242", headers=bearer)
        assert (other.status_code, other.json()["errors"][0]["code"]) == (403, "411")
        missing = await http.get(f"/customers/{reference}")
        assert (missing.status_code, missing.json()["errors"][0]) == (
            403,
            {"status": 403, "code": "002", "detail": "Missing access token."},
        )
        forged = await http.get(f"/customers/{reference}", headers={"Authorization": "Bearer x.y.z"})
        assert (forged.status_code, forged.json()["errors"][0]["code"]) == (401, "001")
        both = await http.get(
            f"/customers/{reference}", headers={**bearer, "X-Anonymous-Customer-Unique-Id": "guest-1"}
        )
        assert (both.status_code, both.json()["errors"][0]["code"]) == (400, "005")

        # another service verifies our tokens with nothing but the published keys and a standard library
        jwks = (await http.get("/.well-known/jwks.json")).json()
        header = jwt.get_unverified_header(tokens["accessToken"])
        key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        claims = jwt.decode(tokens["accessToken"], jwt.PyJWK(key).key, algorithms=["RS256"], audience="shop-storefront")
        assert claims["sub"] == reference

        # a password change bumps the token version: every earlier access token dies
        async with e2e.database.sessions.begin() as session:
            await session.execute(
                update(Customer).where(Customer.customer_reference == reference).values(token_version=1)
            )
        revoked = await http.get("/customers", headers=bearer)
        assert (revoked.status_code, revoked.json()["errors"][0]["code"]) == (401, "001")


async def test_refresh_tokens_rotate_and_revoke(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        first = (await sign_in(http, email)).json()["data"]["attributes"]

        def body(token: str) -> dict[str, Any]:
            return {"data": {"type": "refresh-tokens", "attributes": {"refreshToken": token}}}

        refreshed = await http.post("/refresh-tokens", json=body(first["refreshToken"]))
        assert refreshed.status_code == 201
        second = refreshed.json()["data"]["attributes"]
        assert second["refreshToken"] != first["refreshToken"] and second["accessToken"]
        assert (
            await http.get("/customers", headers={"Authorization": f"Bearer {second['accessToken']}"})
        ).status_code == 200

        reused = await http.post("/refresh-tokens", json=body(first["refreshToken"]))
        assert (reused.status_code, reused.json()["errors"][0]) == (
            401,
            {"status": 401, "code": "004", "detail": "Failed to refresh token."},
        )

        # the replay ended the family: its newest access token dies with it
        assert (
            await http.get("/customers", headers={"Authorization": f"Bearer {second['accessToken']}"})
        ).status_code == 401

        other_login = (await sign_in(http, email)).json()["data"]["attributes"]
        logged_out = {"Authorization": f"Bearer {other_login['accessToken']}"}
        assert (
            await http.delete(f"/refresh-tokens/{other_login['refreshToken']}", headers=logged_out)
        ).status_code == 204
        assert (await http.post("/refresh-tokens", json=body(other_login["refreshToken"]))).status_code == 401
        # the session's access token ends with it (its `sid` names the family: accounts/customer_sessions.py)
        assert (await http.get("/customers", headers=logged_out)).status_code == 401
        still_in = (await sign_in(http, email)).json()["data"]["attributes"]
        bearer = {"Authorization": f"Bearer {still_in['accessToken']}"}
        assert (await http.delete("/refresh-tokens/not-a-token", headers=bearer)).status_code == 204

        third = (await sign_in(http, email)).json()["data"]["attributes"]
        assert (await http.delete("/refresh-tokens/mine", headers=bearer)).status_code == 204
        assert (await http.post("/refresh-tokens", json=body(third["refreshToken"]))).status_code == 401


async def test_the_oauth_token_endpoint_answers_in_oauth_format(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        granted = await http.post("/token", data={"grant_type": "password", "username": email, "password": PASSWORD})
        assert granted.status_code == 200
        tokens = granted.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 28800
        assert granted.headers["cache-control"] == "no-store"
        refreshed = await http.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200 and refreshed.json()["refresh_token"] != tokens["refresh_token"]
        wrong = await http.post("/token", data={"grant_type": "password", "username": email, "password": "nope"})
        assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
        odd = await http.post("/token", data={"grant_type": "client_credentials"})
        assert (odd.status_code, odd.json()["error"]) == (400, "unsupported_grant_type")


async def test_unknown_unverified_and_wrong_password_get_the_same_answer(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        unverified, _ = await registered(e2e, http, confirm=False)
        answers = [
            await sign_in(http, email, "wrong password!"),
            await sign_in(http, unique_email("nobody"), PASSWORD),
            await sign_in(http, unverified, PASSWORD),
        ]
    assert {(a.status_code, a.text) for a in answers} == {
        (
            401,
            json.dumps(
                {"errors": [{"status": 401, "code": "003", "detail": "Failed to authenticate user."}]},
                separators=(",", ":"),
            ),
        )
    }


async def test_a_locked_account_answers_429_without_checking_the_password(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        for _ in range(4):
            assert (await sign_in(http, email, "wrong password!")).status_code == 401
        blocked = await sign_in(http, email)
        assert blocked.status_code == 429
        assert blocked.json()["errors"][0]["code"] == "4401"
        assert "Please wait 6 minutes before trying again." in blocked.json()["errors"][0]["detail"]
        notice = await e2e.mail_to(email, "paused")
        assert "/password/forgotten" in notice.text
        # support lifts it at once (from a process of its own: this API lets go within its refusal memory)
        await e2e.accounts.logins.unlock(reference, agent="alice", reason="verified caller")
        assert (await sign_in_after_lift(e2e, http, email)).status_code == 201


BAD_LOGINS: list[tuple[str, Any, str]] = [
    (
        "missing password",
        {"data": {"type": "access-tokens", "attributes": {"username": "a@example.com"}}},
        "password =>",
    ),
    ("non-email username", login_body("not an email", PASSWORD), "username =>"),
    ("1 MB password", login_body("a@example.com", "x" * 1_000_000), "password =>"),
    ("number as username", login_body(42, PASSWORD), "username =>"),
]


@pytest.mark.parametrize(("case", "body", "detail"), BAD_LOGINS, ids=[c[0] for c in BAD_LOGINS])
async def test_bad_sign_in_input_gets_901(e2e: Stack, case: str, body: Any, detail: str) -> None:
    async with e2e.http() as http:
        response = await http.post("/access-tokens", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "901"
    assert any(e["detail"].startswith(detail) for e in response.json()["errors"])


async def test_wrong_content_type_and_concurrent_sign_ins_never_500(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        form = await http.post(
            "/access-tokens", content=b"username=x&password=y", headers={"Content-Type": "text/plain"}
        )
        assert (form.status_code, form.json()["errors"]) == (400, [{"status": 400, "detail": "Post data is invalid."}])
        within = await asyncio.gather(*(sign_in(http, email) for _ in range(4)))
        beyond = await asyncio.gather(*(sign_in(http, email) for _ in range(8)))
    assert {a.status_code for a in within} == {201}
    # in-flight verifications hold reservations: past the threshold even right passwords wait
    assert {a.status_code for a in beyond} <= {201, 429} and 201 in {a.status_code for a in beyond}
