"""Log lines: one redaction rule for every process, and JSON lines when ACCOUNTS_LOG_FORMAT=json.

- `redact` is the one rule for what never reaches a log line: one-time tokens in URLs (the confirmation
  link carries its token in the query), email addresses and client IP addresses (loopback and the
  wildcard excepted: they name this machine, not a customer). Both formats apply it: text through
  `RedactTokens` on uvicorn's loggers and the handler `configure_logging` installs, JSON in its formatter.
- JSON lines carry the request id (`api/guard.py` binds it for the request's task) or, inside an activity or
  a workflow, the workflow id and type, and the customer reference where one is known (a signed-in
  customer, a lifecycle's workflow id), never the address: lookups by reference go through the back office.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity

_TOKEN_IN_URL = re.compile(
    r"((?:token|key)=)[^&\s\"]+|(/customer-restore-password/|/refresh-tokens/(?!mine\b))[^/?\s\"]+", re.IGNORECASE
)
# the local part without "&", "=" and "/" (legal, rare): a query's or a path's neighbours stay readable
_EMAIL = re.compile(r"[\w.!#$%'*+?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# full eight groups, or any form with "::" (at least one hex digit), not inside a longer word
_IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{0,4}::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:)(?![\w:])"
)
_LOOPBACK = ("127.", "::1", "0.0.0.0")  # noqa: S104 (no bind: a prefix) this machine, or every interface of it: no one's address

REDACTED = "[redacted]"


def _ip(match: re.Match[str]) -> str:
    return match[0] if match[0].startswith(_LOOPBACK) else "[ip]"


def redact(text: str) -> str:
    """Tokens in URLs, email addresses and non-loopback IP addresses out of a log text."""
    text = _TOKEN_IN_URL.sub(lambda m: f"{m.group(1) or m.group(2)}{REDACTED}", text)
    text = _EMAIL.sub("[email]", text)
    return _IPV4.sub(_ip, _IPV6.sub(_ip, text))


class RedactTokens(logging.Filter):
    """Uvicorn's access log prints the path with its query and the client address: rewritten by `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True


def install_log_redaction() -> None:
    """On uvicorn's own loggers, which keep their own handlers (they do not propagate) in text format."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


# --- what a line is about -----------------------------------------------------------------------------


@dataclass
class RequestContext:
    request_id: str
    customer_reference: str | None = None


_REQUEST: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("accounts_request", default=None)


def bind_request(request_id: str) -> contextvars.Token[RequestContext | None]:
    """The request id for every line logged in this request's task (api/guard.py); reset with the token."""
    return _REQUEST.set(RequestContext(request_id))


def unbind_request(token: contextvars.Token[RequestContext | None]) -> None:
    _REQUEST.reset(token)


def know_customer(customer_reference: str) -> None:
    """The request is about this customer (a signed-in one): its later lines name the reference."""
    context = _REQUEST.get()
    if context is not None:
        context.customer_reference = customer_reference


# lifecycles whose workflow id is "<kind>:<customer reference>[:...]" (lockout-ip and imports name none)
_CUSTOMER_WORKFLOWS = frozenset(
    ("registration", "password-reset", "password-change", "password-rehash", "lockout", "email-change", "anonymization")
)


def customer_of(workflow_id: str) -> str | None:
    kind, _, rest = workflow_id.partition(":")
    if kind not in _CUSTOMER_WORKFLOWS:
        return None
    return rest.split(":", 1)[0] or None


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Request id, or workflow id and type (activity, workflow), and customer reference, as known for this line."""
    fields: dict[str, Any] = {}
    request = _REQUEST.get()
    if request is not None:
        fields["request_id"] = request.request_id
        if request.customer_reference:
            fields["customer_reference"] = request.customer_reference
    details = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
    if isinstance(details, dict) and details.get("workflow_id"):
        fields.update(workflow_id=details["workflow_id"], workflow_type=details.get("workflow_type"))
        if details.get("activity_type"):
            fields.update(activity_type=details["activity_type"], attempt=details.get("attempt"))
    elif activity.in_activity():
        info = activity.info()
        fields.update(
            workflow_id=info.workflow_id,
            workflow_type=info.workflow_type,
            activity_type=info.activity_type,
            attempt=info.attempt,
        )
    if "workflow_id" in fields and "customer_reference" not in fields:
        reference = customer_of(str(fields["workflow_id"]))
        if reference is not None:
            fields["customer_reference"] = reference
    return {key: value for key, value in fields.items() if value is not None}


# --- formats ------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context fields, an exception's traceback.

    Uvicorn's access lines become method, path, status (the client address is left out)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        access = record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5
        if access:
            assert isinstance(record.args, tuple)
            _client, method, path, http_version, status = record.args
            line.update(method=method, path=redact(str(path)), status=status, http_version=http_version)
            line["message"] = f"{method} {line['path']} {status}"
        else:
            line["message"] = redact(record.getMessage())
        line.update(context_fields(record))
        if record.exc_info:
            line["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        elif record.stack_info:
            line["stack"] = redact(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human-readable line (`accounts dev`'s default), redacted, with the request or workflow id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        fields = context_fields(record)
        where = fields.get("request_id") or fields.get("workflow_id")
        return f"{text} [{where}]" if where and str(where) not in text else text


def configure_logging(log_format: str = "text", level: str | int = "INFO", *, stream: TextIO | None = None) -> None:
    """The root logger's one handler, in the chosen format; every process calls this once at start."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    if log_format == "json":  # uvicorn's loggers keep no handlers of their own: every line is one JSON object
        logging.captureWarnings(True)  # a library's warning too, not a raw line among the JSON ones
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
