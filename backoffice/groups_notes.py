"""Notes on customers and customer groups: plain writes, each recorded in the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import CustomerGroup, CustomerGroupMember, CustomerNote, utcnow
from accounts.staff import StaffMember, row_id
from backoffice.base import Area, require_customer, writable_customer
from backoffice.permissions import GroupNameTaken, GroupNotFound, InvalidInput, authorize

GROUP_NAME_MAX = 70
GROUP_DESCRIPTION_MAX = 255
NOTE_MAX = 5000


@dataclass
class Note:
    id: int
    author: str
    message: str
    created_at: datetime


@dataclass
class Group:
    id: int
    name: str
    description: str | None
    members: int


class GroupsNotes(Area):
    # notes

    async def add_note(self, customer_reference: str, staff: StaffMember, message: str) -> Note:
        authorize(staff, "notes.add")
        text = message.strip() if isinstance(message, str) else ""
        if not text:
            raise InvalidInput("message", "must not be blank")
        if len(text) > NOTE_MAX:
            raise InvalidInput("message", f"must have {NOTE_MAX} characters or less")
        async with self._sessions.begin() as session:
            customer = await writable_customer(session, customer_reference)
            note = CustomerNote(
                customer_id=customer.id, staff_id=staff.id or None, author=staff.name, message=text, created_at=utcnow()
            )
            session.add(note)
            await session.flush()
            # the note's id, not its text: notes may hold personal data, and they go at anonymization
            self._audit(session, customer_reference, "note_added", staff, {"noteId": note.id})
            return Note(note.id, note.author, note.message, note.created_at)

    async def notes(self, customer_reference: str, staff: StaffMember | None = None) -> list[Note]:
        """Newest first."""
        if staff is not None:
            authorize(staff, "notes.list")
        async with self._sessions() as session:
            customer = await require_customer(session, customer_reference)
            return await read_notes(session, customer.id)

    # customer groups

    async def list_groups(self, staff: StaffMember | None = None) -> list[Group]:
        """By name."""
        if staff is not None:
            authorize(staff, "groups.list")
        async with self._sessions() as session:
            return await read_groups(session)

    async def group(self, name_or_id: str | int, staff: StaffMember | None = None) -> Group:
        if staff is not None:
            authorize(staff, "groups.list")
        async with self._sessions() as session:
            row = await group_row(session, name_or_id)
            return (await read_groups(session, group_id=row.id))[0]

    async def create_group(self, name: str, description: str | None, staff: StaffMember) -> Group:
        authorize(staff, "groups.manage")
        name, description = _group_name(name), _group_description(description)
        try:
            async with self._sessions.begin() as session:
                if await session.scalar(select(CustomerGroup.id).where(CustomerGroup.name == name)) is not None:
                    raise GroupNameTaken(name)
                row = CustomerGroup(name=name, description=description)
                session.add(row)
                await session.flush()
                self._audit(session, _group_subject(row.id), "group_created", staff, {"name": name})
        except IntegrityError:  # created concurrently
            raise GroupNameTaken(name) from None
        return Group(row.id, row.name, row.description, 0)

    async def update_group(
        self,
        name_or_id: str | int,
        staff: StaffMember,
        *,
        new_name: str | None = None,
        description: str | None = None,
        clear_description: bool = False,
    ) -> Group:
        """Rename and/or describe; description None leaves it as it is, clear_description removes it."""
        authorize(staff, "groups.manage")
        checked_name = _group_name(new_name) if new_name is not None else None
        checked_description = _group_description(description) if description is not None else None
        try:
            async with self._sessions.begin() as session:
                row = await group_row(session, name_or_id, for_update=True)
                changed: dict[str, Any] = {}
                if checked_name is not None and checked_name != row.name:
                    taken = await session.scalar(
                        select(CustomerGroup.id).where(CustomerGroup.name == checked_name, CustomerGroup.id != row.id)
                    )
                    if taken is not None:
                        raise GroupNameTaken(checked_name)
                    changed["name"] = {"from": row.name, "to": checked_name}
                    row.name = checked_name
                if clear_description:
                    checked_description = None
                if (checked_description is not None or clear_description) and checked_description != row.description:
                    changed["description"] = True
                    row.description = checked_description
                if changed:
                    row.updated_at = utcnow()
                    await session.flush()
                    self._audit(session, _group_subject(row.id), "group_updated", staff, changed)
                group_id = row.id
        except IntegrityError:
            raise GroupNameTaken(checked_name or "") from None
        return await self.group(group_id)

    async def delete_group(self, name_or_id: str | int, staff: StaffMember) -> None:
        """Members lose the membership; the customers stay."""
        authorize(staff, "groups.manage")
        async with self._sessions.begin() as session:
            row = await group_row(session, name_or_id, for_update=True)
            members = await session.scalar(
                select(func.count()).select_from(CustomerGroupMember).where(CustomerGroupMember.group_id == row.id)
            )
            await session.execute(delete(CustomerGroupMember).where(CustomerGroupMember.group_id == row.id))
            await session.delete(row)
            details = {"name": row.name, "members": int(members or 0)}
            self._audit(session, _group_subject(row.id), "group_deleted", staff, details)

    async def assign(self, customer_reference: str, group: str | int, staff: StaffMember) -> bool:
        """False when the customer was a member already (nothing written)."""
        authorize(staff, "groups.assign")
        try:
            async with self._sessions.begin() as session:
                customer = await writable_customer(session, customer_reference)
                row = await group_row(session, group)
                member = await session.get(CustomerGroupMember, (row.id, customer.id))
                if member is not None:
                    return False
                session.add(CustomerGroupMember(group_id=row.id, customer_id=customer.id, assigned_at=utcnow()))
                await session.flush()
                self._audit(
                    session, customer_reference, "group_assigned", staff, {"group": row.name, "groupId": row.id}
                )
        except IntegrityError:  # assigned concurrently
            return False
        return True

    async def unassign(self, customer_reference: str, group: str | int, staff: StaffMember) -> bool:
        """False when the customer was no member (nothing written)."""
        authorize(staff, "groups.assign")
        async with self._sessions.begin() as session:
            customer = await require_customer(session, customer_reference)
            row = await group_row(session, group)
            result = await session.execute(
                delete(CustomerGroupMember).where(
                    CustomerGroupMember.group_id == row.id, CustomerGroupMember.customer_id == customer.id
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            self._audit(session, customer_reference, "group_unassigned", staff, {"group": row.name, "groupId": row.id})
        return True


async def read_notes(session: AsyncSession, customer_id: int) -> list[Note]:
    rows = await session.scalars(
        select(CustomerNote)
        .where(CustomerNote.customer_id == customer_id)
        .order_by(CustomerNote.created_at.desc(), CustomerNote.id.desc())
    )
    return [Note(row.id, row.author, row.message, row.created_at) for row in rows]


async def read_groups(
    session: AsyncSession, *, customer_id: int | None = None, group_id: int | None = None
) -> list[Group]:
    """Groups by name with their member counts: all, the customer's, or one."""
    members = (
        select(CustomerGroupMember.group_id, func.count().label("members"))
        .group_by(CustomerGroupMember.group_id)
        .subquery()
    )
    statement = select(CustomerGroup, func.coalesce(members.c.members, 0)).outerjoin(
        members, members.c.group_id == CustomerGroup.id
    )
    if customer_id is not None:
        statement = statement.where(
            CustomerGroup.id.in_(
                select(CustomerGroupMember.group_id).where(CustomerGroupMember.customer_id == customer_id)
            )
        )
    if group_id is not None:
        statement = statement.where(CustomerGroup.id == group_id)
    rows = await session.execute(statement.order_by(CustomerGroup.name))
    return [Group(group.id, group.name, group.description, int(count)) for group, count in rows]


