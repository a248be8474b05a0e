"""Signing in and out of the back-office web UI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from accounts import rate_limits
from api.client_address import client_of
from api.limits import request_limits
from api.web.session import FLASH_COOKIE
from api.web.sign_in import SignInBlocked
from api.web.ui import Posting, Web, WebRoute, safe_next

router = APIRouter(prefix="/backoffice", route_class=WebRoute, include_in_schema=False)

FAILED = "Unknown staff name or wrong password."  # one answer for both, and for disabled members
FAILED_WITH_CODE = (  # ACCOUNTS_STAFF_MFA_REQUIRED: the same for a wrong code and for none enrolled yet
    "Unknown staff name, wrong password or wrong authenticator code. No authenticator app enrolled yet?"
    " Ask an admin (accounts staff mfa-enroll NAME)."
)
MAX_PASSWORD_LENGTH = 4096


@router.get("/sign-in")
async def sign_in_page(request: Request, web: Web, next: str = "/backoffice") -> Response:
    nonce, token = web.codec.sign_in_form(request)
    flash = web.codec.read_flash(request)  # "this browser can sign in now" (api/web/unlock.py)
    page = web.page(
        "sign_in.html",
        csrf_token=token,
        next=safe_next(next),
        name="",
        error=None,
        ask_code=web.settings.staff_mfa_required,
        flash=flash,
    )
    web.codec.remember_sign_in_form(page, nonce)
    if flash is not None:
        web.codec.clear_flash(page)
    return page


@router.post("/sign-in")
async def sign_in(
    request: Request,
    web: Web,
    name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    code: Annotated[str, Form(max_length=16)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/backoffice",
) -> Response:
    def again(error: str, status_code: int, headers: dict[str, str] | None = None) -> Response:
        nonce, token = web.codec.sign_in_form(request)
        page = web.page(
            "sign_in.html",
            status_code=status_code,
            csrf_token=token,
            next=safe_next(next),
            name=name,
            error=error,
            ask_code=web.settings.staff_mfa_required,
        )
        web.codec.remember_sign_in_form(page, nonce)
        page.headers.update(headers or {})
        return page

    if not web.codec.sign_in_token_valid(request, csrf_token):
        return again("The sign-in form expired. Please sign in again.", 400)
    if not name.strip() or not password:
        return again(FAILED, 400)
    client_ip = client_of(request)
    try:
        try:  # every attempt counts, before any password is checked
            await request_limits(request).admit_client(rate_limits.STAFF_SIGN_IN, client_ip)
        except rate_limits.OverBudget as over:
            raise SignInBlocked(over.retry_after_seconds) from None
        signed_in = await web.sign_in.authenticate(
            name, password, client_ip=client_ip, device_token=web.codec.device_token(request), code=code
        )
    except SignInBlocked as blocked:
        minutes = -(-blocked.retry_after_seconds // 60)
        return again(
            f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            429,
            {"Retry-After": str(blocked.retry_after_seconds)},
        )
    if signed_in is None:  # with two-step sign-in required, the one answer also names the enrolment
        return again(FAILED_WITH_CODE if web.settings.staff_mfa_required else FAILED, 400)
    response = RedirectResponse(safe_next(next), status_code=303)
    await web.codec.start(response, web.sessions, signed_in.checked)
    lifetime = int(web.settings.device_token_lifetime.total_seconds())
    web.codec.remember_device(response, signed_in.device_token, lifetime)
    return response


@router.post("/sign-out")
async def sign_out(web: Web, signed_in: Posting) -> Response:
    response = RedirectResponse("/backoffice/sign-in", status_code=303)
    await web.codec.end(response, web.sessions, signed_in.member.id)
    response.delete_cookie(FLASH_COOKIE, path="/backoffice")
    return response
