"""A copy of the signed-in customer's data: POST /customers/{ref}/data-exports starts one, GET lists them,
GET .../{id} downloads the archive (this service's extension of Glue; workflows/data_export.py,
accounts/data_exports.py)."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from accounts import data_exports
from accounts.models import Customer, DataExport, utcnow
from api import jsonapi
from api.auth import refuse_acting_agent
from api.deps import Accounts, SecretBoxDep, Sessions
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.limits import wait_words
from api.ownership import OwnAccount
from starter.errors import DataExportThrottled

router = APIRouter(tags=["data-exports"], dependencies=[GlueRequest])

COLLECTION = "/customers/{customer_reference}/data-exports"
ITEM = "/customers/{customer_reference}/data-exports/{export_id}"
TYPE = "data-exports"
# Not Spryker codes (this resource is this service's)
NOT_FOUND = GlueError(404, "1640", "Data export not found.")
THROTTLED_CODE = "1641"
EXPORT_ID = re.compile(r"[0-9a-f]{32}")  # uuid4 hex (starter/data_exports.py)


class DataExportData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["data-exports"]
    attributes: dict[str, Any] = {}


class DataExportRequest(BaseModel):
    data: DataExportData


def export_resource(request: Request, customer: Customer, row: DataExport) -> dict[str, Any]:
    attributes = {
        "status": row.status,
        "requestedAt": row.requested_at.isoformat(),
        "expiresAt": row.expires_at.isoformat(),
        "size": row.archive_size if row.status == data_exports.READY else None,
    }
    path = data_exports.download_path(customer.customer_reference, row.id)
    return jsonapi.resource(request, TYPE, row.id, attributes, path)


@router.post(COLLECTION, status_code=202, summary="Start a copy of the customer's data; a link is emailed")
async def request_export(
    request: Request, customer: OwnAccount, accounts: Accounts, body: DataExportRequest | None = None
) -> JSONResponse:
    refuse_acting_agent(request)  # a copy of everything is the customer's to ask for, not an agent's
    try:
        export_id = await accounts.data_exports.request(customer.customer_reference, channel="api", actor="customer")
    except DataExportThrottled as throttled:
        seconds = throttled.retry_after_seconds
        detail = f"A data export was requested recently. Please try again in {wait_words(seconds)}."
        raise GlueException(GlueError(429, THROTTLED_CODE, detail), headers={"Retry-After": str(seconds)}) from None
    path = data_exports.download_path(customer.customer_reference, export_id)
    resource = jsonapi.resource(request, TYPE, export_id, {"status": "preparing"}, path)
    return jsonapi.document(resource, status=202)


@router.get(COLLECTION, summary="The customer's data exports, the newest first")
async def list_exports(request: Request, customer: OwnAccount, sessions: Sessions) -> JSONResponse:
    rows = await data_exports.exports_of(sessions, customer.id)
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "data": [export_resource(request, customer, row) for row in rows],
            "links": {"self": f"{base}/customers/{customer.customer_reference}/data-exports"},
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.get(
    ITEM,
    summary="Download the archive (zip) while it lives; every download is audited",
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_export(
    request: Request, export_id: str, customer: OwnAccount, sessions: Sessions, box: SecretBoxDep
) -> Response:
    refuse_acting_agent(request)
    if not EXPORT_ID.fullmatch(export_id):  # no id of ours (and PostgreSQL refuses a NUL in a query)
        raise GlueException(NOT_FOUND)
    archive = await data_exports.download(sessions, box, customer=customer, export_id=export_id, now=utcnow())
    if archive is None:
        raise GlueException(NOT_FOUND)
    filename = f"data-export-{customer.customer_reference}-{export_id}.zip"
    return Response(
        archive,
        media_type="application/zip",
        # everything the shop knows of the person: no cache on the way may keep a copy
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
