"""Sign-in: POST /access-tokens and /refresh-tokens (Glue), POST /token (OAuth 2.0), JWKS, DELETE refresh tokens."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, BackgroundTasks, Form, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from accounts import carts, customer_sessions, inactivity, rate_limits
from accounts.access_tokens import AccessTokenIssuer
from accounts.device_tokens import MAX_TOKEN_LENGTH as MAX_DEVICE_TOKEN
from accounts.logs import know_customer
from accounts.mfa import Subject
from accounts.models import utcnow
from accounts.refresh_tokens import InvalidRefreshToken, RefreshTokenStore
from accounts.tokens import hash_token
from api import jsonapi
from api.auth import CurrentCustomer
from api.client_address import client_of
from api.deps import Accounts, Sessions
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.limits import limited, request_limits
from api.mfa_check import check_sign_in
from api.schemas import AccessTokenRequest, RefreshTokenRequest
from starter import LoginBlocked, LoginFailed, PasswordResetRequired
from starter.login import Authenticated, SecondFactor

router = APIRouter(tags=["access-tokens"])

AUTHENTICATION_FAILED = GlueError(401, "003", "Failed to authenticate user.")
# Not a Spryker code: the right password of an account whose reset support forced.
RESET_REQUIRED = GlueError(
    401, "426", "Password reset required. Use the link sent to your email address to set a new password."
)
REFRESH_FAILED = GlueError(401, "004", "Failed to refresh token.")

# Device tokens (accounts/device_tokens.py): a client presents the one of its last sign-in in this header
# (or the `deviceToken` attribute, or the storefront pages' cookie) and finds its next one in this header.
DEVICE_TOKEN_HEADER = "X-Device-Token"  # noqa: S105 (a header name, not a secret)
DEVICE_COOKIE = "accounts_device"  # set by the storefront pages of this service (the lock email's link)


def blocked_error(error: LoginBlocked) -> GlueError:
    minutes = max(1, math.ceil(error.retry_after_seconds / 60))
    return GlueError(
        429, "4401", f"Too many log in attempts from your address. Please wait {minutes} minutes before trying again."
    )


def blocked_answer(error: LoginBlocked) -> GlueException:
    """A blocked sign-in's answer, whether the database refused it or the memory of its refusals (api/refusals.py)."""
    return GlueException(blocked_error(error), headers={"Retry-After": str(error.retry_after_seconds)})


def _client_ip(request: Request) -> str:
    return client_of(request)  # IPv6 by its network: see accounts.rate_limits.client_network


def presented_device_token(request: Request, attribute: str | None = None) -> str | None:
    return attribute or request.headers.get(DEVICE_TOKEN_HEADER) or request.cookies.get(DEVICE_COOKIE) or None


def _token_attributes(request: Request, who: Authenticated, refresh_token: str, session_id: str) -> dict[str, Any]:
    """A fresh access token for `who` in the session (refresh family) `session_id`, next to its refresh token."""
    issuer: AccessTokenIssuer = request.app.state.issuer
    access_token, claims = issuer.issue(who.customer_reference, who.token_version, session_id=session_id)
    return {
        "tokenType": "Bearer",
        "expiresIn": int((claims.expires_at - claims.issued_at).total_seconds()),
        "accessToken": access_token,
        "refreshToken": refresh_token,
        "refreshTokenExpiresIn": int(request.app.state.settings.refresh_token_lifetime.total_seconds()),
    }


@dataclass
class SignedIn:
    attributes: dict[str, Any]
    session_id: str
    signed_in_at: datetime | None = None  # set when it came from a new device (accounts/customer_sessions.py)


def sign_in_device(request: Request, who: Authenticated, presented: str | None) -> customer_sessions.SignInDevice:
    return customer_sessions.SignInDevice(
        name=customer_sessions.device_name(request.headers.get("user-agent")),
        network_prefix=customer_sessions.network_prefix(_client_ip(request)),
        device_token_hash=hash_token(who.device_token) if who.device_token else None,
        known_token=who.known_device,
        presented_token_hash=hash_token(presented) if presented and len(presented) <= MAX_DEVICE_TOKEN else None,
    )


async def _tokens(request: Request, who: Authenticated, presented: str | None) -> SignedIn:
    """A new session (refresh family) for the sign-in, recorded with its device in the same transaction.
    `presented`: the device token the client sent, if any."""
    store: RefreshTokenStore = request.app.state.refresh_tokens
    know_customer(who.customer_reference)  # the sign-in's later log lines name whom it signed in
    signed_in = SignedIn({}, uuid.uuid4().hex)
    device = sign_in_device(request, who, presented)

    async def started(session: Any, now: datetime) -> None:
        new = await customer_sessions.record(
            session, customer_id=who.customer_id, family_id=signed_in.session_id, device=device, now=now
        )
        signed_in.signed_in_at = now if new else None
        if inactivity.needs_sign_in_write(who.last_signed_in_at, who.inactivity_stage, now):
            if not await inactivity.record_sign_in(session, who.customer_id, now):
                raise InvalidRefreshToken("the account's deletion for inactivity is on its way")

    refresh_token = await store.issue(
        who.customer_id, family_id=signed_in.session_id, token_version=who.token_version, started=started
    )
    signed_in.attributes = _token_attributes(request, who, refresh_token, signed_in.session_id)
    return signed_in


