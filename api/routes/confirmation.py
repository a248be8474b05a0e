"""POST /customer-confirmation (API clients) and GET /register/confirm (the link in the email)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import HTMLResponse

from accounts.locales import locale_from_accept_language
from api.deps import Accounts, Renderer, SettingsDep
from api.jsonapi import GlueError, GlueException
from api.schemas import ConfirmationRequest

router = APIRouter(tags=["customer-confirmation"])

INVALID_KEY = GlueError(422, "423", "This email confirmation code is invalid or has been already used.")


@router.post("/customer-confirmation", status_code=204, summary="Confirm a customer's email with the registration key")
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
    locale = confirmation.locale or locale_from_accept_language(
        accept_language, settings.locales, settings.default_locale
    )
    html = renderer.render_page(
        "register_confirm",
        locale,
        {
            "shop_name": settings.shop_name,
            "outcome": confirmation.outcome,
            "customer_first_name": confirmation.first_name,
            "login_url": f"{settings.public_url.rstrip('/')}/login",
        },
    )
    return HTMLResponse(
        html,
        status_code=400 if confirmation.outcome == "invalid" else 200,
        # the token is in this page's URL: keep it out of caches and of Referer headers
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
