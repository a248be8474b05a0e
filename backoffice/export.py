"""The customer list as CSV, for spreadsheet programs."""

from __future__ import annotations

import csv
import io

from accounts.models import utcnow
from accounts.staff import StaffMember
from backoffice.base import Area
from backoffice.customers import CSV_COLUMNS, CustomerFilter, customer_rows, filtered
from backoffice.permissions import authorize


class Export(Area):
    async def export_csv(self, f: CustomerFilter, staff: StaffMember | None = None) -> str:
        """Every matching customer (not one page), one row each, under a header row.

        Cells starting like a spreadsheet formula get a leading apostrophe: names are typed by customers,
        and an export is opened in spreadsheet programs."""
        if staff is not None:
            authorize(staff, "customers.export")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        async with self._sessions() as session:
            rows = (await session.execute(filtered(f, utcnow()))).all()
            for row in await customer_rows(session, rows):
                writer.writerow({key: _csv_safe(value) for key, value in row.csv_row().items()})
        return out.getvalue()


def _csv_safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
