"""Access tokens: short-lived RS256 JWTs handed out by POST /access-tokens and checked on every request.

The signing key is RSA; its public half is published as a JWKS so that other services (cart, checkout)
can check a token without calling us. Verification accepts exactly one algorithm, RS256, and one key,
so neither `alg: none` nor an HS256 token "signed" with our public key can pass.

A token says who (`sub` = customer reference) and which generation of the customer's credentials it
belongs to (`tv` = token version); the caller compares `tv` with the customer's current token version,
which is how a password change or a reset logs out every session. Since issue 16 it also names its sign-in
(`sid` = the refresh-token family, accounts/customer_sessions.py), so ending one session ends its access
tokens too; tokens issued before carry no `sid` and are good until they expire.

An agent's impersonation token (issue 18, accounts/assists.py) is a customer token that says who acts:
`act` = {"sub": "agent:<staff name>"} (RFC 8693, 4.1), its `sid` the assistance session, its lifetime the
session's. Agents' own tokens come from an issuer of another audience (AGENT_AUDIENCE), so no customer
route accepts one, and no agent route a customer's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from accounts.keyfiles import read_or_create

ALGORITHM = "RS256"
DEFAULT_AUDIENCE = "shop-storefront"
AGENT_AUDIENCE = "shop-agent"  # agents' own tokens (`sub` = "staff:<id>"): POST /agent-access-tokens
ACTING_AGENT_PREFIX = "agent:"
KEY_SIZE = 2048
# A genuine token is well under 1 KB; anything far larger is not ours and not worth parsing.
MAX_TOKEN_LENGTH = 8192
REQUIRED_CLAIMS = ["sub", "iss", "aud", "iat", "nbf", "exp", "jti", "tv"]


class InvalidAccessToken(Exception):
    """The token is not one we issued, or no longer valid. The message is for logs, never for clients."""


class AccessTokenSettings(Protocol):
    """The part of `accounts.settings.Settings` the access tokens read."""

    @property
    def environment(self) -> str: ...
    @property
    def var_dir(self) -> Path: ...
    @property
    def jwt_private_key_path(self) -> Path | None: ...
    @property
    def jwt_issuer(self) -> str: ...
    @property
    def access_token_lifetime(self) -> timedelta: ...


@dataclass(frozen=True)
class AccessClaims:
    customer_reference: str
    token_version: int
    issued_at: datetime
    expires_at: datetime
    token_id: str
    session_id: str | None = None  # `sid`: the refresh-token family of the sign-in (or the assistance session)
    acting_agent: str | None = None  # `act.sub` without its prefix: the agent acting for the customer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an RSA JWK: SHA-256 of its required members, sorted, without whitespace."""
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class SigningKey:
    """An RSA key pair that signs access tokens (RS256), identified by its RFC 7638 thumbprint."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size < KEY_SIZE:
            raise ValueError(f"the JWT signing key has {private_key.key_size} bits; at least {KEY_SIZE} are required")
        self.private_key = private_key
        self.public_key = private_key.public_key()
        numbers = self.public_key.public_numbers()
        self._n = _b64url_uint(numbers.n)
        self._e = _b64url_uint(numbers.e)
        self._kid = jwk_thumbprint({"kty": "RSA", "n": self._n, "e": self._e})

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the JWT signing key must be an RSA private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Load the key at `path`, creating it (0600, PEM PKCS#8) first if there is none (two processes
        starting at once end up with the same key: accounts.keyfiles)."""
        return cls.from_pem(read_or_create(path, lambda: cls.generate().private_pem()))

    @classmethod
    def from_settings(cls, settings: AccessTokenSettings) -> SigningKey:
        if settings.jwt_private_key_path is not None:
            return cls.from_pem(settings.jwt_private_key_path.read_bytes())
        if settings.environment == "production":
            # every replica would otherwise mint its own key and reject the others' tokens
            raise ValueError("ACCOUNTS_JWT_PRIVATE_KEY_PATH must be set in production")
        return cls.load_or_create(settings.var_dir / "jwt-private.pem")

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def kid(self) -> str:
        return self._kid

    def jwk(self) -> dict[str, str]:
        return {"kty": "RSA", "n": self._n, "e": self._e, "kid": self._kid, "alg": ALGORITHM, "use": "sig"}


