"""A customer's profile and address book as staff edit them: checked here, written by accounts.profile and
accounts.addresses (which keep the default-address rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from accounts import addresses
from accounts.addresses import CustomerAddress
from accounts.locales import normalize_locale
from accounts.models import Customer
from accounts.profile import apply_profile_edits
from accounts.settings import Settings
from accounts.staff import StaffMember
from backoffice.base import CHANNEL, Area, writable_customer
from backoffice.permissions import AddressNotFound, BackOfficeError, InvalidInput, authorize

PROFILE_FIELDS = (
    "salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company", "locale",
    "preferred_shipping_method",
)  # fmt: skip
SALUTATIONS = ("Mr", "Mrs", "Ms", "Dr")
GENDERS = ("Male", "Female")


@dataclass
class ProfileEdit:
    customer: Customer
    changed: list[str]  # the fields whose value changed, in PROFILE_FIELDS' names; [] when nothing did


class Profiles(Area):
    async def update_profile(self, customer_reference: str, edits: Mapping[str, Any], staff: StaffMember) -> Customer:
        """Change profile fields (names as in PROFILE_FIELDS); only real changes are written and recorded,
        with the changed fields' names (never their values) in the audit event."""
        return (await self.edit_profile(customer_reference, edits, staff)).customer

    async def edit_profile(self, customer_reference: str, edits: Mapping[str, Any], staff: StaffMember) -> ProfileEdit:
        """`update_profile`, also saying which fields really changed (those the audit event names)."""
        authorize(staff, "customers.edit")
        checked = checked_profile(edits, self._settings)
        async with self._sessions.begin() as session:
            customer = await writable_customer(session, customer_reference)
            changed = await apply_profile_edits(session, customer, checked, channel=CHANNEL, actor=staff.name)
            return ProfileEdit(customer, changed)

    async def add_address(
        self,
        customer_reference: str,
        values: Mapping[str, object],
        staff: StaffMember,
        *,
        default_billing: bool = False,
        default_shipping: bool = False,
    ) -> CustomerAddress:
        """Values are address fields (accounts.addresses.EDITABLE_FIELDS), checked by the caller's schema;
        the address book's default rules are accounts.addresses'."""
        authorize(staff, "customers.edit")
        try:
            async with self._sessions.begin() as session:
                customer = await writable_customer(session, customer_reference)
                return await addresses.add_address(
                    session, customer_id=customer.id, values=values, default_billing=default_billing,
                    default_shipping=default_shipping, channel=CHANNEL, actor=staff.name,
                )  # fmt: skip
        except ValueError as error:
            if isinstance(error, BackOfficeError):
                raise
            raise InvalidInput("address", str(error)) from None

    async def update_address(
        self,
        customer_reference: str,
        address_uuid: str,
        staff: StaffMember,
        *,
        values: Mapping[str, object] | None = None,
        default_billing: bool = False,
        default_shipping: bool = False,
    ) -> CustomerAddress:
        """Make the address a default (true moves that default here; false changes nothing) and/or change it."""
        authorize(staff, "customers.edit")
        try:
            async with self._sessions.begin() as session:
                customer = await writable_customer(session, customer_reference)
                entry = await addresses.update_address(
                    session, customer_id=customer.id, address_uuid=address_uuid, values=values or {},
                    default_billing=default_billing, default_shipping=default_shipping, channel=CHANNEL,
                    actor=staff.name,
                )  # fmt: skip
        except ValueError as error:
            if isinstance(error, BackOfficeError):
                raise
            raise InvalidInput("address", str(error)) from None
        if entry is None:
            raise AddressNotFound(f"{customer_reference} has no address {address_uuid}")
        return entry


def checked_profile(edits: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Profile edits (names as in PROFILE_FIELDS) stripped and checked; InvalidInput names the first wrong one."""
    unknown = sorted(set(edits) - set(PROFILE_FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not a profile field (one of {', '.join(PROFILE_FIELDS)})")
    checked: dict[str, Any] = {}
    for name, value in edits.items():
        if isinstance(value, str):
            value = value.strip() or None
        if name in ("first_name", "last_name"):
            if value is None:
                raise InvalidInput(name, "must not be blank")
            _max_length(name, value, 100)
        elif name == "salutation" and value is not None and value not in SALUTATIONS:
            raise InvalidInput(name, f"must be one of {', '.join(SALUTATIONS)}")
        elif name == "gender" and value is not None and value not in GENDERS:
            raise InvalidInput(name, f"must be one of {', '.join(GENDERS)}")
        elif name == "date_of_birth" and value is not None:
            if not isinstance(value, date) or value >= date.today():
                raise InvalidInput(name, "must be a date in the past")
        elif name == "locale":
            if value is None:
                raise InvalidInput(name, "must not be blank")
            value = checked_locale(value, settings)
        elif name in ("phone", "company"):
            _max_length(name, value, 255)
        elif name == "preferred_shipping_method":
            _max_length(name, value, 64)
        if value is not None and name != "date_of_birth" and not isinstance(value, str):
            raise InvalidInput(name, "must be text")
        checked[name] = value
    return checked


def checked_locale(value: str, settings: Settings) -> str:
    locale = normalize_locale(value, settings.locales, "")
    if not locale:
        raise InvalidInput("locale", f"must be one of {', '.join(settings.locales)}")
    return locale


def _max_length(name: str, value: object, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise InvalidInput(name, f"must have {limit} characters or less")
