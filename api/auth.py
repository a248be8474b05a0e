"""Who is calling: Bearer access tokens checked in one place (signature, expiry, token version, session).

A token naming its sign-in (`sid`) is good while that sign-in's refresh family lives: the check rides in
the query that reads the customer (an EXISTS beside it), so it costs no round trip of its own.

An agent's impersonation token (`act`, accounts/assists.py) is good while its assistance session is: its
`sid` names the `agent_assists` row, checked the same way. Its request acts for the customer in the audit
(accounts/audit.py), and `InPerson` is the one guard of what only the customer in person may do."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import select

from accounts import audit
from accounts.access_tokens import AccessClaims, InvalidAccessToken
from accounts.assists import assist_live
from accounts.customer_sessions import family_live
from accounts.logs import know_customer
from accounts.models import Customer, utcnow
from api.jsonapi import GlueError, GlueException

MISSING_TOKEN = GlueError(403, "002", "Missing access token.")
INVALID_TOKEN = GlueError(401, "001", "Invalid access token.")
# Not Spryker's (it lets an impersonation do everything): what an agent must never do for a customer
IN_PERSON_ONLY = GlueError(403, "4105", "This action is not available to an agent acting for a customer.")
TOKEN_WITH_ANONYMOUS_ID = GlueError(
    400, "005", "Request is unauthorized: an access token and X-Anonymous-Customer-Unique-Id cannot be combined."
)


async def customer_of_token(request: Request, token: str) -> Customer | None:
    """The verified customer an access token names, or None (bad signature, expired, an old token version,
    an ended session)."""
    found = await _token_holder(request, token)
    return found[0] if found is not None else None


async def _token_holder(request: Request, token: str) -> tuple[Customer, AccessClaims] | None:
    try:
        claims = request.app.state.issuer.verify(token)
    except InvalidAccessToken:
        return None
    by_reference = Customer.customer_reference == claims.customer_reference
    async with request.app.state.sessions() as session:
        if claims.session_id is None:  # issued before sessions had ids: good until it expires
            customer, live = await session.scalar(select(Customer).where(by_reference)), True
        else:  # the session's liveness rides in the customer's query: no second round trip
            live_check = assist_live if claims.acting_agent is not None else family_live
            row = (
                await session.execute(select(Customer, live_check(claims.session_id, utcnow())).where(by_reference))
            ).first()
            customer, live = (row[0], bool(row[1])) if row is not None else (None, False)
    # A password change or reset bumps token_version: every token issued before it dies here; an ended
    # session (DELETE /customers/{ref}/sessions/{id}, a logout) takes its own tokens with it.
    if customer is None or customer.status != "verified" or customer.token_version != claims.token_version or not live:
        return None
    return customer, claims


async def _current_customer(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_anonymous_customer_unique_id: Annotated[str | None, Header()] = None,
) -> Customer:
    if not authorization:
        raise GlueException(MISSING_TOKEN)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GlueException(INVALID_TOKEN)
    if x_anonymous_customer_unique_id:
        raise GlueException(TOKEN_WITH_ANONYMOUS_ID)
    found = await _token_holder(request, token.strip())
    if found is None:
        raise GlueException(INVALID_TOKEN)
    customer, claims = found
    request.state.session_id = claims.session_id  # which of the customer's sessions is "current"
    acting = None
    if claims.acting_agent is not None and claims.session_id is not None:
        acting = audit.ActingAgent(claims.acting_agent, customer.customer_reference, claims.session_id)
    request.state.acting_agent = acting  # api/routes/agents.py records the session's actions
    audit.acting_for(acting)
    know_customer(customer.customer_reference)  # the request's log lines name the reference (never the address)
    return customer


CurrentCustomer = Annotated[Customer, Depends(_current_customer)]


def refuse_acting_agent(request: Request) -> None:
    """The one rule: an agent's impersonation token cannot change the password or the email, delete the
    account, manage MFA, or ask for or download a data export (the routes that do use `InPerson`, or call
    this where only part of a route is)."""
    if getattr(request.state, "acting_agent", None) is not None:
        raise GlueException(IN_PERSON_ONLY)


async def _customer_in_person(request: Request, customer: CurrentCustomer) -> Customer:
    refuse_acting_agent(request)
    return customer


InPerson = Annotated[Customer, Depends(_customer_in_person)]
