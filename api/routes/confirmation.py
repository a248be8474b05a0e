"""Links from emails: POST /customer-confirmation and GET /register/confirm (registration), POST
/customer-email-change-confirmation and GET /email-change/confirm (a new email address)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from accounts.emails import EmailRenderer
from accounts.locales import locale_from_accept_language
from accounts.settings import Settings
from api.deps import Accounts, Renderer, SettingsDep
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.schemas import ConfirmationRequest, EmailChangeConfirmationRequest

router = APIRouter(tags=["customer-confirmation"])

INVALID_KEY = GlueError(422, "423", "This email confirmation code is invalid or has been already used.")


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
    summary="Storefront landing page of the verification link",
)
async def confirm_page(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Query()] = "",  # any junk gets the "invalid link" page, not a JSON error
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
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
) -> HTMLResponse:
    """The page a link in an email opens: in the customer's language, else the browser's."""
    html = renderer.render_page(
        page,
        locale or locale_from_accept_language(accept_language, settings.locales, settings.default_locale),
        {
            "shop_name": settings.shop_name,
            "outcome": outcome,
            "customer_first_name": first_name,
            "login_url": f"{settings.public_url.rstrip('/')}/login",
        },
    )
    return HTMLResponse(
        html,
        status_code=400 if outcome == "invalid" else 200,
        # the token is in this page's URL: keep it out of caches and of Referer headers
        headers={"Cache-Control": "no-store"},
    )


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
    summary="Storefront landing page of the link sent to a new email address",
)
async def email_change_page(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Query()] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    confirmation = await accounts.email_changes.confirm(token)
    return _landing_page(
        renderer, settings, "email_change_confirm", confirmation.outcome, confirmation.locale, accept_language,
        confirmation.first_name,
    )  # fmt: skip
