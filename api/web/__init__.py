"""The back-office web UI: server-rendered pages under /backoffice for staff signed in with a password.

HTML pages live at `/backoffice` (the customer list), `/backoffice/sign-in`, `/backoffice/sign-out` and
`/backoffice/ui/...`; the JSON API keeps `/backoffice/customers...` and the other resource paths.
"""

from __future__ import annotations

from api.web import auth_routes, customers
from api.web.ui import WebUI

routers = (auth_routes.router, customers.router)

__all__ = ["WebUI", "routers"]
