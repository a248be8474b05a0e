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


def test_email_addresses_and_client_addresses_are_redacted_this_machines_are_kept() -> None:
    assert (
        redact("sign-in of Ada.Byron+shop@example.co.uk from 203.0.113.7:5000") == "sign-in of [email] from [ip]:5000"
    )
    assert redact("peer 2001:db8::1, [2001:db8:0:0:0:0:0:7]:80, fe80::") == "peer [ip], [[ip]]:80, [ip]"
    kept = "on 127.0.0.1:7233, ::1 and 0.0.0.0:9464 at 13:47:57 on 2026-12-01 for DE--1 (v1.2.3)"
    assert redact(kept) == kept


def test_a_json_line_names_the_request_and_the_customer_never_the_address() -> None:
    import json

    from accounts.logs import JsonFormatter, bind_request, know_customer, unbind_request

    token = bind_request("req-42")
    try:
        know_customer("DE--7")
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("203.0.113.7:0", "GET", "/register/confirm?token=TOPSECRET&email=ada@example.com", "1.1", 200), None,
        )  # fmt: skip
        line = json.loads(JsonFormatter().format(record))
    finally:
        unbind_request(token)
    assert line["request_id"] == "req-42" and line["customer_reference"] == "DE--7"
    assert (line["method"], line["status"], line["level"]) == ("GET", 200, "INFO")
    assert line["path"] == "/register/confirm?token=[redacted]&email=[email]"
    text = json.dumps(line)
    assert "203.0.113.7" not in text and "TOPSECRET" not in text and "ada@" not in text
