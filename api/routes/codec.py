"""The codec server of the Temporal UI and CLI: Temporal's remote codec protocol over the service's own key.

`POST /backoffice/codec/decode` and `POST /backoffice/codec/encode` take and answer `{"payloads": [...]}`,
the protobuf JSON mapping of `temporal.api.common.v1.Payloads` (metadata values and data in base64).
The UI is given the endpoint `<API>/backoffice/codec` and appends `/decode` itself; the CLI takes it as
`--codec-endpoint` (with `--codec-auth "Bearer stf_..."`).

Who may: a staff member, by API key (`Authorization: Bearer stf_...`, what the CLI sends) or by the
back-office web session (the cookie lives under /backoffice, so the UI sends it when told to include
cross-origin credentials). Decoding shows what the customer page shows, so support and admins may
(`lifecycles.decode`; an agent, who only finds customers to assist them, may not); encoding makes
payloads the worker trusts (an input for `temporal workflow start`), so only admins (`lifecycles.encode`).
No credentials: `401`; errors in the Glue envelope.

Browsers: the UI runs on another origin, so every answer carries CORS headers for the origins of
ACCOUNTS_CODEC_CORS_ORIGINS (default: the origin of ACCOUNTS_TEMPORAL_UI_URL), credentials allowed, and
a preflight (OPTIONS) from one of them is answered; any other origin gets no CORS header at all, so its
page cannot read an answer. The routes stay out of the OpenAPI document: they speak Temporal's
protocol, not Glue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from accounts.settings import Settings
from accounts.staff import StaffMember
from accounts.temporal import CODEC_PATH, UnknownPayloadKey
from api.jsonapi import GlueError, GlueException, errors_response
from backoffice import Forbidden, authorize

PREFIX = CODEC_PATH
ACTIONS = {"decode": "lifecycles.decode", "encode": "lifecycles.encode"}
# what the Temporal UI sends (its fetch: Content-Type, X-Namespace, and Authorization when it passes a token)
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
PREFLIGHT_MAX_AGE = "600"

MISSING_CREDENTIALS = GlueError(
    401, "002", "Missing access token: send a staff API key (Authorization: Bearer stf_...) or sign in."
)
INVALID_CREDENTIALS = GlueError(401, "001", "Invalid access token.")
NOT_FOUND = GlueError(404, "404", "The codec serves /encode and /decode.")

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def cors_headers(request: Request, settings: Settings) -> dict[str, str]:
    """CORS headers for an answer to this request: the allowed origin echoed, or none at all."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") in settings.codec_origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {"Vary": "Origin"}


@router.options("/{operation}")
async def preflight(operation: str, request: Request) -> Response:
    cors = cors_headers(request, request.app.state.settings)
    method = request.headers.get("access-control-request-method", "").upper()
    if operation not in ACTIONS or "Access-Control-Allow-Origin" not in cors or method not in ("", "POST"):
        return Response(status_code=403, headers={"Vary": "Origin"})
    headers = {
        **cors,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    }
    return Response(status_code=204, headers=headers)


@router.post("/{operation}")
async def convert(operation: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    cors = cors_headers(request, settings)
    try:
        if operation not in ACTIONS:
            raise GlueException(NOT_FOUND)
        member = await _staff(request)
        try:
            authorize(member, ACTIONS[operation])
        except Forbidden as error:
            raise GlueException(GlueError(403, "403", str(error))) from None
        namespace = request.headers.get("x-namespace")
        if namespace and namespace != settings.temporal_namespace:
            raise GlueException(GlueError(400, "400", f"This codec serves namespace {settings.temporal_namespace}."))
        try:
            payloads = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as error:
            raise GlueException(GlueError(400, "400", f"The body is no Payloads JSON: {error}")) from None
        codec: PayloadCodec | None = request.app.state.payload_codec
        out = list(payloads.payloads)
        if codec is not None:  # none only where development turned encryption off: nothing to do
            try:
                out = await (codec.decode(out) if operation == "decode" else codec.encode(out))
            except UnknownPayloadKey as error:
                raise GlueException(GlueError(422, "422", str(error))) from None
    except GlueException as refused:
        return errors_response(refused.errors, {**refused.headers, **cors})
    body = json.dumps(
        {"payloads": [json_format.MessageToDict(payload) for payload in out]}
    )  # "payloads" even when empty
    # a decoded payload is personal data: no cache keeps it
    return Response(body, media_type="application/json", headers={**cors, "Cache-Control": "no-store"})


async def _staff(request: Request) -> StaffMember:
    """The staff member of a staff API key, else of the back-office web session; 401 without either."""
    state = request.app.state
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, key = authorization.partition(" ")
        member = await state.staff.authenticate(key.strip()) if scheme.lower() == "bearer" else None
        if member is None:
            raise GlueException(INVALID_CREDENTIALS, headers=_challenge())
        return member
    session = await state.web.codec.read(request, state.sessions)
    if session is None:
        raise GlueException(MISSING_CREDENTIALS, headers=_challenge())
    return session.member


def _challenge() -> Mapping[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="temporal-codec"'}
