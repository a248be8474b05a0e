"""Request schemas of the Glue endpoints (the ORM models are a separate family, in accounts.models)."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
)


def _printable(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
        raise ValueError("This value contains control characters.")
    return value


def _printable_or_none(value: str | None) -> str | None:
    return None if value is None else _printable(value)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("This value should not be blank.")
    return value


Name = Annotated[StrictStr, Field(min_length=1, max_length=100), AfterValidator(_printable), AfterValidator(_not_blank)]
Text = Annotated[StrictStr, Field(max_length=255), AfterValidator(_printable)]


class _Attributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=False)


def _present(value: object) -> object:
    # Symfony's NotBlank: null (or an attribute left out) and "" are blank
    if value is None or value == "":
        raise ValueError("This value should not be blank.")
    return value


def _true(value: bool | None) -> bool | None:
    # Symfony's IsTrue: false is a violation, null is not (Glue answers a missing acceptance with 413)
    if value is False:
        raise ValueError("This value should be true.")
    return value


Present = BeforeValidator(_present)
Gender = Literal["Male", "Female"]
Salutation = Literal["Mr", "Mrs", "Ms", "Dr"]


class CustomerRegistrationAttributes(_Attributes):
    """In the order of Glue's schema (customers.validation.yaml), which is the order of its 901 errors.

    The password lengths are settings, so they are checked by api.password_lengths, in this order too."""

    # Email's format is checked by the route, which answers with Glue's dedicated codes (416/417).
    email: Annotated[StrictStr, Present, AfterValidator(_printable)]
    gender: Annotated[Gender, Present]
    salutation: Annotated[Salutation, Present]
    first_name: Annotated[Name, Present] = Field(alias="firstName")
    last_name: Annotated[Name, Present] = Field(alias="lastName")
    password: Annotated[StrictStr, Present] = Field(repr=False)
    confirm_password: Annotated[StrictStr, Present] = Field(alias="confirmPassword", repr=False)
    date_of_birth: date | None = Field(default=None, alias="dateOfBirth")
    phone: Text | None = None
    company: Text | None = None
    locale: Annotated[StrictStr, Field(max_length=16)] | None = None
    accepted_terms: Annotated[StrictBool | None, AfterValidator(_true)] = Field(default=None, alias="acceptedTerms")


class CustomerRegistrationData(BaseModel):
    type: Literal["customers"]
    attributes: CustomerRegistrationAttributes


class CustomerRegistrationRequest(BaseModel):
    data: CustomerRegistrationData


class ConfirmationAttributes(_Attributes):
    registration_key: Annotated[StrictStr, Field(min_length=1, max_length=150)] = Field(
        alias="registrationKey", repr=False
    )


class ConfirmationData(BaseModel):
    type: Literal["customer-confirmation"]
    attributes: ConfirmationAttributes


class ConfirmationRequest(BaseModel):
    data: ConfirmationData


class EmailChangeConfirmationAttributes(_Attributes):
    key: Annotated[StrictStr, Field(min_length=1, max_length=150)] = Field(repr=False)


class EmailChangeConfirmationData(BaseModel):
    type: Literal["customer-email-change-confirmation"]
    attributes: EmailChangeConfirmationAttributes


class EmailChangeConfirmationRequest(BaseModel):
    data: EmailChangeConfirmationData


class AccessTokenAttributes(_Attributes):
    username: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    # longer than any policy allows, short enough never to feed argon2 a megabyte
    password: Annotated[StrictStr, Field(min_length=1, max_length=4096)] = Field(repr=False)
    # not Glue's: the device token of an earlier sign-in (accounts/device_tokens.py), also accepted as a header
    device_token: Annotated[StrictStr | None, Field(max_length=128)] = Field(
        default=None, alias="deviceToken", repr=False
    )


class AccessTokenData(BaseModel):
    type: Literal["access-tokens"]
    attributes: AccessTokenAttributes


class AccessTokenRequest(BaseModel):
    data: AccessTokenData


class RefreshTokenAttributes(_Attributes):
    refresh_token: Annotated[StrictStr, Field(min_length=1, max_length=255)] = Field(alias="refreshToken", repr=False)


class RefreshTokenData(BaseModel):
    type: Literal["refresh-tokens"]
    attributes: RefreshTokenAttributes


class RefreshTokenRequest(BaseModel):
    data: RefreshTokenData


class ForgottenPasswordAttributes(_Attributes):
    email: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class ForgottenPasswordData(BaseModel):
    type: Literal["customer-forgotten-password"]
    attributes: ForgottenPasswordAttributes


class ForgottenPasswordRequest(BaseModel):
    data: ForgottenPasswordData


Password = Annotated[StrictStr, Field(min_length=1)]


class RestorePasswordAttributes(_Attributes):
    restore_password_key: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = Field(
        default=None, alias="restorePasswordKey", repr=False
    )
    password: Password = Field(repr=False)
    confirm_password: Password = Field(alias="confirmPassword", repr=False)


class RestorePasswordData(BaseModel):
    type: Literal["customer-restore-password"]
    id: StrictStr | None = None
    attributes: RestorePasswordAttributes


class RestorePasswordRequest(BaseModel):
    data: RestorePasswordData


class ChangePasswordAttributes(_Attributes):
    password: Password = Field(repr=False)
    new_password: Password = Field(alias="newPassword", repr=False)
    confirm_password: Password = Field(alias="confirmPassword", repr=False)


class ChangePasswordData(BaseModel):
    type: Literal["customer-password"]
    id: StrictStr | None = None
    attributes: ChangePasswordAttributes


class ChangePasswordRequest(BaseModel):
    data: ChangePasswordData


# --- PATCH /customers/{ref} and the address book (/customers/{ref}/addresses) ---------------------


def _in_the_past(value: date) -> date:
    if value >= date.today():
        raise ValueError("This value should be a date in the past.")
    return value


def _iso2_code(value: str) -> str:
    if len(value) != 2:
        raise ValueError("This value should have exactly 2 characters.")
    if not (value.isascii() and value.isalpha()):
        raise ValueError("This value is not a valid country.")
    return value.upper()


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("This value should not be null.")
    return value


# on a PATCH attribute: left out it stays as it is; sent as null it is refused
NotNull = AfterValidator(_not_null)
BirthDate = Annotated[date, AfterValidator(_in_the_past)]
LocaleName = Annotated[StrictStr, Field(min_length=1, max_length=16)]
ShippingMethod = Annotated[StrictStr, Field(min_length=1, max_length=64), AfterValidator(_printable)]
AddressLine = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(_printable)]
ZipCode = Annotated[StrictStr, Field(min_length=1, max_length=15), AfterValidator(_printable)]
City = Annotated[StrictStr, Field(min_length=3, max_length=255), AfterValidator(_printable)]
Iso2Code = Annotated[StrictStr, AfterValidator(_iso2_code)]


class _Edits(BaseModel):
    """Profile and address attributes (no secrets among them): surrounding whitespace is dropped."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=True)


