"""Back-office actions on a customer, for staff with an API key (`Authorization: Bearer stf_...`).

Every action goes through the same client library as the CLI and is recorded with the staff member.
Customer access tokens never open these routes, and staff keys never open customer routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr

from accounts.staff import StaffDirectory, StaffMember
from api import jsonapi
from api.auth import INVALID_TOKEN, MISSING_TOKEN
from api.deps import Accounts
from api.jsonapi import GlueError, GlueException
from api.routes.passwords import policy_errors
from starter import (
    NotAwaitingVerification,
    NotLocked,
    PasswordRejected,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)

router = APIRouter(prefix="/backoffice", tags=["backoffice"])

NOT_FOUND = GlueError(404, "402", "Customer not found.")


async def _current_staff(request: Request, authorization: Annotated[str | None, Header()] = None) -> StaffMember:
    if not authorization:
        raise GlueException(MISSING_TOKEN)
    scheme, _, key = authorization.partition(" ")
    directory: StaffDirectory = request.app.state.staff
    member = await directory.authenticate(key.strip()) if scheme.lower() == "bearer" else None
    if member is None:
        raise GlueException(INVALID_TOKEN)
    return member


CurrentStaff = Annotated[StaffMember, Depends(_current_staff)]


class Reason(BaseModel):
    reason: StrictStr = Field(min_length=1, max_length=1000)


class NewPassword(BaseModel):
    password: StrictStr = Field(min_length=1, max_length=4096, repr=False)


def _conflict(detail: str) -> GlueException:
    return GlueException(GlueError(409, "409", detail))


@router.post("/customers/{customer_reference}/verify", summary="Verify manually (no email link)")
async def verify(customer_reference: str, body: Reason, staff: CurrentStaff, accounts: Accounts) -> JSONResponse:
    try:
        activation = await accounts.verify_manually(customer_reference, agent=staff.name, reason=body.reason)
    except RegistrationNotFound:
        raise GlueException(NOT_FOUND) from None
    except NotAwaitingVerification as error:
        raise _conflict(str(error)) from None
    return JSONResponse(
        {"data": {"type": "customer-verification", "id": customer_reference,
                  "attributes": {"registeredAt": activation.registered_at.isoformat(), "verifiedBy": staff.name}}},
        media_type=jsonapi.MEDIA_TYPE,
    )  # fmt: skip


@router.post(
    "/customers/{customer_reference}/resend-verification", status_code=204, summary="Send a fresh verification link"
)
async def resend(customer_reference: str, staff: CurrentStaff, accounts: Accounts) -> Response:
    try:
        await accounts.resend_verification(customer_reference)
    except RegistrationNotFound:
        raise GlueException(NOT_FOUND) from None
    except NotAwaitingVerification as error:
        raise _conflict(str(error)) from None
    except ResendThrottled as throttled:
        raise GlueException(GlueError(429, "429", str(throttled))) from None
    except ResendLimitReached:
        raise GlueException(GlueError(429, "429", "No more verification emails may be sent.")) from None
    return Response(status_code=204)


@router.post("/customers/{customer_reference}/unlock", status_code=204, summary="Lift a sign-in lock")
async def unlock(customer_reference: str, body: Reason, staff: CurrentStaff, accounts: Accounts) -> Response:
    if await accounts.customer_by_reference(customer_reference) is None:
        raise GlueException(NOT_FOUND)
    try:
        await accounts.logins.unlock(customer_reference, agent=staff.name, reason=body.reason)
    except NotLocked as error:
        raise _conflict(str(error)) from None
    return Response(status_code=204)


@router.post("/customers/{customer_reference}/password-token", status_code=204, summary="Email a set-password link")
async def password_token(customer_reference: str, staff: CurrentStaff, accounts: Accounts) -> Response:
    try:
        await accounts.passwords.send_set_password_link(customer_reference, agent=staff.name)
    except RegistrationNotFound:
        raise GlueException(NOT_FOUND) from None
    return Response(status_code=204)


@router.post(
    "/customers/{customer_reference}/password", status_code=204, summary="Set the password (customer notified)"
)
async def set_password(customer_reference: str, body: NewPassword, staff: CurrentStaff, accounts: Accounts) -> Response:
    try:
        await accounts.passwords.set_by_support(customer_reference, body.password, agent=staff.name)
    except RegistrationNotFound:
        raise GlueException(NOT_FOUND) from None
    except PasswordRejected as rejected:
        raise GlueException(*policy_errors(rejected)) from None
    return Response(status_code=204)


@router.post("/customers/{customer_reference}/force-password-reset", status_code=204, summary="Force a password reset")
async def force_reset(customer_reference: str, staff: CurrentStaff, accounts: Accounts) -> Response:
    try:
        await accounts.passwords.force_reset(customer_reference, agent=staff.name)
    except RegistrationNotFound:
        raise GlueException(NOT_FOUND) from None
    return Response(status_code=204)
