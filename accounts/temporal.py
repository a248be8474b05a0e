"""How every process talks to Temporal: one connect(), one data converter, the search attributes.

Payloads use the pydantic converter (it handles `date`, which the default one refuses) and, when
ACCOUNTS_PAYLOAD_ENCRYPTION_KEY is set, an AES-GCM codec so customer data in inputs and results is
unreadable in the Temporal database and UI. Ids and search attributes stay plaintext: they hold no
personal data.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.runtime import Runtime

from accounts.settings import Settings

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


_ENCODING = b"binary/encrypted+aes256gcm"


class EncryptionCodec(PayloadCodec):
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("ACCOUNTS_PAYLOAD_ENCRYPTION_KEY must be base64 of exactly 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, value: str) -> EncryptionCodec:
        return cls(base64.b64decode(value))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = nonce + self._aead.encrypt(nonce, payload.SerializeToString(), None)
            out.append(Payload(metadata={"encoding": _ENCODING}, data=sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != _ENCODING:
                out.append(payload)
                continue
            plain = self._aead.decrypt(payload.data[:12], payload.data[12:], None)
            decoded = Payload()
            decoded.ParseFromString(plain)
            out.append(decoded)
        return out


def data_converter(settings: Settings) -> DataConverter:
    if settings.payload_encryption_key is None:
        return pydantic_data_converter
    codec = EncryptionCodec.from_base64(settings.payload_encryption_key.get_secret_value())
    # failure messages and stack traces go through the codec too
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """`runtime`: the worker's, whose telemetry exports Temporal's metrics (accounts/metrics.py);
    `interceptors`: tracing, when it is on (accounts/tracing.py)."""
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
        interceptors=interceptors,
    )


def ui_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
    return f"{base}/{run_id}/history" if run_id else base
