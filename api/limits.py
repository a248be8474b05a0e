"""Request budgets at the HTTP edge (accounts.rate_limits): `429` with a Glue error and `Retry-After`.

`limited(kind)` is the dependency of a route that costs work without a signed-in caller: it counts the
request against the client network's and everyone's budget of that kind before anything else of the
route runs. `admit_address` counts a request against the budget of the address it names; the routes
call it before they look the address up, so the answer is the same whether or not it has an account.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from accounts.rate_limits import SIGN_IN, OverBudget, RequestLimits
from api.client_address import client_of
from api.jsonapi import GlueError, GlueException


def wait_words(seconds: int) -> str:
    """How long to wait, as a refusal's detail says it: "42 seconds", "3 minutes" (rounded up)."""
    return f"{seconds} seconds" if seconds < 120 else f"{-(-seconds // 60)} minutes"


def too_many(kind: str, over: OverBudget) -> GlueException:
    seconds = over.retry_after_seconds
    if kind == SIGN_IN:  # what Glue clients of /access-tokens already read for a blocked sign-in
        minutes = -(-seconds // 60)
        detail = f"Too many log in attempts from your address. Please wait {minutes} minutes before trying again."
        error = GlueError(429, "4401", detail)
    else:
        error = GlueError(429, "429", f"Too many requests. Please try again in {wait_words(seconds)}.")
    return GlueException(error, headers={"Retry-After": str(seconds)})


def request_limits(request: Request) -> RequestLimits:
    limits: RequestLimits = request.app.state.limits
    return limits


def limited(kind: str) -> Any:
    async def admit(request: Request) -> None:
        try:
            await request_limits(request).admit_client(kind, client_of(request))
        except OverBudget as over:
            raise too_many(kind, over) from None

    return Depends(admit)


async def admit_address(request: Request, kind: str, address: str) -> None:
    try:
        await request_limits(request).admit_address(kind, address)
    except OverBudget as over:
        raise too_many(kind, over) from None
