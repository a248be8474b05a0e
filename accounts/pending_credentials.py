"""Pending credentials: what a workflow must apply but must not carry (issue 15).

A password hash travels from the process that computed it (the API: sign-up, reset completion, change,
rehash at sign-in) to the activity that writes it, and a sign-up's profile to the activity that creates
the row. In a payload, Temporal would keep both in its history, its visibility store and its UI for the
namespace's retention, and a customer's deletion could not reach them. So the entry point stores them
here, the workflow carries the row's random id, and the applying activity reads the row and deletes it
in the transaction that applies it. A row nobody applies (the caller died, an update was refused, a
run was cancelled) is deleted by the lifecycle's caller when it knows, by the customer's anonymization,
and otherwise after `ACCOUNTS_PENDING_CREDENTIAL_LIFETIME` by the `throttle-cleanup` Schedule.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.db import SessionFactory
from accounts.models import PendingCredential, utcnow
from accounts.profile import SignUp

_SIGN_UP = TypeAdapter(SignUp)


def sign_up_document(sign_up: SignUp) -> dict[str, Any]:
    """The SignUp fields of a sign-up (a subclass's own fields, such as the plaintext password, left out)."""
    fields = {name: getattr(sign_up, name) for name in SignUp.__dataclass_fields__}
    return dict(_SIGN_UP.dump_python(SignUp(**fields), mode="json"))


def sign_up_from(document: dict[str, Any]) -> SignUp:
    return _SIGN_UP.validate_python(document)


async def store(
    sessions: SessionFactory,
    *,
    lifetime: timedelta,
    customer_reference: str | None = None,
    password_hash: str | None = None,
    replaces_hash: str | None = None,
    sign_up: SignUp | None = None,
) -> str:
    """Store what a workflow will apply; returns the id the workflow carries instead."""
    now = utcnow()
    credential_id = uuid.uuid4().hex
    async with sessions.begin() as session:
        session.add(
            PendingCredential(
                id=credential_id,
                customer_reference=customer_reference,
                password_hash=password_hash,
                replaces_hash=replaces_hash,
                sign_up=sign_up_document(sign_up) if sign_up is not None else None,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return credential_id


async def pending(session: AsyncSession, credential_id: str) -> PendingCredential | None:
    """The row, locked for the caller's transaction (which deletes it once applied)."""
    return await session.scalar(
        select(PendingCredential).where(PendingCredential.id == credential_id).with_for_update()
    )


async def consume(session: AsyncSession, credential: PendingCredential) -> None:
    await session.delete(credential)


async def discard(sessions: SessionFactory, credential_id: str) -> None:
    """The caller knows the credential will never be applied (its update was refused)."""
    async with sessions.begin() as session:
        await session.execute(delete(PendingCredential).where(PendingCredential.id == credential_id))


async def delete_for_customer(session: AsyncSession, customer_reference: str) -> None:
    """An anonymized customer's pending credentials go with the rest of their data."""
    await session.execute(delete(PendingCredential).where(PendingCredential.customer_reference == customer_reference))


async def delete_expired_batch(sessions: SessionFactory, *, batch: int) -> int:
    async with sessions.begin() as session:
        expired = select(PendingCredential.id).where(PendingCredential.expires_at <= utcnow()).limit(batch)
        result = await session.execute(
            delete(PendingCredential).where(PendingCredential.id.in_(expired.scalar_subquery()))
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
