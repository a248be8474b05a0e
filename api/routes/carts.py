"""Guest carts (X-Anonymous-Customer-Unique-Id) and the signed-in customer's carts (rules in accounts.carts).

Items are returned the way Glue does by default (eager relationship): the cart names them under
`relationships` and the documents carry them in `included`, as `guest-cart-items` or `items` with the
SKU as id (Glue's group key).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from accounts import carts
from accounts.carts import CartNotEmpty, CartNotFound, CartView, ItemNotFound, QuantityExceeded
from accounts.models import Customer
from api import jsonapi
from api.auth import CurrentCustomer
from api.deps import Sessions
from api.envelope import GlueRequest, answer_missing_ids
from api.jsonapi import GlueError, GlueException

router = APIRouter(tags=["carts"], dependencies=[GlueRequest])

ANONYMOUS_ID_EMPTY = GlueError(400, "109", "Anonymous customer unique id is empty.")
CART_NOT_FOUND = GlueError(404, "101", "Cart with given uuid not found.")
# Spryker's CartsRestApi answers another customer's /customers/{ref}/carts with 802, not 411
NOT_YOURS = GlueError(403, "802", "Unauthorized request.")
ITEM_NOT_ADDED = GlueError(422, "113", "Cart item could not be added.")
STORE_INVALID = GlueError(422, "112", "Store data is invalid.")
CURRENCY_INCORRECT = GlueError(422, "117", "Currency is incorrect.")
PRICE_MODE_INCORRECT = GlueError(422, "119", "Price mode is incorrect.")
ITEM_NOT_FOUND = GlueError(422, "103", "Item with the given group key not found in the cart.")
PRICE_MODE_LOCKED = GlueError(422, "111", "Can\u2019t switch price mode when there are items in the cart.")
# not Spryker's (it reprices the lines): there is no catalog here, the lines' prices are in this currency
CURRENCY_LOCKED = GlueError(422, "111", "Can\u2019t switch currency when there are items in the cart.")
_CURRENCY = re.compile(r"[A-Z]{3}")
_STORE = re.compile(r"[A-Z]{2}")


# --- who is asking ------------------------------------------------------------------------------------


async def _guest_key(x_anonymous_customer_unique_id: Annotated[str | None, Header()] = None) -> str:
    # a dependency: a missing id answers 109 before the body is looked at
    key = carts.guest_key(x_anonymous_customer_unique_id)
    if key is None:
        raise GlueException(ANONYMOUS_ID_EMPTY)
    return key


async def _carts_owner(customer_reference: str, customer: CurrentCustomer) -> Customer:
    if customer_reference != customer.customer_reference:
        raise GlueException(NOT_YOURS)
    return customer


GuestKey = Annotated[str, Depends(_guest_key)]
CartsOwner = Annotated[Customer, Depends(_carts_owner)]


# --- requests -----------------------------------------------------------------------------------------


def _sku(value: str) -> str:
    problem = carts.sku_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _integer(value: Any) -> int:
    # Glue accepts numeric strings ("quantity": "2"); booleans and fractions are refused
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("This value should not be blank.")
        if not re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
            raise ValueError("This value should be of type integer.")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("This value should be of type integer.")
    return value


def _quantity(value: int) -> int:
    problem = carts.quantity_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _optional_integer(value: Any) -> int | None:
    return None if value is None else _integer(value)


def _unit_price(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= carts.MAX_UNIT_PRICE:
        raise ValueError(f"This value should be between 0 and {carts.MAX_UNIT_PRICE}.")
    return value


class CartItemAttributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    sku: Annotated[StrictStr, AfterValidator(_sku)]
    quantity: Annotated[int, BeforeValidator(_integer), AfterValidator(_quantity)]
    # no catalog here: the storefront says what a unit costs (cents); see accounts.carts
    unit_price: Annotated[int | None, BeforeValidator(_optional_integer), AfterValidator(_unit_price)] = Field(
        default=None, alias="unitPrice"
    )


class CartItemData(BaseModel):
    type: Literal["guest-cart-items"]
    attributes: CartItemAttributes


class CartItemRequest(BaseModel):
    data: CartItemData


class GuestCartAttributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: Annotated[StrictStr, Field(min_length=1, max_length=255)] = carts.DEFAULT_NAME
    currency: Annotated[StrictStr, Field(max_length=16)] = carts.DEFAULT_CURRENCY
    price_mode: Annotated[StrictStr, Field(max_length=32)] = Field(default=carts.DEFAULT_PRICE_MODE, alias="priceMode")
    store: Annotated[StrictStr, Field(max_length=16)] = carts.DEFAULT_STORE


class GuestCartData(BaseModel):
    type: Literal["guest-carts"]
    attributes: GuestCartAttributes = GuestCartAttributes()


class GuestCartRequest(BaseModel):
    data: GuestCartData


class GuestCartUpdateAttributes(BaseModel):
    """PATCH /guest-carts/{uuid}: any of the cart's attributes; left out, it stays."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    currency: Annotated[StrictStr, Field(max_length=16)] | None = None
    price_mode: Annotated[StrictStr, Field(max_length=32)] | None = Field(default=None, alias="priceMode")
    store: Annotated[StrictStr, Field(max_length=16)] | None = None


