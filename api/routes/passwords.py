"""Passwords: forgotten (Glue), restore (Glue and the storefront form), change (Glue)."""

from __future__ import annotations

import json
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, BackgroundTasks, Form, Header, Query, Request, Response
from fastapi.responses import HTMLResponse

from accounts import rate_limits
from api.auth import InPerson
from api.client_address import client_of
from api.deps import Accounts, Renderer, SettingsDep
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.limits import admit_address, limited
from api.link_pages import page_locale
from api.password_lengths import password_length_rule
from api.routes.access_tokens import blocked_error
from api.schemas import ChangePasswordRequest, ForgottenPasswordRequest, RestorePasswordRequest
from starter import InvalidResetKey, LoginBlocked, PasswordRejected, RegistrationNotFound, WrongCurrentPassword

CUSTOMER_NOT_FOUND = GlueError(404, "402", "Customer not found.")  # Glue's code
router = APIRouter(tags=["passwords"])

INVALID_KEY = GlueError(422, "415", "Restore password key is not valid.")
WRONG_PASSWORD = GlueError(400, "408", "Invalid password")


def mismatch(field: str, other: str) -> GlueError:
    return GlueError(422, "406", f"Value in field {field} should be identical to value in the {other} field.")


def policy_errors(rejected: PasswordRejected) -> list[GlueError]:
    return [GlueError(400, v.code, v.detail) for v in rejected.violations]


@router.post(
    "/customer-forgotten-password",
    status_code=204,
    summary="Email a reset link (204 whether or not the address has an account)",
    dependencies=[GlueRequest, limited(rate_limits.FORGOTTEN_PASSWORD)],
)
async def forgotten_password(
    body: ForgottenPasswordRequest, request: Request, accounts: Accounts, background: BackgroundTasks
) -> Response:
    email = body.data.attributes.email
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise GlueException(GlueError(422, "901", "email => This value is not a valid email address.")) from None
    # counted before the lookup: the same 429 for an address with and without an account
    await admit_address(request, rate_limits.FORGOTTEN_PASSWORD, email)
    # The lookup and the workflow start run after the answer is sent: a known and an unknown
    # address get the same answer in the same time.
    background.add_task(accounts.passwords.forgotten, email)
    return Response(status_code=204)


@router.patch(
    "/customer-restore-password/{restore_password_key}",
    status_code=204,
    summary="Set a new password with the emailed key",
    dependencies=[GlueRequest, password_length_rule(RestorePasswordRequest, "password", "confirmPassword")],
)
async def restore_password(restore_password_key: str, body: RestorePasswordRequest, accounts: Accounts) -> Response:
    attributes = body.data.attributes
    if attributes.password != attributes.confirm_password:
        raise GlueException(mismatch("password", "confirmPassword"))
    key = attributes.restore_password_key or restore_password_key
    try:
        await accounts.passwords.complete_reset(key, attributes.password)
    except InvalidResetKey:
        raise GlueException(INVALID_KEY) from None
    except PasswordRejected as rejected:
        raise GlueException(*policy_errors(rejected)) from None
    except RegistrationNotFound:  # a deletion ended the account while the change was on its way
        raise GlueException(CUSTOMER_NOT_FOUND) from None
    return Response(status_code=204)


@router.patch(
    "/customer-password/{customer_reference}",
    status_code=204,
    summary="Change the signed-in customer's password",
    dependencies=[GlueRequest],
)
async def change_password(
    customer_reference: str,
    body: ChangePasswordRequest,
    request: Request,
    customer: InPerson,  # an agent's impersonation token is refused (403 4105)
    # after the token check, as in Glue
    _lengths: Annotated[None, password_length_rule(ChangePasswordRequest, "newPassword", "confirmPassword")],
    accounts: Accounts,
) -> Response:
    if customer_reference != customer.customer_reference:
        raise GlueException(GlueError(403, "411", "Unauthorized request."))
    attributes = body.data.attributes
    if attributes.new_password != attributes.confirm_password:
        raise GlueException(mismatch("newPassword", "confirmPassword"))
    try:
        await accounts.passwords.change(
            customer,
            current=attributes.password,
            new=attributes.new_password,
            client_ip=client_of(request),
        )
    except WrongCurrentPassword:
        raise GlueException(WRONG_PASSWORD) from None
    except LoginBlocked as blocked:
        raise GlueException(blocked_error(blocked)) from None
    except PasswordRejected as rejected:
        raise GlueException(*policy_errors(rejected)) from None
    return Response(status_code=204)


@router.get("/password/restore", response_class=HTMLResponse, summary="Storefront page of the reset link: the form")
async def restore_page(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Query()] = "",
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    """The form for a key that is still good, in the customer's language; a used, expired or unknown one gets
    the invalid page (400) at once, not after a password was typed. A read only: mail scanners open links."""
    link = await accounts.passwords.preview_reset(token)
    if not link.valid:
        return _page(renderer, settings, link.locale, accept_language, token="", state="invalid", status=400)
    return _page(renderer, settings, link.locale, accept_language, token=token, state="form")


@router.post(
    "/password/restore", response_class=HTMLResponse, summary="The form's submission (works without JavaScript)"
)
async def restore_form(
    accounts: Accounts,
    renderer: Renderer,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=4096)],
    confirm_password: Annotated[str, Form(max_length=4096)],
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    locale = (await accounts.passwords.preview_reset(token)).locale  # the answer speaks the customer's language
    if password != confirm_password:
        codes = ["406"]
        return _page(renderer, settings, locale, accept_language, token=token, state="form", codes=codes, status=422)
    try:
        await accounts.passwords.complete_reset(token, password)
    except InvalidResetKey:
        return _page(renderer, settings, locale, accept_language, token="", state="invalid", status=400)
    except PasswordRejected as rejected:
        codes = [v.code for v in rejected.violations]
        return _page(renderer, settings, locale, accept_language, token=token, state="form", codes=codes, status=422)
    return _page(renderer, settings, locale, accept_language, token="", state="done")


def _page(
    renderer: Renderer,
    settings: SettingsDep,
    customer_locale: str | None,
    accept_language: str | None,
    *,
    token: str,
    state: str,
    codes: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    locale = page_locale(settings, customer_locale, accept_language)
    messages = _error_messages(settings, locale)
    errors = [
        messages.get(code, code).replace("{min_length}", str(settings.password_min_length)) for code in codes or []
    ]
    html = renderer.render_page(
        "restore_password",
        locale,
        {
            "shop_name": settings.shop_name,
            "token": token,
            "state": state,
            "errors": errors,
            "login_url": f"{settings.public_url.rstrip('/')}/login",
            "min_length": settings.password_min_length,
        },
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error_messages(settings: SettingsDep, locale: str) -> dict[str, str]:
    folder = settings.templates_dir / "pages"
    path = folder / locale / "password_errors.json"
    if not path.exists():
        path = folder / settings.default_locale / "password_errors.json"
    messages: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return messages
