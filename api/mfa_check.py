"""Spryker's MFA check of protected requests (MultiFactorAuthRestUserValidator), and its Glue errors.

A POST, PATCH or DELETE of a resource in ACCOUNTS_MFA_PROTECTED_REQUESTS (the resource is the path's last
literal segment, Glue's rule) by a signed-in customer with an active method needs a valid code in
`X-MFA-Code`: none is `403 5900`, a wrong, expired, used or replayed one `403 5901`. GET and OPTIONS,
anonymous requests (a guest cart, a registration) and customers without an active method pass, as in
Spryker. Unlike Spryker, a code works once (Spryker accepts it again for its whole 30 minutes).

It runs inside GlueRequest (api/envelope.py), after the envelope check; a request whose access token
does not verify is left to the route, which answers Glue's 001 or 002.
"""

from __future__ import annotations

from fastapi import Request

from accounts import mfa
from accounts.models import Customer
from api.auth import customer_of_token
from api.jsonapi import GlueError, GlueException

HEADER = "X-MFA-Code"
# Spryker's codes and texts (Glue MultiFactorAuthConfig)
CODE_MISSING = GlueError(403, "5900", "X-MFA-Code header is missing.")
CODE_INVALID = GlueError(403, "5901", "X-MFA-Code is invalid.")
TYPE_MISSING = GlueError(400, "5902", "Multi-factor authentication type is missing.")
DEACTIVATION_FAILED = GlueError(400, "5903", "Failed to deactivate multi-factor authentication.")
ALREADY_ACTIVE = GlueError(400, "5904", "Multi-factor authentication type already activated.")
TYPE_NOT_FOUND = GlueError(400, "5906", "Multi-factor authentication type is not found.")
TYPE_NOT_FOUND_FOR_USER = GlueError(400, "5906", "Multi-factor authentication type is not found for the current user.")
SENDING_FAILED = GlueError(
    400,
    "5910",
    "Something went wrong while sending your code. Please try again later or contact the system administrator.",
)
_SKIPPED_METHODS = ("GET", "HEAD", "OPTIONS")


def presented_code(request: Request) -> str | None:
    value = request.headers.get(HEADER)
    return value.strip() if value and value.strip() else None


async def _signed_in_customer(request: Request) -> Customer | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await customer_of_token(request, token.strip())


async def require_code(request: Request, customer: mfa.CustomerLike, *, purpose: str) -> None:
    """The customer has an active method: the request's X-MFA-Code must be a valid code of one of them."""
    code = presented_code(request)
    if code is None:
        raise GlueException(CODE_MISSING)
    accepted = await mfa.verify(
        request.app.state.sessions, request.app.state.mfa_policy, customer, code, channel="api", purpose=purpose
    )
    if accepted is None:
        raise GlueException(CODE_INVALID)
    request.state.mfa_code_accepted = accepted  # spent: the re-authentication of this request may take it


async def check_sign_in(request: Request, customer: mfa.CustomerLike) -> None:
    """ACCOUNTS_MFA_AT_SIGN_IN: the right password of a customer with an active method is not enough. Without
    X-MFA-Code the answer is 5900, and an emailed code goes out (within its resend interval and hourly
    budget) so that the client can sign in again with it; a wrong code is 5901."""
    if not request.app.state.settings.mfa_at_sign_in:
        return
    sessions, policy = request.app.state.sessions, request.app.state.mfa_policy
    active = await mfa.active_types(sessions, customer.id)
    if not active:
        return
    if presented_code(request) is None and mfa.EMAIL in active:
        try:
            code_id = await mfa.request_code(sessions, policy, customer, mfa.EMAIL, channel="sign-in")
        except mfa.TooManyCodes:
            code_id = None  # the codes of this hour still work; the answer stays 5900
        if code_id is not None:
            await request.app.state.accounts.mfa.send_code(customer.customer_reference, code_id, channel="sign-in")
    await require_code(request, customer, purpose="sign-in")


async def check_protected_request(request: Request, resource: str) -> None:
    """`resource`: the route's Glue resource (api.envelope.resource_type)."""
    if request.method in _SKIPPED_METHODS or resource not in request.app.state.settings.mfa_protected_requests:
        return
    customer = await _signed_in_customer(request)
    if customer is None or not await mfa.active_types(request.app.state.sessions, customer.id):
        return
    await require_code(request, customer, purpose=resource)
