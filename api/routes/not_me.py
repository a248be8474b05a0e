"""The storefront page of the new-device email's "this wasn't me" link: GET shows one button, POST acts.

Pressing it (accounts/customer_sessions.py `redeem_not_me_link`) uses the link up, ends every session
of the account and stops its password working (sign-in answers 401 426 until a reset), then leads to the
password reset form. A plain GET changes nothing: mail scanners
prefetch links.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from accounts import customer_sessions
from api.deps import Accounts, Renderer, SettingsDep
from api.link_pages import link_page

router = APIRouter(tags=["customer-sessions"])
PATH = customer_sessions.NOT_ME_PATH


@router.get(PATH, response_class=HTMLResponse, summary="Storefront page of the new-device email's link")
async def not_me_page(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Query(max_length=255)] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    locale = await accounts.customer_sessions.not_me_link_locale(token)
    state = "form" if locale is not None else "invalid"
    return _page(renderer, settings, locale, accept_language, state=state, token=token if locale else "")


@router.post(PATH, summary="End every session of the account, require a new password, go to the reset form")
async def not_me(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=255)] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> Response:
    if not await accounts.customer_sessions.end_everywhere(token):
        return _page(renderer, settings, None, accept_language, state="invalid", token="")
    return RedirectResponse(_reset_url(settings), status_code=303, headers={"Referrer-Policy": "no-referrer"})


def _reset_url(settings: SettingsDep) -> str:
    return f"{settings.public_url.rstrip('/')}/password/forgotten"


def _page(
    renderer: Renderer,
    settings: SettingsDep,
    locale: str | None,
    accept_language: str | None,
    *,
    state: str,
    token: str,
) -> HTMLResponse:
    context = {"state": state, "token": token, "action": PATH, "reset_url": _reset_url(settings)}
    return link_page(renderer, settings, "account_not_me", locale, accept_language, context, invalid=state == "invalid")
