"""What a customer does over HTTP, one step at a time, so a fault can be put between any two steps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import httpx
from conftest import registration_body, token_from, unique_email

from .conftest import Harness

PASSWORD = "Vq8#nT2!pLm4-kettle"
NEW_PASSWORD = "Lantern-7#quiet-harbor"
JSONAPI = "application/vnd.api+json"
ANSWER_WITHIN = 15.0  # how long a storefront can wait for an answer during an outage


async def sign_up(http: httpx.AsyncClient, email: str | None = None) -> tuple[str, httpx.Response]:
    email = email or unique_email("fault")
    return email, await http.post("/customers", json=registration_body(email, PASSWORD))


async def registered(h: Harness, http: httpx.AsyncClient) -> tuple[str, str, str]:
    """A customer who signed up and received the verification email: (email, reference, token)."""
    email, created = await sign_up(http)
    assert created.status_code == 201, created.text
    token = token_from(await h.mail_to(email, "confirm"))
    return email, created.json()["data"]["id"], token


async def confirm(http: httpx.AsyncClient, token: str) -> httpx.Response:
    body = {"data": {"type": "customer-confirmation", "attributes": {"registrationKey": token}}}
    return await http.post("/customer-confirmation", json=body)


async def active(h: Harness, http: httpx.AsyncClient) -> tuple[str, str]:
    """A verified customer whose welcome email arrived: (email, reference)."""
    email, reference, token = await registered(h, http)
    confirmed = await confirm(http, token)
    assert confirmed.status_code == 204, confirmed.text
    await h.mail_to(email, "active")
    return email, reference


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    body = {"data": {"type": "access-tokens", "attributes": {"username": email, "password": password}}}
    return await http.post("/access-tokens", json=body, headers={"Content-Type": JSONAPI})


async def bearer(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    signed = await sign_in(http, email)
    assert signed.status_code == 201, signed.text
    return {"Authorization": f"Bearer {signed.json()['data']['attributes']['accessToken']}"}


async def forgot_password(http: httpx.AsyncClient, email: str) -> httpx.Response:
    body = {"data": {"type": "customer-forgotten-password", "attributes": {"email": email}}}
    return await http.post("/customer-forgotten-password", json=body)


async def restore_password(http: httpx.AsyncClient, key: str) -> httpx.Response:
    attributes = {"restorePasswordKey": key, "password": NEW_PASSWORD, "confirmPassword": NEW_PASSWORD}
    body = {"data": {"type": "customer-restore-password", "id": key, "attributes": attributes}}
    return await http.patch(f"/customer-restore-password/{key}", json=body)


async def change_email(http: httpx.AsyncClient, reference: str, auth: dict[str, str], new_email: str) -> httpx.Response:
    body: dict[str, Any] = {"data": {"type": "customers", "attributes": {"email": new_email, "password": PASSWORD}}}
    return await http.patch(f"/customers/{reference}", json=body, headers=auth)


async def confirm_email_change(http: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"data": {"type": "customer-email-change-confirmation", "attributes": {"key": key}}}
    return await http.post("/customer-email-change-confirmation", json=body)


async def delete(http: httpx.AsyncClient, reference: str, auth: dict[str, str]) -> httpx.Response:
    body = {"data": {"type": "customers", "attributes": {"password": PASSWORD}}}  # re-authenticated
    return await http.request("DELETE", f"/customers/{reference}", json=body, headers=auth)


async def fail_sign_ins(http: httpx.AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        answer = await sign_in(http, email, "not the password at all")
        assert answer.status_code == 401, answer.text


async def response_of(call: Awaitable[tuple[str, httpx.Response]]) -> httpx.Response:
    return (await call)[1]


async def timed(request: Awaitable[httpx.Response]) -> tuple[int | str, str | None, float, str]:
    """(status or what went wrong, Retry-After, seconds, body) of a request given a little more than
    ANSWER_WITHIN to answer."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(ANSWER_WITHIN + 5):
            response = await request
    except TimeoutError:
        return "no answer", None, time.monotonic() - started, ""
    except httpx.HTTPError as error:
        return type(error).__name__, None, time.monotonic() - started, ""
    return response.status_code, response.headers.get("retry-after"), time.monotonic() - started, response.text


__all__ = ["token_from", "unique_email"]
