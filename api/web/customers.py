"""The back-office pages about customers: the list, one customer, and the buttons on it.

Every query and action is `backoffice.BackOffice`'s (which checks the role and records the staff
member); this module turns them into pages, and a button's outcome into a redirect to the customer's page
with a message in words.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from temporalio.service import RPCError

from accounts import rate_limits
from api.client_address import client_of
from api.limits import request_limits
from api.routes.agents import impersonation_tokens
from api.web.session import WebSession
from api.web.ui import PageError, Posting, SignedIn, Web, WebRoute, WebUI
from backoffice import (
    CUSTOMER_STATUSES,
    NOTE_MAX,
    BackOfficeError,
    CustomerFilter,
    CustomerNotFound,
    CustomerPage,
    Forbidden,
    InvalidInput,
    allowed,
)
from starter import (
    AccountsError,
    NotAwaitingVerification,
    NotLocked,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)

router = APIRouter(prefix="/backoffice", route_class=WebRoute, include_in_schema=False)

SORTS = [
    ("-created_at", "Newest first"),
    ("created_at", "Oldest first"),
    ("email", "Email A to Z"),
    ("last_name", "Last name A to Z"),
    ("customer_reference", "Reference"),
    ("-registered_at", "Recently registered"),
]
MAX_REASON_LENGTH = 1000


def customer_url(customer_reference: str) -> str:
    return f"/backoffice/ui/customers/{quote(customer_reference, safe='')}"


# --- the list ---------------------------------------------------------------------------------------


@router.get("")
async def customer_list(
    web: Web,
    session: SignedIn,
    status: str = "",
    group: str = "",
    q: str = "",
    sort: str = "-created_at",
    page: str = "1",
) -> Response:
    error = None
    try:
        wanted = CustomerFilter(
            status=status.lower() or None,
            group=group or None,
            search=q or None,
            sort=sort,
            page=int(page) if page.isascii() and page.isdigit() and len(page) <= 9 else 0,
        )
        found = await web.backoffice.list_customers(wanted, session.member)
    except InvalidInput as invalid:
        error = f"Cannot show that list: {invalid.field} {invalid.message}."
        wanted = CustomerFilter()
        found = CustomerPage([], 0, 1, wanted.per_page)
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", str(forbidden), session) from None

    def link(**changes: Any) -> str:
        params = {"status": wanted.status, "group": wanted.group, "q": wanted.search, "sort": wanted.sort}
        params.update(changes)
        return "/backoffice?" + urlencode({k: v for k, v in params.items() if v not in (None, "", 1)})

    def sort_url(field: str) -> str:
        # a second click on the column that sorts ascending sorts it descending
        return link(sort=f"-{field}" if wanted.sort == field else field)

    return web.page(
        "customers.html",
        session=session,
        status_code=400 if error else 200,
        filter=wanted,
        page=found,
        # the group filter is back-office work: an agent (no groups.list) finds customers without it
        groups=await web.backoffice.list_groups(session.member) if allowed(session.member.role, "groups.list") else [],
        statuses=CUSTOMER_STATUSES,
        sorts=SORTS if any(value == wanted.sort for value, _ in SORTS) else [*SORTS, (wanted.sort, wanted.sort)],
        error=error,
        customer_url=customer_url,
        sort_url=sort_url,
        page_url=lambda number: link(page=number),
    )


# --- one customer ---------------------------------------------------------------------------------


@router.get("/ui/customers/{customer_reference}")
async def customer_page(request: Request, customer_reference: str, web: Web, session: SignedIn) -> Response:
    try:
        detail = await web.backoffice.customer_detail(customer_reference, session.member)
        events = await web.backoffice.events(customer_reference, session.member) if detail else []
        signed_in = await web.backoffice.customer_sessions(customer_reference, session.member) if detail else []
        assisting = await web.backoffice.assist_sessions(customer_reference, session.member) if detail else []
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", str(forbidden), session) from None
    if detail is None:
        raise PageError(404, "Customer not found", f"There is no customer {customer_reference}.", session)
    role = session.member.role
    flash = web.codec.read_flash(request)
    page = web.page(
        "customer.html",
        session=session,
        flash=flash,
        detail=detail,
        events=events,
        sessions=signed_in,
        assists=assisting,
        note_max=NOTE_MAX,
        may={
            "verify": allowed(role, "customers.verify"),
            "resend": allowed(role, "customers.resend_verification"),
            "unlock": allowed(role, "customers.unlock"),
            "remove_mfa": allowed(role, "customers.remove_mfa"),
            "password_token": allowed(role, "customers.send_password_token"),
            "export_data": allowed(role, "customers.export_data"),
            "delete": allowed(role, "customers.delete"),
            "add_note": allowed(role, "notes.add"),
            "end_session": allowed(role, "customers.end_session"),
            "assist": allowed(role, "customers.assist"),
            "end_assist": allowed(role, "assists.end"),
            "exempt_inactivity": allowed(role, "customers.exempt_inactivity"),
        },
        settings_keep=web.settings.inactive_action == "keep",
        action_url=lambda action: f"{customer_url(customer_reference)}/{action}",
    )
    if flash is not None:
        web.codec.clear_flash(page)  # shown once
    return page


# --- the buttons ------------------------------------------------------------------------------------


async def _act(
    web: WebUI, session: WebSession, customer_reference: str, action: Awaitable[Any], done: str
) -> RedirectResponse:
    """Run one action and go back to the customer's page with what happened, in words."""
    response = RedirectResponse(customer_url(customer_reference), status_code=303)
    try:
        await action
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", f"Nothing was done: {forbidden}.", session) from None
    except (CustomerNotFound, RegistrationNotFound):
        web.codec.flash(response, "error", f"Nothing was done: no registration found for {customer_reference}.")
    except NotAwaitingVerification as error:
        state = str(error)
        detail = f" ({state})" if state and state != customer_reference else ""
        web.codec.flash(response, "error", f"Nothing was done: not awaiting verification{detail}.")
    except ResendThrottled as throttled:
        web.codec.flash(
            response, "error", f"Not sent: wait {throttled.retry_after_seconds} s before sending another email."
        )
    except ResendLimitReached:
        web.codec.flash(response, "error", "Not sent: no more verification emails may be sent for this registration.")
    except NotLocked:
        web.codec.flash(response, "error", f"Nothing was done: {customer_reference} is not locked.")
    except InvalidInput as invalid:
        web.codec.flash(response, "error", f"Nothing was done: the {invalid.field} {invalid.message}.")
    except (BackOfficeError, AccountsError) as refused:
        web.codec.flash(response, "error", f"Nothing was done: {refused}.")
    except RPCError:
        web.codec.flash(response, "error", "Nothing was done: the workflow service did not answer. Try again.")
    else:
        web.codec.flash(response, "success", done)
    return response


