"""Order history: customers read their own orders; the shop's order system imports them (rules in accounts.orders)."""

from __future__ import annotations

from math import ceil
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from accounts import orders
from accounts.models import Order
from api import jsonapi
from api.auth import CurrentCustomer
from api.deps import Sessions
from api.jsonapi import GlueError, GlueException
from api.ownership import OwnAccount
from api.routes.backoffice import CurrentStaff

router = APIRouter(tags=["orders"])

NOT_FOUND = GlueError(404, "1101", "Cant find order by the given order reference")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_OFFSET = 1_000_000_000  # far beyond any history; keeps OFFSET inside what SQLite and PostgreSQL accept


def order_resource(request: Request, order: Order) -> dict[str, Any]:
    attributes = {
        "createdAt": order.created_at.isoformat(),
        "status": order.status,
        "currency": order.currency,
        "totals": order.totals,
        "items": order.items,
    }
    path = f"/orders/{quote(order.order_reference, safe='')}"
    return jsonapi.resource(request, "orders", order.order_reference, attributes, path)


@router.get("/customers/{customer_reference}/orders", summary="The signed-in customer's orders, newest first, paged")
async def list_orders(
    request: Request,
    customer: OwnAccount,
    sessions: Sessions,
    offset: Annotated[int, Query(alias="page[offset]", ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(alias="page[limit]", ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> JSONResponse:
    async with sessions() as session:
        page, total = await orders.list_orders(session, customer_id=customer.id, offset=offset, limit=limit)
    base = f"{str(request.base_url).rstrip('/')}/customers/{customer.customer_reference}/orders"
    links = {"self": f"{base}?page[offset]={offset}&page[limit]={limit}"}
    if offset + limit < total:
        links["next"] = f"{base}?page[offset]={offset + limit}&page[limit]={limit}"
    return JSONResponse(
        {
            "data": [order_resource(request, order) for order in page],
            "links": links,
            "meta": {"totalItems": total, "totalPages": ceil(total / limit)},
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.get("/orders/{order_reference}", summary="One of the signed-in customer's orders")
async def get_order(
    order_reference: str, request: Request, customer: CurrentCustomer, sessions: Sessions
) -> JSONResponse:
    async with sessions() as session:
        order = await orders.find_order(session, customer_id=customer.id, order_reference=order_reference)
    if order is None:
        raise GlueException(NOT_FOUND)
    return jsonapi.document(order_resource(request, order))


class OrderImport(BaseModel):
    # each order is validated on its own by accounts.orders, so one bad order does not refuse the rest
    orders: list[Any]


@router.post(
    "/backoffice/orders", tags=["backoffice"], summary="Import orders from the shop (upsert by orderReference)"
)
async def import_orders(body: OrderImport, staff: CurrentStaff, sessions: Sessions) -> JSONResponse:
    result = await orders.import_orders(sessions, body.orders)
    return JSONResponse(
        {
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "rejected": [{"index": index, "reason": reason} for index, reason in result.rejected],
        }
    )
