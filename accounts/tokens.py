"""One-time tokens: 256 bits, sent by email, stored and compared only as SHA-256.

A plain hash (no key) is enough: the token has full entropy, so its hash cannot be guessed back.
An emailed token is derived (`issued_token`), not drawn: the same lifecycle step gives the same token
on every attempt, so an email resent after a crash carries the same, working link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import select

from accounts.db import SessionFactory
from accounts.models import Customer, OneTimeToken, utcnow


def new_token() -> str:
    return secrets.token_urlsafe(32)


def issued_token(secret: str, issue_key: str) -> str:
    """The token of one emailed link: HMAC-SHA256 of the step's idempotency key under ACCOUNTS_SECRET_KEY.

    A retry of the step (a worker killed between the SMTP handover and the "sent" mark) sends the same
    link again, instead of a new token that would kill the link already delivered. The key carries the
    lifecycle's first run id (a random UUID) and the secret never leaves the server, so nobody can
    derive a token; the database holds only its hash, as before."""
    digest = hmac.new(secret.encode(), b"one-time-token\0" + issue_key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


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


def usable(issued: OneTimeToken) -> bool:
    """Neither used nor expired: the one rule for every emailed link's key."""
    return issued.used_at is None and issued.expires_at > utcnow()
