"""Finding customers: `GET /backoffice/customers` (filtered, searched, sorted, paged) and its CSV export."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from accounts.staff import StaffMember
from api import jsonapi
from api.routes.backoffice.answers import answers, iso
from api.routes.backoffice.schemas import CustomerListDocument
from api.routes.backoffice.staff import ERRORS, PREFIX, CurrentStaff, Office
from backoffice import MAX_PAGE, BackOffice, CustomerFilter, CustomerRow

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)


def row_attributes(row: CustomerRow) -> dict[str, Any]:
    return {
        "customerReference": row.customer_reference,
        "email": row.email,
        "firstName": row.first_name,
        "lastName": row.last_name,
        "status": row.status,
        "channel": row.channel,
        "createdAt": row.created_at.isoformat(),
        "registeredAt": iso(row.registered_at),
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
