"""What every back-office page needs: the templates, the cookie codec, the sign-in, and the errors that
become pages instead of JSON (a redirect to the sign-in, a refused form, a missing customer)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from accounts.db import SessionFactory
from accounts.settings import Settings
from accounts.staff import StaffDirectory
from api.guard import RETRY_AFTER_SECONDS, unavailable
from api.web.session import SessionCodec, WebSession, same
from api.web.sign_in import StaffSignIn
from backoffice import BackOffice
from starter import AccountsClient

SIGN_IN_PATH = "/backoffice/sign-in"
# The CSP, frame, referrer and nosniff headers come from api/headers.py, as for every HTML page; staff
# pages also stay out of every cache (they show personal data).
STAFF_PAGE_HEADERS = {"Cache-Control": "no-store"}


class WebUI:
    """Built once in the app's lifespan."""

    def __init__(
        self, settings: Settings, sessions: SessionFactory, staff: StaffDirectory, accounts: AccountsClient
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backoffice = BackOffice(sessions, accounts, settings)
        self.codec = SessionCodec(settings)
        self.sign_in = StaffSignIn(settings, sessions, staff, accounts.staff_locks)
        self._templates = Environment(
            loader=FileSystemLoader(settings.templates_dir / "backoffice"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters.update(when=_when, money=_money, details=_details)

    def page(
        self, template: str, *, session: WebSession | None = None, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        values: dict[str, Any] = {
            "shop_name": self.settings.shop_name,
            "staff": session.member if session else None,
            "csrf_token": session.csrf_token if session else "",
            "flash": None,
        }
        html = self._templates.get_template(template).render({**values, **context})
        return HTMLResponse(html, status_code=status_code)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def _details(details: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in (details or {}).items())


class SignInRequired(Exception):
    pass


class PageError(Exception):
    """A page that says what went wrong, in words, with the status code that goes with it."""

    def __init__(self, status_code: int, heading: str, message: str, session: WebSession | None = None) -> None:
        super().__init__(message)
        self.status_code, self.heading, self.message, self.session = status_code, heading, message, session


class WebRoute(APIRoute):
    """Turns the web UI's exceptions into pages and redirects (the app's handlers answer JSON), and keeps
    every answer out of caches (the other security headers come from api/headers.py)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            web: WebUI = request.app.state.web
            try:
                response = await handler(request)
            except SignInRequired:
                target = SIGN_IN_PATH
                if request.method == "GET":
                    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    target += f"?next={quote(path, safe='')}"
                response = RedirectResponse(target, status_code=303)
            except PageError as error:
                response = web.page(
                    "error.html",
                    session=error.session,
                    status_code=error.status_code,
                    heading=error.heading,
                    message=error.message,
                )
            except RequestValidationError:
                response = web.page(
                    "error.html", status_code=400, heading="Bad request", message="The form was incomplete or invalid."
                )
            except Exception as error:
                if not unavailable(error):  # the request guard answers and logs it
                    raise
                response = web.page(
                    "error.html",
                    status_code=503,
                    heading="Temporarily unavailable",
                    message="The workflow service or the database did not answer. Please try again.",
                )
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            response.headers.update(STAFF_PAGE_HEADERS)
            return response

        return run


def _web(request: Request) -> WebUI:
    web: WebUI = request.app.state.web
    return web


Web = Annotated[WebUI, Depends(_web)]


async def _signed_in(request: Request, web: Web) -> WebSession:
    session = await web.codec.read(request, web.sessions)
    if session is None:
        raise SignInRequired()
    return session


async def _posting(request: Request, session: Annotated[WebSession, Depends(_signed_in)]) -> WebSession:
    """A signed-in member's form, with the CSRF token of their session; anything else changes nothing."""
    token = (await request.form()).get("csrf_token")
    if not isinstance(token, str) or not same(token, session.csrf_token):
        raise PageError(
            403,
            "Form refused",
            "The form was not sent from a back-office page of this session (missing or wrong security token). "
            "Go back, reload the page and try again.",
            session,
        )
    return session


SignedIn = Annotated[WebSession, Depends(_signed_in)]
Posting = Annotated[WebSession, Depends(_posting)]


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only back-office pages of this site (no open redirect)."""
    if value and value.startswith("/backoffice") and not value.startswith("//") and "\\" not in value:
        return value
    return "/backoffice"
