"""Staff web sessions: a signed cookie, no server-side session table.

The cookie carries `staff_id.issued_at_ms.nonce.signature`. The signature (HMAC-SHA256 under a key derived
from ACCOUNTS_SECRET_KEY) also covers the member's current password hash, so setting a new password ends every
session of that member at its next request; each request re-reads the member, so disabling one does too, and
so does signing out: it stamps `staff.sessions_revoked_at`, and cookies issued before that stamp are refused,
in every browser (a copied cookie is worthless after sign-out). The CSRF token of a session is an HMAC of its
nonce: nothing to store, and a token from one session is worthless in another. The sign-in form has its own
nonce cookie (double submit), so a foreign site cannot sign a browser in under someone else's name either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fastapi import Request, Response
from sqlalchemy import select, update

from accounts.db import SessionFactory
from accounts.models import Staff, utcnow
from accounts.settings import Settings
from accounts.staff import PasswordChecked, StaffMember, row_id

SESSION_COOKIE = "backoffice_session"
SIGN_IN_COOKIE = "backoffice_sign_in"
FLASH_COOKIE = "backoffice_flash"
DEVICE_COOKIE = "backoffice_device"  # a device token (accounts/device_tokens.py): outlives sign-out on purpose
COOKIE_PATH = "/backoffice"
SIGN_IN_FORM_SECONDS = 3600
FlashKind = Literal["success", "error"]


@dataclass(frozen=True)
class WebSession:
    member: StaffMember
    csrf_token: str


@dataclass(frozen=True)
class Flash:
    kind: FlashKind
    text: str


class SessionCodec:
    """Signs and checks the back-office cookies; one per app, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.secret_key.get_secret_value().encode()
        # a key of its own: a value signed for the web session means nothing to any other HMAC use
        self._key = hmac.new(secret, b"backoffice-web-session", hashlib.sha256).digest()
        self.lifetime_seconds = int(settings.backoffice_session_hours * 3600)
        self._secure = settings.public_url.startswith("https://")

    # --- the session ----------------------------------------------------------------------------

    async def start(self, response: Response, sessions: SessionFactory, checked: PasswordChecked) -> None:
        """The session of a member whose password was just verified. It counts from when their row was read
        (before argon2): a revocation since then, a new password or a disable while it ran, ends it."""
        staff_id = checked.member.id
        async with sessions() as session:
            password_hash = await session.scalar(select(Staff.password_hash).where(Staff.id == staff_id))
        assert password_hash is not None, "a member signs in with a password"
        payload = f"{staff_id}.{_ms(checked.read_at)}.{secrets.token_urlsafe(16)}"
        self._set(response, SESSION_COOKIE, f"{payload}.{self._sign(payload, password_hash)}", self.lifetime_seconds)
        response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)

    async def read(self, request: Request, sessions: SessionFactory) -> WebSession | None:
        """The signed-in, still enabled member of this request, or None."""
        parts = request.cookies.get(SESSION_COOKIE, "").split(".")
        staff_id = row_id(parts[0]) if len(parts) == 4 else None
        if staff_id is None or not (parts[1].isascii() and parts[1].isdigit()):
            return None
        issued_ms, nonce, signature = int(parts[1]), parts[2], parts[3]
        if not 0 <= _now_ms() - issued_ms < self.lifetime_seconds * 1000:
            return None
        async with sessions() as session:
            staff = await session.scalar(select(Staff).where(Staff.id == staff_id, Staff.disabled_at.is_(None)))
        if staff is None or staff.password_hash is None:
            return None
        revoked = staff.sessions_revoked_at
        if revoked is not None and issued_ms <= _ms(revoked):
            return None
        if not same(signature, self._sign(f"{parts[0]}.{parts[1]}.{nonce}", staff.password_hash)):
            return None
        return WebSession(StaffMember(staff.id, staff.name, staff.role), self._sign(f"csrf.{nonce}"))

    async def end(self, response: Response, sessions: SessionFactory, staff_id: int) -> None:
        """Sign out: every session of the member issued until now dies, here and in any other browser."""
        async with sessions.begin() as session:
            await session.execute(update(Staff).where(Staff.id == staff_id).values(sessions_revoked_at=utcnow()))
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)

    # --- the sign-in form -----------------------------------------------------------------------

    def sign_in_form(self, request: Request) -> tuple[str, str]:
        """The nonce of this browser's sign-in form (a fresh one when it has none) and its CSRF token;
        `remember_sign_in_form` puts the nonce into the answer's cookie."""
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        if not 16 <= len(nonce) <= 64:
            nonce = secrets.token_urlsafe(16)
        return nonce, self._sign(f"sign-in.{nonce}")

    def remember_sign_in_form(self, response: Response, nonce: str) -> None:
        self._set(response, SIGN_IN_COOKIE, nonce, SIGN_IN_FORM_SECONDS)

    def sign_in_token_valid(self, request: Request, token: str) -> bool:
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        return bool(nonce) and same(token, self._sign(f"sign-in.{nonce}"))

    # --- the device token ---------------------------------------------------------------------------

    def device_token(self, request: Request) -> str | None:
        return request.cookies.get(DEVICE_COOKIE) or None

    def remember_device(self, response: Response, token: str, max_age: int) -> None:
        self._set(response, DEVICE_COOKIE, token, max_age)

    # --- one-shot messages after a redirect -----------------------------------------------------

    def flash(self, response: Response, kind: FlashKind, text: str) -> None:
        payload = base64.urlsafe_b64encode(json.dumps([kind, text]).encode()).decode()
        self._set(response, FLASH_COOKIE, f"{payload}.{self._sign('flash.' + payload)}", 60)

    def read_flash(self, request: Request) -> Flash | None:
        value = request.cookies.get(FLASH_COOKIE)
        if value is None:
            return None
        payload, _, signature = value.rpartition(".")
        if not same(signature, self._sign("flash." + payload)):
            return None
        kind, text = json.loads(base64.urlsafe_b64decode(payload))
        return Flash("error" if kind == "error" else "success", str(text))

    def clear_flash(self, response: Response) -> None:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)

    # --- helpers --------------------------------------------------------------------------------

    def _sign(self, *parts: str) -> str:
        mac = hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=self._secure,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(moment: datetime) -> int:
    """A moment as the cookie's issue time counts: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def same(given: str, expected: str) -> bool:
    """Constant-time equality of a token from the client and an expected (ASCII) one; any text is an answer,
    never an error (`hmac.compare_digest` raises for non-ASCII strings)."""
    return hmac.compare_digest(given.encode(), expected.encode())
