"""A customer's profile: the fields a sign-up carries (one definition for every channel), and a change
of them, the same for every entry point (Glue API, back office, CLI)."""

# No `from __future__ import annotations` here: pydantic (Temporal's data converter) resolves the
# field types of SignUp's subclasses in their own modules, where `date` is not imported.
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from accounts import audit
from accounts.email_address import email_key
from accounts.models import Customer, utcnow


@dataclass(kw_only=True)
class SignUp:
    """What a new account starts with, whatever the channel: `starter.Registration` (what an entry point
    received, with the plaintext password) and `activities.customers.NewCustomer` (what the workflow
    carries, with the reference and the hash) add their own fields to it."""

    email: str
    locale: str
    channel: str
    salutation: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    gender: str | None = None
    date_of_birth: date | None = None
    phone: str | None = None
    company: str | None = None
    # checkout sign-up: SHA-256 of the guest's X-Anonymous-Customer-Unique-Id (never the id itself);
    # that guest cart is converted at activation
    guest_cart_key: str | None = None


def customer_columns(
    sign_up: SignUp, *, customer_reference: str, password_hash: str | None, registered_at: datetime | None = None
) -> dict[str, Any]:
    """A new customer row's columns, the same for every channel (an ORM `Customer(**...)` or a bulk insert)."""
    return {
        "customer_reference": customer_reference,
        "email": sign_up.email,
        "email_key": email_key(sign_up.email),
        "salutation": sign_up.salutation,
        "first_name": sign_up.first_name,
        "last_name": sign_up.last_name,
        "gender": sign_up.gender,
        "date_of_birth": sign_up.date_of_birth,
        "phone": sign_up.phone,
        "company": sign_up.company,
        "locale": sign_up.locale,
        "password_hash": password_hash,
        "channel": sign_up.channel,
        "guest_cart_key": sign_up.guest_cart_key,
        "registered_at": registered_at,
    }


async def apply_profile_edits(
    session: AsyncSession,
    customer: Customer,
    edits: Mapping[str, Any],
    *,
    channel: str,
    actor: str,
    field_name: Callable[[str], str] = str,
) -> list[str]:
    """Write the checked edits (model attribute names) that change something, on a row the caller locked.

    Returns the changed fields; when there are any, `updated_at` moves and one `profile_updated` audit
    event names them (as `field_name` spells them for the entry point), never their values: the audit
    trail must not become a second copy of personal data. Nothing changed: nothing is written."""
    changed = [name for name, value in edits.items() if getattr(customer, name) != value]
    if changed:
        for name in changed:
            setattr(customer, name, edits[name])
        customer.updated_at = utcnow()
        audit.record(
            session,
            customer_reference=customer.customer_reference,
            event="profile_updated",
            channel=channel,
            actor=actor,
            details={"fields": [field_name(name) for name in changed]},
        )
    return changed
