"""Where the signed-in customer is signed in: GET /customers/{ref}/sessions and DELETE of one (this
service's extension of Glue; rules in accounts/customer_sessions.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from accounts.models import Customer, CustomerSession
from api import jsonapi
from api.deps import Accounts
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.ownership import OwnAccount

router = APIRouter(tags=["customer-sessions"], dependencies=[GlueRequest])

COLLECTION = "/customers/{customer_reference}/sessions"
ITEM = "/customers/{customer_reference}/sessions/{session_id}"
TYPE = "customer-sessions"
# Not a Spryker code (this resource is this service's): a session that is not the customer's, or over.
NOT_FOUND = GlueError(404, "1630", "Customer session not found.")


def session_resource(request: Request, customer: Customer, row: CustomerSession) -> dict[str, object]:
    attributes = {
        "device": row.device,
        "networkPrefix": row.network_prefix,
        "createdAt": row.created_at.isoformat(),
        "lastUsedAt": row.last_used_at.isoformat(),
        "current": row.family_id == getattr(request.state, "session_id", None),
    }
    path = f"/customers/{customer.customer_reference}/sessions/{row.family_id}"
    return jsonapi.resource(request, TYPE, row.family_id, attributes, path)


@router.get(COLLECTION, summary="Where the signed-in customer is signed in, the most recently used first")
async def list_sessions(request: Request, customer: OwnAccount, accounts: Accounts) -> JSONResponse:
    rows = await accounts.customer_sessions.live(customer.id)
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "data": [session_resource(request, customer, row) for row in rows],
            "links": {"self": f"{base}/customers/{customer.customer_reference}/sessions"},
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.delete(ITEM, status_code=204, summary="End one session: its refresh and access tokens stop working")
async def end_session(session_id: str, customer: OwnAccount, accounts: Accounts) -> Response:
    if not await accounts.customer_sessions.end(customer.id, session_id):
        raise GlueException(NOT_FOUND)
    return Response(status_code=204)
