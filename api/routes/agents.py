"""Agent assistance over Glue (Spryker's `agent-auth-rest-api`): agents sign in, find customers, act for one.

- POST /agent-access-tokens: an agent (a staff member of role `agent`) signs in with name and password, on
  the back office's sign-in path (per-name and per-client throttles, api/web/sign_in.py); 401 `4101` otherwise.
- GET /agent-customer-search and POST /agent-customer-impersonation-access-tokens need
  `X-Agent-Authorization: Bearer <agent token>`: 401 `4102` for a token that is none of ours (or of a
  disabled member), 401 `4103` for a missing one or a credential that is not an agent's (a customer token,
  a support or admin API key).
- DELETE /agent-customer-impersonation-access-tokens/mine (this service's extension; Spryker has no end of an
  impersonation): the impersonation token ends its own session.

The impersonation's lifecycle is workflows/assist.py; `RecordAssistActions` reports each change the token
made to it after the answer went out.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts import assists, rate_limits
from accounts.access_tokens import AccessTokenIssuer, InvalidAccessToken
from accounts.models import Staff
from accounts.staff import StaffMember, row_id
from api import jsonapi
from api.auth import CurrentCustomer
from api.client_address import client_of
from api.deps import Accounts, Sessions
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.limits import limited
from api.routes.access_tokens import DEVICE_TOKEN_HEADER, blocked_answer, presented_device_token, token_document
from api.schemas import AgentAccessTokenRequest, ImpersonationRequest, SearchText
from api.web.sign_in import SignInBlocked
from starter import LoginBlocked
from starter.assists import AssistNotRunning, ImpersonationRefused

router = APIRouter(tags=["agents"])
log = logging.getLogger("accounts.assists")

AGENT_HEADER = "X-Agent-Authorization"
INVALID_LOGIN = GlueError(401, "4101", "Failed to authenticate an agent.")
INVALID_AGENT_TOKEN = GlueError(401, "4102", "Agent access token is invalid.")
AGENT_ONLY = GlueError(401, "4103", "Action is available to agent user only.")
IMPERSONATION_FAILED = GlueError(401, "4104", "Failed to impersonate a customer.")
ONLY_MINE = GlueError(404, "404", "Only the impersonation token of this request (mine) can be deleted.")
AGENT_SUBJECT_PREFIX = "staff:"  # an agent token's `sub`: the staff row, never the name
DEFAULT_LIMIT = 10  # Spryker's default page of a customer search
MAX_LIMIT = 100
MAX_OFFSET = 1_000_000_000
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def revocation_version(revoked_at: datetime | None) -> int:
    """An agent token's `tv`: the member's last revocation (sessions_revoked_at, to the microsecond; 0 for
    none). A token is good while it still names the member's last revocation, so one issued a moment after
    a revocation works and any issued before it does not. (A token's `iat` has whole seconds: compared with
    the revocation's time, a sign-in in the same second as a new password was refused.)"""
    if revoked_at is None:
        return 0
    return (revoked_at - EPOCH) // timedelta(microseconds=1)


async def _agent_of_token(request: Request, token: str) -> StaffMember:
    """The agent a presented credential names; raises 4102 (none of ours) or 4103 (not an agent's)."""
    agent_tokens: AccessTokenIssuer = request.app.state.agent_issuer
    try:
        claims = agent_tokens.verify(token)
    except InvalidAccessToken:
        return await _agent_of_other_credential(request, token)
    staff_id = row_id(claims.customer_reference.removeprefix(AGENT_SUBJECT_PREFIX))
    async with request.app.state.sessions() as session:
        staff = await session.scalar(select(Staff).where(Staff.id == staff_id, Staff.disabled_at.is_(None)))
    # a sign-out, a new password or a disable (sessions_revoked_at) ends agent tokens issued before it
    if staff is None or claims.token_version != revocation_version(staff.sessions_revoked_at):
        raise GlueException(INVALID_AGENT_TOKEN)
    if staff.role != "agent":  # the member's role changed since the token was issued
        raise GlueException(AGENT_ONLY)
    return StaffMember(staff.id, staff.name, staff.role)


async def _agent_of_other_credential(request: Request, token: str) -> StaffMember:
    """A staff API key (an agent's works; a support or admin key is refused) or a customer token (refused)."""
    member = await request.app.state.staff.authenticate(token)
    if member is not None:
        if member.role != "agent":
            raise GlueException(AGENT_ONLY)
        return member
    try:
        request.app.state.issuer.verify(token)
    except InvalidAccessToken:
        raise GlueException(INVALID_AGENT_TOKEN) from None
    raise GlueException(AGENT_ONLY)  # a customer's token: valid, but nobody's agent token


async def _current_agent(
    request: Request, x_agent_authorization: Annotated[str | None, Header(alias=AGENT_HEADER)] = None
) -> StaffMember:
    # Spryker: a missing header or one without "<type> <token>" leaves the request without an agent (4103)
    scheme, _, token = (x_agent_authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GlueException(AGENT_ONLY)
    return await _agent_of_token(request, token.strip())


CurrentAgent = Annotated[StaffMember, Depends(_current_agent)]


def _tokens(expires_in: int, access_token: str) -> dict[str, Any]:
    # refreshToken is Spryker's attribute; here neither token is refreshed (agents sign in again; an
    # impersonation ends with its session), so it is null
    return {"tokenType": "Bearer", "expiresIn": expires_in, "accessToken": access_token, "refreshToken": None}


def _seconds(claims_from: datetime, claims_to: datetime) -> int:
    # the session's end was fixed when it began, a moment before the token: what is left of it, rounded
    return round((claims_to - claims_from).total_seconds())


@router.post(
    "/agent-access-tokens",
    status_code=201,
    summary="An agent signs in with name and password",
    dependencies=[GlueRequest, limited(rate_limits.STAFF_SIGN_IN)],
)
async def create_agent_access_token(
    body: AgentAccessTokenRequest,
    request: Request,
    x_mfa_code: Annotated[str | None, Header(max_length=64)] = None,
) -> JSONResponse:
    attributes = body.data.attributes
    try:
        signed_in = await request.app.state.web.sign_in.authenticate(
            attributes.username,
            attributes.password,
            client_ip=client_of(request),
            device_token=presented_device_token(request),
            code=x_mfa_code or "",
        )
    except SignInBlocked as blocked:  # the customers' answer to a blocked sign-in (429 4401)
        raise blocked_answer(LoginBlocked(blocked.retry_after_seconds)) from None
    if signed_in is None or signed_in.member.role != "agent":
        raise GlueException(INVALID_LOGIN)
    agent_tokens: AccessTokenIssuer = request.app.state.agent_issuer
    # the revocation as the row whose password was verified had it: one set since (a new password while
    # argon2 ran, a disable) already ends this token
    version = revocation_version(signed_in.checked.sessions_revoked_at)
    token, claims = agent_tokens.issue(f"{AGENT_SUBJECT_PREFIX}{signed_in.member.id}", version)
    response = token_document(
        request, "agent-access-tokens", _tokens(_seconds(claims.issued_at, claims.expires_at), token)
    )
    response.headers[DEVICE_TOKEN_HEADER] = signed_in.device_token
    return response


@router.get("/agent-customer-search", summary="Customers whose email, first or last name starts with q, paged")
async def search_customers(
    request: Request,
    _agent: CurrentAgent,
    sessions: Sessions,
    q: Annotated[SearchText, Query(max_length=assists.MAX_QUERY)] = "",
    offset: Annotated[int, Query(alias="page[offset]", ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(alias="page[limit]", ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> JSONResponse:
    async with sessions() as session:
        found, total = await assists.search_customers(session, q, offset=offset, limit=limit)
    customers = [
        {
            "customerReference": c.customer_reference,
            "email": c.email,
            "firstName": c.first_name,
            "lastName": c.last_name,
        }
        for c in found
    ]
    base = f"{str(request.base_url).rstrip('/')}/agent-customer-search"

    def page(at: int) -> str:
        return f"{base}?{urlencode({'q': q, 'page[offset]': at, 'page[limit]': limit})}"

    last = max(0, (total - 1) // limit * limit)
    links = {"self": page(offset), "first": page(0), "last": page(last)}
    if offset > 0:
        links["prev"] = page(max(0, offset - limit))
    if offset + limit < total:
        links["next"] = page(offset + limit)
    data = jsonapi.resource(request, "agent-customer-search", "", {"customers": customers}, "/agent-customer-search")
    data["id"] = None  # one resource without an id, as Glue answers it
    return JSONResponse({"data": [data], "links": links}, media_type=jsonapi.MEDIA_TYPE)


@router.post(
    "/agent-customer-impersonation-access-tokens",
    status_code=201,
    summary="A customer access token for the agent to act for the customer (short-lived, audited)",
    dependencies=[GlueRequest],
)
async def impersonate_customer(
    request: Request, agent: CurrentAgent, body: ImpersonationRequest, accounts: Accounts
) -> JSONResponse:
    try:
        started = await accounts.assists.begin(agent, body.data.attributes.customer_reference)
    except ImpersonationRefused:
        raise GlueException(IMPERSONATION_FAILED) from None
    return token_document(request, "agent-customer-impersonation-access-tokens", impersonation_tokens(request, started))


def impersonation_tokens(request: Request, started: Any) -> dict[str, Any]:
    """The tokens of a session `Assists.begin` started (the back office hands them to the storefront too)."""
    issuer: AccessTokenIssuer = request.app.state.issuer
    token, claims = issuer.issue(
        started.customer_reference,
        started.token_version,
        session_id=started.assist_id,
        acting_agent=started.agent,
        expires_at=started.expires_at,
    )
    return _tokens(_seconds(claims.issued_at, claims.expires_at), token)


@router.delete(
    "/agent-customer-impersonation-access-tokens/{token}",
    status_code=204,
    summary="End the assistance session of the impersonation token in Authorization (`mine`); extension",
)
async def end_impersonation(token: str, request: Request, customer: CurrentCustomer, accounts: Accounts) -> Response:
    acting = request.state.acting_agent
    if acting is None:  # the customer's own token
        raise GlueException(AGENT_ONLY)
    if token != "mine":  # noqa: S105 (Glue's "mine", not a secret)
        raise GlueException(ONLY_MINE)
    try:
        await accounts.assists.end(
            customer.customer_reference, acting.assist_id, reason="token_deleted", ended_by=acting.actor
        )
    except AssistNotRunning:  # expired meanwhile: the token is dead either way
        pass
    return Response(status_code=204)


class RecordAssistActions:
    """After a change made with an impersonation token was answered (2xx, 3xx), tell its assistance session
    (method and route template, never the body). Outermost, so no deadline of the request cuts it short;
    bounded by the request timeout of its own."""

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES:
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, sending)
        acting = scope.get("state", {}).get("acting_agent")
        route = getattr(scope.get("route"), "path", None)
        if acting is None or not 200 <= status < 400 or not isinstance(route, str) or route.startswith("/agent-"):
            return
        # the run records it within the timeout, or the change is audited without it (starter/assists.py)
        await scope["app"].state.accounts.assists.record_action(
            acting.customer_reference, acting.assist_id, scope["method"], route, timeout=self.timeout
        )
