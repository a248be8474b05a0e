"""The back-office pages about customer imports (admin only): the upload form with the list of imports,
and one import's progress, read live from its workflow. A running import's page reloads itself every
2 s (a meta refresh: the pages carry no scripts); the rejected rows download as CSV; a button cancels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from api.routes.backoffice import delimiter_of
from api.web.session import WebSession
from api.web.ui import PageError, Posting, SignedIn, Web, WebRoute
from backoffice import Conflict, Forbidden, allowed
from backoffice.imports import ImportNotFound, InvalidImportFile
from starter.imports import ImportProgress

IMPORTS_PATH = "/backoffice/ui/imports"
REFRESH_SECONDS = 2

router = APIRouter(prefix=IMPORTS_PATH, route_class=WebRoute, include_in_schema=False)


def import_url(import_id: str) -> str:
    return f"{IMPORTS_PATH}/{quote(import_id, safe='')}"


def _admin(session: WebSession) -> None:
    if not allowed(session.member.role, "import_customers"):
        raise PageError(403, "Not allowed", "Importing customers needs the admin role.", session)


def _not_found(import_id: str, session: WebSession) -> PageError:
    return PageError(404, "Import not found", f"There is no import {import_id}.", session)


@contextlib.contextmanager
def _shown_as_pages(session: WebSession, import_id: str = "") -> Iterator[None]:
    """What a reading use case refuses, as the error pages: an unknown import 404, a refusal 403."""
    try:
        yield
    except ImportNotFound:
        raise _not_found(import_id, session) from None
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", str(forbidden), session) from None


@router.get("")
async def imports_page(request: Request, web: Web, session: SignedIn) -> Response:
    _admin(session)
    return await _imports(request, web, session)


async def _imports(request: Request, web: Web, session: WebSession, error: str | None = None) -> Response:
    with _shown_as_pages(session):
        found = await web.backoffice.list_imports(session.member)
    flash = web.codec.read_flash(request)
    page = web.page(
        "imports.html",
        session=session,
        status_code=422 if error else 200,
        flash=flash,
        error=error,
        imports=found,
        import_url=import_url,
    )
    if flash is not None:
        web.codec.clear_flash(page)
    return page


@router.post("")
async def upload(
    request: Request,
    web: Web,
    session: Posting,
    file: Annotated[UploadFile, File()],
    delimiter: Annotated[str, Form(max_length=3)] = ",",
    dry_run: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    _admin(session)
    content = await file.read()
    try:
        started = await web.backoffice.start_import(
            content, filename=file.filename or "customer.csv", delimiter=delimiter_of(delimiter or ","),
            dry_run=dry_run == "yes", staff=session.member,
        )  # fmt: skip
    except InvalidImportFile as refused:
        return await _imports(request, web, session, f"The file was refused, nothing was imported: {refused}.")
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", f"Nothing was done: {forbidden}.", session) from None
    response = RedirectResponse(import_url(started.import_id), status_code=303)
    what = "checked (dry run, nothing is written)" if started.dry_run else "imported"
    web.codec.flash(response, "success", f"{file.filename or 'The file'}: {started.rows} rows are being {what}.")
    return response


@router.get("/{import_id}")
async def progress_page(request: Request, import_id: str, web: Web, session: SignedIn) -> Response:
    _admin(session)
    with _shown_as_pages(session, import_id):
        progress = await web.backoffice.import_progress(import_id, session.member)
    flash = web.codec.read_flash(request)
    page = web.page(
        "import.html",
        session=session,
        flash=flash,
        progress=progress,
        refresh_seconds=REFRESH_SECONDS if progress.state == "running" else None,
        percent=_percent(progress),
        import_url=import_url(import_id),
    )
    if flash is not None:
        web.codec.clear_flash(page)
    return page


def _percent(progress: ImportProgress) -> int:
    if progress.rows_total:
        return 100 * progress.rows_read // progress.rows_total
    return 0 if progress.state == "running" else 100  # still indexing the file, or an empty one


@router.get("/{import_id}/rejected.csv")
async def rejected_rows(import_id: str, web: Web, session: SignedIn) -> Response:
    _admin(session)
    with _shown_as_pages(session, import_id):
        text = await web.backoffice.rejected_rows_csv(import_id, session.member)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{import_id}-rejected.csv"'},
    )


@router.post("/{import_id}/cancel")
async def cancel(import_id: str, web: Web, session: Posting) -> Response:
    _admin(session)
    response = RedirectResponse(import_url(import_id), status_code=303)
    try:
        progress = await web.backoffice.cancel_import(import_id, session.member)
    except ImportNotFound:
        raise _not_found(import_id, session) from None
    except Conflict as refused:
        web.codec.flash(response, "error", f"Nothing was done: {refused}.")
        return response
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", f"Nothing was done: {forbidden}.", session) from None
    if progress.state == "cancelled":
        where = f" after line {progress.stopped_at_line}" if progress.stopped_at_line else ""
        web.codec.flash(response, "success", f"The import is cancelled{where}; the rows written so far stay.")
    else:
        web.codec.flash(response, "error", f"Nothing was done: the import is {progress.state}.")
    return response
