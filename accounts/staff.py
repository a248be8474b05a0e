"""Staff identity for the back office: API keys of the form `stf_<id>_<secret>`, stored as a keyed SHA-256.

The id in the key finds the row without scanning; the secret (256 random bits) is checked against an
HMAC-SHA256 of it under ACCOUNTS_SECRET_KEY. A slow hash protects guessable passwords; a 256-bit
random secret needs none, and a keyed hash makes a flood of fake keys cost microseconds instead of
an argon2 verification each, which competed with customers' sign-ins for CPU. Rows written before
this (argon2 hashes) still verify with argon2 and are rewritten to the keyed hash on their first
successful use (a migration cannot: it never sees the secret). Verified keys are remembered for a
minute by their SHA-256; disabling a member takes effect within that minute.
Web UI passwords (`set_password`, `authenticate_password`) follow the customers' password policy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from accounts.db import SessionFactory
from accounts.email_address import valid_address
from accounts.models import Staff, utcnow
from accounts.passwords import PasswordHasher, PasswordPolicy, PolicyViolation
from accounts.settings import Settings

ROLES = ("admin", "support", "agent")  # agent: signs in at /agent-access-tokens to assist customers
CACHE_SECONDS = 60.0
KEY_FORMAT = re.compile(r"stf_([0-9]{1,12})_([A-Za-z0-9_-]{43})")
KEY_HASH_PREFIX = "hmac-sha256$"
MAX_ROW_ID = 2**31 - 1  # ids are 32-bit INTEGERs: a larger one names no row (and PostgreSQL refuses it)


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class PasswordChecked:
    """A member whose password was right, and their row as it was read, before argon2 ran. What the sign-in
    issues must die with any revocation after that read (a new password, a disable or a new key set while
    the password was being verified): agent tokens name `sessions_revoked_at`, web sessions start at `read_at`."""

    member: StaffMember
    read_at: datetime
    sessions_revoked_at: datetime | None


@dataclass(frozen=True)
class StaffListing:
    """A staff member as `accounts staff list` shows them (never a hash)."""

    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    has_password: bool
    email: str | None = None  # where the lock email goes (none without it)


def row_id(text: str) -> int | None:
    """The row id a client sent as text (a key, a cookie, a path), or None when it cannot be one."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ROW_ID else None


class StaffExists(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"a staff member named {name} already exists")
        self.name = name


class StaffNotFound(Exception):
    pass


class StaffEmailRejected(ValueError):
    def __init__(self, email: str) -> None:
        super().__init__(f"{email!r} is not a valid email address")


def checked_email(email: str | None) -> str | None:
    """A staff address as stored: checked like a customer's, or None for none."""
    if email is None:
        return None
    address = valid_address(email)
    if address is None:
        raise StaffEmailRejected(email)
    return address


class StaffPasswordRejected(ValueError):
    def __init__(self, violations: list[PolicyViolation]) -> None:
        super().__init__(" ".join(v.detail for v in violations))
        self.violations = violations


