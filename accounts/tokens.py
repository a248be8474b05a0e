"""One-time tokens: 256 random bits, sent once by email, stored and compared only as SHA-256.

A plain hash (no key) is enough: the token has full entropy, so its hash cannot be guessed back.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
