"""How every process talks to Temporal: one connect(), one data converter, the search attributes.

Payloads use pydantic's JSON (AccountsPayloadConverter: it handles `date`, which the default one refuses) and an AES-GCM
codec, so customer data in inputs, results, signals and failures is unreadable in the Temporal
database and UI (the codec endpoints of api/routes/codec.py decode them for signed-in staff). The key
is ACCOUNTS_PAYLOAD_ENCRYPTION_KEY, or in development one generated under var/. Each payload names
its key's id; ACCOUNTS_PAYLOAD_DECRYPTION_KEYS keeps earlier keys readable after a rotation. Ids and
search attributes stay plaintext: they hold no personal data.

connect() also carries what a real cluster needs: TLS (a client certificate, a server CA and name)
or an API key (Temporal Cloud), and the namespace.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
)
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from accounts.keyfiles import read_or_create
from accounts.settings import ConfigurationError, Settings

CUSTOMER_REFERENCE = SearchAttributeKey.for_keyword("CustomerReference")
LIFECYCLE_STAGE = SearchAttributeKey.for_keyword("LifecycleStage")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
SEARCH_ATTRIBUTES: list[SearchAttributeKey[str]] = [CUSTOMER_REFERENCE, LIFECYCLE_STAGE, CHANNEL]


def lifecycle_attributes(
    customer_reference: str | None, channel: str | None = None, stage: str = "started"
) -> TypedSearchAttributes:
    """Search attributes given at start: a run is findable by customer in the UI (and by deletion)
    from the moment it exists, even while no worker runs its first task. Workflows update the stage."""
    pairs = [SearchAttributePair(LIFECYCLE_STAGE, stage)]
    if customer_reference is not None:
        pairs.append(SearchAttributePair(CUSTOMER_REFERENCE, customer_reference))
    if channel is not None:
        pairs.append(SearchAttributePair(CHANNEL, channel))
    return TypedSearchAttributes(pairs)


# The Temporal server's dynamic config this service relies on. docker-compose's server has it in
# deploy/temporal/dynamicconfig/development-sql.yaml; every dev server here starts with it.
SERVER_DYNAMIC_CONFIG: dict[str, str] = {
    # A stopping worker tells the server (ShutdownWorker), which then answers its outstanding polls empty.
    # Without it, a poll cut short at shutdown can lose a task the server had already handed out: it waits
    # for its heartbeat timeout (an email: 10 s) or else its start-to-close timeout (90 s) to be retried.
    "frontend.enableCancelWorkerPollsOnShutdown": "true",
}


def dev_server_arguments() -> list[str]:
    """`temporal server start-dev` arguments that give a dev server SERVER_DYNAMIC_CONFIG."""
    arguments: list[str] = []
    for key, value in SERVER_DYNAMIC_CONFIG.items():
        arguments += ["--dynamic-config-value", f"{key}={value}"]
    return arguments


async def completes_polls_on_shutdown(client: Client) -> bool:
    """Whether the namespace's server answers a stopping worker's polls (frontend.enableCancelWorkerPollsOnShutdown)."""
    request = DescribeNamespaceRequest(namespace=client.namespace)
    response = await client.workflow_service.describe_namespace(request, timeout=timedelta(seconds=10))
    return response.namespace_info.capabilities.worker_poll_complete_on_shutdown


ENCODING = b"binary/encrypted+aes256gcm"
KEY_ID = "encryption-key-id"  # the metadata entry that names the key a payload was sealed with
CODEC_PATH = "/backoffice/codec"  # the API's codec server for the Temporal UI and CLI (api/routes/codec.py)
DEV_KEY_FILE = "payload-key"  # under ACCOUNTS_VAR_DIR, made by the first development process that needs it


def key_id(key: bytes) -> str:
    """A key's public name: 16 hex digits of a hash of the key (not the key: the hash is one-way), so
    rotating needs no id to be chosen or configured beside the key."""
    return hashlib.sha256(b"shop-accounts payload key id\x00" + key).hexdigest()[:16]


class UnknownPayloadKey(ValueError):
    """A payload sealed with a key this process does not hold."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole serialized payload (a fresh 96-bit nonce each time). Encodes with the
    current key and writes its id into the payload's metadata; decodes with whichever key the id names.
    Payloads sealed before key ids existed (no id) are tried with every key held, the current one first:
    GCM's tag tells a wrong key apart. Payloads that are not encrypted pass through unchanged."""

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        for one in (key, *old_keys):
            if len(one) != 32:
                raise ValueError("a payload key must be exactly 32 bytes (base64 of 32 random bytes)")
        self.key_id = key_id(key)
        self._current = AESGCM(key)
        self._keys: dict[str, AESGCM] = {self.key_id: self._current}
        for old in old_keys:
            self._keys.setdefault(key_id(old), AESGCM(old))

    @classmethod
    def from_base64(cls, value: str, old_values: Sequence[str] = ()) -> EncryptionCodec:
        return cls(base64.b64decode(value), [base64.b64decode(old) for old in old_values])

    @property
    def key_ids(self) -> list[str]:
        """The ids of every key held, the current one first."""
        return list(self._keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        sealed = nonce + self._current.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        named = payload.metadata.get(KEY_ID)
        if named is not None:
            aead = self._keys.get(named.decode("ascii", "replace"))
            if aead is None:
                raise UnknownPayloadKey(
                    f"a payload is encrypted with key {named.decode('ascii', 'replace')}, which is neither"
                    " ACCOUNTS_PAYLOAD_ENCRYPTION_KEY nor one of ACCOUNTS_PAYLOAD_DECRYPTION_KEYS"
                )
            candidates = [aead]
        else:
            candidates = list(self._keys.values())
        for aead in candidates:
            try:
                plain = aead.decrypt(payload.data[:12], payload.data[12:], None)
            except InvalidTag:
                continue
            decoded = Payload()
            decoded.ParseFromString(plain)
            return decoded
        raise UnknownPayloadKey(
            "a payload does not decrypt with ACCOUNTS_PAYLOAD_ENCRYPTION_KEY or any of ACCOUNTS_PAYLOAD_DECRYPTION_KEYS"
        )


def development_payload_key(var_dir: Path) -> str:
    """The development stack's own key (var/payload-key), created by the first process that needs it."""
    text = read_or_create(var_dir / DEV_KEY_FILE, lambda: base64.b64encode(os.urandom(32)) + b"\n")
    return text.decode("ascii").strip()


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec of these settings; None only where development turned encryption off."""
    if not settings.payload_encryption:
        return None
    if settings.payload_encryption_key is not None:
        current = settings.payload_encryption_key.get_secret_value()
    elif settings.environment == "production":  # Settings refuses this already; never fall back to a file
        raise ConfigurationError("set ACCOUNTS_PAYLOAD_ENCRYPTION_KEY: production refuses to start without it")
    else:
        current = development_payload_key(settings.var_dir)
    return EncryptionCodec.from_base64(current, [old.get_secret_value() for old in settings.payload_decryption_keys])


class SharedAdaptersJsonConverter(PydanticJSONPlainPayloadConverter):
    """JSON through pydantic, as `temporalio.contrib.pydantic`'s, with one TypeAdapter per type for the
    whole process. The SDK gives every workflow run a payload converter of its own, and with it an empty
    adapter cache: each new run built its types' schemas again (4 % of a busy worker under
    bench/registration.py). TypeAdapters are safe to share between threads and runs."""

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint = Any if type_hint is None else type_hint
        try:
            hash(hint)
        except TypeError:  # an unhashable hint: no cache for it
            return TypeAdapter(hint).validate_json(payload.data)
        return _type_adapter(hint).validate_json(payload.data)


_type_adapter = functools.lru_cache(maxsize=1024)(TypeAdapter)


class AccountsPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, with JSON through SharedAdaptersJsonConverter."""

    def __init__(self) -> None:
        super().__init__(
            *(
                SharedAdaptersJsonConverter() if isinstance(converter, JSONPlainPayloadConverter) else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


PLAIN_DATA_CONVERTER = DataConverter(payload_converter_class=AccountsPayloadConverter)


def data_converter(settings: Settings) -> DataConverter:
    codec = payload_codec(settings)
    if codec is None:
        return PLAIN_DATA_CONVERTER
    # failure messages and stack traces go through the codec too
    return dataclasses.replace(
        PLAIN_DATA_CONVERTER,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


# --- the connection ---------------------------------------------------------------------------------


def _read(path: Path, setting: str, kind: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{setting}: cannot read {path} ({error.strerror or error})") from None
    try:
        if kind == "certificate":
            x509.load_pem_x509_certificates(data)
        else:
            serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(f"{setting}: {path} holds no PEM {kind}") from None
    return data


def tls_config(settings: Settings) -> TLSConfig | bool:
    """What Client.connect's `tls` gets: a TLSConfig when a certificate, CA or server name is set (their files
    read and checked here, so a wrong one is one line naming its setting), else whether TLS is on at all."""
    if not any(
        (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_server_ca,
         settings.temporal_tls_server_name)
    ):  # fmt: skip
        if settings.temporal_tls is None:  # an API key travels over TLS only (Temporal Cloud's rule)
            return settings.temporal_api_key is not None
        return settings.temporal_tls
    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_server_ca, "ACCOUNTS_TEMPORAL_TLS_SERVER_CA", "certificate")
        if settings.temporal_tls_server_ca
        else None,
        domain=settings.temporal_tls_server_name,
        client_cert=_read(settings.temporal_tls_cert, "ACCOUNTS_TEMPORAL_TLS_CERT", "certificate")
        if settings.temporal_tls_cert
        else None,
        client_private_key=_read(settings.temporal_tls_key, "ACCOUNTS_TEMPORAL_TLS_KEY", "private key")
        if settings.temporal_tls_key
        else None,
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """Client.connect's arguments besides the target (also checks the TLS files and the payload key)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key is not None else None
    return {
        "namespace": settings.temporal_namespace,
        "data_converter": data_converter(settings),
        "tls": tls_config(settings),
        "api_key": api_key,
    }


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """The client of every process. `lazy` connects at the first call (commands that work without Temporal);
    `runtime`: the worker's, whose telemetry exports Temporal's metrics (accounts/metrics.py);
    `interceptors`: tracing, when it is on (accounts/tracing.py)."""
    return await Client.connect(
        settings.temporal_target,
        lazy=lazy,
        runtime=runtime,
        interceptors=interceptors,
        **connect_options(settings),
    )


def ui_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
    return f"{base}/{run_id}/history" if run_id else base
