"""The back-office web UI: server-rendered pages under /backoffice for staff signed in with a password.

HTML pages live at `/backoffice` (the customer list), `/backoffice/sign-in`, `/backoffice/sign-out`,
`/backoffice/unlock` (the staff lock email's link) and `/backoffice/ui/...` (`/backoffice/ui/imports`:
customer imports, admin only); the JSON API keeps
`/backoffice/customers...`, `/backoffice/imports...` and the other resource paths.
"""

from __future__ import annotations

from api.web import auth_routes, customers, imports, unlock
from api.web.imports import IMPORTS_PATH as IMPORT_UPLOAD_PATH
from api.web.ui import WebUI

routers = (auth_routes.router, customers.router, imports.router, unlock.router)

__all__ = ["IMPORT_UPLOAD_PATH", "WebUI", "routers"]
