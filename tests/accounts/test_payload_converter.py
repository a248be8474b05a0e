"""accounts.temporal's payload converter: pydantic JSON as the SDK's, with one TypeAdapter per type for
the whole process (the SDK makes a converter per workflow run, and each had its own empty cache)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.contrib.pydantic import pydantic_data_converter

from accounts.temporal import PLAIN_DATA_CONVERTER, AccountsPayloadConverter, _type_adapter


@dataclass
class Step:
    key: str
    due_at: datetime
    details: dict[str, int]


def test_it_writes_and_reads_what_the_sdks_pydantic_converter_does() -> None:
    value = Step("registration:1/verify", datetime(2026, 12, 2, 5, 0, tzinfo=UTC), {"attempt": 2})
    ours = PLAIN_DATA_CONVERTER.payload_converter
    sdk = pydantic_data_converter.payload_converter
    payloads = ours.to_payloads([value, None, "text", 3])
    assert payloads == sdk.to_payloads([value, None, "text", 3])
    assert ours.from_payloads(payloads, [Step, type(None), str, int]) == [value, None, "text", 3]
    assert sdk.from_payloads(payloads, [Step, type(None), str, int]) == [value, None, "text", 3]


def test_a_second_converter_reuses_the_first_ones_adapter() -> None:
    first, second = AccountsPayloadConverter(), AccountsPayloadConverter()  # as two workflow runs get
    payload = first.to_payloads([Step("k", datetime(2026, 1, 1, tzinfo=UTC), {})])
    first.from_payloads(payload, [Step])
    built = _type_adapter.cache_info().misses
    second.from_payloads(payload, [Step])
    assert _type_adapter.cache_info().misses == built
