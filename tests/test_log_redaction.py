"""One-time tokens travel in URLs; they must not reach log lines."""

from __future__ import annotations

import logging

from api.middleware import RedactTokens, redact


def test_tokens_in_paths_and_queries_are_redacted() -> None:
    assert redact("GET /register/confirm?token=abc123-_X HTTP/1.1") == "GET /register/confirm?token=[redacted] HTTP/1.1"
    assert redact("/x?a=1&key=s3cret&b=2") == "/x?a=1&key=[redacted]&b=2"
    assert redact("PATCH /customer-restore-password/s3cret HTTP/1.1") == (
        "PATCH /customer-restore-password/[redacted] HTTP/1.1"
    )
    assert redact("/customers/DE--1") == "/customers/DE--1"


def test_the_access_log_filter_rewrites_uvicorns_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/register/confirm?token=TOPSECRET", "1.1", 200), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert "TOPSECRET" not in record.getMessage()


def test_refresh_tokens_in_paths_are_redacted_but_mine_is_kept() -> None:
    assert redact("DELETE /refresh-tokens/abcDEF123 HTTP/1.1") == "DELETE /refresh-tokens/[redacted] HTTP/1.1"
    assert redact("DELETE /refresh-tokens/mine HTTP/1.1") == "DELETE /refresh-tokens/mine HTTP/1.1"
