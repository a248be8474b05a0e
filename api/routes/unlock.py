"""The storefront page of the lock email's one-time link: GET shows one button, POST redeems the link.

Redeeming it (starter/login.py `redeem_unlock_link`) proves the address and gives this browser a device
token in the `accounts_device` cookie, which POST /access-tokens reads: this browser signs in while the
account stays locked for everyone else. A plain GET changes nothing, since mail scanners prefetch links.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Query
from fastapi.responses import HTMLResponse

from accounts.device_tokens import UNLOCK_PATH
from api.deps import Accounts, Renderer, SettingsDep
from api.link_pages import link_page
from api.routes.access_tokens import DEVICE_COOKIE

router = APIRouter(tags=["access-tokens"])


@router.get(UNLOCK_PATH, response_class=HTMLResponse, summary="Storefront page of the lock email's link")
async def unlock_page(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Query(max_length=255)] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    locale = await accounts.logins.unlock_link_locale(token)
    state = "form" if locale is not None else "invalid"
    return _page(renderer, settings, locale, accept_language, state=state, token=token if locale else "")


@router.post(UNLOCK_PATH, response_class=HTMLResponse, summary="Trust this browser (works without JavaScript)")
async def unlock_browser(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=255)] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    locale = await accounts.logins.unlock_link_locale(token)
    device_token = await accounts.logins.redeem_unlock_link(token)
    if device_token is None:
        return _page(renderer, settings, locale, accept_language, state="invalid", token="")
    page = _page(renderer, settings, locale, accept_language, state="done", token="")
    page.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=int(settings.device_token_lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
    )
    return page


def _page(
    renderer: Renderer,
    settings: SettingsDep,
    locale: str | None,
    accept_language: str | None,
    *,
    state: str,
    token: str,
) -> HTMLResponse:
    base = settings.public_url.rstrip("/")
    context = {
        "state": state,
        "token": token,
        "action": UNLOCK_PATH,
        "login_url": f"{base}/login",
        "reset_url": f"{base}/password/forgotten",
    }
    return link_page(renderer, settings, "account_unlock", locale, accept_language, context, invalid=state == "invalid")