class CustomerProfileAttributes(_Edits):
    """Every attribute optional. A new email starts an email change (checked by the route, with the
    registration's codes 416/417). password and confirmPassword never change the password here, but
    are validated when present, as Glue does (lengths by api.password_lengths, 406 by the route)."""

    salutation: Annotated[Salutation | None, NotNull] = None
    first_name: Annotated[Name | None, NotNull] = Field(default=None, alias="firstName")
    last_name: Annotated[Name | None, NotNull] = Field(default=None, alias="lastName")
    # gender and locale are checked by the route: Glue's code 414, and the configured locales
    gender: StrictStr | None = None
    date_of_birth: BirthDate | None = Field(default=None, alias="dateOfBirth")
    phone: Text | None = None
    company: Text | None = None
    locale: Annotated[LocaleName | None, NotNull] = None
    preferred_shipping_method: ShippingMethod | None = Field(default=None, alias="preferredShippingMethod")
    email: Annotated[StrictStr | None, NotNull, AfterValidator(_printable_or_none)] = None
    # with a new email: the CURRENT password (re-authentication, starter/reauth.py), kept as typed
    password: Annotated[StrictStr, StringConstraints(strip_whitespace=False)] | None = Field(default=None, repr=False)
    confirm_password: Annotated[StrictStr, StringConstraints(strip_whitespace=False)] | None = Field(
        default=None, alias="confirmPassword", repr=False
    )


class CustomerProfileData(BaseModel):
    type: Literal["customers"]
    id: StrictStr | None = None
    attributes: CustomerProfileAttributes


class CustomerProfileRequest(BaseModel):
    data: CustomerProfileData


