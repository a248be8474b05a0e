"""A change of a customer's profile fields, the same for every entry point (Glue API, back office, CLI)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from accounts import audit
from accounts.models import Customer, utcnow


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