async def group_row(session: AsyncSession, name_or_id: str | int, *, for_update: bool = False) -> CustomerGroup:
    as_id = row_id(str(name_or_id).strip())  # None for a name, and for an id no row can have
    condition = CustomerGroup.name == str(name_or_id).strip()
    if as_id is not None:
        condition = or_(CustomerGroup.id == as_id, condition)
    statement = select(CustomerGroup).where(condition).order_by(CustomerGroup.id)
    row = await session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        raise GroupNotFound(name_or_id)
    return row


def _group_subject(group_id: int) -> str:
    """Group changes are filed in the audit trail under `group:<id>` (no customer's reference looks like it)."""
    return f"group:{group_id}"


def _group_name(name: str | None) -> str:
    value = (name or "").strip() if isinstance(name, str) or name is None else ""
    if not value:
        raise InvalidInput("name", "must not be blank")
    if len(value) > GROUP_NAME_MAX:
        raise InvalidInput("name", f"must have {GROUP_NAME_MAX} characters or less")
    return value


def _group_description(description: str | None) -> str | None:
    if description is None:
        return None
    value = description.strip()
    if len(value) > GROUP_DESCRIPTION_MAX:
        raise InvalidInput("description", f"must have {GROUP_DESCRIPTION_MAX} characters or less")
    return value or None
