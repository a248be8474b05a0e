"""Deleting an account over HTTP: DELETE /customers/{ref} anonymizes through the workflow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory, registration_body
from sqlalchemy import select
from test_login_http import PASSWORD, registered, sign_in

from accounts.models import Customer, DeviceToken

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def deletion(password: str = PASSWORD) -> dict[str, Any]:
    """DELETE's body: the current password (re-authentication, this service's extension of Glue)."""
    return {"data": {"type": "customers", "attributes": {"password": password}}}


async def test_delete_anonymizes_and_the_address_can_register_again(e2e: Stack) -> None:
    async with e2e.http() as http:
        email, reference = await registered(e2e, http)
        other_email, other = await registered(e2e, http)
        bearer = {"Authorization": f"Bearer {(await sign_in(http, email)).json()['data']['attributes']['accessToken']}"}

        foreign = await http.delete(f"/customers/{other}", headers=bearer)
        assert (foreign.status_code, foreign.json()["errors"][0]["code"]) == (403, "411")

        deleted = await http.request("DELETE", f"/customers/{reference}", json=deletion(), headers=bearer)
        assert (deleted.status_code, deleted.content) == (204, b"")
        await e2e.mail_to(email, "deleted")

        # the old token is dead, so a second DELETE is answered harmlessly with 401 001
        again = await http.request("DELETE", f"/customers/{reference}", json=deletion(), headers=bearer)
        assert (again.status_code, again.json()["errors"][0]["code"]) == (401, "001")
        assert (await sign_in(http, email)).status_code == 401
        async with e2e.database.sessions() as session:
            row = (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()
        assert row.anonymized_at is not None and row.email != email and row.first_name is None
        assert row.password_hash is None
        async with e2e.database.sessions() as session:  # the device token of the sign-in above went too
            devices = (await session.scalars(select(DeviceToken).where(DeviceToken.customer_id == row.id))).all()
        assert devices == []

        body = registration_body(email, PASSWORD)
        again_registered = await http.post("/customers", json=body)
        assert again_registered.status_code == 201
        assert again_registered.json()["data"]["id"] != reference
        assert (await sign_in(http, other_email)).status_code == 201  # the other customer is untouched
