"""Customer imports (issue 13): upload a Spryker `customer.csv`, follow the import, cancel it, fetch the
rejected rows. Admin only (`import_customers`). The file is posted as multipart form data and bounded by
`ACCOUNTS_IMPORT_MAX_BYTES` (api.middleware.BodySizeLimit); the use cases are `backoffice.BackOffice`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import jsonapi
from api.jsonapi import GlueError, GlueException
from api.routes.backoffice.answers import answers, document, iso
from api.routes.backoffice.staff import ERRORS, PREFIX, CurrentStaff, Office
from backoffice.imports import ImportNotFound, InvalidImportFile
from starter.imports import ImportProgress

IMPORTS = "/imports"
IMPORT = "/imports/{import_id}"
TYPE = "customer-imports"
NOT_FOUND = GlueError(404, "404", "Import not found.")
DELIMITERS = {"tab": "\t", "\\t": "\t"}  # a tab is hard to type in a form field or a shell

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)


def import_attributes(progress: ImportProgress) -> dict[str, Any]:
    """An import's progress in the API's camelCase (the CLI's `--json` prints the same)."""
    return {
        "state": progress.state,
        "dryRun": progress.dry_run,
        "rowsTotal": progress.rows_total,
        "rowsRead": progress.rows_read,
        "rowsWritten": progress.rows_written,
        "rowsCreated": progress.rows_created,
        "rowsUpdated": progress.rows_updated,
        "rowsRejected": progress.rows_rejected,
        "emailsQueued": progress.emails_queued,
        "emailsStarted": progress.emails_started,
        "startedAt": iso(progress.started_at),
        "finishedAt": iso(progress.finished_at),
        "stoppedAtLine": progress.stopped_at_line,
        "errors": [asdict(error) for error in progress.errors],
        "uiUrl": progress.ui_url,
    }


def delimiter_of(value: str) -> str:
    """One character (or `tab`); anything else is refused like a refused file."""
    delimiter = DELIMITERS.get(value, value)
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise InvalidImportFile(f"the delimiter must be one character (or tab), not {value!r}")
    return delimiter


@contextmanager
def import_answers() -> Iterator[None]:
    try:
        with answers():
            yield
    except InvalidImportFile as refused:
        raise GlueException(GlueError(422, "901", f"file => {refused}")) from None
    except ImportNotFound:
        raise GlueException(NOT_FOUND) from None


class RowErrorItem(BaseModel):
    line: int
    column: str
    message: str


class ImportAttributes(BaseModel):
    state: Literal["running", "completed", "cancelled", "failed"]
    dryRun: bool
    rowsTotal: int
    rowsRead: int
    rowsWritten: int
    rowsCreated: int
    rowsUpdated: int
    rowsRejected: int
    emailsQueued: int
    emailsStarted: int
    startedAt: str
    finishedAt: str | None
    stoppedAtLine: int | None
    errors: list[RowErrorItem]
    uiUrl: str


class ImportResource(BaseModel):
    type: Literal["customer-imports"]
    id: str
    attributes: ImportAttributes


class ImportDocument(BaseModel):
    data: ImportResource


class ImportListDocument(BaseModel):
    data: list[ImportResource]


def _document(progress: ImportProgress, status: int = 200) -> JSONResponse:
    return document(TYPE, progress.import_id, import_attributes(progress), status)


@router.post(
    IMPORTS,
    status_code=202,
    summary="Import customers from a Spryker customer.csv (multipart: file, delimiter, dryRun; admin)",
    response_model=ImportDocument,
)
async def start_import(
    staff: CurrentStaff,
    office: Office,
    file: Annotated[UploadFile, File(description="the CSV: Spryker's customer.csv header, UTF-8")],
    delimiter: Annotated[str, Form(max_length=3, description="one character, or tab")] = ",",
    dry_run: Annotated[bool, Form(alias="dryRun", description="validate the whole file, write nothing")] = False,
) -> JSONResponse:
    content = await file.read()
    with import_answers():
        started = await office.start_import(
            content, filename=file.filename or "customer.csv", delimiter=delimiter_of(delimiter), dry_run=dry_run,
            staff=staff,
        )  # fmt: skip
        progress = await office.import_progress(started.import_id, staff)
    # the file's row count is known before the workflow has indexed the file
    return _document(replace(progress, rows_total=progress.rows_total or started.rows), 202)


@router.get(IMPORTS, summary="Customer imports, newest first (admin)", response_model=ImportListDocument)
async def list_imports(staff: CurrentStaff, office: Office) -> JSONResponse:
    with import_answers():
        found = await office.list_imports(staff)
    data = [{"type": TYPE, "id": p.import_id, "attributes": import_attributes(p)} for p in found]
    return JSONResponse({"data": data}, media_type=jsonapi.MEDIA_TYPE)


@router.get(IMPORT, summary="An import's progress, read live from its workflow (admin)", response_model=ImportDocument)
async def import_progress(import_id: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with import_answers():
        return _document(await office.import_progress(import_id, staff))


@router.post(
    f"{IMPORT}/cancel", summary="Cancel a running import (written rows stay; admin)", response_model=ImportDocument
)
async def cancel_import(import_id: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with import_answers():
        return _document(await office.cancel_import(import_id, staff))


@router.get(
    f"{IMPORT}/rejected.csv",
    summary="The rejected rows as CSV: the file's columns plus error_line, error_column, error_message (admin)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, UTF-8"}},
)
async def rejected_rows(import_id: str, staff: CurrentStaff, office: Office) -> Response:
    with import_answers():
        text = await office.rejected_rows_csv(import_id, staff)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{import_id}-rejected.csv"',
            "Cache-Control": "no-store",
        },
    )
