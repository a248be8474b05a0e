"""Who may call what: `ROUTE_ACTIONS` names the action of every back-office route, `backoffice.PERMISSIONS`
the roles allowed to take it, and the `CurrentStaff` dependency checks both before a handler runs (a route
missing from the table is refused: fail closed).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from accounts.staff import StaffDirectory, StaffMember
from api.auth import INVALID_TOKEN, MISSING_TOKEN
from api.jsonapi import GlueError, GlueException
from api.routes.backoffice.answers import answers
from api.routes.backoffice.schemas import GlueErrors
from backoffice import BackOffice, authorize

PREFIX = "/backoffice"
CUSTOMER = "/customers/{customer_reference}"
GROUP = "/customer-groups/{group_id}"
IMPORT = "/imports/{import_id}"

# Every back-office API route and the action it takes (backoffice.PERMISSIONS: who may).
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("GET", "/backoffice/customers"): "customers.list",
    ("GET", "/backoffice/customers.csv"): "customers.export",
    ("POST", "/backoffice/customers"): "customers.create",
    ("GET", f"{PREFIX}{CUSTOMER}"): "customers.view",
    ("PATCH", f"{PREFIX}{CUSTOMER}"): "customers.edit",
    ("DELETE", f"{PREFIX}{CUSTOMER}"): "customers.delete",
    ("POST", f"{PREFIX}{CUSTOMER}/addresses"): "customers.edit",
    ("PATCH", f"{PREFIX}{CUSTOMER}/addresses/{{address_uuid}}"): "customers.edit",
    ("GET", f"{PREFIX}{CUSTOMER}/events"): "customers.events",
    ("GET", f"{PREFIX}{CUSTOMER}/sessions"): "customers.view",
    ("DELETE", f"{PREFIX}{CUSTOMER}/sessions/{{session_id}}"): "customers.end_session",
    ("GET", f"{PREFIX}{CUSTOMER}/assists"): "customers.view",
    ("DELETE", f"{PREFIX}{CUSTOMER}/assists/{{assist_id}}"): "assists.end",
    ("GET", f"{PREFIX}{CUSTOMER}/notes"): "notes.list",
    ("POST", f"{PREFIX}{CUSTOMER}/notes"): "notes.add",
    ("POST", f"{PREFIX}{CUSTOMER}/verify"): "customers.verify",
    ("POST", f"{PREFIX}{CUSTOMER}/resend-verification"): "customers.resend_verification",
    ("POST", f"{PREFIX}{CUSTOMER}/unlock"): "customers.unlock",
    ("POST", f"{PREFIX}{CUSTOMER}/inactivity-exemption"): "customers.exempt_inactivity",
    ("POST", f"{PREFIX}{CUSTOMER}/password-token"): "customers.send_password_token",
    ("POST", f"{PREFIX}{CUSTOMER}/password"): "customers.set_password",
    ("POST", f"{PREFIX}{CUSTOMER}/force-password-reset"): "customers.force_password_reset",
    ("POST", f"{PREFIX}{CUSTOMER}/mfa/remove"): "customers.remove_mfa",
    ("POST", f"{PREFIX}{CUSTOMER}/data-exports"): "customers.export_data",
    ("GET", "/backoffice/customer-groups"): "groups.list",
    ("POST", "/backoffice/customer-groups"): "groups.manage",
    ("GET", f"{PREFIX}{GROUP}"): "groups.list",
    ("PATCH", f"{PREFIX}{GROUP}"): "groups.manage",
    ("DELETE", f"{PREFIX}{GROUP}"): "groups.manage",
    ("POST", f"{PREFIX}{GROUP}{CUSTOMER}"): "groups.assign",
    ("DELETE", f"{PREFIX}{GROUP}{CUSTOMER}"): "groups.assign",
    ("POST", "/backoffice/orders"): "orders.import",  # api/routes/orders.py
    ("POST", "/backoffice/imports"): "import_customers",
    ("GET", "/backoffice/imports"): "import_customers",
    ("GET", f"{PREFIX}{IMPORT}"): "import_customers",
    ("POST", f"{PREFIX}{IMPORT}/cancel"): "import_customers",
    ("GET", f"{PREFIX}{IMPORT}/rejected.csv"): "import_customers",
}

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": GlueErrors, "description": "Invalid access token (001): a customer's token or a wrong key"},
    403: {"model": GlueErrors, "description": "Missing access token (002), or the staff role may not do this (403)"},
}


def route_action(request: Request) -> str | None:
    """The action of the route this request matched, from ROUTE_ACTIONS."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_ACTIONS.get((method, str(path)))


async def current_staff(request: Request, authorization: Annotated[str | None, Header()] = None) -> StaffMember:
    if not authorization:
        raise GlueException(MISSING_TOKEN)
    scheme, _, key = authorization.partition(" ")
    directory: StaffDirectory = request.app.state.staff
    member = await directory.authenticate(key.strip()) if scheme.lower() == "bearer" else None
    if member is None:
        raise GlueException(INVALID_TOKEN)
    action = route_action(request)
    if action is None:
        raise GlueException(GlueError(403, "403", "This back-office route has no permission entry."))
    with answers():
        authorize(member, action)
    return member


CurrentStaff = Annotated[StaffMember, Depends(current_staff)]


def _backoffice(request: Request) -> BackOffice:
    state = request.app.state
    return BackOffice(state.sessions, state.accounts, state.settings)


Office = Annotated[BackOffice, Depends(_backoffice)]