def _reason(value: str, what: str) -> str:
    reason = value.strip()
    if not reason:
        raise InvalidInput("reason", f"must be given for {what}")
    return reason


Reason = Annotated[str, Form(max_length=MAX_REASON_LENGTH)]


@router.post("/ui/customers/{customer_reference}/verify")
async def verify(customer_reference: str, web: Web, session: Posting, reason: Reason = "") -> Response:
    async def run() -> None:
        await web.backoffice.verify_manually(customer_reference, session.member, _reason(reason, "a verification"))

    return await _act(
        web, session, customer_reference, run(), f"{customer_reference} is verified (by {session.member.name})."
    )


@router.post("/ui/customers/{customer_reference}/resend-verification")
async def resend(request: Request, customer_reference: str, web: Web, session: Posting) -> Response:
    try:  # the same budget as the JSON API's resend
        await request_limits(request).admit_client(rate_limits.VERIFICATION_RESEND, client_of(request))
    except rate_limits.OverBudget as over:
        response = RedirectResponse(customer_url(customer_reference), status_code=303)
        web.codec.flash(response, "error", f"Not sent: wait {over.retry_after_seconds} s before sending another email.")
        return response
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.resend_verification(customer_reference, session.member),
        "A new verification email is on its way.",
    )


@router.post("/ui/customers/{customer_reference}/unlock")
async def unlock(customer_reference: str, web: Web, session: Posting, reason: Reason = "") -> Response:
    async def run() -> None:
        await web.backoffice.unlock(customer_reference, session.member, _reason(reason, "an unlock"))

    return await _act(web, session, customer_reference, run(), f"{customer_reference} is unlocked.")


@router.post("/ui/customers/{customer_reference}/mfa-remove")
async def remove_mfa(customer_reference: str, web: Web, session: Posting, reason: Reason = "") -> Response:
    async def run() -> None:
        await web.backoffice.remove_mfa(customer_reference, session.member, _reason(reason, "a removal of MFA"))

    return await _act(
        web,
        session,
        customer_reference,
        run(),
        f"Two-step sign-in is removed from {customer_reference}; they are told.",
    )


