"""The back-office JSON API (`/backoffice/...`) for staff with an API key (`Authorization: Bearer stf_...`).

Who may call what is decided in one place: `ROUTE_ACTIONS` names the action of every back-office route,
`backoffice.PERMISSIONS` the roles allowed to take it, and the `CurrentStaff` dependency checks
both before a handler runs (a route missing from the table is refused: fail closed). The use cases are
`backoffice.BackOffice`'s, shared with the web UI and the CLI, and each is recorded with the
staff member. Customer access tokens never open these routes, and staff keys never open customer routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from accounts.models import Order
from accounts.staff import StaffDirectory, StaffMember
from api import jsonapi
from api.auth import INVALID_TOKEN, MISSING_TOKEN
from api.jsonapi import GlueError, GlueException
from api.routes.addresses import FLAGS, address_attributes
from api.routes.backoffice_schemas import (
    CreatedCustomerDocument,
    CustomerDetailDocument,
    CustomerListDocument,
    EventListDocument,
    GlueErrors,
    GroupDocument,
    GroupEdits,
    GroupListDocument,
    NewCustomer,
    NewGroup,
    NewNote,
    NewPassword,
    NoteDocument,
    NoteListDocument,
    ProfileEdits,
    Reason,
    VerificationDocument,
)
from api.routes.passwords import policy_errors
from api.schemas import AddressAttributes, AddressUpdateAttributes
from backoffice import (
    MAX_PAGE,
    AddressNotFound,
    BackOffice,
    Conflict,
    CustomerDetail,
    CustomerDraft,
    CustomerFilter,
    CustomerNotFound,
    CustomerRow,
    Forbidden,
    Group,
    GroupNotFound,
    InvalidInput,
    LifecycleRun,
    Note,
    authorize,
)
from starter import (
    NotAwaitingVerification,
    NotLocked,
    PasswordRejected,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)

PREFIX = "/backoffice"
CUSTOMER = "/customers/{customer_reference}"
GROUP = "/customer-groups/{group_id}"

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
    ("GET", f"{PREFIX}{CUSTOMER}/notes"): "notes.list",
    ("POST", f"{PREFIX}{CUSTOMER}/notes"): "notes.add",
    ("POST", f"{PREFIX}{CUSTOMER}/verify"): "customers.verify",
    ("POST", f"{PREFIX}{CUSTOMER}/resend-verification"): "customers.resend_verification",
    ("POST", f"{PREFIX}{CUSTOMER}/unlock"): "customers.unlock",
    ("POST", f"{PREFIX}{CUSTOMER}/password-token"): "customers.send_password_token",
    ("POST", f"{PREFIX}{CUSTOMER}/password"): "customers.set_password",
    ("POST", f"{PREFIX}{CUSTOMER}/force-password-reset"): "customers.force_password_reset",
    ("GET", "/backoffice/customer-groups"): "groups.list",
    ("POST", "/backoffice/customer-groups"): "groups.manage",
    ("GET", f"{PREFIX}{GROUP}"): "groups.list",
    ("PATCH", f"{PREFIX}{GROUP}"): "groups.manage",
    ("DELETE", f"{PREFIX}{GROUP}"): "groups.manage",
    ("POST", f"{PREFIX}{GROUP}{CUSTOMER}"): "groups.assign",
    ("DELETE", f"{PREFIX}{GROUP}{CUSTOMER}"): "groups.assign",
    ("POST", "/backoffice/orders"): "orders.import",  # api/routes/orders.py
}

NOT_FOUND = GlueError(404, "402", "Customer not found.")
GROUP_NOT_FOUND = GlueError(404, "404", "Customer group not found.")
ADDRESS_NOT_FOUND = GlueError(404, "404", "Address not found.")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": GlueErrors, "description": "Invalid access token (001): a customer's token or a wrong key"},
    403: {"model": GlueErrors, "description": "Missing access token (002), or the staff role may not do this (403)"},
}

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)


def route_action(request: Request) -> str | None:
    """The action of the route this request matched, from ROUTE_ACTIONS."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_ACTIONS.get((method, str(path)))


