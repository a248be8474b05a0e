"""Notes on a customer and customer groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api import jsonapi
from api.routes.backoffice.answers import answers, document
from api.routes.backoffice.schemas import (
    GlueErrors,
    GroupDocument,
    GroupEdits,
    GroupListDocument,
    NewGroup,
    NewNote,
    NoteDocument,
    NoteListDocument,
)
from api.routes.backoffice.staff import CUSTOMER, ERRORS, GROUP, PREFIX, CurrentStaff, Office
from backoffice import Group, Note

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)


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
    return document("customer-notes", str(note.id), note_attributes(note), status=201)


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
    return document("customer-groups", str(group.id), group_attributes(group), status=201)


@router.get(GROUP, summary="A customer group", response_model=GroupDocument)
async def get_group(group_id: int, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers():
        group = await office.group(group_id, staff)
    return document("customer-groups", str(group.id), group_attributes(group))


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
    return document("customer-groups", str(group.id), group_attributes(group))


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
