"""Who may call which back-office route: anonymous, a customer, support and admin against every route.

The table below is the test's own statement of the roles; it must name every back-office route in the
OpenAPI schema, so a new route without an entry fails here. Requests use references and ids that do
not exist (or bodies that fail validation), so an allowed call answers 404/422 without changing data,
which still proves it got past the role check.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from conftest import Database, Stack, StackFactory
from test_backoffice_http import staff_key
from test_login_http import registered, sign_in

from accounts.settings import Settings
from api.app import create_app
from api.envelope import resource_type
from api.routes.backoffice import ROUTE_ACTIONS
from backoffice import PERMISSIONS

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    role: str  # the least role that may call it: support (then admin too) or admin
    allowed_status: int  # what an allowed call answers with the request below
    body: dict[str, Any] | None = field(default=None)


CUSTOMER = "/backoffice/customers/{customer_reference}"
GROUP = "/backoffice/customer-groups/{group_id}"
IMPORT = "/backoffice/imports/{import_id}"
ROUTES: dict[tuple[str, str], Case] = {
    ("GET", "/backoffice/customers"): Case("support", 200),
    ("GET", "/backoffice/customers.csv"): Case("admin", 200),
    ("POST", "/backoffice/customers"): Case("support", 422, {}),
    ("GET", CUSTOMER): Case("support", 404),
    ("PATCH", CUSTOMER): Case("support", 404, {}),
    ("DELETE", CUSTOMER): Case("admin", 404),
    ("POST", f"{CUSTOMER}/addresses"): Case("support", 422, {}),
    ("PATCH", f"{CUSTOMER}/addresses/{{address_uuid}}"): Case("support", 404, {}),
    ("GET", f"{CUSTOMER}/events"): Case("support", 404),
    ("GET", f"{CUSTOMER}/sessions"): Case("support", 404),
    ("DELETE", f"{CUSTOMER}/sessions/{{session_id}}"): Case("support", 404),
    ("GET", f"{CUSTOMER}/assists"): Case("support", 404),
    ("DELETE", f"{CUSTOMER}/assists/{{assist_id}}"): Case("admin", 404),
    ("GET", f"{CUSTOMER}/notes"): Case("support", 404),
    ("POST", f"{CUSTOMER}/notes"): Case("support", 404, {"message": "hello"}),
    ("POST", f"{CUSTOMER}/verify"): Case("support", 404, {"reason": "ticket"}),
    ("POST", f"{CUSTOMER}/resend-verification"): Case("support", 404),
    ("POST", f"{CUSTOMER}/unlock"): Case("support", 404, {"reason": "ticket"}),
    ("POST", f"{CUSTOMER}/password-token"): Case("support", 404),
    ("POST", f"{CUSTOMER}/password"): Case("admin", 404, {"password": "Lantern-7#quiet-harbor"}),
    ("POST", f"{CUSTOMER}/force-password-reset"): Case("admin", 404),
    ("POST", f"{CUSTOMER}/mfa/remove"): Case("support", 404, {"reason": "ticket"}),
    ("POST", f"{CUSTOMER}/data-exports"): Case("support", 404),
    ("POST", f"{CUSTOMER}/inactivity-exemption"): Case("support", 404, {"reason": "ticket"}),
    ("GET", "/backoffice/customer-groups"): Case("support", 200),
    ("POST", "/backoffice/customer-groups"): Case("admin", 422, {}),
    ("GET", GROUP): Case("support", 404),
    ("PATCH", GROUP): Case("admin", 404, {"description": "x"}),
    ("DELETE", GROUP): Case("admin", 404),
    ("POST", f"{GROUP}/customers/{{customer_reference}}"): Case("support", 404),
    ("DELETE", f"{GROUP}/customers/{{customer_reference}}"): Case("support", 404),
    ("POST", "/backoffice/orders"): Case("admin", 200, {"orders": []}),
    ("POST", "/backoffice/imports"): Case("admin", 422),  # no file
    ("GET", "/backoffice/imports"): Case("admin", 200),
    ("GET", IMPORT): Case("admin", 404),
    ("POST", f"{IMPORT}/cancel"): Case("admin", 404),
    ("GET", f"{IMPORT}/rejected.csv"): Case("admin", 404),
}


def documented_back_office_routes() -> set[tuple[str, str]]:
    schema = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/backoffice")
        for method in operations
    }


def test_every_back_office_route_has_an_entry_and_the_same_roles_as_the_permission_map() -> None:
    routes = documented_back_office_routes()
    assert routes == set(ROUTES), f"routes without an entry: {routes - set(ROUTES)}; gone: {set(ROUTES) - routes}"
    assert set(ROUTE_ACTIONS) == set(ROUTES)
    for route, case in ROUTES.items():
        roles = PERMISSIONS[ROUTE_ACTIONS[route]] - {"agent"}  # an agent reads customers (issue 18)
        assert roles == ({"admin"} if case.role == "admin" else {"admin", "support"}), route


@pytest_asyncio.fixture
async def e2e(stack: StackFactory, dev_server: Any, database: Database) -> AsyncIterator[Stack]:
    async with stack(dev_server, database, api=True) as built:
        yield built


def concrete(path: str) -> str:
    return path.format(
        customer_reference="DE--0",
        group_id=999_999_999,
        address_uuid=uuid.uuid4(),
        import_id="imp_0000000000000000",
        session_id="0" * 32,
        assist_id="0" * 32,
    )


async def test_the_authorization_matrix(e2e: Stack) -> None:
    support = {"Authorization": f"Bearer {await staff_key(e2e, 'matrix-support', 'support')}"}
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'matrix-admin', 'admin')}"}
    failures = []
    async with e2e.http() as http:
        email, _ = await registered(e2e, http)
        token = (await sign_in(http, email)).json()["data"]["attributes"]["accessToken"]
        customer = {"Authorization": f"Bearer {token}"}
        for (method, path), case in ROUTES.items():
            url = concrete(path)

            async def call(headers: dict[str, str], url: str = url, method: str = method, case: Case = case) -> Any:
                response = await http.request(method, url, json=case.body, headers=headers)
                errors = response.json().get("errors") if "json" in response.headers.get("content-type", "") else None
                return response.status_code, errors[0]["code"] if errors else None

            expected = {
                "anonymous": (403, "002"),
                "customer": (401, "001"),
                "support": (case.allowed_status, None) if case.role == "support" else (403, "403"),
                "admin": (case.allowed_status, None),
            }
            answers = {
                "anonymous": await call({}),
                "customer": await call(customer),
                "support": await call(support),
                "admin": await call(admin),
            }
            for caller, (status, code) in expected.items():
                got_status, got_code = answers[caller]
                if got_status != status or (code is not None and got_code != code):
                    failures.append(f"{caller} {method} {path}: {answers[caller]}, expected {(status, code)}")
    assert not failures, "\n".join(failures)


async def test_staff_keys_never_open_customer_routes(e2e: Stack) -> None:
    admin = {"Authorization": f"Bearer {await staff_key(e2e, 'matrix-admin', 'admin')}"}
    async with e2e.http() as http:
        _, reference = await registered(e2e, http)
        routes = [
            ("GET", "/customers"),
            ("GET", f"/customers/{reference}"),
            ("PATCH", f"/customers/{reference}"),
            ("DELETE", f"/customers/{reference}"),
            ("GET", f"/customers/{reference}/addresses"),
            ("POST", f"/customers/{reference}/addresses"),
            ("GET", f"/customers/{reference}/orders"),
            ("GET", "/orders/ORD-1"),
            ("PATCH", f"/customer-password/{reference}"),
        ]
        answers = {
            route: await http.request(route[0], route[1], json=envelope(route[1], reference), headers=admin)
            for route in routes
        }
        still_there = await http.get(f"/backoffice/customers/{reference}", headers=admin)
    assert {route: (r.status_code, r.json()["errors"][0]["code"]) for route, r in answers.items()} == {
        route: (401, "001") for route in routes
    }
    assert still_there.json()["data"]["attributes"]["status"] == "verified"


def envelope(path: str, reference: str) -> dict[str, Any]:
    """A body Glue's envelope check lets through, so that what answers is the token check."""
    template = path.replace(reference, "{ref}").replace("ORD-1", "{ref}")
    return {"data": {"type": resource_type(template), "attributes": {}}}