class CustomerDeletionAttributes(_Attributes):
    """DELETE /customers/{ref}: Glue sends no body; this service asks for the current password in one."""

    password: StrictStr | None = Field(default=None, repr=False)


class CustomerDeletionData(BaseModel):
    type: Literal["customers"]
    id: StrictStr | None = None
    attributes: CustomerDeletionAttributes


class CustomerDeletionRequest(BaseModel):
    data: CustomerDeletionData


class AddressAttributes(_Edits):
    """POST: Glue's required set."""

    salutation: Salutation
    first_name: Name = Field(alias="firstName")
    last_name: Name = Field(alias="lastName")
    address1: AddressLine
    address2: AddressLine
    address3: Text | None = None
    zip_code: ZipCode = Field(alias="zipCode")
    city: City
    country: Text | None = None
    iso2_code: Iso2Code = Field(alias="iso2Code")
    company: Text | None = None
    phone: Text | None = None
    is_default_shipping: StrictBool | None = Field(default=None, alias="isDefaultShipping")
    is_default_billing: StrictBool | None = Field(default=None, alias="isDefaultBilling")


class AddressData(BaseModel):
    type: Literal["addresses"]
    attributes: AddressAttributes


class AddressRequest(BaseModel):
    data: AddressData


class AddressUpdateAttributes(_Edits):
    """PATCH: any attribute of the POST, each optional; the required ones cannot be sent as null."""

    salutation: Annotated[Salutation | None, NotNull] = None
    first_name: Annotated[Name | None, NotNull] = Field(default=None, alias="firstName")
    last_name: Annotated[Name | None, NotNull] = Field(default=None, alias="lastName")
    address1: Annotated[AddressLine | None, NotNull] = None
    address2: Annotated[AddressLine | None, NotNull] = None
    address3: Text | None = None
    zip_code: Annotated[ZipCode | None, NotNull] = Field(default=None, alias="zipCode")
    city: Annotated[City | None, NotNull] = None
    country: Text | None = None
    iso2_code: Annotated[Iso2Code | None, NotNull] = Field(default=None, alias="iso2Code")
    company: Text | None = None
    phone: Text | None = None
    is_default_shipping: StrictBool | None = Field(default=None, alias="isDefaultShipping")
    is_default_billing: StrictBool | None = Field(default=None, alias="isDefaultBilling")


class AddressUpdateData(BaseModel):
    type: Literal["addresses"]
    id: StrictStr | None = None
    attributes: AddressUpdateAttributes


class AddressUpdateRequest(BaseModel):
    data: AddressUpdateData


class MfaTypeAttributes(_Attributes):
    # Spryker answers a missing type with its own code (5902), not with a schema violation: optional here
    type: Annotated[StrictStr | None, Field(max_length=32)] = None
    # activate only, this service's extension: the current password makes the method's codes a proof of
    # who the customer is (starter/reauth.py); Spryker's request, without it, activates as Spryker does
    password: StrictStr | None = Field(default=None, repr=False)


class MfaTypeData(BaseModel):
    type: StrictStr  # the resource of the path (api/envelope.py checks it)
    attributes: MfaTypeAttributes


class MfaTypeRequest(BaseModel):
    """The body of POST /multi-factor-auth-type-activate, -verify, -deactivate and /multi-factor-auth-trigger."""

    data: MfaTypeData


# what an agent types into the customer search (api/routes/agents.py): PostgreSQL refuses a NUL
SearchText = Annotated[str, AfterValidator(_printable)]


class AgentAccessTokenAttributes(_Attributes):
    username: Annotated[StrictStr, Field(min_length=1, max_length=100), AfterValidator(_printable)]  # a staff name
    password: Annotated[StrictStr, Field(min_length=1, max_length=4096)] = Field(repr=False)


class AgentAccessTokenData(BaseModel):
    type: Literal["agent-access-tokens"]
    attributes: AgentAccessTokenAttributes


class AgentAccessTokenRequest(BaseModel):
    data: AgentAccessTokenData


class ImpersonationAttributes(_Attributes):
    customer_reference: Annotated[StrictStr, Field(min_length=1, max_length=32), AfterValidator(_printable)] = Field(
        alias="customerReference"
    )


class ImpersonationData(BaseModel):
    type: Literal["agent-customer-impersonation-access-tokens"]
    attributes: ImpersonationAttributes


class ImpersonationRequest(BaseModel):
    data: ImpersonationData