async def _current_staff(request: Request, authorization: Annotated[str | None, Header()] = None) -> StaffMember:
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


CurrentStaff = Annotated[StaffMember, Depends(_current_staff)]


def _backoffice(request: Request) -> BackOffice:
    state = request.app.state
    return BackOffice(state.sessions, state.accounts, state.settings)


Office = Annotated[BackOffice, Depends(_backoffice)]


@contextmanager
def answers(customer_reference: str | None = None) -> Iterator[None]:
    """The back office's refusals as Glue errors (one map for every route here). Refusals of an action are
    sentences saying why nothing was done, as the web UI words them."""
    try:
        yield
    except InvalidInput as error:
        raise GlueException(GlueError(422, "901", f"{_camel(error.field)} => {error.message}")) from None
    except Forbidden as error:
        raise GlueException(GlueError(403, "403", str(error))) from None
    except (CustomerNotFound, RegistrationNotFound):
        raise GlueException(NOT_FOUND) from None
    except GroupNotFound:
        raise GlueException(GROUP_NOT_FOUND) from None
    except AddressNotFound:
        raise GlueException(ADDRESS_NOT_FOUND) from None
    except NotAwaitingVerification as error:
        raise GlueException(GlueError(409, "409", not_awaiting_verification(error, customer_reference))) from None
    except NotLocked as error:
        detail = f"{customer_reference} is not locked" if customer_reference else str(error)
        raise GlueException(GlueError(409, "409", sentence(detail))) from None
    except Conflict as error:
        raise GlueException(GlueError(409, "409", sentence(str(error)))) from None
    except ResendThrottled as throttled:
        detail = f"Not sent: wait {throttled.retry_after_seconds} s before sending another email."
        raise GlueException(GlueError(429, "429", detail)) from None
    except ResendLimitReached:
        detail = "Not sent: no more verification emails may be sent for this registration."
        raise GlueException(GlueError(429, "429", detail)) from None
    except PasswordRejected as rejected:
        raise GlueException(*policy_errors(rejected)) from None


