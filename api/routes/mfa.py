"""Glue's multi-factor authentication resources (Spryker's multi-factor-auth module, storefront API).

GET /multi-factor-auth-types, POST /multi-factor-auth-type-activate, -verify, -deactivate and
/multi-factor-auth-trigger, with Spryker's codes (api/mfa_check.py) and checks in Spryker's order:
the X-MFA-Code header first where one is required (verify, deactivate), then the type (missing 5902,
not offered 5906), then the customer's state of that type. Extensions of this service: a TOTP
activation answers 200 with its secret, QR code and recovery codes (Spryker has no TOTP type);
codes asked for past the hourly budget answer 429; deactivation takes a code of any active method
(a recovery code included), so a lost phone can be removed with a recovery code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from accounts import mfa
from accounts.models import Customer
from api import jsonapi
from api.auth import InPerson
from api.client_address import client_of
from api.deps import Accounts, Sessions
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.mfa_check import (
    ALREADY_ACTIVE,
    CODE_INVALID,
    CODE_MISSING,
    SENDING_FAILED,
    TYPE_MISSING,
    TYPE_NOT_FOUND,
    TYPE_NOT_FOUND_FOR_USER,
    presented_code,
    require_code,
)
from api.routes.customers import reauthentication_answers
from api.schemas import MfaTypeRequest
from starter import AccountsClient

router = APIRouter(tags=["multi-factor-auth"], dependencies=[GlueRequest])
log = logging.getLogger("accounts.mfa")
TYPES = "/multi-factor-auth-types"


def _policy(request: Request) -> mfa.MfaPolicy:
    policy: mfa.MfaPolicy = request.app.state.mfa_policy
    return policy


def _type(request: Request, body: MfaTypeRequest) -> str:
    kind = body.data.attributes.type
    if not kind:
        raise GlueException(TYPE_MISSING)
    if kind not in _policy(request).types:
        raise GlueException(TYPE_NOT_FOUND)
    return kind


def _refused(refusal: mfa.MfaRefused) -> GlueException:
    return GlueException(ALREADY_ACTIVE if refusal.reason == "already_active" else TYPE_NOT_FOUND_FOR_USER)


def _too_many(error: mfa.TooManyCodes) -> GlueException:
    detail = "Too many codes were asked for. Please wait before asking for another one."
    return GlueException(GlueError(429, "5910", detail), headers={"Retry-After": str(error.retry_after_seconds)})


async def send_code(accounts: AccountsClient, customer: Customer, code_id: int | None) -> None:
    """Start the code's email (workflows/mfa.py); Temporal unreachable is Spryker's 5910."""
    if code_id is None:
        return
    try:
        await accounts.mfa.send_code(customer.customer_reference, code_id)
    except Exception:
        log.exception("the MFA code email of %s could not be started", customer.customer_reference)
        raise GlueException(SENDING_FAILED) from None


@router.get(TYPES, summary="The MFA types this shop offers and the customer's status of each")
async def list_types(request: Request, customer: InPerson, sessions: Sessions) -> JSONResponse:
    found = await mfa.statuses(sessions, _policy(request), customer.id)
    data = [
        jsonapi.resource(request, "multi-factor-auth-types", kind, {"type": kind, "status": status}, f"{TYPES}/{kind}")
        for kind, status in found
    ]
    base = str(request.base_url).rstrip("/")
    return JSONResponse({"data": data, "links": {"self": f"{base}{TYPES}"}}, media_type=jsonapi.MEDIA_TYPE)


@router.post("/multi-factor-auth-type-activate", status_code=204, summary="Start activating an MFA type")
async def activate(
    body: MfaTypeRequest, request: Request, customer: InPerson, sessions: Sessions, accounts: Accounts
) -> Response:
    kind = _type(request, body)
    policy = _policy(request)
    active = await mfa.active_types(sessions, customer.id)
    if kind in active:
        raise GlueException(ALREADY_ACTIVE)
    if active:  # a second type needs a code of the first (Spryker)
        await require_code(request, customer, purpose="activation")
    # this service's extension: with the current password, the method's codes prove who the customer is
    # (a new email, a deletion); without it, a stolen token could enrol its own app for that
    password = body.data.attributes.password
    if password is not None:
        with reauthentication_answers():
            await accounts.reauth.confirm_password(customer, password, client_ip=client_of(request))
    proves = password is not None
    try:
        if kind == mfa.EMAIL:
            started = await mfa.start_email_activation(sessions, policy, customer, proves_identity=proves)
            await send_code(accounts, customer, started.code_id)
            await _deadline(accounts, customer, kind, started.expires_at)
            return Response(status_code=204)
        enrolment = await mfa.start_totp_activation(sessions, policy, customer, customer.email, proves_identity=proves)
    except mfa.MfaRefused as refusal:
        raise _refused(refusal) from None
    except mfa.TooManyCodes as error:
        raise _too_many(error) from None
    await _deadline(accounts, customer, kind, enrolment.expires_at)
    attributes: dict[str, Any] = {
        "type": kind,
        "status": mfa.GLUE_STATUS[mfa.PENDING],
        "secret": enrolment.secret,
        "otpauthUri": enrolment.uri,
        "qrCode": enrolment.qr_code,
        "recoveryCodes": enrolment.recovery_codes,
        "expiresAt": enrolment.expires_at.isoformat(),
    }
    data = jsonapi.resource(request, "multi-factor-auth-type-activate", kind, attributes, f"{TYPES}/{kind}")
    return jsonapi.document(data, status=200)


async def _deadline(accounts: AccountsClient, customer: Customer, kind: str, expires_at: Any) -> None:
    try:
        await accounts.mfa.activation_started(customer.customer_reference, kind, expires_at)
    except Exception:  # the expiry column refuses the activation on time anyway; the timer only tidies
        log.exception("the MFA activation deadline of %s could not be started", customer.customer_reference)


@router.post("/multi-factor-auth-type-verify", status_code=204, summary="Verify a pending MFA type with its code")
async def verify(
    body: MfaTypeRequest, request: Request, customer: InPerson, sessions: Sessions, accounts: Accounts
) -> Response:
    code = presented_code(request)
    if code is None:
        raise GlueException(CODE_MISSING)
    kind = _type(request, body)
    try:
        ok = await mfa.verify_activation(sessions, _policy(request), customer, kind, code)
    except mfa.MfaRefused as refusal:
        raise _refused(refusal) from None
    if not ok:
        raise GlueException(CODE_INVALID)
    try:  # started before the answer: once the customer sees 204, the email is Temporal's to deliver
        await accounts.mfa.activated(customer.customer_reference, kind)
    except Exception:  # the method is active already; refusing now would not undo it
        log.exception("the MFA activation email of %s could not be started", customer.customer_reference)
    return Response(status_code=204)


@router.post("/multi-factor-auth-type-deactivate", status_code=204, summary="Deactivate an active MFA type")
async def deactivate(body: MfaTypeRequest, request: Request, customer: InPerson, sessions: Sessions) -> Response:
    if presented_code(request) is None:
        raise GlueException(CODE_MISSING)
    kind = _type(request, body)
    if kind not in await mfa.active_types(sessions, customer.id):
        raise GlueException(TYPE_NOT_FOUND_FOR_USER)
    await require_code(request, customer, purpose="deactivation")
    await mfa.deactivate(sessions, customer, kind, channel="api")
    return Response(status_code=204)


@router.post("/multi-factor-auth-trigger", status_code=204, summary="Send a code of an active MFA type")
async def trigger(
    body: MfaTypeRequest, request: Request, customer: InPerson, sessions: Sessions, accounts: Accounts
) -> Response:
    kind = _type(request, body)
    try:
        code_id = await mfa.request_code(sessions, _policy(request), customer, kind)
    except mfa.MfaRefused as refusal:
        raise _refused(refusal) from None
    except mfa.TooManyCodes as error:
        raise _too_many(error) from None
    await send_code(accounts, customer, code_id)
    return Response(status_code=204)
