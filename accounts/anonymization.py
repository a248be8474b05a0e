"""Scrubbing a customer's personal data the way Spryker anonymizes: the row stays, the person is gone."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import carts
from accounts.models import (
    AuditEvent,
    Customer,
    CustomerGroupMember,
    CustomerNote,
    CustomerSession,
    DataExport,
    DeviceToken,
    MfaCode,
    MfaMethod,
    MfaRecoveryCode,
    OneTimeToken,
)

ANONYMIZED_EMAIL_DOMAIN = "anonymized.invalid"  # RFC 2606: can never be delivered
# The audit event a deletion records first: from then on only its own email reaches the customer
DELETION_STARTED = "deletion_started"
DELETION_EMAIL = "account_deleted"


async def deletion_started(session: AsyncSession, customer_reference: str) -> bool:
    found = await session.scalar(
        select(AuditEvent.id)
        .where(AuditEvent.customer_reference == customer_reference, AuditEvent.event == DELETION_STARTED)
        .limit(1)
    )
    return found is not None


async def scrub(session: AsyncSession, customer: Customer, *, now: datetime) -> None:
    placeholder = f"{secrets.token_hex(12)}@{ANONYMIZED_EMAIL_DOMAIN}"
    customer.email = placeholder
    customer.email_key = placeholder  # frees the real address for a new registration
    for field in ("salutation", "first_name", "last_name", "gender", "date_of_birth", "phone", "company"):
        setattr(customer, field, None)
    customer.password_hash = None
    customer.anonymized_at = now
    customer.token_version += 1
    customer.guest_cart_key = None
    customer.last_signed_in_at = None  # when the person last used the shop; the inactivity stage stays
    await carts.delete_customer_carts(session, customer_id=customer.id)
    # back-office notes may quote the person; group memberships describe them
    await session.execute(delete(CustomerNote).where(CustomerNote.customer_id == customer.id))
    await session.execute(delete(CustomerGroupMember).where(CustomerGroupMember.customer_id == customer.id))
    # a second factor of nobody: the TOTP secret, codes and recovery codes go
    for table in (MfaMethod, MfaCode, MfaRecoveryCode):
        await session.execute(delete(table).where(table.customer_id == customer.id))
    # a data export's archive is a copy of all of the above (its workflow finds it gone at its expiry)
    await session.execute(delete(DataExport).where(DataExport.customer_id == customer.id))


async def kill_tokens(session: AsyncSession, customer_id: int, *, now: datetime, purpose: str | None = None) -> None:
    """Use up the customer's one-time tokens (of one purpose); all of them also drops its device tokens
    and its sessions' records (devices and network prefixes are personal data)."""
    statement = update(OneTimeToken).where(OneTimeToken.customer_id == customer_id, OneTimeToken.used_at.is_(None))
    if purpose is not None:
        statement = statement.where(OneTimeToken.purpose == purpose)
    await session.execute(statement.values(used_at=now))
    if purpose is None:
        await session.execute(delete(DeviceToken).where(DeviceToken.customer_id == customer_id))
        await session.execute(delete(CustomerSession).where(CustomerSession.customer_id == customer_id))
