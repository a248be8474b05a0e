"""POST /customers: registration, the start of the double opt-in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from accounts import carts, rate_limits
from accounts.email_address import email_key
from accounts.locales import locale_from_accept_language, normalize_locale
from accounts.locks import lock_customer
from accounts.models import Customer, utcnow
from accounts.profile import apply_profile_edits
from api import jsonapi, mfa_check
from api.auth import CurrentCustomer, refuse_acting_agent
from api.client_address import client_of
from api.deps import Accounts, Sessions, SettingsDep
from api.envelope import GlueRequest, answer_missing_ids
from api.jsonapi import GlueError, GlueException
from api.limits import admit_address, limited, request_limits, too_many
from api.ownership import OwnAccount
from api.password_lengths import enforce_lengths, password_length_rule
from api.routes.access_tokens import blocked_answer
from api.routes.passwords import WRONG_PASSWORD
from api.schemas import (
    CustomerDeletionRequest,
    CustomerProfileAttributes,
    CustomerProfileRequest,
    CustomerRegistrationAttributes,
    CustomerRegistrationRequest,
)
from starter import (
    EmailTaken,
    LoginBlocked,
    PasswordRejected,
    ReauthenticationRequired,
    Registration,
    WrongCurrentPassword,
)
from starter.client import Registered, registration_id
from starter.errors import EmailChangeThrottled, MfaCodeRefused

router = APIRouter(tags=["customers"], dependencies=[GlueRequest])

EMAIL_MAX_LENGTH = 100
ALREADY_EXISTS_DETAIL = (
    "If this email address is already in use, you will receive an email with further instructions. "
    "Otherwise you must first validate your email address to finish registration. Please check your email."
)


def email_errors(email: str) -> list[GlueError]:
    if len(email) > EMAIL_MAX_LENGTH:
        return [GlueError(422, "417", "Email is too long. It should have 100 characters or less.")]
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return [GlueError(422, "416", "Invalid Email address format.")]
    return []


PASSWORDS_DIFFER = GlueError(
    422, "406", "Value in field password should be identical to value in the confirmPassword field."
)


def registration_errors(attributes: CustomerRegistrationAttributes) -> list[GlueError]:
    """Glue's dedicated codes, checked in its order after the schema; the first failing rule answers.

    `acceptedTerms: false` is a schema violation (901); left out or null it is this 413."""
    if not attributes.accepted_terms:
        return [GlueError(400, "413", "Terms and Conditions was not accepted.")]
    if errors := email_errors(attributes.email):
        return errors
    if attributes.password != attributes.confirm_password:
        return [PASSWORDS_DIFFER]
    return []


@router.post(
    "/customers",
    status_code=201,
    summary="Register a customer (double opt-in: a verification email is sent)",
    dependencies=[
        limited(rate_limits.REGISTER),
        password_length_rule(CustomerRegistrationRequest, "password", "confirmPassword"),
    ],
)
async def register_customer(
    body: CustomerRegistrationRequest,
    request: Request,
    accounts: Accounts,
    settings: SettingsDep,
    accept_language: Annotated[str | None, Header()] = None,
    x_anonymous_customer_unique_id: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    attributes = body.data.attributes
    # checkout sign-up: that guest's cart becomes the customer's at activation; only its hash travels on
    guest_cart_key = carts.guest_key(x_anonymous_customer_unique_id)
    errors = registration_errors(attributes)
    if errors:
        raise GlueException(*errors)
    # before the address is looked up (by the workflow): a taken and a free address count the same, and a
    # flood of sign-ups for one address starts no workflow past the budget
    await admit_address(request, rate_limits.REGISTER, attributes.email)
    locale = (
        normalize_locale(attributes.locale, settings.locales, settings.default_locale)
        if attributes.locale
        else locale_from_accept_language(accept_language, settings.locales, settings.default_locale)
    )
    try:
        registered = await accounts.register(
            Registration(
                email=attributes.email.strip(),
                channel="checkout" if guest_cart_key else "api",
                locale=locale,
                password=attributes.password,
                salutation=attributes.salutation,
                first_name=attributes.first_name.strip(),
                last_name=attributes.last_name.strip(),
                gender=attributes.gender,
                date_of_birth=attributes.date_of_birth,
                phone=attributes.phone,
                company=attributes.company,
                guest_cart_key=guest_cart_key,
            )
        )
    except PasswordRejected as rejected:
        raise GlueException(*(GlueError(400, v.code, v.detail) for v in rejected.violations)) from None
    except EmailTaken as taken:
        if settings.registration_reveals_accounts:
            raise GlueException(GlueError(422, "400", ALREADY_EXISTS_DETAIL)) from None
        # the answer a new address gets, with the reference this sign-up was given: it names no account,
        # so every request on it answers as for any other customer's reference, and it is never reused
        now = utcnow()
        registered = Registered(taken.customer_reference, now, now, registration_id(taken.customer_reference))
    reference = registered.customer_reference
    return jsonapi.document(
        jsonapi.resource(
            request,
            "customers",
            reference,
            {
                "firstName": attributes.first_name.strip(),
                "lastName": attributes.last_name.strip(),
                "gender": attributes.gender,
                "dateOfBirth": attributes.date_of_birth.isoformat() if attributes.date_of_birth else None,
                "salutation": attributes.salutation,
                "email": attributes.email.strip(),
                "phone": attributes.phone,
                "company": attributes.company,
                "locale": locale,
                "createdAt": registered.created_at.isoformat(),
                "updatedAt": registered.updated_at.isoformat(),
            },
            f"/customers/{reference}",
        ),
        status=201,
    )


def customer_attributes(customer: Customer) -> dict[str, object]:
    return {
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "gender": customer.gender,
        "dateOfBirth": customer.date_of_birth.isoformat() if customer.date_of_birth else None,
        "salutation": customer.salutation,
        "email": customer.email,
        "phone": customer.phone,
        "company": customer.company,
        "locale": customer.locale,
        "preferredShippingMethod": customer.preferred_shipping_method,
        "createdAt": customer.created_at.isoformat(),
        "updatedAt": customer.updated_at.isoformat(),
    }


def customer_resource(request: Request, customer: Customer) -> dict[str, object]:
    reference = customer.customer_reference
    return jsonapi.resource(request, "customers", reference, customer_attributes(customer), f"/customers/{reference}")


@router.get("/customers", summary="The signed-in customer, as a collection of one")
async def list_customers(request: Request, customer: CurrentCustomer) -> JSONResponse:
    return JSONResponse(
        {
            "data": [customer_resource(request, customer)],
            "links": {"self": f"{str(request.base_url).rstrip('/')}/customers"},
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.get("/customers/{customer_reference}", summary="The signed-in customer's account")
async def get_customer(customer_reference: str, request: Request, customer: CurrentCustomer) -> JSONResponse:
    if customer_reference != customer.customer_reference:
        raise GlueException(GlueError(403, "411", "Unauthorized request."))
    return jsonapi.document(customer_resource(request, customer))


UNSUPPORTED_LOCALE = GlueError(422, "901", "locale => The value you selected is not a valid choice.")


# Profile edits are a plain database write from the API, not a workflow: nothing waits, expires or
# has to be retried later, so there is no lifecycle to own. An email change is one (the new address
# must confirm within a deadline), so a new `email` starts the email-change workflow instead.
@router.patch(
    "/customers/{customer_reference}",
    summary="Change the signed-in customer's profile and preferences; a new email is confirmed by link first",
)
async def update_customer(
    body: CustomerProfileRequest,
    request: Request,
    customer: OwnAccount,
    # after OwnAccount: another customer's reference is refused before the body is looked at
    # with a new email, `password` is the current one: the lengths of a new password do not apply to it
    _lengths: Annotated[
        None, password_length_rule(CustomerProfileRequest, "password", "confirmPassword", unless="email")
    ],
    sessions: Sessions,
    settings: SettingsDep,
    accounts: Accounts,
    x_mfa_code: Annotated[str | None, Header(max_length=64)] = None,
) -> JSONResponse:
    edits = body.data.attributes.model_dump(exclude_unset=True)
    # Never applied: the password changes through /customer-password only. Without a new email it is
    # validated as Glue does; with one it is the current password, which re-authenticates the change.
    password, confirm_password = edits.pop("password", None), edits.pop("confirm_password", None)
    new_email = edits.pop("email", None)
    # a client that sends the whole profile sends the address it has: that is no change, and needs no password
    changes_email = new_email is not None and email_key(new_email) != customer.email_key
    if new_email is not None and not changes_email:  # the rule the dependency left to us (`unless="email"`)
        enforce_lengths(await request.json(), CustomerProfileRequest, ("password", "confirmPassword"), settings)
    if changes_email:
        if confirm_password is not None and password != confirm_password:
            raise GlueException(PASSWORDS_DIFFER)
    elif (password is not None or confirm_password is not None) and password != confirm_password:
        raise GlueException(PASSWORDS_DIFFER)
    if new_email is not None:
        new_email = new_email.strip()
        if errors := email_errors(new_email):
            raise GlueException(*errors)
    if changes_email:
        assert new_email is not None
        # before the request budgets: a token without the password spends none of the customer's
        await reauthenticate(request, accounts, customer, password=password, mfa_code=x_mfa_code)
        await limited_email_change(request, new_email)
    if edits.get("gender") is not None and edits["gender"] not in ("Male", "Female"):
        raise GlueException(GlueError(400, "414", "Gender is not valid."))
    if "locale" in edits:
        # "de" and "de-DE" mean de_DE; a language the shop does not speak is refused, not defaulted
        edits["locale"] = normalize_locale(edits["locale"], settings.locales, "")
        if not edits["locale"]:
            raise GlueException(UNSUPPORTED_LOCALE)
    if changes_email:
        assert new_email is not None
        # First, so that a refused request (429) writes nothing else either. The answer is the same whether
        # the address is free or taken; the email attribute changes only once the new address confirmed.
        try:
            await accounts.email_changes.request(customer, new_email, channel="api", actor=customer.customer_reference)
        except EmailChangeThrottled as throttled:
            minutes = -(-throttled.retry_after_seconds // 60)
            raise GlueException(
                GlueError(429, "429", f"Too many email change requests. Please wait {minutes} minutes.")
            ) from None
    async with sessions.begin() as session:
        row = await lock_customer(session, customer_id=customer.id)
        await apply_profile_edits(
            session, row, edits, channel="api", actor=row.customer_reference, field_name=_attribute_name
        )
    return jsonapi.document(customer_resource(request, row))


# Glue's PATCH and DELETE name the customer: without a reference they are refused before anything else
answer_missing_ids(router, ["PATCH", "DELETE"], "/customers", "/customers/")


async def limited_email_change(request: Request, new_email: str) -> None:
    """An email change emails the address typed: bounded per client, for everyone and per address (many
    accounts asking for one victim's address), before the per-customer bound of the workflow's starter."""
    try:
        await request_limits(request).admit_client(rate_limits.EMAIL_CHANGE, client_of(request))
    except rate_limits.OverBudget as over:
        raise too_many(rate_limits.EMAIL_CHANGE, over) from None
    await admit_address(request, rate_limits.EMAIL_CHANGE, new_email)


def _attribute_name(field: str) -> str:
    return CustomerProfileAttributes.model_fields[field].alias or field


@router.delete(
    "/customers/{customer_reference}",
    status_code=204,
    summary="Delete the signed-in customer's account (anonymized; a confirmation email goes out first)",
)
async def delete_customer(
    request: Request,
    customer: OwnAccount,
    accounts: Accounts,
    # Glue's DELETE has no body: this service's extension asks for the current password in one
    body: CustomerDeletionRequest | None = None,
    x_mfa_code: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    password = body.data.attributes.password if body is not None else None
    await reauthenticate(request, accounts, customer, password=password, mfa_code=x_mfa_code)
    # Answers once the personal data is gone; the access token used here is dead from then on.
    await accounts.deletions.delete(customer.customer_reference, channel="api", actor=customer.customer_reference)
    return Response(status_code=204)


REAUTHENTICATION_REQUIRED = GlueError(422, "901", "password => This value should not be blank.")


async def reauthenticate(
    request: Request, accounts: Accounts, customer: Customer, *, password: str | None, mfa_code: str | None
) -> None:
    """The bearer token is not enough to move the email address or delete the account (starter/reauth.py);
    an agent's impersonation token is refused before anything is asked (403 4105)."""
    refuse_acting_agent(request)
    with reauthentication_answers():
        await accounts.reauth.confirm_identity(
            customer,
            password=password,
            mfa_code=mfa_code,
            client_ip=client_of(request),
            code_accepted=getattr(request.state, "mfa_code_accepted", None),
        )


@contextmanager
def reauthentication_answers() -> Iterator[None]:
    """Re-authentication's refusals as PATCH /customer-password answers its current password (901 none,
    408 wrong, 4401 locked), and Spryker's 5901 for a code that is no valid one."""
    try:
        yield
    except ReauthenticationRequired:
        raise GlueException(REAUTHENTICATION_REQUIRED) from None
    except MfaCodeRefused:
        raise GlueException(mfa_check.CODE_INVALID) from None
    except WrongCurrentPassword:
        raise GlueException(WRONG_PASSWORD) from None
    except LoginBlocked as blocked:
        raise blocked_answer(blocked) from None
