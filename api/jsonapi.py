"""The Glue JSON:API envelope: resources out, errors out, and the one map from failures to statuses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Message, Send

MEDIA_TYPE = "application/vnd.api+json"


@dataclass(frozen=True)
class GlueError:
    status: int
    code: str | None  # None: Glue's own request checks (api.envelope) answer without a code
    detail: str

    def as_dict(self) -> dict[str, Any]:
        if self.code is None:
            return {"status": self.status, "detail": self.detail}
        return {"status": self.status, "code": self.code, "detail": self.detail}


class GlueException(Exception):
    def __init__(self, *errors: GlueError, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(errors[0].detail)
        self.errors = errors
        self.headers = dict(headers or {})  # Retry-After on a 429, say


def resource(request: Request, type_: str, id_: str, attributes: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {
        "type": type_,
        "id": id_,
        "attributes": dict(attributes),
        "links": {"self": f"{str(request.base_url).rstrip('/')}{path}"},
    }


def document(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data}, status_code=status, media_type=MEDIA_TYPE)


def errors_response(errors: Iterable[GlueError], headers: Mapping[str, str] | None = None) -> JSONResponse:
    errors = list(errors)
    return JSONResponse(
        {"errors": [e.as_dict() for e in errors]},
        status_code=errors[0].status,
        media_type=MEDIA_TYPE,
        headers=dict(headers or {}),
    )


# Glue's request check (GlueApplication's RestRequestValidator): a body that is not JSON, or has no
# `data` with `type` and `attributes`. Glue answers it without a code.
POST_DATA_INVALID = GlueError(400, None, "Post data is invalid.")


async def send_errors(send: Send, error: GlueError, headers: Mapping[str, str] | None = None) -> None:
    """The same error document, sent by an ASGI middleware (which answers before or instead of a route)."""
    for message in error_messages(error, headers):
        await send(message)


def error_messages(error: GlueError, headers: Mapping[str, str] | None = None) -> list[Message]:
    """The ASGI messages of an error answer: its head, then its body, byte for byte what a route's
    JSONResponse of the same document sends (compact JSON)."""
    body = json.dumps({"errors": [error.as_dict()]}, ensure_ascii=False, separators=(",", ":")).encode()
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": error.status, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


# Symfony's validator texts, which Glue clients see for schema violations (code 901).
_MESSAGES = {
    # Glue validates the attributes transfer, where an attribute left out is null: NotBlank answers both
    "missing": "This value should not be blank.",
    "string_type": "This value should be of type string.",
    "bool_type": "This value should be of type bool.",
    "dict_type": "This value should be of type object.",
    "model_type": "This value should be of type object.",
    "literal_error": "The value you selected is not a valid choice.",
    "date_type": "This value is not a valid date.",
    "date_from_datetime_parsing": "This value is not a valid date.",
    "date_parsing": "This value is not a valid date.",
    "extra_forbidden": "This field was not expected.",
}


def _field(loc: tuple[Any, ...]) -> str:
    names = [str(part) for part in loc if isinstance(part, str) and part not in ("body", "query", "path", "header")]
    return names[-1] if names else "data"


def schema_errors(exc: RequestValidationError) -> list[GlueError]:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return [POST_DATA_INVALID]  # Glue reads a body it cannot decode as no body
    return [GlueError(422, "901", f"{field} => {message}") for field, message in violations(errors)]


def violations(errors: Sequence[Any]) -> list[tuple[str, str]]:
    """(attribute, Symfony's text) of each pydantic error, in the order pydantic found them."""
    found = []
    for error in errors:
        kind = error.get("type", "")
        ctx = error.get("ctx") or {}
        if kind == "string_too_long":
            message = f"This value is too long. It should have {ctx.get('max_length')} characters or less."
        elif kind == "string_too_short":
            message = (
                "This value should not be blank."
                if ctx.get("min_length") == 1
                else (f"This value is too short. It should have {ctx.get('min_length')} characters or more.")
            )
        elif kind == "value_error":
            message = str(ctx.get("error") or error.get("msg"))
        else:
            message = _MESSAGES.get(kind, str(error.get("msg", "This value is not valid.")))
        found.append((_field(tuple(error.get("loc", ()))), message))
    return found
