"""Glue's schema rule for passwords: the configured lengths, one 422 901 per field, before the policy.

Spryker validates a request against its schema (customers.validation.yaml: `Length: {min, max}` on
`password` and `confirmPassword`) before its password policy (codes 418-422) runs, so a password of
the wrong length answers `password => This value is too short. ...` and the same for
`confirmPassword`, among the request's other schema violations and in the schema's order.

The lengths are settings, which a pydantic model cannot read. So `password_length_rule(model, *fields)` is
a dependency that runs before FastAPI validates the body: when a password attribute is outside the
lengths it validates the body itself and answers every violation, in the order of the attributes
model; otherwise it lets FastAPI go on.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from accounts.settings import Settings
from api.jsonapi import GlueError, GlueException, violations


def length_violation(value: object, *, min_length: int, max_length: int) -> str | None:
    if not isinstance(value, str) or not value:  # the schema's own rules answer these
        return None
    if len(value) < min_length:
        return f"This value is too short. It should have {min_length} characters or more."
    if len(value) > max_length:
        return f"This value is too long. It should have {max_length} characters or less."
    return None


def schema_violations(
    document: Any, model: type[BaseModel], fields: tuple[str, ...], settings: Settings
) -> list[tuple[str, str]]:
    """Every schema violation of `document` (attribute, text), the length rule of `fields` included."""
    attributes_model = model.model_fields["data"].annotation.model_fields["attributes"].annotation  # type: ignore[union-attr]
    order = [field.alias or name for name, field in attributes_model.model_fields.items()]
    attributes = _attributes(document)
    lengths = [
        (field, message)
        for field in fields
        if (
            message := length_violation(
                attributes.get(field), min_length=settings.password_min_length, max_length=settings.password_max_length
            )
        )
    ]
    if not lengths:
        return []
    try:
        model.model_validate(document)
        found = []
    except ValidationError as invalid:
        found = violations(invalid.errors())
    # sorted is stable: several violations of one attribute keep pydantic's order, the length one last
    return sorted(found + lengths, key=lambda item: order.index(item[0]) if item[0] in order else -1)


def _attributes(document: Any) -> dict[str, Any]:
    data = document.get("data") if isinstance(document, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def password_length_rule(model: type[BaseModel], *fields: str, unless: str | None = None) -> Any:
    """`unless`: an attribute whose presence turns the rule off here (PATCH /customers with an `email`: if
    it is a new one, its `password` is the current one, which may be older than today's lengths; if it is
    the current address, the route applies the rule itself with `enforce_lengths`)."""

    async def check(request: Request) -> None:
        try:
            document = json.loads(await request.body())
        except (ValueError, RecursionError):
            return  # not JSON: api.envelope or FastAPI answers
        if unless is not None and unless in _attributes(document):
            return
        enforce_lengths(document, model, fields, request.app.state.settings)

    return Depends(check)


def enforce_lengths(document: Any, model: type[BaseModel], fields: tuple[str, ...], settings: Settings) -> None:
    """Glue's 901 for each of `fields` outside the password lengths (and the other schema rules)."""
    found = schema_violations(document, model, fields, settings)
    if found:
        raise GlueException(*(GlueError(422, "901", f"{field} => {message}") for field, message in found))
