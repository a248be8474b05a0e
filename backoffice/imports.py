"""Customer imports (customer.csv), admin only: start one (the file refused whole when it is bad, before
anything is written), follow its progress, cancel it, download its rejected rows. The import itself is a
workflow (workflows/customer_import.py) started through `starter.imports`.
"""

from __future__ import annotations

from accounts.customer_csv import InvalidFile
from accounts.staff import StaffMember
from backoffice.base import Area
from backoffice.permissions import BackOfficeError, Conflict, authorize
from starter.imports import ImportProgress, ImportStarted, NoSuchImport, NotCancellable

ACTION = "import_customers"


class InvalidImportFile(BackOfficeError):
    """A file refused whole (a required column missing, not UTF-8, empty, ...): the message says why."""


class ImportNotFound(BackOfficeError):
    pass


class ImportsArea(Area):
    async def start_import(
        self, content: bytes, *, filename: str, delimiter: str = ",", dry_run: bool = False, staff: StaffMember
    ) -> ImportStarted:
        authorize(staff, ACTION)
        try:
            started = await self._accounts.imports.start(content, delimiter=delimiter, dry_run=dry_run)
        except InvalidFile as error:
            raise InvalidImportFile(str(error)) from None
        # the staff member's action, under the import's id (no customer is its subject)
        async with self._sessions.begin() as session:
            self._audit(session, started.import_id, "import_started", staff,
                        {"rows": started.rows, "dry_run": dry_run, "filename": filename[:200]})  # fmt: skip
        return started

    async def import_progress(self, import_id: str, staff: StaffMember | None = None) -> ImportProgress:
        if staff is not None:
            authorize(staff, ACTION)
        try:
            return await self._accounts.imports.progress(import_id)
        except NoSuchImport as error:
            raise ImportNotFound(str(error)) from None

    async def cancel_import(self, import_id: str, staff: StaffMember) -> ImportProgress:
        authorize(staff, ACTION)
        try:
            progress = await self._accounts.imports.cancel(import_id)
        except NoSuchImport as error:
            raise ImportNotFound(str(error)) from None
        except NotCancellable as error:
            raise Conflict(str(error)) from None
        await self._record(import_id, "import_cancelled", staff)
        return progress

    async def rejected_rows_csv(self, import_id: str, staff: StaffMember | None = None) -> str:
        if staff is not None:
            authorize(staff, ACTION)
        try:
            return await self._accounts.imports.rejected_csv(import_id)
        except NoSuchImport as error:
            raise ImportNotFound(str(error)) from None

    async def list_imports(self, staff: StaffMember | None = None) -> list[ImportProgress]:
        if staff is not None:
            authorize(staff, ACTION)
        return await self._accounts.imports.list()