def alert_if_new(background: BackgroundTasks, accounts: Accounts, who: Authenticated, signed_in: SignedIn) -> None:
    """A new device's email starts after the answer is sent: the sign-in waits for no Temporal round trip.
    So does the signal that ends a running inactivity lifecycle (only when one runs: accounts/inactivity.py)."""
    if who.inactivity_stage in inactivity.RUNNING:
        background.add_task(accounts.inactivity.signed_in, who.customer_reference)
    if signed_in.signed_in_at is not None:
        background.add_task(
            accounts.customer_sessions.alert_new_device,
            who.customer_reference,
            signed_in.session_id,
            signed_in.signed_in_at,
        )


async def _rotate(request: Request, accounts: Accounts, refresh_token: str) -> dict[str, Any]:
    store: RefreshTokenStore = request.app.state.refresh_tokens
    customer_id, new_refresh, session_id = await store.rotate_session(refresh_token)
    who = await accounts.customer_by_id(customer_id)
    if who is None or not await _prolonged(store, who):  # anonymized, no longer able to sign in, or retired
        await store.revoke(new_refresh)
        raise InvalidRefreshToken("customer cannot sign in")
    know_customer(who.customer_reference)  # a refused refresh names no one, as a refused sign-in
    return _token_attributes(request, who, new_refresh, session_id)


async def _prolonged(store: RefreshTokenStore, who: Authenticated) -> bool:
    """A refresh prolongs the sign-in's session, so it counts as a sign-in for inactivity (an app's customer
    may never type the password again): the same once-a-day write, which ends a standing and is refused
    (False) for a retired customer. No signal: the lifecycle's next step finds the customer active."""
    now = store.clock()
    if not inactivity.needs_sign_in_write(who.last_signed_in_at, who.inactivity_stage, now):
        return True
    async with store.sessions.begin() as session:
        return await inactivity.record_sign_in(session, who.customer_id, now)


def _second_factor(request: Request) -> SecondFactor:
    """ACCOUNTS_MFA_AT_SIGN_IN's check, run by the sign-in after the password and before the device token
    (a refused code leaves no device known); off, it returns at once, costing no statement."""

    async def check(customer_id: int, customer_reference: str) -> None:
        await check_sign_in(request, Subject(customer_id, customer_reference))

    return check


def token_document(request: Request, type_: str, attributes: dict[str, Any]) -> JSONResponse:
    data = jsonapi.resource(request, type_, "", attributes, f"/{type_}")
    data["id"] = None  # Glue answers these resources without an id
    return jsonapi.document(data, status=201)


