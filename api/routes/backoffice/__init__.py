"""The back-office JSON API (`/backoffice/...`) for staff with an API key (`Authorization: Bearer stf_...`).

Who may call what is decided in one place (`staff`: `ROUTE_ACTIONS` and the `CurrentStaff` dependency,
over `backoffice.PERMISSIONS`). The use cases are `backoffice.BackOffice`'s, shared with the web UI and the
CLI, and each is recorded with the staff member. Customer access tokens never open these routes, and staff
keys never open customer routes. One module per area, as in `backoffice/`: `listing` (the list and its
CSV export), `customers` (one customer), `groups_notes`, `lifecycles`, `imports` (customer.csv imports);
`answers` maps refusals to Glue errors, `schemas` holds the request and response bodies.
"""

from fastapi import APIRouter

from api.routes.backoffice import customers, groups_notes, imports, lifecycles, listing
from api.routes.backoffice.customers import detail_attributes
from api.routes.backoffice.groups_notes import group_attributes, note_attributes
from api.routes.backoffice.imports import delimiter_of, import_attributes
from api.routes.backoffice.listing import row_attributes
from api.routes.backoffice.staff import ROUTE_ACTIONS, CurrentStaff

# Each area's router carries the /backoffice prefix itself: ROUTE_ACTIONS is keyed by a route's own full path.
router = APIRouter()
for area in (listing, customers, groups_notes, lifecycles, imports):  # in this order: the OpenAPI document's order
    router.include_router(area.router)

__all__ = [
    "ROUTE_ACTIONS",
    "CurrentStaff",
    "delimiter_of",
    "detail_attributes",
    "group_attributes",
    "import_attributes",
    "note_attributes",
    "router",
    "row_attributes",
]
