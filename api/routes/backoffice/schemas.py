"""Request and response schemas of the back-office API (`/backoffice/...`).

Requests are plain JSON objects with camelCase names; responses use the Glue envelope
(`{"data": {"type", "id", "attributes"}}`). The response models document the answers in the OpenAPI
schema; the routes build the JSON themselves.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from api.schemas import BirthDate, Name, Salutation, Text
from backoffice import GROUP_DESCRIPTION_MAX, GROUP_NAME_MAX, NOTE_MAX


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


# --- requests -----------------------------------------------------------------------------------------


class Reason(_Body):
    reason: StrictStr = Field(min_length=1, max_length=1000)


class NewPassword(_Body):
    password: StrictStr = Field(min_length=1, max_length=4096, repr=False)


class NewCustomer(_Body):
    """A customer created by staff: no password; the registration workflow emails the verification link."""

    email: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    first_name: Name = Field(alias="firstName")
    last_name: Name = Field(alias="lastName")
    salutation: Salutation | None = None
    gender: Literal["Male", "Female"] | None = None
    date_of_birth: BirthDate | None = Field(default=None, alias="dateOfBirth")
    phone: Text | None = None
    company: Text | None = None
    locale: Annotated[StrictStr, Field(min_length=1, max_length=16)] | None = None
    send_password_token: StrictBool = Field(
        default=False, alias="sendPasswordToken", description='also email a "set your password" link'
    )


class ProfileEdits(_Body):
    """Every field optional; a field left out stays as it is. Email changes have their own flow."""

    salutation: Salutation | None = None
    first_name: Name | None = Field(default=None, alias="firstName")
    last_name: Name | None = Field(default=None, alias="lastName")
    gender: Literal["Male", "Female"] | None = None
    date_of_birth: BirthDate | None = Field(default=None, alias="dateOfBirth")
    phone: Text | None = None
    company: Text | None = None
    locale: Annotated[StrictStr, Field(min_length=1, max_length=16)] | None = None
    preferred_shipping_method: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        default=None, alias="preferredShippingMethod"
    )


class NewNote(_Body):
    message: Annotated[StrictStr, Field(min_length=1, max_length=NOTE_MAX)]


class NewGroup(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=GROUP_NAME_MAX)]
    description: Annotated[StrictStr, Field(max_length=GROUP_DESCRIPTION_MAX)] | None = None


class GroupEdits(_Body):
    """Rename and/or describe; `description: null` removes the description."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=GROUP_NAME_MAX)] | None = None
    description: Annotated[StrictStr, Field(max_length=GROUP_DESCRIPTION_MAX)] | None = None


# --- responses (documentation) ------------------------------------------------------------------------


class CustomerRowAttributes(BaseModel):
    customerReference: str
    email: str
    firstName: str | None
    lastName: str | None
    status: Literal["verified", "unverified", "locked", "anonymized"]
    channel: str
    createdAt: datetime
    registeredAt: datetime | None
    groups: list[str]


class CustomerRowResource(BaseModel):
    type: Literal["backoffice-customers"]
    id: str
    attributes: CustomerRowAttributes


class PageMeta(BaseModel):
    total: int
    page: int
    perPage: int
    pages: int


class CustomerListDocument(BaseModel):
    data: list[CustomerRowResource]
    meta: PageMeta
    links: dict[str, str]


class LifecycleRunAttributes(BaseModel):
    kind: str
    workflowId: str
    runId: str
    status: str
    stage: str | None
    deadlines: dict[str, datetime]
    pendingActions: list[str]
    temporalUi: str
    startedAt: datetime | None
    closedAt: datetime | None


class Lifecycle(BaseModel):
    status: Literal["ok", "unavailable"]
    runs: list[LifecycleRunAttributes]


class NoteAttributes(BaseModel):
    id: int
    author: str
    message: str
    createdAt: datetime


class GroupAttributes(BaseModel):
    id: int
    name: str
    description: str | None
    members: int


class CustomerDetailAttributes(BaseModel):
    customerReference: str
    email: str
    salutation: str | None
    firstName: str | None
    lastName: str | None
    gender: str | None
    dateOfBirth: date | None
    phone: str | None
    company: str | None
    locale: str
    channel: str
    status: str
    lockedUntil: datetime | None
    passwordSet: bool
    passwordResetRequired: bool
    createdAt: datetime
    updatedAt: datetime
    registeredAt: datetime | None
    anonymizedAt: datetime | None
    addresses: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    ordersTotal: int
    notes: list[NoteAttributes]
    groups: list[GroupAttributes]
    lifecycle: Lifecycle
    mfa: list[dict[str, str]] = []  # each method set up: {"type": "totp", "status": "activated"}
    # where the customer stands in the inactivity lifecycle: stage active | reminded | warned | kept | retired
    # | exempt, since when, and the next steps' dates while one runs
    inactivity: dict[str, Any] | None = None


class CustomerDetailResource(BaseModel):
    type: Literal["backoffice-customers"]
    id: str
    attributes: CustomerDetailAttributes


class CustomerDetailDocument(BaseModel):
    data: CustomerDetailResource


class CreatedCustomerAttributes(BaseModel):
    customerReference: str
    createdAt: datetime
    channel: Literal["backoffice"]
    passwordTokenSent: bool
    temporalUi: str


class CreatedCustomerDocument(BaseModel):
    data: dict[str, Any]


class NoteResource(BaseModel):
    type: Literal["customer-notes"]
    id: str
    attributes: NoteAttributes


class NoteDocument(BaseModel):
    data: NoteResource


class NoteListDocument(BaseModel):
    data: list[NoteResource]


class GroupResource(BaseModel):
    type: Literal["customer-groups"]
    id: str
    attributes: GroupAttributes


class GroupDocument(BaseModel):
    data: GroupResource


class GroupListDocument(BaseModel):
    data: list[GroupResource]


class EventAttributes(BaseModel):
    event: str
    channel: str
    actor: str
    occurredAt: datetime
    details: dict[str, Any]


class EventResource(BaseModel):
    type: Literal["customer-events"]
    id: str
    attributes: EventAttributes


class EventListDocument(BaseModel):
    data: list[EventResource]


class VerificationDocument(BaseModel):
    data: dict[str, Any]


class GlueErrorItem(BaseModel):
    status: int
    code: str
    detail: str


class GlueErrors(BaseModel):
    errors: list[GlueErrorItem]
