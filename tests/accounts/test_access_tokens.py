"""Access tokens: RS256 JWTs that only our key can mint, checked the way an outside service would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from accounts.access_tokens import (
    AccessClaims,
    AccessTokenIssuer,
    InvalidAccessToken,
    SigningKey,
    jwk_thumbprint,
)

ISSUER = "shop-accounts"
AUDIENCE = "shop-storefront"
LIFETIME = timedelta(hours=8)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def issuer(key: SigningKey) -> AccessTokenIssuer:
    return AccessTokenIssuer(key, issuer=ISSUER, lifetime=LIFETIME)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    padded = [part + "=" * (-len(part) % 4) for part in (header, payload)]
    return json.loads(base64.urlsafe_b64decode(padded[0])), json.loads(base64.urlsafe_b64decode(padded[1])), signature


def valid_payload(**changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    payload = {"sub": "DE--1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600}
    payload |= {"jti": "0" * 32, "tv": 0}
    payload |= changes
    return {name: value for name, value in payload.items() if value is not None}


def signed_with(key: SigningKey, payload: dict[str, Any], *, kid: str | None = None) -> str:
    return jwt.encode(payload, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid})


# --- what a storefront sees -----------------------------------------------------------------------


def test_round_trip(issuer: AccessTokenIssuer, key: SigningKey) -> None:
    now = datetime(2030, 5, 17, 12, 0, 0, 750000, tzinfo=UTC)
    token, claims = issuer.issue("DE--25", 3, now=now)

    assert claims.customer_reference == "DE--25" and claims.token_version == 3
    assert claims.issued_at == now.replace(microsecond=0)
    assert claims.expires_at == claims.issued_at + LIFETIME
    assert len(claims.token_id) == 32

    header, payload, _ = segments(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    assert payload == {
        "sub": "DE--25",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(claims.issued_at.timestamp()),
        "nbf": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.token_id,
        "tv": 3,
    }

    fresh, fresh_claims = issuer.issue("DE--25", 3)
    assert issuer.verify(fresh) == fresh_claims
    assert fresh_claims.token_id != claims.token_id


def test_every_token_has_its_own_id(issuer: AccessTokenIssuer) -> None:
    assert len({issuer.issue("DE--1", 0)[1].token_id for _ in range(50)}) == 50


def test_expired_token_is_rejected(issuer: AccessTokenIssuer) -> None:
    long_ago = datetime.now(UTC) - LIFETIME - timedelta(minutes=5)
    token, _ = issuer.issue("DE--1", 0, now=long_ago)
    with pytest.raises(InvalidAccessToken, match="expired"):
        issuer.verify(token)


def test_token_from_the_future_is_rejected(issuer: AccessTokenIssuer) -> None:
    token, _ = issuer.issue("DE--1", 0, now=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(InvalidAccessToken):
        issuer.verify(token)


def test_naive_issue_time_is_refused(issuer: AccessTokenIssuer) -> None:
    with pytest.raises(ValueError, match="naive"):
        issuer.issue("DE--1", 0, now=datetime.now())


# --- forgeries ------------------------------------------------------------------------------------


def test_tampered_payload_is_rejected(issuer: AccessTokenIssuer) -> None:
    token, _ = issuer.issue("DE--1", 0)
    header, payload, signature = token.split(".")
    claims = segments(token)[1] | {"sub": "DE--2"}
    forged = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(InvalidAccessToken):
        issuer.verify(forged)
    # and a flipped bit in the signature
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidAccessToken):
        issuer.verify(".".join([header, payload, flipped]))


def test_token_signed_with_another_key_is_rejected(
    issuer: AccessTokenIssuer, key: SigningKey, other_key: SigningKey
) -> None:
    elsewhere = AccessTokenIssuer(other_key, issuer=ISSUER, lifetime=LIFETIME)
    with pytest.raises(InvalidAccessToken, match="key id"):
        issuer.verify(elsewhere.issue("DE--1", 0)[0])
    # claiming our key id does not help: the signature is checked against our key
    with pytest.raises(InvalidAccessToken, match=r"[Ss]ignature"):
        issuer.verify(signed_with(other_key, valid_payload(), kid=key.kid))
    # while the same claims signed by us pass, so the rejections above are about the key alone
    assert issuer.verify(signed_with(key, valid_payload())).customer_reference == "DE--1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_token_is_rejected(issuer: AccessTokenIssuer, key: SigningKey, alg: str) -> None:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": key.kid}).encode())
    payload = b64url(json.dumps(valid_payload()).encode())
    for signature in ("", "AAAA"):
        with pytest.raises(InvalidAccessToken):
            issuer.verify(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    "encoding", [serialization.Encoding.PEM, serialization.Encoding.DER, serialization.Encoding.OpenSSH]
)
def test_hs256_signed_with_our_public_key_is_rejected(
    issuer: AccessTokenIssuer, key: SigningKey, encoding: serialization.Encoding
) -> None:
    # the classic key-confusion attack: the public key, which anyone can fetch, used as an HMAC secret
    public_format = (
        serialization.PublicFormat.OpenSSH
        if encoding is serialization.Encoding.OpenSSH
        else serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = key.public_key.public_bytes(encoding, public_format)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64url(json.dumps(valid_payload()).encode())
    signature = b64url(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidAccessToken, match="HS256"):
        issuer.verify(f"{header}.{payload}.{signature}")


def test_other_rsa_algorithms_are_rejected(issuer: AccessTokenIssuer, key: SigningKey) -> None:
    for alg in ("RS512", "PS256"):
        token = jwt.encode(valid_payload(), key.private_key, algorithm=alg, headers={"kid": key.kid})
        with pytest.raises(InvalidAccessToken, match=alg):
            issuer.verify(token)


def test_wrong_audience_or_issuer_is_rejected(issuer: AccessTokenIssuer, key: SigningKey) -> None:
    back_office = AccessTokenIssuer(key, issuer=ISSUER, lifetime=LIFETIME, audience="back-office")
    with pytest.raises(InvalidAccessToken, match=r"[Aa]udience"):
        issuer.verify(back_office.issue("DE--1", 0)[0])
    impostor = AccessTokenIssuer(key, issuer="someone-else", lifetime=LIFETIME)
    with pytest.raises(InvalidAccessToken, match=r"[Ii]ssuer"):
        issuer.verify(impostor.issue("DE--1", 0)[0])
    # a list of audiences that merely contains ours is not accepted either
    with pytest.raises(InvalidAccessToken):
        issuer.verify(signed_with(key, valid_payload(aud=[AUDIENCE, "back-office"])))


@pytest.mark.parametrize("missing", ["sub", "iss", "aud", "iat", "nbf", "exp", "jti", "tv"])
def test_token_missing_a_claim_is_rejected(issuer: AccessTokenIssuer, key: SigningKey, missing: str) -> None:
    with pytest.raises(InvalidAccessToken):
        issuer.verify(signed_with(key, valid_payload(**{missing: None})))


@pytest.mark.parametrize(
    "changes",
    [{"tv": "0"}, {"tv": True}, {"tv": 1.5}, {"sub": ""}, {"sub": 25}, {"jti": 7}, {"iat": "1700000000"}],
)
def test_claims_of_the_wrong_type_are_rejected(
    issuer: AccessTokenIssuer, key: SigningKey, changes: dict[str, Any]
) -> None:
    with pytest.raises(InvalidAccessToken):
        issuer.verify(signed_with(key, valid_payload(**changes)))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "....", "x" * 10_000, "eyJhbGciOiJSUzI1NiJ9.e30."])
def test_garbage_is_rejected(issuer: AccessTokenIssuer, garbage: str) -> None:
    with pytest.raises(InvalidAccessToken):
        issuer.verify(garbage)


def test_header_without_key_id_is_rejected(issuer: AccessTokenIssuer, key: SigningKey) -> None:
    token = jwt.encode(valid_payload(), key.private_key, algorithm="RS256")
    with pytest.raises(InvalidAccessToken, match="key id"):
        issuer.verify(token)


# --- the published key ----------------------------------------------------------------------------


def test_jwks_verifies_a_token_with_plain_pyjwt(issuer: AccessTokenIssuer) -> None:
    token, claims = issuer.issue("DE--25", 4)
    jwks = json.loads(json.dumps(issuer.jwks()))  # what GET /.well-known/jwks.json would serve

    # an outside service: pick the key by kid, check with nothing but PyJWT
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [candidate for candidate in jwks["keys"] if candidate["kid"] == kid]
    payload = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    assert payload["sub"] == "DE--25" and payload["tv"] == 4 and payload["jti"] == claims.token_id

    # PyJWKClient's own parsing agrees too
    assert jwt.PyJWKSet.from_dict(jwks)[kid].key_type == "RSA"


def test_jwk_is_public_only_and_kid_is_its_rfc7638_thumbprint(key: SigningKey) -> None:
    jwk = key.jwk()
    assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig" and jwk["e"] == "AQAB"
    assert jwk["kid"] == key.kid == jwk_thumbprint(jwk)
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)), "big")
    assert n == key.public_key.public_numbers().n and n.bit_length() == 2048


def test_thumbprint_matches_rfc7638_example() -> None:
    # RFC 7638, section 3.1
    example = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
            "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
            "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
            "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# --- key material ---------------------------------------------------------------------------------


def test_load_or_create_makes_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys" / "jwt-private.pem"
    first = SigningKey.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    contents = path.read_bytes()

    second = SigningKey.load_or_create(path)
    assert second.kid == first.kid
    assert path.read_bytes() == contents
    assert [p.name for p in path.parent.iterdir()] == ["jwt-private.pem"]


def test_load_or_create_racing_callers_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "jwt-private.pem"
    start = threading.Barrier(8)

    def load() -> str:
        start.wait()
        return SigningKey.load_or_create(path).kid

    with ThreadPoolExecutor(8) as pool:
        kids = list(pool.map(lambda _: load(), range(8)))

    assert len(set(kids)) == 1
    assert kids[0] == SigningKey.from_pem(path.read_bytes()).kid
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-private.pem"]  # no temporary files left behind


def test_load_or_create_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "jwt-private.pem"
    path.write_bytes(b"not a key")
    with pytest.raises(ValueError):
        SigningKey.load_or_create(path)
    assert path.read_bytes() == b"not a key"  # never silently replaced: that would log everyone out


def test_from_pem_accepts_pkcs1_and_refuses_weak_or_non_rsa_keys(key: SigningKey) -> None:
    pkcs1 = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert SigningKey.from_pem(pkcs1).kid == key.kid

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the weak key is the point)
    with pytest.raises(ValueError, match="2048"):
        SigningKey.from_pem(pem(weak))
    with pytest.raises(ValueError, match="RSA"):
        SigningKey.from_pem(pem(ec.generate_private_key(ec.SECP256R1())))


def pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class FakeSettings:
    var_dir: Path
    environment: str = "development"
    jwt_private_key_path: Path | None = None
    jwt_issuer: str = ISSUER
    access_token_lifetime: timedelta = LIFETIME


def test_from_settings_in_development_keeps_a_key_in_var(tmp_path: Path) -> None:
    issuer = AccessTokenIssuer.from_settings(FakeSettings(var_dir=tmp_path / "var"))
    assert (tmp_path / "var" / "jwt-private.pem").exists()
    assert AccessTokenIssuer.from_settings(FakeSettings(var_dir=tmp_path / "var")).key.kid == issuer.key.kid
    token, claims = issuer.issue("DE--1", 0)
    assert issuer.verify(token) == claims and issuer.lifetime == LIFETIME and issuer.issuer == ISSUER


def test_from_settings_reads_a_configured_key_and_requires_one_in_production(tmp_path: Path, key: SigningKey) -> None:
    configured = tmp_path / "configured.pem"
    configured.write_bytes(key.private_pem())
    settings = FakeSettings(var_dir=tmp_path / "var", environment="production", jwt_private_key_path=configured)
    assert AccessTokenIssuer.from_settings(settings).key.kid == key.kid
    assert not (tmp_path / "var").exists()

    with pytest.raises(ValueError, match="JWT_PRIVATE_KEY_PATH"):
        AccessTokenIssuer.from_settings(FakeSettings(var_dir=tmp_path / "var", environment="production"))
    with pytest.raises(FileNotFoundError):
        AccessTokenIssuer.from_settings(FakeSettings(var_dir=tmp_path, jwt_private_key_path=tmp_path / "missing.pem"))


def test_claims_are_a_value(issuer: AccessTokenIssuer) -> None:
    _, claims = issuer.issue("DE--1", 0)
    assert isinstance(claims, AccessClaims)
    with pytest.raises(AttributeError):
        claims.token_version = 1  # type: ignore[misc]


def test_an_impersonation_says_who_acts_and_lives_no_longer_than_its_session(issuer: AccessTokenIssuer) -> None:
    now = datetime.now(UTC)
    token, claims = issuer.issue(
        "DE--5", 3, now=now, session_id="a" * 32, acting_agent="agnes", expires_at=now + timedelta(minutes=30)
    )
    _, payload, _ = segments(token)
    assert payload["act"] == {"sub": "agent:agnes"}  # RFC 8693, 4.1
    assert payload["exp"] - payload["iat"] == 30 * 60 == (claims.expires_at - claims.issued_at).total_seconds()
    assert issuer.verify(token).acting_agent == "agnes"
    # a session that ended thirty minutes ago gave a token that is dead too (an injected clock, no patching)
    earlier = now - timedelta(hours=1)
    old, _ = issuer.issue(
        "DE--5", 3, now=earlier, session_id="a" * 32, acting_agent="agnes", expires_at=earlier + timedelta(minutes=30)
    )
    with pytest.raises(InvalidAccessToken, match="expired"):
        issuer.verify(old)


@pytest.mark.parametrize("act", [{"sub": "staff:1"}, {"sub": 7}, "agent:agnes", {"name": "agent:x"}])
def test_an_act_claim_that_names_no_agent_is_refused(key: SigningKey, act: Any) -> None:
    token = signed_with(key, valid_payload(act=act, sid="s1"))
    with pytest.raises(InvalidAccessToken, match="act"):
        AccessTokenIssuer(key, issuer=ISSUER, lifetime=LIFETIME).verify(token)


def test_an_impersonation_without_its_session_is_refused(key: SigningKey) -> None:
    token = signed_with(key, valid_payload(act={"sub": "agent:agnes"}))
    with pytest.raises(InvalidAccessToken, match="assistance session"):
        AccessTokenIssuer(key, issuer=ISSUER, lifetime=LIFETIME).verify(token)
