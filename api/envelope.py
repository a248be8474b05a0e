"""Glue's request checks that run before any resource's schema: the JSON:API envelope and the resource id.

Spryker's GlueApplication (its RestRequestValidator) looks at every POST, PATCH and DELETE before the
resource's validation schema does, and answers 400 without an error code:
- a `data.type` that is not the resource of the path: "Invalid type.";
- a POST or PATCH without `data` carrying `type` and `attributes` (or a body that is not JSON):
  "Post data is invalid.";
- a PATCH or DELETE whose path leaves out the resource's id: "Resource id is not specified.".

The resource of a path is its last literal segment: `/customers/{ref}` is `customers`,
`/guest-carts/{uuid}/guest-cart-items/{sku}` is `guest-cart-items`. `GlueRequest` is the dependency
that applies the first two to a Glue route (routers of Glue resources only: not to the OAuth form
endpoint or the storefront's HTML forms), then Spryker's MFA check (api/mfa_check.py);
`answer_missing_ids` adds the paths that leave the id out.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from api.jsonapi import POST_DATA_INVALID, GlueError, GlueException
from api.mfa_check import check_protected_request

INVALID_TYPE = GlueError(400, None, "Invalid type.")
RESOURCE_ID_NOT_SPECIFIED = GlueError(400, None, "Resource id is not specified.")
_CHECKED_METHODS = ("POST", "PATCH", "DELETE")


def resource_type(path_format: str) -> str:
    return [part for part in path_format.split("/") if part and not part.startswith("{")][-1]


def envelope_error(method: str, path_format: str, body: bytes, *, body_optional: bool = False) -> GlueError | None:
    """What Glue answers before the schema, or None when the request may go on."""
    if method not in _CHECKED_METHODS:
        return None
    data = _data(body)
    # Glue takes the resource from the body only when `data` has both `type` and `attributes`
    if data is not None and data.get("type") is not None and data.get("attributes") is not None:
        return None if data["type"] == resource_type(path_format) else INVALID_TYPE
    if method == "DELETE" or (body_optional and not body.strip()):
        return None
    return POST_DATA_INVALID


def _data(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):
        return None
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, dict) else None


async def _check_envelope(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    # a route whose body parameter defaults to None takes an empty body (POST /guest-carts)
    body_optional = route.body_field is not None and not route.body_field.field_info.is_required()
    error = envelope_error(request.method, route.path_format, await request.body(), body_optional=body_optional)
    if error is not None:
        raise GlueException(error)
    # then Spryker's RestRequestValidator plugins: the MFA check of protected resources
    await check_protected_request(request, resource_type(route.path_format))


GlueRequest = Depends(_check_envelope)


async def _resource_id_not_specified() -> NoReturn:
    raise GlueException(RESOURCE_ID_NOT_SPECIFIED)


def answer_missing_ids(router: APIRouter, methods: list[str], *paths: str) -> None:
    """PATCH /customers, DELETE /guest-carts/{uuid}/guest-cart-items/ and the like: 400, as Glue answers."""
    for path in paths:
        router.add_api_route(
            path, _resource_id_not_specified, methods=methods, include_in_schema=False, response_model=None
        )
