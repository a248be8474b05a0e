"""Request schemas of the Glue endpoints (the ORM models are a separate family, in accounts.models)."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr


def _printable(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
        raise ValueError("This value contains control characters.")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("This value should not be blank.")
    return value


Name = Annotated[StrictStr, Field(min_length=1, max_length=100), AfterValidator(_printable), AfterValidator(_not_blank)]
Text = Annotated[StrictStr, Field(max_length=255), AfterValidator(_printable)]


class _Attributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=False)


class CustomerRegistrationAttributes(_Attributes):
    salutation: Literal["Mr", "Mrs", "Ms", "Dr"]
    first_name: Name = Field(alias="firstName")
    last_name: Name = Field(alias="lastName")
    # Email and gender are checked by the route, which answers with Glue's dedicated codes (416/417, 414).
    email: Annotated[StrictStr, AfterValidator(_printable)]
    gender: StrictStr | None = None
    date_of_birth: date | None = Field(default=None, alias="dateOfBirth")
    phone: Text | None = None
    company: Text | None = None
    locale: Annotated[StrictStr, Field(max_length=16)] | None = None
    password: StrictStr = Field(repr=False)
    confirm_password: StrictStr = Field(alias="confirmPassword", repr=False)
    accepted_terms: StrictBool = Field(alias="acceptedTerms")


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


class AccessTokenAttributes(_Attributes):
    username: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    # longer than any policy allows, short enough never to feed argon2 a megabyte
    password: Annotated[StrictStr, Field(min_length=1, max_length=4096)] = Field(repr=False)


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