class GuestCartUpdateData(BaseModel):
    type: Literal["guest-carts"]
    id: StrictStr | None = None
    attributes: GuestCartUpdateAttributes


class GuestCartUpdateRequest(BaseModel):
    data: GuestCartUpdateData


class CartItemQuantityAttributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    quantity: Annotated[int, BeforeValidator(_integer), AfterValidator(_quantity)]


class CartItemQuantityData(BaseModel):
    type: Literal["guest-cart-items"]
    id: StrictStr | None = None
    attributes: CartItemQuantityAttributes


class CartItemQuantityRequest(BaseModel):
    data: CartItemQuantityData


# --- documents ----------------------------------------------------------------------------------------


def _cart(request: Request, view: CartView, *, guest: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cart_type, item_type = ("guest-carts", "guest-cart-items") if guest else ("carts", "items")
    path = f"/{cart_type}/{view.cart.uuid}"
    resource = jsonapi.resource(request, cart_type, view.cart.uuid, carts.cart_attributes(view), path)
    included = [
        jsonapi.resource(
            request,
            item_type,
            item.sku,
            {
                "sku": item.sku,
                "quantity": item.quantity,
                "groupKey": item.sku,
                "amount": None,
                "calculations": view.calculations(item),
            },
            f"{path}/{item_type}/{quote(item.sku, safe='')}",
        )
        for item in view.items
    ]
    if included:
        resource["relationships"] = {item_type: {"data": [{"type": item_type, "id": i["id"]} for i in included]}}
    return resource, included


def _one(request: Request, view: CartView, *, guest: bool, status: int = 200) -> JSONResponse:
    resource, included = _cart(request, view, guest=guest)
    body: dict[str, Any] = {"data": resource}
    if included:
        body["included"] = included
    return JSONResponse(body, status_code=status, media_type=jsonapi.MEDIA_TYPE)


def _many(request: Request, views: list[CartView], *, guest: bool, path: str) -> JSONResponse:
    data, included = [], []
    for view in views:
        resource, items = _cart(request, view, guest=guest)
        data.append(resource)
        included.extend(items)
    body: dict[str, Any] = {"data": data, "links": {"self": f"{str(request.base_url).rstrip('/')}{path}"}}
    if included:
        body["included"] = included
    return JSONResponse(body, media_type=jsonapi.MEDIA_TYPE)


# --- guests -------------------------------------------------------------------------------------------


@router.post("/guest-carts", status_code=201, summary="The guest's cart: 201 when created, 200 when it exists")
async def create_guest_cart(
    request: Request, key: GuestKey, sessions: Sessions, body: GuestCartRequest | None = None
) -> JSONResponse:
    attributes = body.data.attributes if body is not None else GuestCartAttributes()
    _check_cart_attributes(attributes.currency, attributes.price_mode, attributes.store)
    view, created = await carts.get_or_create_guest_cart(
        sessions,
        guest_key=key,
        name=attributes.name,
        currency=attributes.currency,
        price_mode=attributes.price_mode,
        store=attributes.store,
    )
    return _one(request, view, guest=True, status=201 if created else 200)


def _check_cart_attributes(currency: str | None, price_mode: str | None, store: str | None) -> None:
    if price_mode is not None and price_mode not in carts.PRICE_MODES:
        raise GlueException(PRICE_MODE_INCORRECT)
    if currency is not None and not _CURRENCY.fullmatch(currency):
        raise GlueException(CURRENCY_INCORRECT)
    if store is not None and not _STORE.fullmatch(store):
        raise GlueException(STORE_INVALID)


@router.patch("/guest-carts/{cart_uuid}", summary="Change the guest cart's name, currency, price mode or store")
async def update_guest_cart(
    cart_uuid: str, body: GuestCartUpdateRequest, request: Request, key: GuestKey, sessions: Sessions
) -> JSONResponse:
    attributes = body.data.attributes
    _check_cart_attributes(attributes.currency, attributes.price_mode, attributes.store)
    try:
        async with sessions.begin() as session:
            view = await carts.update_guest_cart(
                session,
                guest_key=key,
                cart_uuid=cart_uuid,
                name=attributes.name,
                currency=attributes.currency,
                price_mode=attributes.price_mode,
                store=attributes.store,
            )
    except CartNotFound:
        raise GlueException(CART_NOT_FOUND) from None
    except CartNotEmpty as locked:
        raise GlueException(PRICE_MODE_LOCKED if locked.attribute == "price_mode" else CURRENCY_LOCKED) from None
    return _one(request, view, guest=True)


@router.get("/guest-carts", summary="The guest's carts (none or one)")
async def list_guest_carts(request: Request, key: GuestKey, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        views = await carts.guest_carts(session, guest_key=key)
    return _many(request, views, guest=True, path="/guest-carts")


@router.get("/guest-carts/{cart_uuid}", summary="One of the guest's carts")
async def get_guest_cart(cart_uuid: str, request: Request, key: GuestKey, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        view = await carts.find_guest_cart(session, guest_key=key, cart_uuid=cart_uuid)
    if view is None:
        raise GlueException(CART_NOT_FOUND)
    return _one(request, view, guest=True)


@router.post(
    "/guest-carts/{cart_uuid}/guest-cart-items",
    status_code=201,
    summary="Add an item to the guest's cart (the same SKU again raises its quantity); answers the cart",
)
async def add_guest_cart_item(
    cart_uuid: str, body: CartItemRequest, request: Request, key: GuestKey, sessions: Sessions
) -> JSONResponse:
    return await _add(request, sessions, key, cart_uuid, body.data.attributes)


@router.post(
    "/guest-cart-items",
    status_code=201,
    summary="Add an item to the guest's cart, creating the cart first when there is none (Glue's way)",
)
async def add_guest_item(body: CartItemRequest, request: Request, key: GuestKey, sessions: Sessions) -> JSONResponse:
    view, _ = await carts.get_or_create_guest_cart(sessions, guest_key=key)
    return await _add(request, sessions, key, view.cart.uuid, body.data.attributes)


async def _add(
    request: Request,
    sessions: Sessions,
    key: str,
    cart_uuid: str,
    attributes: CartItemAttributes,
) -> JSONResponse:
    try:
        async with sessions.begin() as session:
            view = await carts.add_guest_item(
                session,
                guest_key=key,
                cart_uuid=cart_uuid,
                sku=attributes.sku,
                quantity=attributes.quantity,
                unit_price=attributes.unit_price,
            )
    except CartNotFound:
        raise GlueException(CART_NOT_FOUND) from None
    except QuantityExceeded:
        raise GlueException(
            GlueError(422, "102", f"The quantity of {attributes.sku} would exceed {carts.MAX_QUANTITY}."),
            ITEM_NOT_ADDED,
        ) from None
    return _one(request, view, guest=True, status=201)


@router.patch(
    "/guest-carts/{cart_uuid}/guest-cart-items/{sku}",
    summary="Set the quantity of an item in the guest's cart; answers the cart",
)
async def update_guest_cart_item(
    cart_uuid: str, sku: str, body: CartItemQuantityRequest, request: Request, key: GuestKey, sessions: Sessions
) -> JSONResponse:
    try:
        async with sessions.begin() as session:
            view = await carts.set_guest_item_quantity(
                session, guest_key=key, cart_uuid=cart_uuid, sku=sku, quantity=body.data.attributes.quantity
            )
    except CartNotFound:
        raise GlueException(CART_NOT_FOUND) from None
    except ItemNotFound:
        raise GlueException(ITEM_NOT_FOUND) from None
    return _one(request, view, guest=True)


@router.delete(
    "/guest-carts/{cart_uuid}/guest-cart-items/{sku}", status_code=204, summary="Remove an item from the guest's cart"
)
async def remove_guest_cart_item(cart_uuid: str, sku: str, key: GuestKey, sessions: Sessions) -> Response:
    try:
        async with sessions.begin() as session:
            await carts.remove_guest_item(session, guest_key=key, cart_uuid=cart_uuid, sku=sku)
    except CartNotFound:
        raise GlueException(CART_NOT_FOUND) from None
    except ItemNotFound:
        raise GlueException(ITEM_NOT_FOUND) from None
    return Response(status_code=204)


# Glue refuses a PATCH or DELETE whose path leaves out the cart's uuid or the item's sku with 400
answer_missing_ids(router, ["PATCH"], "/guest-carts", "/guest-carts/")
answer_missing_ids(
    router,
    ["PATCH", "DELETE"],
    "/guest-carts/{cart_uuid}/guest-cart-items",
    "/guest-carts/{cart_uuid}/guest-cart-items/",
    "/guest-carts//guest-cart-items/{sku}",
)


# --- customers ----------------------------------------------------------------------------------------


@router.get("/customers/{customer_reference}/carts", summary="The signed-in customer's carts")
async def list_customer_carts(request: Request, customer: CartsOwner, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        views = await carts.customer_carts(session, customer_id=customer.id)
    return _many(request, views, guest=False, path=f"/customers/{customer.customer_reference}/carts")


@router.get("/carts", summary="The signed-in customer's carts")
async def list_carts(request: Request, customer: CurrentCustomer, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        views = await carts.customer_carts(session, customer_id=customer.id)
    return _many(request, views, guest=False, path="/carts")


@router.get("/carts/{cart_uuid}", summary="One of the signed-in customer's carts")
async def get_cart(cart_uuid: str, request: Request, customer: CurrentCustomer, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        view = await carts.find_customer_cart(session, customer_id=customer.id, cart_uuid=cart_uuid)
    if view is None:
        raise GlueException(CART_NOT_FOUND)
    return _one(request, view, guest=False)
