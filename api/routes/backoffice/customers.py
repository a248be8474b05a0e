"""One customer: create, view, edit, delete, addresses and the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from accounts.inactivity import Standing
from accounts.models import Order
from api import jsonapi
from api.jsonapi import GlueError, GlueException
from api.routes.addresses import FLAGS, address_attributes
from api.routes.backoffice.answers import NOT_FOUND, answers, document, iso
from api.routes.backoffice.groups_notes import group_attributes, note_attributes
from api.routes.backoffice.schemas import (
    CreatedCustomerDocument,
    CustomerDetailDocument,
    EventListDocument,
    NewCustomer,
    ProfileEdits,
)
from api.routes.backoffice.staff import CUSTOMER, ERRORS, PREFIX, CurrentStaff, Office
from api.routes.customer_sessions import NOT_FOUND as NOT_FOUND_SESSION  # one answer for both: 404 1630
from api.schemas import AddressAttributes, AddressUpdateAttributes
from backoffice import CustomerDetail, CustomerDraft, LifecycleRun, SessionNotFound

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)
NOT_FOUND_ASSIST = GlueError(404, "404", "No running assistance session with this id for this customer.")


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
    return document(
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
        "dateOfBirth": iso(customer.date_of_birth),
        "phone": customer.phone,
        "company": customer.company,
        "locale": customer.locale,
        "channel": customer.channel,
        "status": detail.status,
        "lockedUntil": iso(detail.locked_until),
        "passwordSet": customer.password_hash is not None,
        "passwordResetRequired": customer.password_reset_required,
        "createdAt": customer.created_at.isoformat(),
        "updatedAt": customer.updated_at.isoformat(),
        "registeredAt": iso(customer.registered_at),
        "anonymizedAt": iso(customer.anonymized_at),
        "addresses": [{"uuid": entry.address.uuid, **address_attributes(entry)} for entry in detail.addresses],
        "orders": [order_summary(order) for order in detail.orders],
        "ordersTotal": detail.orders_total,
        "notes": [note_attributes(note) for note in detail.notes],
        "groups": [group_attributes(group) for group in detail.groups],
        "lifecycle": {"status": detail.lifecycle_status, "runs": [run_attributes(run) for run in detail.lifecycle]},
        "mfa": [{"type": kind, "status": status} for kind, status in detail.mfa],
        "inactivity": inactivity_attributes(detail.inactivity) if detail.inactivity is not None else None,
    }


def inactivity_attributes(standing: Standing) -> dict[str, Any]:
    return {
        "stage": standing.stage,
        "since": iso(standing.since),
        "warningDue": iso(standing.warning_due),
        "retirementDue": iso(standing.retirement_due),
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
        "startedAt": iso(run.started_at),
        "closedAt": iso(run.closed_at),
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
    return document("backoffice-customers", customer_reference, detail_attributes(detail))


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
    return document("backoffice-customers", customer_reference, detail_attributes(detail))


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
    return document("addresses", entry.address.uuid, address_attributes(entry), status=201)


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
    return document("addresses", entry.address.uuid, address_attributes(entry))


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


@router.get(f"{CUSTOMER}/sessions", summary="Where the customer is signed in, the most recently used first")
async def customer_sessions(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        rows = await office.customer_sessions(customer_reference, staff)
    return JSONResponse(
        {
            "data": [
                {"type": "customer-sessions", "id": row.family_id,
                 "attributes": {"device": row.device, "networkPrefix": row.network_prefix,
                                "createdAt": row.created_at.isoformat(), "lastUsedAt": row.last_used_at.isoformat()}}
                for row in rows
            ]
        },
        media_type=jsonapi.MEDIA_TYPE,
    )  # fmt: skip


@router.delete(
    f"{CUSTOMER}/sessions/{{session_id}}", status_code=204, summary="End one of the customer's sessions (audited)"
)
async def end_customer_session(
    customer_reference: str, session_id: str, staff: CurrentStaff, office: Office
) -> Response:
    try:
        with answers():
            await office.end_customer_session(customer_reference, session_id, staff)
    except SessionNotFound:
        raise GlueException(NOT_FOUND_SESSION) from None
    return Response(status_code=204)


@router.get(f"{CUSTOMER}/assists", summary="The customer's running agent assistance sessions, newest first")
async def customer_assists(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        rows = await office.assist_sessions(customer_reference, staff)
    return JSONResponse(
        {
            "data": [
                {"type": "agent-assists", "id": row.id,
                 "attributes": {"agent": row.agent, "startedAt": row.started_at.isoformat(),
                                "expiresAt": row.expires_at.isoformat()}}
                for row in rows
            ]
        },
        media_type=jsonapi.MEDIA_TYPE,
    )  # fmt: skip


@router.delete(
    f"{CUSTOMER}/assists/{{assist_id}}",
    status_code=204,
    summary="End an agent's assistance session now (admin; its token is refused from then on)",
)
async def end_customer_assist(customer_reference: str, assist_id: str, staff: CurrentStaff, office: Office) -> Response:
    try:
        with answers():
            await office.end_assist(customer_reference, assist_id, staff)
    except SessionNotFound:
        raise GlueException(NOT_FOUND_ASSIST) from None
    return Response(status_code=204)
