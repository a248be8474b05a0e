"""Staff identity for the back office: API keys of the form `stf_<id>_<secret>`, argon2-hashed.

The id in the key finds the row without scanning; the secret is verified with argon2 (off the event
loop). Verified keys are remembered for a minute by their SHA-256, so a busy back-office page does
not pay an argon2 verification per request; disabling a member takes effect within that minute.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from accounts.db import SessionFactory
from accounts.models import Staff
from accounts.passwords import PasswordHasher

ROLES = ("admin", "support")
CACHE_SECONDS = 60.0
KEY_FORMAT = re.compile(r"stf_([0-9]{1,12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str


class StaffExists(Exception):
    pass


class StaffDirectory:
    def __init__(self, sessions: SessionFactory, hasher: PasswordHasher) -> None:
        self._sessions = sessions
        self._hasher = hasher
        self._verified: dict[str, tuple[float, StaffMember]] = {}

    async def create(self, name: str, role: str) -> tuple[StaffMember, str]:
        """Returns the member and their API key, which is shown this once and never stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        secret = secrets.token_urlsafe(32)
        try:
            async with self._sessions.begin() as session:
                staff = Staff(name=name, role=role, api_key_hash=await self._hasher.hash_async(secret))
                session.add(staff)
                await session.flush()
                member = StaffMember(staff.id, staff.name, staff.role)
        except IntegrityError:
            raise StaffExists(name) from None
        return member, f"stf_{member.id}_{secret}"

    async def authenticate(self, api_key: str) -> StaffMember | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        cached = self._verified.get(digest)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        parsed = KEY_FORMAT.fullmatch(api_key)
        if parsed is None:  # not even shaped like a key: no database read, no argon2
            return None
        staff_id, secret = int(parsed[1]), parsed[2]
        async with self._sessions() as session:
            staff = await session.scalar(select(Staff).where(Staff.id == staff_id, Staff.disabled_at.is_(None)))
        if staff is None:
            await self._hasher.dummy_verify_async(secret)
            return None
        if not await self._hasher.verify_async(staff.api_key_hash, secret):
            return None
        member = StaffMember(staff.id, staff.name, staff.role)
        self._verified[digest] = (time.monotonic(), member)
        return member
