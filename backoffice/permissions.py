"""Who may do what in the back office: `PERMISSIONS` maps each action to the roles allowed to take it, and
`authorize` is the one check (every `BackOffice` method that changes or reveals something runs it first);
the back office's refusals (`BackOfficeError` and its kinds) live here too.
"""

from __future__ import annotations

from accounts.staff import ROLES, StaffMember

_EVERYONE = frozenset(ROLES)
_STAFF = frozenset({"admin", "support"})  # the back office's work; an agent finds customers and assists them
_ADMIN = frozenset({"admin"})
_AGENT = frozenset({"agent"})
PERMISSIONS: dict[str, frozenset[str]] = {
    "customers.list": _EVERYONE,
    "customers.view": _EVERYONE,
    "customers.events": _EVERYONE,
    "customers.create": _STAFF,
    "customers.edit": _STAFF,  # profile, addresses and default addresses
    "customers.verify": _STAFF,
    "customers.resend_verification": _STAFF,
    "customers.unlock": _STAFF,
    "customers.send_password_token": _STAFF,
    "customers.remove_mfa": _STAFF,  # a customer who lost their second factor (the customer is emailed)
    "customers.end_session": _STAFF,  # one of the customer's sign-ins (backoffice/sessions.py)
    "customers.exempt_inactivity": _STAFF,  # never reminded nor retired for inactivity (audited)
    "customers.export_data": _STAFF,  # a copy of the customer's data, emailed to the customer (not to staff)
    "notes.list": _STAFF,
    "notes.add": _STAFF,
    "groups.list": _STAFF,
    "groups.assign": _STAFF,  # assign and unassign
    # agent assistance (accounts/assists.py): an agent issues a storefront token acting for the customer;
    # the customer page lists running assistance sessions to everyone, and an admin can end one
    "customers.assist": _AGENT,
    "assists.end": _ADMIN,
    "customers.delete": _ADMIN,
    "customers.set_password": _ADMIN,
    "customers.force_password_reset": _ADMIN,
    "customers.export": _ADMIN,
    "groups.manage": _ADMIN,  # create, rename, describe, delete
    "orders.import": _ADMIN,
    "import_customers": _ADMIN,  # customer.csv: start, follow, cancel, rejected rows
    # the Temporal UI's and CLI's codec (api/routes/codec.py): reading a run's payloads shows what the
    # customer page shows; encoding makes payloads the worker trusts (a hand-made workflow input)
    "lifecycles.decode": _STAFF,
    "lifecycles.encode": _ADMIN,
}


def allowed(role: str, action: str) -> bool:
    """Whether a staff role may take the action (a KeyError for an action nobody declared)."""
    return role in PERMISSIONS[action]


def authorize(staff: StaffMember, action: str) -> None:
    if not allowed(staff.role, action):
        needed = " or ".join(sorted(PERMISSIONS[action]))
        raise Forbidden(f"{action} needs the {needed} role; {staff.name} is {staff.role}")


def cli_staff(agent: str) -> StaffMember:
    """The actor of a CLI command. Whoever runs the CLI holds the database credentials, so has every role;
    id 0 names no staff row (notes then carry the author's name only)."""
    return StaffMember(0, agent, "admin")


# --- errors ---------------------------------------------------------------------------------------------


class BackOfficeError(ValueError):
    """Base of the back office's refusals; nothing was changed when one is raised."""


class InvalidInput(BackOfficeError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class Forbidden(BackOfficeError):
    pass


class CustomerNotFound(BackOfficeError):
    def __init__(self, customer_reference: str) -> None:
        super().__init__(f"no customer {customer_reference}")


class GroupNotFound(BackOfficeError):
    def __init__(self, group: str | int) -> None:
        super().__init__(f"no customer group {group}")


class AddressNotFound(BackOfficeError):
    pass


class SessionNotFound(BackOfficeError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no live session {session_id}")


class Conflict(BackOfficeError):
    """The request is valid but the state refuses it (a taken name, an anonymized customer)."""


class GroupNameTaken(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"a customer group named {name!r} exists")


class EmailInUse(Conflict):
    def __init__(self) -> None:
        super().__init__("this email address already has an account")


class CustomerAnonymized(Conflict):
    def __init__(self, customer_reference: str) -> None:
        super().__init__(f"{customer_reference} is anonymized")
