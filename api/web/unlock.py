"""The back-office page of the staff lock email's one-time link: GET shows one button, POST redeems it.

Redeeming it (accounts/device_tokens.py `redeem_staff_unlock_link`: one conditional UPDATE, so it works
once) proves the member's address and gives this browser their device token in the `backoffice_device`
cookie, as a successful sign-in does: this browser then signs in while the name stays locked for everyone
else. A plain GET changes nothing, since mail scanners prefetch links. The form carries the sign-in form's
CSRF token (its nonce cookie), so another site cannot make a browser redeem a link of its choosing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from accounts import device_tokens
from accounts.device_tokens import STAFF_UNLOCK_PATH
from api.web.ui import SIGN_IN_PATH, Web, WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)

INVALID = (
    "This link is not valid: it was used already, it expired, or it was never sent. "
    "Your name can sign in again once its lock ends."
)


@router.get(STAFF_UNLOCK_PATH)
async def unlock_page(request: Request, web: Web, token: Annotated[str, Query(max_length=255)] = "") -> Response:
    if not await device_tokens.staff_unlock_link_live(web.sessions, token):
        return _invalid(web)
    return _form(request, web, token)


@router.post(STAFF_UNLOCK_PATH)
async def unlock_browser(
    request: Request,
    web: Web,
    token: Annotated[str, Form(max_length=255)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not web.codec.sign_in_token_valid(request, csrf_token):  # the link stays unused: show its button again
        if not await device_tokens.staff_unlock_link_live(web.sessions, token):
            return _invalid(web)
        return _form(request, web, token, error="The form expired. Please press the button again.", status_code=400)
    settings = web.settings
    redeemed = await device_tokens.redeem_staff_unlock_link(
        web.sessions, token, lifetime=settings.device_token_lifetime, keep=settings.device_tokens_per_account
    )
    if redeemed is None:
        return _invalid(web)
    _, device_token = redeemed
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    web.codec.remember_device(response, device_token, int(settings.device_token_lifetime.total_seconds()))
    web.codec.flash(
        response,
        "success",
        "This browser can sign in now, with your password, while your name stays locked for everyone else.",
    )
    return response


def _form(request: Request, web: Web, token: str, *, error: str | None = None, status_code: int = 200) -> Response:
    nonce, csrf = web.codec.sign_in_form(request)
    page = web.page(
        "unlock.html", status_code=status_code, csrf_token=csrf, token=token, action=STAFF_UNLOCK_PATH, error=error
    )
    web.codec.remember_sign_in_form(page, nonce)
    return page


def _invalid(web: Web) -> Response:
    return web.page("error.html", status_code=400, heading="Link not valid", message=INVALID)
