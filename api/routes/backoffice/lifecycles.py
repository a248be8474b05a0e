"""Actions on a customer's lifecycles (the workflows write; these add who asked)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from accounts import rate_limits
from api.limits import limited
from api.routes.backoffice.answers import answers, document
from api.routes.backoffice.schemas import NewPassword, Reason, VerificationDocument
from api.routes.backoffice.staff import CUSTOMER, ERRORS, PREFIX, CurrentStaff, Office

router = APIRouter(prefix=PREFIX, tags=["backoffice"], responses=ERRORS)


@router.post(f"{CUSTOMER}/verify", summary="Verify manually (no email link)", response_model=VerificationDocument)
async def verify(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers(customer_reference):
        activation = await office.verify_manually(customer_reference, staff, body.reason)
    return document(
        "customer-verification",
        customer_reference,
        {"registeredAt": activation.registered_at.isoformat(), "verifiedBy": staff.name},
    )


@router.post(
    f"{CUSTOMER}/resend-verification",
    status_code=204,
    summary="Send a fresh verification link",
    dependencies=[limited(rate_limits.VERIFICATION_RESEND)],
)
async def resend(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.resend_verification(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/unlock", status_code=204, summary="Lift a sign-in lock")
async def unlock(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.unlock(customer_reference, staff, body.reason)
    return Response(status_code=204)


@router.post(
    f"{CUSTOMER}/inactivity-exemption",
    status_code=204,
    summary="Exempt from the inactivity lifecycle: never reminded nor retired; a running one ends (audited)",
)
async def exempt_inactivity(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.exempt_from_inactivity(customer_reference, staff, body.reason)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/password-token", status_code=204, summary="Email a set-password link")
async def password_token(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.send_password_token(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/password", status_code=204, summary="Set the password (customer notified; admin)")
async def set_password(customer_reference: str, body: NewPassword, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.set_password(customer_reference, staff, body.password)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/force-password-reset", status_code=204, summary="Force a password reset (admin)")
async def force_reset(customer_reference: str, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.force_password_reset(customer_reference, staff)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/mfa/remove", status_code=204, summary="Remove the customer's MFA (audited, customer emailed)")
async def remove_mfa(customer_reference: str, body: Reason, staff: CurrentStaff, office: Office) -> Response:
    with answers(customer_reference):
        await office.remove_mfa(customer_reference, staff, body.reason)
    return Response(status_code=204)


@router.post(f"{CUSTOMER}/data-exports", status_code=202, summary="Start a data export (the link goes to the customer)")
async def export_data(customer_reference: str, staff: CurrentStaff, office: Office) -> JSONResponse:
    with answers(customer_reference):
        export_id = await office.export_data(customer_reference, staff)
    return document("data-exports", export_id, {"status": "preparing"}, status=202)