@router.post("/ui/customers/{customer_reference}/inactivity-exemption")
async def exempt_inactivity(customer_reference: str, web: Web, session: Posting, reason: Reason = "") -> Response:
    async def run() -> None:
        await web.backoffice.exempt_from_inactivity(
            customer_reference, session.member, _reason(reason, "an exemption from inactivity")
        )

    return await _act(
        web, session, customer_reference, run(), f"{customer_reference} is exempt from the inactivity lifecycle."
    )


@router.post("/ui/customers/{customer_reference}/password-token")
async def password_token(customer_reference: str, web: Web, session: Posting) -> Response:
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.send_password_token(customer_reference, session.member),
        'A "set your password" link is on its way.',
    )


@router.post("/ui/customers/{customer_reference}/data-export")
async def export_data(customer_reference: str, web: Web, session: Posting) -> Response:
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.export_data(customer_reference, session.member),
        f"A copy of {customer_reference}'s data is being made; the download link goes to the customer.",
    )


@router.post("/ui/customers/{customer_reference}/sessions/{session_id}/end")
async def end_session(customer_reference: str, session_id: str, web: Web, session: Posting) -> Response:
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.end_customer_session(customer_reference, session_id, session.member),
        "The session is ended: that device must sign in again.",
    )


@router.post("/ui/customers/{customer_reference}/impersonation-tokens")  # a token path: no-store (api/headers.py)
async def assist(request: Request, customer_reference: str, web: Web, session: Posting) -> Response:
    """An agent's "Assist this customer": the impersonation token, shown this once, for the storefront."""
    try:
        started = await web.backoffice.assist_customer(customer_reference, session.member)
    except Forbidden as forbidden:
        raise PageError(403, "Not allowed", f"Nothing was done: {forbidden}.", session) from None
    except (BackOfficeError, AccountsError) as refused:
        response = RedirectResponse(customer_url(customer_reference), status_code=303)
        web.codec.flash(response, "error", f"Nothing was done: {refused}.")
        return response
    tokens = impersonation_tokens(request, started)
    return web.page(
        "assist.html", session=session, started=started, tokens=tokens, back=customer_url(customer_reference)
    )


@router.post("/ui/customers/{customer_reference}/assists/{assist_id}/end")
async def end_assist(customer_reference: str, assist_id: str, web: Web, session: Posting) -> Response:
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.end_assist(customer_reference, assist_id, session.member),
        "The assistance session is ended: its token no longer works.",
    )


@router.post("/ui/customers/{customer_reference}/notes")
async def add_note(
    customer_reference: str, web: Web, session: Posting, message: Annotated[str, Form(max_length=NOTE_MAX)] = ""
) -> Response:
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.add_note(customer_reference, session.member, message),
        "Note added.",
    )


@router.get("/ui/customers/{customer_reference}/delete")
async def confirm_delete(customer_reference: str, web: Web, session: SignedIn) -> Response:
    if not allowed(session.member.role, "customers.delete"):
        raise PageError(403, "Not allowed", "Deleting an account needs the admin role.", session)
    detail = await web.backoffice.customer_detail(customer_reference, session.member)
    if detail is None:
        raise PageError(404, "Customer not found", f"There is no customer {customer_reference}.", session)
    return web.page(
        "confirm_delete.html",
        session=session,
        customer=detail.customer,
        customer_url=customer_url(customer_reference),
        delete_url=f"{customer_url(customer_reference)}/delete",
    )


@router.post("/ui/customers/{customer_reference}/delete")
async def delete(
    customer_reference: str, web: Web, session: Posting, confirm: Annotated[str, Form(max_length=10)] = ""
) -> Response:
    if confirm != "yes":
        if not allowed(session.member.role, "customers.delete"):
            raise PageError(403, "Not allowed", "Deleting an account needs the admin role.", session)
        response = RedirectResponse(customer_url(customer_reference), status_code=303)
        web.codec.flash(response, "error", "Nothing was done: confirm the deletion on its own page first.")
        return response
    return await _act(
        web,
        session,
        customer_reference,
        web.backoffice.delete_customer(customer_reference, session.member),
        f"{customer_reference} is deleted: the personal data is anonymized.",
    )
