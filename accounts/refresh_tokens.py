"""Refresh tokens: the long-lived half of a login, rotated on every use, stored only as SHA-256.

A login starts a family; each POST /refresh-tokens retires the presented token and hands out its
successor in the same family, so a family has at most one live token. A retired token that comes back
was copied by someone: whoever presents it, the whole family dies, and both the thief and the customer
must log in again (OAuth 2.0 Security BCP, refresh token rotation). Logging out ends the family too,
and the customer's emailed MFA codes that still worked (accounts/mfa.py).

The database arbitrates races: a token is retired by `UPDATE ... WHERE revoked_at IS NULL`, and only
the caller whose update changed the row goes on to mint the successor.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import ForeignKey, Integer, String, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from accounts.db import SessionFactory
from accounts.mfa import end_codes
from accounts.models import Base, CustomerSession, utcnow
from accounts.tokens import hash_token, new_token


class InvalidRefreshToken(Exception):
    """Unknown, expired, revoked or replayed. Clients get Glue's 401 `004` whichever it was."""


class RefreshTokenSettings(Protocol):
    """The part of `accounts.settings.Settings` the refresh tokens read."""

    @property
    def refresh_token_lifetime(self) -> timedelta: ...


class RefreshToken(Base):
    """One refresh token (as its SHA-256) in a family of tokens descending from one login."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # set when the token was retired by rotation: presenting it again is a replay
    replaced_by_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rotated(NamedTuple):
    customer_id: int
    token: str  # the successor, shown once
    family_id: str  # the session (accounts/customer_sessions.py) it belongs to


class RefreshTokenStore:
    """Issues, rotates and revokes refresh tokens."""

    def __init__(
        self, sessions: SessionFactory, *, lifetime: timedelta, clock: Callable[[], datetime] = utcnow
    ) -> None:
        if lifetime <= timedelta(0):
            raise ValueError("the refresh token lifetime must be positive")
        self.sessions = sessions
        self.lifetime = lifetime
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: RefreshTokenSettings, sessions: SessionFactory) -> RefreshTokenStore:
        return cls(sessions, lifetime=settings.refresh_token_lifetime)

    async def issue(
        self,
        customer_id: int,
        *,
        family_id: str | None = None,
        token_version: int | None = None,
        started: Callable[[AsyncSession, datetime], Awaitable[object]] | None = None,
    ) -> str:
        """A new token for a login (a new family unless `family_id` is given); shown once, never stored.

        With `token_version` (the one the password check saw), refuses when a password change or
        reset happened since: a sign-in racing a reset must not outlive it. `started` runs in the same
        transaction, under the customer's row lock (the sign-in records its session there)."""
        token = new_token()
        async with self.sessions.begin() as session:
            current_version = await _lock_customer(session, customer_id)
            if token_version is not None and current_version != token_version:
                raise InvalidRefreshToken("the password changed during this sign-in")
            now = self.clock()
            self._add(session, customer_id, token, family_id or uuid.uuid4().hex, now)
            if started is not None:
                await started(session, now)
        return token

    async def rotate(self, token: str) -> tuple[int, str]:
        """Retire `token` and return (customer id, its successor); a replayed token kills its family."""
        rotated = await self.rotate_session(token)
        return rotated.customer_id, rotated.token

    async def rotate_session(self, token: str) -> Rotated:
        """`rotate`, telling the session too; the session's `last_used_at` moves in the same transaction."""
        now = self.clock()
        async with self.sessions() as session:
            async with session.begin():
                current = await _find(session, token)
                if current is None:
                    raise InvalidRefreshToken("unknown refresh token")
                # Serialize with set_password (which updates the customer row first, then revokes):
                # after this lock we see its revocation, or it sees our successor and revokes it.
                await _lock_customer(session, current.customer_id)
                await session.refresh(current)
                if current.revoked_at is None and current.expires_at > now:
                    retired = await _execute(
                        session,
                        update(RefreshToken)
                        .where(RefreshToken.id == current.id, RefreshToken.revoked_at.is_(None))
                        .values(revoked_at=now),
                    )
                    if retired.rowcount == 1:
                        successor = new_token()
                        row = self._add(session, current.customer_id, successor, current.family_id, now)
                        await session.flush()
                        await _execute(
                            session,
                            update(RefreshToken).where(RefreshToken.id == current.id).values(replaced_by_id=row.id),
                        )
                        await _execute(
                            session,
                            update(CustomerSession)
                            .where(CustomerSession.family_id == current.family_id)
                            .values(last_used_at=now),
                        )
                        return Rotated(current.customer_id, successor, current.family_id)
                    # Someone rotated it between our read and our update: we are the second presenter.
                    await session.refresh(current)
                replayed = current.replaced_by_id is not None
                if replayed:
                    await _revoke_where(session, now, RefreshToken.family_id == current.family_id)
            # the family's revocation is committed by now; the error must not roll it back
            if replayed:
                raise InvalidRefreshToken("refresh token reused after rotation: its family is revoked")
            if current.revoked_at is not None:
                raise InvalidRefreshToken("refresh token revoked")
            raise InvalidRefreshToken("refresh token expired")

    async def revoke(self, token: str, *, customer_id: int | None = None) -> None:
        """Log out the session `token` belongs to (its whole family). Idempotent; unknown tokens are ignored.

        With `customer_id`, a token of another customer is left alone (DELETE /refresh-tokens/{token}).
        """
        async with self.sessions.begin() as session:
            found = await _find(session, token)
            if found is None or (customer_id is not None and found.customer_id != customer_id):
                return
            await _revoke_where(session, self.clock(), RefreshToken.family_id == found.family_id)
            await end_codes(session, found.customer_id)  # a code emailed to this session dies with it

    async def revoke_all(self, customer_id: int) -> int:
        """Log out every session of a customer; returns how many live tokens were revoked."""
        async with self.sessions.begin() as session:
            await end_codes(session, customer_id)
            return await _revoke_where(session, self.clock(), RefreshToken.customer_id == customer_id)

    def _add(self, session: AsyncSession, customer_id: int, token: str, family_id: str, now: datetime) -> RefreshToken:
        row = RefreshToken(
            customer_id=customer_id,
            token_hash=hash_token(token),
            family_id=family_id,
            expires_at=now + self.lifetime,
            created_at=now,
        )
        session.add(row)
        return row


async def end_every_session(session: AsyncSession, customer: Any, *, now: datetime) -> int:
    """In the caller's transaction, with the customer row locked: every refresh family revoked and every
    access token dead (token_version). `RefreshTokenStore.revoke_all` for writes that change the row too."""
    customer.token_version += 1
    return await _revoke_where(session, now, RefreshToken.customer_id == customer.id)


async def _find(session: AsyncSession, token: str) -> RefreshToken | None:
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token)))


async def _revoke_where(session: AsyncSession, now: datetime, condition: ColumnElement[bool]) -> int:
    result = await _execute(
        session, update(RefreshToken).where(condition, RefreshToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount


async def _lock_customer(session: AsyncSession, customer_id: int) -> int | None:
    """The customer's token version, with the row locked for this transaction (PostgreSQL; SQLite
    serializes writers anyway)."""
    from accounts.models import Customer

    return await session.scalar(select(Customer.token_version).where(Customer.id == customer_id).with_for_update())


async def _execute(session: AsyncSession, statement: Any) -> CursorResult[Any]:
    # plain UPDATEs: the rows they touch are not synchronised into the session, rowcount is what counts
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result)