class AccessTokenIssuer:
    """Issues and verifies the customer access tokens of one issuer and audience."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        lifetime: timedelta,
        audience: str = DEFAULT_AUDIENCE,
        leeway: timedelta = timedelta(seconds=30),
    ) -> None:
        if lifetime <= timedelta(0):
            raise ValueError("the access token lifetime must be positive")
        self.key = key
        self.issuer = issuer
        self.lifetime = lifetime
        self.audience = audience
        # replicas' clocks differ a little: a token minted a second "in the future" is still good
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: AccessTokenSettings) -> AccessTokenIssuer:
        return cls(
            SigningKey.from_settings(settings), issuer=settings.jwt_issuer, lifetime=settings.access_token_lifetime
        )

    def issue(
        self,
        customer_reference: str,
        token_version: int,
        *,
        now: datetime | None = None,
        session_id: str | None = None,
        acting_agent: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, AccessClaims]:
        """`acting_agent` and `expires_at` (earlier than the issuer's lifetime allows): an impersonation."""
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise ValueError("naive datetime given as the issue time")
        issued_at = int(now.timestamp())
        expires = issued_at + int(self.lifetime.total_seconds())
        if expires_at is not None:
            expires = min(expires, int(expires_at.timestamp()))
        claims = AccessClaims(
            customer_reference=customer_reference,
            token_version=token_version,
            issued_at=datetime.fromtimestamp(issued_at, UTC),
            expires_at=datetime.fromtimestamp(expires, UTC),
            token_id=uuid.uuid4().hex,
            session_id=session_id,
            acting_agent=acting_agent,
        )
        payload: dict[str, Any] = {
            "sub": customer_reference,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires,
            "jti": claims.token_id,
            "tv": token_version,
        }
        if session_id is not None:
            payload["sid"] = session_id
        if acting_agent is not None:
            payload["act"] = {"sub": ACTING_AGENT_PREFIX + acting_agent}
        token = jwt.encode(payload, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidAccessToken("not a token")
        try:
            header = jwt.get_unverified_header(token)
            # PyJWT checks the algorithm again below; refusing here first keeps the rule in plain sight
            if header.get("alg") != ALGORITHM:
                raise InvalidAccessToken(f"algorithm {header.get('alg')!r} is not accepted")
            if header.get("kid") != self.key.kid:
                raise InvalidAccessToken("unknown key id")
            payload: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidAccessToken(str(error)) from error
        return _claims(payload)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.key.jwk()]}


def _claims(payload: dict[str, Any]) -> AccessClaims:
    # PyJWT coerces iat/exp with int(); what we hand on must be exactly what we sign.
    subject, version, issued_at, expires_at, token_id = (
        payload["sub"],
        payload["tv"],
        payload["iat"],
        payload["exp"],
        payload["jti"],
    )
    if not isinstance(subject, str) or not subject:
        raise InvalidAccessToken("sub must be a non-empty string")
    if not isinstance(token_id, str) or not token_id:
        raise InvalidAccessToken("jti must be a non-empty string")
    session_id = payload.get("sid")
    if session_id is not None and (not isinstance(session_id, str) or not session_id or len(session_id) > 32):
        raise InvalidAccessToken("sid must be a short non-empty string")
    acting_agent = _acting_agent(payload.get("act"))
    if acting_agent is not None and session_id is None:
        raise InvalidAccessToken("an impersonation names its assistance session")
    for name, value in (("tv", version), ("iat", issued_at), ("exp", expires_at)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidAccessToken(f"{name} must be an integer")
    try:
        return AccessClaims(
            customer_reference=subject,
            token_version=version,
            issued_at=datetime.fromtimestamp(issued_at, UTC),
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            token_id=token_id,
            session_id=session_id,
            acting_agent=acting_agent,
        )
    except (OverflowError, ValueError, OSError) as error:
        raise InvalidAccessToken("timestamp out of range") from error


def _acting_agent(act: Any) -> str | None:
    """The agent an `act` claim names, or None without one; any other shape is no token of ours."""
    if act is None:
        return None
    subject = act.get("sub") if isinstance(act, dict) else None
    if not isinstance(subject, str) or not subject.startswith(ACTING_AGENT_PREFIX) or len(subject) > 120:
        raise InvalidAccessToken("act must name an agent")
    return subject.removeprefix(ACTING_AGENT_PREFIX)
