"""The payload codec and its settings: key ids, rotation, payloads from before key ids, the development key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

from accounts.settings import Settings
from accounts.temporal import DEV_KEY_FILE, ENCODING, KEY_ID, EncryptionCodec, UnknownPayloadKey, key_id, payload_codec

OLD, NEW, OTHER = (os.urandom(32) for _ in range(3))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def legacy_seal(key: bytes, payload: Payload) -> Payload:
    """A payload as the codec sealed it before key ids existed: no id in the metadata."""
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, payload.SerializeToString(), None)
    return Payload(metadata={"encoding": ENCODING}, data=sealed)


async def test_each_payload_names_its_key_and_holds_no_plaintext() -> None:
    codec = EncryptionCodec(NEW)
    (sealed,) = await codec.encode([plain("ada@example.com")])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == key_id(NEW).encode() == codec.key_id.encode()
    assert b"ada@example.com" not in sealed.SerializeToString()
    assert key_id(NEW) != key_id(OLD) and len(key_id(NEW)) == 16
    assert b64(NEW) not in key_id(NEW) and NEW.hex()[:16] != key_id(NEW)  # the id is no part of the key
    assert await codec.decode([sealed]) == [plain("ada@example.com")]


async def test_after_a_rotation_the_new_key_encrypts_and_the_old_one_still_decrypts() -> None:
    (before,) = await EncryptionCodec(OLD).encode([plain("written before")])
    rotated = EncryptionCodec(NEW, [OLD])
    (after,) = await rotated.encode([plain("written after")])
    assert after.metadata[KEY_ID] == key_id(NEW).encode()
    assert await rotated.decode([before, after]) == [plain("written before"), plain("written after")]
    assert rotated.key_ids == [key_id(NEW), key_id(OLD)]

    with pytest.raises(UnknownPayloadKey, match=f"{key_id(OLD)}.*ACCOUNTS_PAYLOAD_DECRYPTION_KEYS"):
        await EncryptionCodec(NEW).decode([before])  # the old key dropped too early: the error names it


async def test_a_rolling_rotation_in_two_restarts_keeps_every_pair_of_processes_reading_each_other() -> None:
    """docs/operations.md's order: first every process learns the new key as a decryption key, then each
    switches to encrypting with it. Mid-restart, old and new processes run side by side (workers hand one
    run's tasks to each other): at each step each reads what the other writes."""
    written = plain("a payload")
    steps = [
        (EncryptionCodec(OLD), EncryptionCodec(OLD, [NEW])),  # restart 1: the new key added to read
        (EncryptionCodec(OLD, [NEW]), EncryptionCodec(NEW, [OLD])),  # restart 2: the new key encrypts
    ]
    for not_yet, restarted in steps:
        for writer, reader in ((not_yet, restarted), (restarted, not_yet)):
            assert await reader.decode(await writer.encode([written])) == [written]

    # the key switched in one restart: a process that has not restarted cannot read what a restarted one wrote
    with pytest.raises(UnknownPayloadKey, match=key_id(NEW)):
        await EncryptionCodec(OLD).decode(await EncryptionCodec(NEW, [OLD]).encode([written]))


async def test_payloads_from_before_key_ids_decrypt_with_the_current_or_an_old_key() -> None:
    rotated = EncryptionCodec(NEW, [OTHER, OLD])
    sealed_old, sealed_new = legacy_seal(OLD, plain("old")), legacy_seal(NEW, plain("new"))
    assert await rotated.decode([sealed_old, sealed_new]) == [plain("old"), plain("new")]
    with pytest.raises(UnknownPayloadKey):
        await EncryptionCodec(OTHER).decode([sealed_old])


async def test_a_tampered_payload_is_refused_and_unencrypted_ones_pass() -> None:
    codec = EncryptionCodec(NEW)
    (sealed,) = await codec.encode([plain("x")])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(UnknownPayloadKey):
        await codec.decode([tampered])
    assert await codec.decode([plain("as is")]) == [plain("as is")]


def test_the_settings_take_the_old_keys_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNTS_PAYLOAD_ENCRYPTION_KEY", b64(NEW))
    monkeypatch.setenv("ACCOUNTS_PAYLOAD_DECRYPTION_KEYS", f"{b64(OLD)}, {b64(OTHER)}")
    codec = payload_codec(Settings(_env_file=None))  # type: ignore[call-arg]
    assert codec is not None and codec.key_ids == [key_id(NEW), key_id(OLD), key_id(OTHER)]
    monkeypatch.setenv("ACCOUNTS_PAYLOAD_DECRYPTION_KEYS", f'["{b64(OLD)}"]')
    codec = payload_codec(Settings(_env_file=None))  # type: ignore[call-arg]
    assert codec is not None and codec.key_ids == [key_id(NEW), key_id(OLD)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("payload_encryption_key", "too-short"),
        ("payload_encryption_key", base64.b64encode(bytes(range(16))).decode()),  # 16 bytes; fixed for xdist
        ("payload_decryption_keys", ["not base64!"]),
    ],
)
def test_a_key_that_is_not_32_bytes_of_base64_is_refused_naming_its_setting(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"ACCOUNTS_{name.upper()} must be base64 of exactly 32 bytes"):
        settings(**{name: value})


def test_production_refuses_to_start_without_its_keys_in_one_line_naming_each_setting() -> None:
    with pytest.raises(ValueError) as refused:
        settings(environment="production")
    (error,) = refused.value.errors()  # type: ignore[attr-defined]
    line = str(error["msg"])
    assert "\n" not in line
    for setting in (
        "ACCOUNTS_SECRET_KEY",
        "ACCOUNTS_PAYLOAD_ENCRYPTION_KEY",
        "ACCOUNTS_MFA_ENCRYPTION_KEY",
        "ACCOUNTS_JWT_PRIVATE_KEY_PATH",
    ):
        assert setting in line
    complete = {
        "environment": "production",
        "secret_key": "s" * 40,
        "payload_encryption_key": b64(NEW),
        "mfa_encryption_key": b64(NEW),
        "jwt_private_key_path": Path("/keys/jwt.pem"),
    }
    assert settings(**complete).environment == "production"
    with pytest.raises(ValueError, match="ACCOUNTS_PAYLOAD_ENCRYPTION "):
        settings(**complete, payload_encryption=False)  # the development switch has no effect there


def test_development_generates_one_key_under_var_and_keeps_it(tmp_path: Path) -> None:
    first = payload_codec(settings(var_dir=tmp_path / "var"))
    again = payload_codec(settings(var_dir=tmp_path / "var"))
    assert first is not None and again is not None and first.key_id == again.key_id
    key_file = tmp_path / "var" / DEV_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_id(base64.b64decode(key_file.read_text())) == first.key_id
    elsewhere = payload_codec(settings(var_dir=tmp_path / "other"))
    assert elsewhere is not None and elsewhere.key_id != first.key_id
    assert payload_codec(settings(var_dir=tmp_path / "off", payload_encryption=False)) is None
    assert not (tmp_path / "off").exists()
    configured = payload_codec(settings(var_dir=tmp_path / "set", payload_encryption_key=b64(NEW)))
    assert configured is not None and configured.key_id == key_id(NEW) and not (tmp_path / "set").exists()
