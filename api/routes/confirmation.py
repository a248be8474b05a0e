"""Links from emails: POST /customer-confirmation and /register/confirm (registration), POST
/customer-email-change-confirmation and /email-change/confirm (a new email address), /email-change/undo (the
link sent to the old address after a change).

The emailed links open `GET /register/confirm?token=…`, `GET /email-change/confirm?token=…` and
`GET /email-change/undo?token=…`, which only
*show* a page with one button (a read: mail scanners and link previews fetch links by GET); its plain form
POSTs the token in the body to the same path, and only that confirms. No JavaScript needed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Response
from fastapi.responses import HTMLResponse

from accounts.emails import EmailRenderer
from accounts.settings import Settings
from api.deps import Accounts, Renderer, SettingsDep
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.link_pages import link_page
from api.schemas import ConfirmationRequest, EmailChangeConfirmationRequest

router = APIRouter(tags=["customer-confirmation"])

INVALID_KEY = GlueError(422, "423", "This email confirmation code is invalid or has been already used.")
# any junk gets the "invalid link" page, not a JSON error (a body is bounded by ACCOUNTS_MAX_REQUEST_BYTES)
LinkToken = Annotated[str, Query()]
FormToken = Annotated[str, Form()]
AcceptLanguage = Annotated[str | None, Header()]


@router.post(
    "/customer-confirmation",
    status_code=204,
    summary="Confirm a customer's email with the registration key",
    dependencies=[GlueRequest],
)
async def confirm_customer(body: ConfirmationRequest, accounts: Accounts) -> Response:
    confirmation = await accounts.confirm_email(body.data.attributes.registration_key)
    if confirmation.outcome != "activated":
        raise GlueException(INVALID_KEY)
    return Response(status_code=204)


@router.get(
    "/register/confirm",
    response_class=HTMLResponse,
    summary="Storefront page of the verification link: one button that confirms (a GET changes nothing)",
)
async def confirm_page(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: LinkToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    preview = await accounts.preview_email_confirmation(token)
    return _landing_page(
        renderer, settings, "register_confirm", preview.outcome, preview.locale, accept_language,
        preview.first_name, token,
    )  # fmt: skip


@router.post(
    "/register/confirm",
    response_class=HTMLResponse,
    summary="The verification page's button: confirms the email (a form, works without JavaScript)",
)
async def confirm_form(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: FormToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    confirmation = await accounts.confirm_email(token)
    return _landing_page(
        renderer, settings, "register_confirm", confirmation.outcome, confirmation.locale, accept_language,
        confirmation.first_name,
    )  # fmt: skip


def _landing_page(
    renderer: EmailRenderer,
    settings: Settings,
    page: str,
    outcome: str,
    locale: str | None,
    accept_language: str | None,
    first_name: str | None,
    token: str = "",
) -> HTMLResponse:
    """The page a link in an email opens (api/link_pages.py)."""
    context = {
        "outcome": outcome,
        "customer_first_name": first_name,
        "login_url": f"{settings.public_url.rstrip('/')}/login",
        "token": token if outcome == "pending" else "",  # the button's form carries it in its body
    }
    return link_page(renderer, settings, page, locale, accept_language, context, invalid=outcome == "invalid")


INVALID_EMAIL_CHANGE_KEY = GlueError(422, "423", "This email change code is invalid or has been already used.")


@router.post(
    "/customer-email-change-confirmation",
    status_code=204,
    summary="Confirm a new email address with the key from the link sent to it",
    dependencies=[GlueRequest],
)
async def confirm_email_change(body: EmailChangeConfirmationRequest, accounts: Accounts) -> Response:
    confirmation = await accounts.email_changes.confirm(body.data.attributes.key)
    if confirmation.outcome != "changed":
        raise GlueException(INVALID_EMAIL_CHANGE_KEY)
    return Response(status_code=204)


@router.get(
    "/email-change/confirm",
    response_class=HTMLResponse,
    summary="Storefront page of the link sent to a new email address: one button (a GET changes nothing)",
)
async def email_change_page(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: LinkToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    preview = await accounts.email_changes.preview(token)
    return _landing_page(
        renderer, settings, "email_change_confirm", preview.outcome, preview.locale, accept_language,
        preview.first_name, token,
    )  # fmt: skip


@router.post(
    "/email-change/confirm",
    response_class=HTMLResponse,
    summary="The new address's page's button: switches the address (a form, works without JavaScript)",
)
async def email_change_form(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: FormToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    confirmation = await accounts.email_changes.confirm(token)
    return _landing_page(
        renderer, settings, "email_change_confirm", confirmation.outcome, confirmation.locale, accept_language,
        confirmation.first_name,
    )  # fmt: skip


@router.get(
    "/email-change/undo",
    response_class=HTMLResponse,
    summary="Storefront page of the link sent to the old address after a change: one button (a GET changes nothing)",
)
async def email_change_undo_page(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: LinkToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    preview = await accounts.email_changes.preview_undo(token)
    return _landing_page(
        renderer, settings, "email_change_undo", preview.outcome, preview.locale, accept_language,
        preview.first_name, token,
    )  # fmt: skip


@router.post(
    "/email-change/undo",
    response_class=HTMLResponse,
    summary="The old address's button: restores it, ends every session, emails a password reset link",
)
async def email_change_undo_form(
    accounts: Accounts, renderer: Renderer, settings: SettingsDep, token: FormToken = "",
    accept_language: AcceptLanguage = None,
) -> HTMLResponse:  # fmt: skip
    undone = await accounts.email_changes.undo(token)
    return _landing_page(
        renderer, settings, "email_change_undo", undone.outcome, undone.locale, accept_language, undone.first_name,
    )  # fmt: skip