class StaffDirectory:
    def __init__(
        self,
        sessions: SessionFactory,
        hasher: PasswordHasher,
        *,
        key_secret: str,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._hasher = hasher
        self._key_secret = key_secret.encode()
        # staff passwords open every customer's data: at least the customers' rules (12+, not common)
        self._policy = policy or PasswordPolicy()
        self._verified: dict[str, tuple[float, StaffMember]] = {}

    @classmethod
    def from_settings(cls, sessions: SessionFactory, settings: Settings) -> StaffDirectory:
        return cls(sessions, PasswordHasher.from_settings(settings), key_secret=settings.secret_key.get_secret_value())

    async def create(
        self, name: str, role: str, *, password: str | None = None, email: str | None = None
    ) -> tuple[StaffMember, str]:
        """Returns the member and their API key, which is shown this once and never stored.

        With `password`, the member can sign in to the web UI too (checked before anything is created);
        with `email`, a lock of their name is mailed to them (api/web/sign_in.py)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        address = checked_email(email)
        password_hash = await self._password_hash(name, password) if password is not None else None
        secret = secrets.token_urlsafe(32)
        try:
            async with self._sessions.begin() as session:
                staff = Staff(
                    name=name,
                    role=role,
                    api_key_hash=self._key_hash(secret),
                    password_hash=password_hash,
                    email=address,
                )
                session.add(staff)
                await session.flush()
                member = StaffMember(staff.id, staff.name, staff.role)
        except IntegrityError:
            raise StaffExists(name) from None
        return member, f"stf_{member.id}_{secret}"

    async def new_key(self, name: str) -> tuple[StaffMember, str]:
        """A new API key for `name` (a lost one, or a leaked one): the old key stops working, here at once and
        in other processes once their key cache forgets it (CACHE_SECONDS). Shown this once, as at creation.

        What the old key may have started ends too, as with a new password: an agent's key works as an agent
        token, so its assistance sessions, and the member's agent tokens and web sessions, are revoked."""
        secret = secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == name))
            if staff is None:
                raise StaffNotFound(name)
            staff.api_key_hash = self._key_hash(secret)
            staff.sessions_revoked_at = utcnow()
            member = StaffMember(staff.id, staff.name, staff.role)
        self._verified = {digest: entry for digest, entry in self._verified.items() if entry[1].id != member.id}
        return member, f"stf_{member.id}_{secret}"

    async def authenticate(self, api_key: str) -> StaffMember | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        cached = self._verified.get(digest)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        parsed = KEY_FORMAT.fullmatch(api_key)
        if parsed is None:  # not even shaped like a key: no database read, no argon2
            return None
        staff_id, secret = row_id(parsed[1]), parsed[2]
        if staff_id is None:
            return None
        async with self._sessions() as session:
            staff = await session.scalar(select(Staff).where(Staff.id == staff_id, Staff.disabled_at.is_(None)))
        if staff is None:  # nothing slow to imitate: a keyed hash is what a known id costs too
            return None
        if staff.api_key_hash.startswith(KEY_HASH_PREFIX):
            if not hmac.compare_digest(staff.api_key_hash, self._key_hash(secret)):
                return None
        elif await self._hasher.verify_async(staff.api_key_hash, secret):  # a key made before keyed hashes
            await self._rehash_key(staff.id, staff.api_key_hash, secret)
        else:
            return None
        member = StaffMember(staff.id, staff.name, staff.role)
        self._verified[digest] = (time.monotonic(), member)
        return member

    def _key_hash(self, secret: str) -> str:
        return KEY_HASH_PREFIX + hmac.new(self._key_secret, secret.encode(), hashlib.sha256).hexdigest()

    async def _rehash_key(self, staff_id: int, old_hash: str, secret: str) -> None:
        """The argon2 hash of a key that just verified becomes its keyed hash (unless it changed meanwhile)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Staff)
                .where(Staff.id == staff_id, Staff.api_key_hash == old_hash)
                .values(api_key_hash=self._key_hash(secret))
            )

    async def set_password(self, name: str, password: str) -> StaffMember:
        """Set the web UI password (policy checked, argon2-hashed); signs out every web session of `name`, and
        ends the agent tokens signed in with the old one and their assistance sessions (api/routes/agents.py)."""
        password_hash = await self._password_hash(name, password)
        async with self._sessions.begin() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == name))
            if staff is None:
                raise StaffNotFound(name)
            staff.password_hash = password_hash
            staff.sessions_revoked_at = utcnow()
            return StaffMember(staff.id, staff.name, staff.role)

    async def set_email(self, name: str, email: str | None) -> StaffMember:
        """Set (checked like a customer's address) or, with None, clear where `name`'s lock email goes."""
        address = checked_email(email)
        async with self._sessions.begin() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == name))
            if staff is None:
                raise StaffNotFound(name)
            staff.email = address
            return StaffMember(staff.id, staff.name, staff.role)

    async def listing(self) -> list[StaffListing]:
        """Every staff member, by name, disabled ones included."""
        async with self._sessions() as session:
            rows = await session.scalars(select(Staff).order_by(Staff.name))
            return [
                StaffListing(s.name, s.role, s.created_at, s.disabled_at, s.password_hash is not None, s.email)
                for s in rows
            ]

    async def set_disabled(self, name: str, disabled: bool) -> tuple[StaffMember, bool]:
        """Disable (or enable again) `name`; returns the member and whether anything changed.

        A disabled member's API key is refused once this or any other process's key cache forgets it
        (CACHE_SECONDS), their web sessions at their next request, and their password at sign-in."""
        async with self._sessions.begin() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == name))
            if staff is None:
                raise StaffNotFound(name)
            changed = (staff.disabled_at is None) == disabled
            if changed:
                staff.disabled_at = utcnow() if disabled else None
            if disabled:  # their web sessions end for good: enabling the member again does not revive them
                staff.sessions_revoked_at = utcnow()
            member = StaffMember(staff.id, staff.name, staff.role)
        if disabled:  # this directory's own cache forgets the member at once
            self._verified = {digest: entry for digest, entry in self._verified.items() if entry[1].id != member.id}
        return member, changed

    async def authenticate_password(self, name: str, password: str) -> PasswordChecked | None:
        """The enabled member with this name and password, else None; one argon2 verification either way
        (a dummy one for unknown names, disabled members and members without a password)."""
        read_at = utcnow()
        async with self._sessions() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == name, Staff.disabled_at.is_(None)))
        if staff is None or staff.password_hash is None:
            await self._hasher.dummy_verify_async(password)
            return None
        if not await self._hasher.verify_async(staff.password_hash, password):
            return None
        return PasswordChecked(StaffMember(staff.id, staff.name, staff.role), read_at, staff.sessions_revoked_at)

    async def _password_hash(self, name: str, password: str) -> str:
        violations = self._policy.violations(password, user_inputs=[name])
        if violations:
            raise StaffPasswordRejected(violations)
        return await self._hasher.hash_async(password)
