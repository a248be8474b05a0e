"""Who is calling: Bearer access tokens checked in one place (signature, expiry, token version)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import select

from accounts.access_tokens import InvalidAccessToken
from accounts.logs import know_customer
from accounts.models import Customer
from api.jsonapi import GlueError, GlueException

MISSING_TOKEN = GlueError(403, "002", "Missing access token.")
INVALID_TOKEN = GlueError(401, "001", "Invalid access token.")
TOKEN_WITH_ANONYMOUS_ID = GlueError(
    400, "005", "Request is unauthorized: an access token and X-Anonymous-Customer-Unique-Id cannot be combined."
)


async def customer_of_token(request: Request, token: str) -> Customer | None:
    """The verified customer an access token names, or None (bad signature, expired, an old token version)."""
    try:
        claims = request.app.state.issuer.verify(token)
    except InvalidAccessToken:
        return None
    async with request.app.state.sessions() as session:
        customer = await session.scalar(
            select(Customer).where(Customer.customer_reference == claims.customer_reference)
        )
    # A password change or reset bumps token_version: every token issued before it dies here.
    if customer is None or customer.status != "verified" or customer.token_version != claims.token_version:
        return None
    return customer


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
    customer = await customer_of_token(request, token.strip())
    if customer is None:
        raise GlueException(INVALID_TOKEN)
    know_customer(customer.customer_reference)  # the request's log lines name the reference (never the address)
    return customer


CurrentCustomer = Annotated[Customer, Depends(_current_customer)]
