"""The back office: what staff may do to customers, and who may do it.

One package behind every staff entry point (the `/backoffice` JSON API, the web UI, the CLI), one module
per area; `BackOffice` is composed of them, so a caller holds one object (`office.list_customers(...)`):

- `permissions`: `PERMISSIONS` maps each action to the roles allowed to take it; `authorize` is the one
  check, and every `BackOffice` method that changes or reveals something runs it first, so an entry point
  cannot forget it. The refusals (`BackOfficeError` and its kinds) are there too.
- `customers`: lists read the database; a customer's status is derived there (anonymized, locked by a
  current lock in `login_throttles`, verified, unverified), so filtering and paging happen in SQL.
  `export`: the same list as CSV.
- `lifecycles`: lifecycle status is read live from Temporal (runs listed by the `CustomerReference` search
  attribute, running ones queried), never copied into the database; when Temporal cannot be reached the
  rest of the customer's page still renders and the lifecycle says "unavailable". Lifecycle actions go
  through `starter.AccountsClient` (workflows do the writes).
- `profiles`, `groups_notes`: profile and address edits, notes and groups are plain writes.
- `sessions`: where a customer is signed in, and ending one of those sessions.
- `imports`: customer.csv imports (admin only), run by the import workflow through `starter.imports`.
- `inactivity`: where a customer stands in the inactivity lifecycle, and support's exemption from it.
- `mfa`: a customer's multi-factor methods (shown on the customer's page) and support's removal of them.
- `assists`: an agent's "Assist this customer", the running assistance sessions, an admin's end of one.

Every action records an audit event with the staff member's name as actor and channel `backoffice`
(`base.Area`).
"""

from backoffice.assists import AssistsArea
from backoffice.base import CHANNEL
from backoffice.customers import (
    CSV_COLUMNS,
    CUSTOMER_STATUSES,
    GROUP_SEPARATOR,
    MAX_PAGE,
    MAX_PER_PAGE,
    SORT_FIELDS,
    CustomerDetail,
    CustomerFilter,
    CustomerPage,
    CustomerRow,
    Customers,
)
from backoffice.export import Export
from backoffice.groups_notes import GROUP_DESCRIPTION_MAX, GROUP_NAME_MAX, NOTE_MAX, Group, GroupsNotes, Note
from backoffice.imports import ImportNotFound, ImportsArea, InvalidImportFile
from backoffice.inactivity import InactivityArea
from backoffice.lifecycles import CreatedCustomer, CustomerDraft, LifecycleRun, Lifecycles
from backoffice.mfa import MfaArea
from backoffice.permissions import (
    PERMISSIONS,
    AddressNotFound,
    BackOfficeError,
    Conflict,
    CustomerAnonymized,
    CustomerNotFound,
    EmailInUse,
    Forbidden,
    GroupNameTaken,
    GroupNotFound,
    InvalidInput,
    SessionNotFound,
    allowed,
    authorize,
    cli_staff,
)
from backoffice.profiles import PROFILE_FIELDS, ProfileEdit, Profiles
from backoffice.sessions import CustomerSessionsArea


class BackOffice(
    Customers,
    Export,
    Profiles,
    Lifecycles,
    GroupsNotes,
    ImportsArea,
    MfaArea,
    CustomerSessionsArea,
    AssistsArea,
    InactivityArea,
):
    """Every back-office use case: `BackOffice(sessions, accounts_client, settings)`."""


__all__ = [
    "CHANNEL",
    "CSV_COLUMNS",
    "CUSTOMER_STATUSES",
    "GROUP_DESCRIPTION_MAX",
    "GROUP_NAME_MAX",
    "GROUP_SEPARATOR",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "NOTE_MAX",
    "PERMISSIONS",
    "PROFILE_FIELDS",
    "SORT_FIELDS",
    "AddressNotFound",
    "BackOffice",
    "BackOfficeError",
    "Conflict",
    "CreatedCustomer",
    "CustomerAnonymized",
    "CustomerDetail",
    "CustomerDraft",
    "CustomerFilter",
    "CustomerNotFound",
    "CustomerPage",
    "CustomerRow",
    "EmailInUse",
    "Forbidden",
    "Group",
    "GroupNameTaken",
    "GroupNotFound",
    "ImportNotFound",
    "ImportsArea",
    "InvalidImportFile",
    "InvalidInput",
    "LifecycleRun",
    "Note",
    "ProfileEdit",
    "SessionNotFound",
    "allowed",
    "authorize",
    "cli_staff",
]