@router.post(
    "/access-tokens",
    status_code=201,
    summary="Sign in with email and password",
    dependencies=[GlueRequest, limited(rate_limits.SIGN_IN)],
)
async def create_access_token(
    body: AccessTokenRequest,
    request: Request,
    accounts: Accounts,
    sessions: Sessions,
    background: BackgroundTasks,
    x_anonymous_customer_unique_id: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    attributes = body.data.attributes
    try:
        validate_email(attributes.username, check_deliverability=False)
    except EmailNotValidError:
        raise GlueException(GlueError(422, "901", "username => This value is not a valid email address.")) from None
    presented = presented_device_token(request, attributes.device_token)
    try:
        who = await accounts.logins.authenticate(
            attributes.username,
            attributes.password,
            client_ip=_client_ip(request),
            device_token=presented,
            second_factor=_second_factor(request),
        )
    except LoginFailed:
        raise GlueException(AUTHENTICATION_FAILED) from None
    except PasswordResetRequired:
        raise GlueException(RESET_REQUIRED) from None
    except LoginBlocked as blocked:
        raise blocked_answer(blocked) from None
    try:
        signed_in = await _tokens(request, who, presented)
    except InvalidRefreshToken:  # the password changed while it was being checked, or the account retired
        raise GlueException(AUTHENTICATION_FAILED) from None
    alert_if_new(background, accounts, who, signed_in)
    guest_key = carts.guest_key(x_anonymous_customer_unique_id)
    if guest_key is not None:  # signed in from a guest session: its cart joins the customer's
        async with sessions.begin() as session:
            await carts.merge_guest_cart(session, guest_key=guest_key, customer_id=who.customer_id, now=utcnow())
    response = token_document(request, "access-tokens", signed_in.attributes)
    if who.device_token:
        response.headers[DEVICE_TOKEN_HEADER] = who.device_token
    return response


@router.post(
    "/refresh-tokens",
    status_code=201,
    summary="Exchange a refresh token (rotated: the old one dies)",
    dependencies=[GlueRequest],
)
async def refresh_access_token(body: RefreshTokenRequest, request: Request, accounts: Accounts) -> JSONResponse:
    try:
        attributes = await _rotate(request, accounts, body.data.attributes.refresh_token)
    except InvalidRefreshToken:
        raise GlueException(REFRESH_FAILED) from None
    return token_document(request, "refresh-tokens", attributes)


@router.delete(
    "/refresh-tokens/{refresh_token}",
    status_code=204,
    summary="Revoke a refresh token, or all (`mine`)",
    dependencies=[GlueRequest],
)
async def revoke_refresh_token(refresh_token: str, request: Request, customer: CurrentCustomer) -> Response:
    store: RefreshTokenStore = request.app.state.refresh_tokens
    if refresh_token == "mine":  # noqa: S105 (Glue's name for "all of mine", not a secret)
        await store.revoke_all(customer.id)
    else:
        await store.revoke(refresh_token, customer_id=customer.id)
    return Response(status_code=204)


FORM = "application/x-www-form-urlencoded"


class OAuthRoute(APIRoute):
    """OAuth clients read OAuth's errors (RFC 6749, 5.2), not Glue's: a body that is no valid form (JSON,
    a parameter missing or too long) answers 400 invalid_request instead of Glue's 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as invalid:
                if not request.headers.get("content-type", "").startswith(FORM):
                    return _oauth_error(400, "invalid_request", f"The parameters must be sent as {FORM}.")
                names = sorted({str(e["loc"][-1]) for e in invalid.errors() if e.get("loc")})
                return _oauth_error(400, "invalid_request", f"Missing or invalid parameter: {', '.join(names)}.")

        return run


oauth = APIRouter(tags=["access-tokens"], route_class=OAuthRoute)


@oauth.post("/token", summary="OAuth 2.0 token endpoint (grant_type password or refresh_token)")
async def oauth_token(
    request: Request,
    accounts: Accounts,
    background: BackgroundTasks,
    grant_type: Annotated[str, Form(max_length=32)],
    username: Annotated[str | None, Form(max_length=255)] = None,
    password: Annotated[str | None, Form(max_length=4096)] = None,
    refresh_token: Annotated[str | None, Form(max_length=255)] = None,
) -> JSONResponse:
    if grant_type == "password":  # the same sign-in budget as /access-tokens
        try:
            await request_limits(request).admit_client(rate_limits.SIGN_IN, client_of(request))
        except rate_limits.OverBudget as over:
            response = _oauth_error(429, "invalid_grant", "Too many sign-in requests. Try again later.")
            response.headers["Retry-After"] = str(over.retry_after_seconds)
            return response
    try:
        if grant_type == "password" and username and password:
            presented = presented_device_token(request)
            who = await accounts.logins.authenticate(
                username,
                password,
                client_ip=_client_ip(request),
                device_token=presented,
                second_factor=_second_factor(request),
            )
            signed_in = await _tokens(request, who, presented)
            alert_if_new(background, accounts, who, signed_in)
            tokens = signed_in.attributes
            device_token = who.device_token
        elif grant_type == "refresh_token" and refresh_token:
            tokens = await _rotate(request, accounts, refresh_token)
            device_token = None
        else:
            return _oauth_error(
                400,
                "unsupported_grant_type" if grant_type not in ("password", "refresh_token") else "invalid_request",
                "grant_type with its parameters is required",
            )
    except PasswordResetRequired:
        return _oauth_error(400, "invalid_grant", RESET_REQUIRED.detail)
    except GlueException as second_factor:  # ACCOUNTS_MFA_AT_SIGN_IN: X-MFA-Code missing or wrong
        return _oauth_error(400, "invalid_grant", second_factor.errors[0].detail)
    except (LoginFailed, InvalidRefreshToken):
        return _oauth_error(400, "invalid_grant", "The credentials or the refresh token are not valid.")
    except LoginBlocked as blocked:
        response = _oauth_error(429, "invalid_grant", blocked_error(blocked).detail)
        response.headers["Retry-After"] = str(blocked.retry_after_seconds)
        return response
    headers = {DEVICE_TOKEN_HEADER: device_token} if device_token else {}  # no-store: api/headers.py
    return JSONResponse(
        {
            "token_type": "Bearer",
            "access_token": tokens["accessToken"],
            "expires_in": tokens["expiresIn"],
            "refresh_token": tokens["refreshToken"],
        },
        headers=headers,
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


router.include_router(oauth)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> dict[str, Any]:
    issuer: AccessTokenIssuer = request.app.state.issuer
    return issuer.jwks()
