"""Secrets at rest: AES-256-GCM under ACCOUNTS_MFA_ENCRYPTION_KEY, bound to the row they belong to: TOTP
secrets, and data export archives (accounts/data_exports.py, owner "data-export:{id}").

A TOTP secret must be readable again (each code is computed from it), so it cannot be hashed like the
emailed codes. The database alone does not give it away: the key lives in the environment, as the payload
key does (accounts/temporal.py), and production refuses to start without it (accounts/settings.py);
development makes one under var/ (var/mfa-key). The owner ("customer:42", "staff:7") is the associated
data, so a secret copied onto another account's row does not decrypt there.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accounts.keyfiles import read_or_create
from accounts.settings import ConfigurationError, Settings

DEV_KEY_FILE = "mfa-key"  # under ACCOUNTS_VAR_DIR
VERSION = "v1"


class UnreadableSecret(ValueError):
    """A stored secret that this key does not open (another key, or a row tampered with)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the MFA encryption key must be exactly 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.mfa_encryption_key is not None:
            value = settings.mfa_encryption_key.get_secret_value()
        elif settings.environment == "production":  # Settings refuses this already; never fall back to a file
            raise ConfigurationError("set ACCOUNTS_MFA_ENCRYPTION_KEY: production refuses to start without it")
        else:
            made = read_or_create(settings.var_dir / DEV_KEY_FILE, lambda: base64.b64encode(os.urandom(32)) + b"\n")
            value = made.decode("ascii").strip()
        return cls(base64.b64decode(value))

    def seal(self, secret: str, owner: str) -> str:
        return f"{VERSION}:{base64.b64encode(self.seal_bytes(secret.encode(), owner)).decode()}"

    def open(self, stored: str, owner: str) -> str:
        version, _, body = stored.partition(":")
        if version != VERSION:
            raise UnreadableSecret(f"unknown secret format {version!r}")
        return self.open_bytes(base64.b64decode(body), owner).decode()

    def seal_bytes(self, data: bytes, owner: str) -> bytes:
        """`data` encrypted for `owner` (the associated data): the 12-byte nonce, then the ciphertext and tag.
        Also a data export's archive (accounts/data_exports.py, owner "data-export:{id}")."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, owner.encode())

    def open_bytes(self, sealed: bytes, owner: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], owner.encode())
        except InvalidTag:
            raise UnreadableSecret("the secret does not open with ACCOUNTS_MFA_ENCRYPTION_KEY") from None