def sentence(text: str) -> str:
    """An error message as a sentence: capital first letter, full stop."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def not_awaiting_verification(error: NotAwaitingVerification, customer_reference: str | None) -> str:
    """The 409 detail, e.g. "Not awaiting verification (DE--4 is verified)." when the state is known."""
    state = str(error)
    if state and state != customer_reference:
        return f"Not awaiting verification ({state})."
    return f"{customer_reference or 'The registration'} is not awaiting verification."


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _document(type_: str, id_: str, attributes: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"data": {"type": type_, "id": id_, "attributes": attributes}}, status_code=status,
                        media_type=jsonapi.MEDIA_TYPE)  # fmt: skip


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# --- customers: list, export, create, view, edit, delete ---------------------------------------------


def row_attributes(row: CustomerRow) -> dict[str, Any]:
    return {
        "customerReference": row.customer_reference,
        "email": row.email,
        "firstName": row.first_name,
        "lastName": row.last_name,
        "status": row.status,
        "channel": row.channel,
        "createdAt": row.created_at.isoformat(),
        "registeredAt": _iso(row.registered_at),
        "groups": row.groups,
    }


def _filter(
    status: str | None, group: str | None, q: str | None, sort: str, page: int, per_page: int
) -> CustomerFilter:
    with answers():
        return CustomerFilter(status=status, group=group, search=q, sort=sort, page=page, per_page=per_page)


FilterStatus = Annotated[
    Literal["verified", "unverified", "locked", "anonymized"] | None, Query(description="only customers in this status")
]
FilterGroup = Annotated[str | None, Query(max_length=70, description="only members of the group with this name")]
Search = Annotated[str | None, Query(max_length=255, description="part of the email, a name or the reference")]
Sort = Annotated[
    str, Query(description="created_at, email, last_name, customer_reference or registered_at; '-' = descending")
]


@router.get(
    "/customers",
    summary="List customers: filter by status and group, search, sort, page (format=csv: the CSV export)",
    response_model=CustomerListDocument,
    responses={200: {"content": {"text/csv": {}}}},
)
async def list_customers(
    request: Request,
    staff: CurrentStaff,
    office: Office,
    status: FilterStatus = None,
    group: FilterGroup = None,
    q: Search = None,
    sort: Sort = "-created_at",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(alias="perPage", ge=1, le=100)] = 20,
    format: Annotated[Literal["json", "csv"], Query(description="csv: every matching row (admin)")] = "json",
) -> Response:
    f = _filter(status, group, q, sort, page, per_page)
    if format == "csv":
        return await _csv(f, staff, office)
    with answers():
        result = await office.list_customers(f, staff)
    query = {k: v for k, v in {"status": status, "group": group, "q": q, "sort": sort}.items() if v is not None}
    base = f"{str(request.base_url).rstrip('/')}/backoffice/customers"

    def link(to: int) -> str:
        return f"{base}?{urlencode({**query, 'page': to, 'perPage': per_page})}"

    links = {"self": link(page)}
    if page < result.pages:
        links["next"] = link(page + 1)
    if page > 1:
        links["prev"] = link(page - 1)
    return JSONResponse(
        {
            "data": [
                {"type": "backoffice-customers", "id": row.customer_reference, "attributes": row_attributes(row)}
                for row in result.rows
            ],
            "meta": {"total": result.total, "page": page, "perPage": per_page, "pages": result.pages},
            "links": links,
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.get(
    "/customers.csv",
    summary="Export the filtered customer list as CSV (every matching row, with a header row)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, UTF-8"}},
)
async def export_customers(
    staff: CurrentStaff,
    office: Office,
    status: FilterStatus = None,
    group: FilterGroup = None,
    q: Search = None,
    sort: Sort = "-created_at",
) -> Response:
    return await _csv(_filter(status, group, q, sort, 1, 20), staff, office)


async def _csv(f: CustomerFilter, staff: StaffMember, office: BackOffice) -> Response:
    with answers():
        text = await office.export_csv(f, staff)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="customers.csv"', "Cache-Control": "no-store"},
    )


@router.post(
    "/customers",
    status_code=201,
    summary="Create a customer (channel backoffice, no password): verification email, optionally a set-password link",
    response_model=CreatedCustomerDocument,
)
async def create_customer(body: NewCustomer, staff: CurrentStaff, office: Office, request: Request) -> JSONResponse:
    draft = CustomerDraft(**body.model_dump(exclude={"send_password_token"}))
    with answers():
        created = await office.create_customer(draft, staff, send_password_token=body.send_password_token)
    accounts = request.app.state.accounts
    return _document(
        "backoffice-customers",
        created.customer_reference,
        {
            "customerReference": created.customer_reference,
            "createdAt": created.created_at.isoformat(),
            "channel": "backoffice",
            "passwordTokenSent": created.password_token_sent,
            "temporalUi": accounts.run_url(created.customer_reference),
        },
        status=201,
    )


def detail_attributes(detail: CustomerDetail) -> dict[str, Any]:
    customer = detail.customer
    return {
        "customerReference": customer.customer_reference,
        "email": customer.email,
        "salutation": customer.salutation,
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "gender": customer.gender,
        "dateOfBirth": _iso(customer.date_of_birth),
        "phone": customer.phone,
        "company": customer.company,
        "locale": customer.locale,
        "channel": customer.channel,
        "status": detail.status,
        "lockedUntil": _iso(detail.locked_until),
        "passwordSet": customer.password_hash is not None,
        "passwordResetRequired": customer.password_reset_required,
        "createdAt": customer.created_at.isoformat(),
        "updatedAt": customer.updated_at.isoformat(),
        "registeredAt": _iso(customer.registered_at),
        "anonymizedAt": _iso(customer.anonymized_at),
        "addresses": [{"uuid": entry.address.uuid, **address_attributes(entry)} for entry in detail.addresses],
        "orders": [order_summary(order) for order in detail.orders],
        "ordersTotal": detail.orders_total,
        "notes": [note_attributes(note) for note in detail.notes],
        "groups": [group_attributes(group) for group in detail.groups],
        "lifecycle": {"status": detail.lifecycle_status, "runs": [run_attributes(run) for run in detail.lifecycle]},
    }


def order_summary(order: Order) -> dict[str, Any]:
    return {
        "orderReference": order.order_reference,
        "createdAt": order.created_at.isoformat(),
        "status": order.status,
        "currency": order.currency,
        "grandTotal": order.totals.get("grandTotal"),
        "items": len(order.items),
    }


def run_attributes(run: LifecycleRun) -> dict[str, Any]:
    return {
        "kind": run.kind,
        "workflowId": run.workflow_id,
        "runId": run.run_id,
        "status": run.status,
        "stage": run.stage,
        "deadlines": {name: when.isoformat() for name, when in run.deadlines.items()},
        "pendingActions": run.pending_actions,
        "temporalUi": run.ui_url,
        "startedAt": _iso(run.started_at),
        "closedAt": _iso(run.closed_at),
    }


@router.get(
    CUSTOMER,
    summary="A customer: profile, addresses, orders, notes, groups and the live lifecycle from Temporal",
    response_model=CustomerDetailDocument,
)
async def customer_detail(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        detail = await office.customer_detail(customer_reference, staff)
    if detail is None:
        raise GlueException(NOT_FOUND)
    return _document("backoffice-customers", customer_reference, detail_attributes(detail))


@router.patch(
    CUSTOMER, summary="Edit a customer's profile (fields left out stay)", response_model=CustomerDetailDocument
)
async def edit_customer(
    customer_reference: str, body: ProfileEdits, staff: CurrentStaff, office: Office
) -> JSONResponse:
    with answers():
        await office.update_profile(customer_reference, body.model_dump(exclude_unset=True), staff)
        detail = await office.customer_detail(customer_reference, staff)
    assert detail is not None
    return _document("backoffice-customers", customer_reference, detail_attributes(detail))


@router.delete(CUSTOMER, status_code=204, summary="Delete (anonymize) a customer; notes and memberships go too")
async def delete_customer(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers():
        await office.delete_customer(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/addresses", status_code=201, summary="Add an address (the first becomes both defaults)")
async def add_address(
    customer_reference: str, body: AddressAttributes, staff: CurrentStaff, office: Office
) -> JSONResponse:
    with answers():
        entry = await office.add_address(
            customer_reference,
            body.model_dump(exclude=FLAGS),
            staff,
            default_billing=body.is_default_billing is True,
            default_shipping=body.is_default_shipping is True,
        )
    return _document("addresses", entry.address.uuid, address_attributes(entry), status=201)


@router.patch(
    f"{CUSTOMER}/addresses/{{address_uuid}}",
    summary="Change an address; isDefaultBilling/isDefaultShipping true makes it that default",
)
async def update_address(
    customer_reference: str, address_uuid: str, body: AddressUpdateAttributes, staff: CurrentStaff, office: Office
) -> JSONResponse:
    with answers():
        entry = await office.update_address(
            customer_reference,
            address_uuid,
            staff,
            values=body.model_dump(exclude_unset=True, exclude=FLAGS),
            default_billing=body.is_default_billing is True,
            default_shipping=body.is_default_shipping is True,
        )
    return _document("addresses", entry.address.uuid, address_attributes(entry))


@router.get(
    f"{CUSTOMER}/events",
    summary="The customer's audit trail: every lifecycle event with channel, actor and time, newest first",
    response_model=EventListDocument,
)
async def customer_events(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        events = await office.events(customer_reference, staff)
    return JSONResponse(
        {
            "data": [
                {"type": "customer-events", "id": str(e.id),
                 "attributes": {"event": e.event, "channel": e.channel, "actor": e.actor,
                                "occurredAt": e.occurred_at.isoformat(), "details": e.details}}
                for e in events
            ]
        },
        media_type=jsonapi.MEDIA_TYPE,
    )  # fmt: skip


# --- notes ---------------------------------------------------------------------------------------------


def note_attributes(note: Note) -> dict[str, Any]:
    return {"id": note.id, "author": note.author, "message": note.message, "createdAt": note.created_at.isoformat()}


@router.get(f"{CUSTOMER}/notes", summary="The customer's notes, newest first", response_model=NoteListDocument)
async def list_notes(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        notes = await office.notes(customer_reference, staff)
    return JSONResponse(
        {"data": [{"type": "customer-notes", "id": str(n.id), "attributes": note_attributes(n)} for n in notes]},
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.post(
    f"{CUSTOMER}/notes", status_code=201, summary="Add a note (author: the staff member)", response_model=NoteDocument
)
async def add_note(customer_reference: str, body: NewNote, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        note = await office.add_note(customer_reference, staff, body.message)
    return _document("customer-notes", str(note.id), note_attributes(note), status=201)


# --- customer groups -----------------------------------------------------------------------------------


def group_attributes(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "description": group.description, "members": group.members}


@router.get("/customer-groups", summary="Customer groups by name, with member counts", response_model=GroupListDocument)
async def list_groups(staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        groups = await office.list_groups(staff)
    return JSONResponse(
        {"data": [{"type": "customer-groups", "id": str(g.id), "attributes": group_attributes(g)} for g in groups]},
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.post(
    "/customer-groups",
    status_code=201,
    summary="Create a customer group (name unique, max 70; description max 255)",
    response_model=GroupDocument,
    responses={409: {"model": GlueErrors, "description": "the name is taken"}},
)
async def create_group(body: NewGroup, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        group = await office.create_group(body.name, body.description, staff)
    return _document("customer-groups", str(group.id), group_attributes(group), status=201)


@router.get(GROUP, summary="A customer group", response_model=GroupDocument)
async def get_group(group_id: int, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        group = await office.group(group_id, staff)
    return _document("customer-groups", str(group.id), group_attributes(group))


@router.patch(
    GROUP,
    summary="Rename and/or describe a customer group",
    response_model=GroupDocument,
    responses={409: {"model": GlueErrors, "description": "the new name is taken"}},
)
async def update_group(group_id: int, body: GroupEdits, staff: CurrentStaff, office: Office) -> JSONResponse:
    sent = body.model_fields_set
    with answers():
        group = await office.update_group(
            group_id,
            staff,
            new_name=body.name,
            description=body.description,
            clear_description="description" in sent and body.description is None,
        )
    return _document("customer-groups", str(group.id), group_attributes(group))


@router.delete(GROUP, status_code=204, summary="Delete a customer group (its members stay customers)")
async def delete_group(group_id: int, staff: CurrentStaff, office: Office) -> Response:
    with answers():
        await office.delete_group(group_id, staff)
    return Response(status_code=204)


@router.post(f"{GROUP}{CUSTOMER}", status_code=204, summary="Assign a customer to a group (idempotent)")
async def assign(group_id: int, customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers():
        await office.assign(customer_reference, group_id, staff)
    return Response(status_code=204)


@router.delete(f"{GROUP}{CUSTOMER}", status_code=204, summary="Remove a customer from a group (idempotent)")
async def unassign(group_id: int, customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers():
        await office.unassign(customer_reference, group_id, staff)
    return Response(status_code=204)


# --- lifecycle actions -------------------------------------------------------------------------------


@router.post(f"{CUSTOMER}/verify", summary="Verify manually (no email link)", response_model=VerificationDocument)
async def verify(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers(customer_reference):
        activation = await office.verify_manually(customer_reference, staff, body.reason)
    return _document(
        "customer-verification",
        customer_reference,
        {"registeredAt": activation.registered_at.isoformat(), "verifiedBy": staff.name},
    )


@router.post(f"{CUSTOMER}/resend-verification", status_code=204, summary="Send a fresh verification link")
async def resend(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.resend_verification(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/unlock", status_code=204, summary="Lift a sign-in lock")
async def unlock(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.unlock(customer_reference, staff, body.reason)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/password-token", status_code=204, summary="Email a set-password link")
async def password_token(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.send_password_token(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/password", status_code=204, summary="Set the password (customer notified; admin)")
async def set_password(customer_reference: str, body: NewPassword, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.set_password(customer_reference, staff, body.password)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/force-password-reset", status_code=204, summary="Force a password reset (admin)")
async def force_reset(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.force_password_reset(customer_reference, staff)
    return Response(status_code=204)
