"""One-time tokens: 256 random bits, sent once by email, stored and compared only as SHA-256.

A plain hash (no key) is enough: the token has full entropy, so its hash cannot be guessed back.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from accounts.db import SessionFactory
from accounts.models import Customer, OneTimeToken


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def find_issued(sessions: SessionFactory, token: str, purpose: str) -> tuple[OneTimeToken, Customer] | None:
    """The stored token a presented one hashes to, with its customer; None when unknown."""
    async with sessions() as session:
        found = (
            await session.execute(
                select(OneTimeToken, Customer)
                .join(Customer, Customer.id == OneTimeToken.customer_id)
                .where(OneTimeToken.token_hash == hash_token(token), OneTimeToken.purpose == purpose)
            )
        ).one_or_none()
    return None if found is None else (found[0], found[1])
