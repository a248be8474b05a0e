"""Routes under /customers/{customer_reference}: the signed-in customer opens their own reference only."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from accounts.models import Customer
from api.auth import CurrentCustomer
from api.jsonapi import GlueError, GlueException

NOT_YOURS = GlueError(403, "411", "Unauthorized request.")


async def _own_account(customer_reference: str, customer: CurrentCustomer) -> Customer:
    # A dependency rather than a check in each handler: it answers before the body is validated, so
    # another customer's reference gets 403 whatever attributes were sent.
    if customer_reference != customer.customer_reference:
        raise GlueException(NOT_YOURS)
    return customer


OwnAccount = Annotated[Customer, Depends(_own_account)]
