"""The back office's refusals as Glue errors, and the JSON:API documents its routes answer with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.responses import JSONResponse

from api import jsonapi
from api.jsonapi import GlueError, GlueException
from api.routes.passwords import CUSTOMER_NOT_FOUND as NOT_FOUND  # one answer: Glue's 404 402
from api.routes.passwords import policy_errors
from backoffice import AddressNotFound, Conflict, CustomerNotFound, Forbidden, GroupNotFound, InvalidInput
from starter import (
    NotAwaitingVerification,
    NotLocked,
    PasswordRejected,
    RegistrationNotFound,
    ResendLimitReached,
    ResendThrottled,
)

GROUP_NOT_FOUND = GlueError(404, "404", "Customer group not found.")
ADDRESS_NOT_FOUND = GlueError(404, "404", "Address not found.")


@contextmanager
def answers(customer_reference: str | None = None) -> Iterator[None]:
    """The back office's refusals as Glue errors (one map for every route here). Refusals of an action are
    sentences saying why nothing was done, as the web UI words them."""
    try:
        yield
    except InvalidInput as error:
        raise GlueException(GlueError(422, "901", f"{_camel(error.field)} => {error.message}")) from None
    except Forbidden as error:
        raise GlueException(GlueError(403, "403", str(error))) from None
    except (CustomerNotFound, RegistrationNotFound):
        raise GlueException(NOT_FOUND) from None
    except GroupNotFound:
        raise GlueException(GROUP_NOT_FOUND) from None
    except AddressNotFound:
        raise GlueException(ADDRESS_NOT_FOUND) from None
    except NotAwaitingVerification as error:
        raise GlueException(GlueError(409, "409", not_awaiting_verification(error, customer_reference))) from None
    except NotLocked as error:
        detail = f"{customer_reference} is not locked" if customer_reference else str(error)
        raise GlueException(GlueError(409, "409", sentence(detail))) from None
    except Conflict as error:
        raise GlueException(GlueError(409, "409", sentence(str(error)))) from None
    except ResendThrottled as throttled:
        detail = f"Not sent: wait {throttled.retry_after_seconds} s before sending another email."
        raise GlueException(GlueError(429, "429", detail)) from None
    except ResendLimitReached:
        detail = "Not sent: no more verification emails may be sent for this registration."
        raise GlueException(GlueError(429, "429", detail)) from None
    except PasswordRejected as rejected:
        raise GlueException(*policy_errors(rejected)) from None


def sentence(text: str) -> str:
    """An error message as a sentence: capital first letter, full stop."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def not_awaiting_verification(error: NotAwaitingVerification, customer_reference: str | None) -> str:
    """The 409 detail, e.g. "Not awaiting verification (DE--4 is verified)." when the state is known."""
    state = str(error)
    if state and state != customer_reference:
        return f"Not awaiting verification ({state})."
    return f"{customer_reference or 'The registration'} is not awaiting verification."


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def document(type_: str, id_: str, attributes: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"data": {"type": type_, "id": id_, "attributes": attributes}}, status_code=status,
                        media_type=jsonapi.MEDIA_TYPE)  # fmt: skip


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
