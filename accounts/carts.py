"""Carts: a guest's cart, keyed by the SHA-256 of X-Anonymous-Customer-Unique-Id, and customers' carts.

The anonymous id works like a bearer credential for the guest's cart, so it is hashed before anything
stores or forwards it. A guest has at most one live cart (`carts.guest_key` is unique). It leaves the
guest in one of two ways, each a conditional UPDATE that clears `guest_key`, so it happens at most once:

- checkout sign-up: `convert_guest_cart`, inside the activation transaction, makes it the customer's cart;
- sign-in with the header: `merge_guest_cart` moves its lines into the customer's default cart (same SKU:
  quantities summed) and deletes it.

There is no catalog here. A line is a SKU, a quantity and the unit price the storefront supplied with
it (integer cents in the cart's currency and price mode; 0 when none was given, and a later add that
supplies one sets it). Totals are computed from the lines; tax, discounts and expenses are not known
here and stay 0. The shop's order system prices the cart again at checkout.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.db import SessionFactory
from accounts.locks import lock_customer
from accounts.models import Cart, CartItem, utcnow

DEFAULT_NAME = "Shopping cart"
DEFAULT_CURRENCY = "EUR"
DEFAULT_PRICE_MODE = "GROSS_MODE"
DEFAULT_STORE = "DE"
PRICE_MODES = ("GROSS_MODE", "NET_MODE")
MAX_QUANTITY = 10_000  # per line; a merge that would go beyond keeps this many
MAX_UNIT_PRICE = 100_000_000  # cents: one million in the cart's currency
SKU_MAX_LENGTH = 255
# Spryker's SKUs look like "177_25913296" or "cable-vga-1-1": letters, digits, and - _ . inside
_SKU = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


class CartNotFound(LookupError):
    """No such cart for this guest (unknown uuid, another guest's, or already converted)."""


class QuantityExceeded(ValueError):
    """The line would hold more than MAX_QUANTITY."""


class ItemNotFound(LookupError):
    """The cart has no line of this SKU."""


class CartNotEmpty(ValueError):
    """The cart's price mode or currency (`attribute`) cannot change while it holds items: their prices are in it."""

    def __init__(self, attribute: str) -> None:
        super().__init__(attribute)
        self.attribute = attribute


def guest_key(anonymous_id: str | None) -> str | None:
    """What is stored and handed to workflows instead of the anonymous id itself; None for a blank id."""
    anonymous_id = (anonymous_id or "").strip()
    if not anonymous_id:
        return None
    return hashlib.sha256(anonymous_id.encode("utf-8", "surrogatepass")).hexdigest()


def sku_problem(sku: str) -> str | None:
    if not sku.strip():
        return "This value should not be blank."
    if len(sku) > SKU_MAX_LENGTH:
        return f"This value is too long. It should have {SKU_MAX_LENGTH} characters or less."
    if not _SKU.fullmatch(sku):
        return "This value is not a valid SKU (letters, digits and - _ . inside)."
    return None


def quantity_problem(quantity: int) -> str | None:
    if quantity < 1:
        return "This value should be greater than 0."
    if quantity > MAX_QUANTITY:
        return f"This value should be less than or equal to {MAX_QUANTITY}."
    return None


@dataclass(frozen=True)
class CartView:
    cart: Cart
    items: list[CartItem]

    @property
    def totals(self) -> dict[str, int]:
        subtotal = sum(item.unit_price * item.quantity for item in self.items)
        # Spryker's shape; no tax rates, discounts or expenses are known here
        return {
            "expenseTotal": 0,
            "discountTotal": 0,
            "taxTotal": 0,
            "subtotal": subtotal,
            "grandTotal": subtotal,
            "priceToPay": subtotal,
        }

    def calculations(self, item: CartItem) -> dict[str, int]:
        unit, total = item.unit_price, item.unit_price * item.quantity
        gross = self.cart.price_mode == "GROSS_MODE"
        return {
            "unitPrice": unit,
            "sumPrice": total,
            "unitGrossPrice": unit if gross else 0,
            "sumGrossPrice": total if gross else 0,
            "unitNetPrice": 0 if gross else unit,
            "sumNetPrice": 0 if gross else total,
            "unitPriceToPayAggregation": unit,
            "sumPriceToPayAggregation": total,
        }


# --- guests -------------------------------------------------------------------------------------------


async def get_or_create_guest_cart(
    sessions: SessionFactory,
    *,
    guest_key: str,
    name: str = DEFAULT_NAME,
    currency: str = DEFAULT_CURRENCY,
    price_mode: str = DEFAULT_PRICE_MODE,
    store: str = DEFAULT_STORE,
) -> tuple[CartView, bool]:
    """The guest's cart, created when there is none (True). The attributes only apply to a new cart."""
    for _ in range(3):
        async with sessions() as session:
            found = await _guest_cart(session, guest_key=guest_key)
            if found is not None:
                return await _view(session, found), False
        try:
            async with sessions.begin() as session:
                cart = Cart(
                    uuid=str(uuid.uuid4()),
                    guest_key=guest_key,
                    name=name,
                    currency=currency,
                    price_mode=price_mode,
                    store=store,
                    is_default=True,
                )
                session.add(cart)
            return CartView(cart, []), True
        except IntegrityError:
            continue  # a concurrent request of the same guest created it: read that one
    raise RuntimeError("guest cart neither found nor created")


async def guest_carts(session: AsyncSession, *, guest_key: str) -> list[CartView]:
    cart = await _guest_cart(session, guest_key=guest_key)
    return [] if cart is None else [await _view(session, cart)]


async def find_guest_cart(session: AsyncSession, *, guest_key: str, cart_uuid: str) -> CartView | None:
    cart = await session.scalar(select(Cart).where(Cart.uuid == cart_uuid, Cart.guest_key == guest_key))
    return None if cart is None else await _view(session, cart)


async def add_guest_item(
    session: AsyncSession, *, guest_key: str, cart_uuid: str, sku: str, quantity: int, unit_price: int | None = None
) -> CartView:
    """Add `quantity` of `sku` to the guest's cart; the same SKU again raises the line's quantity.

    Raises CartNotFound, QuantityExceeded, ValueError (bad SKU or quantity): nothing is written then.
    """
    problem = sku_problem(sku) or quantity_problem(quantity)
    if problem is None and unit_price is not None and not 0 <= unit_price <= MAX_UNIT_PRICE:
        problem = "unit price out of range"
    if problem:
        raise ValueError(problem)
    cart = await _claim_guest_cart(session, guest_key=guest_key, cart_uuid=cart_uuid)
    if not await _add_line(session, cart_id=cart.id, sku=sku, quantity=quantity, unit_price=unit_price):
        raise QuantityExceeded(sku)
    return await _view(session, cart)


async def update_guest_cart(
    session: AsyncSession,
    *,
    guest_key: str,
    cart_uuid: str,
    name: str | None = None,
    currency: str | None = None,
    price_mode: str | None = None,
    store: str | None = None,
) -> CartView:
    """Change the guest cart's attributes (None: unchanged). Raises CartNotFound, CartNotEmpty.

    Spryker refuses a price mode change of a cart with items; so is a currency change here, since there
    is no catalog to price the lines again (Spryker reprices them).
    """
    cart = await _claim_guest_cart(session, guest_key=guest_key, cart_uuid=cart_uuid)
    view = await _view(session, cart)
    for attribute, value in (("price_mode", price_mode), ("currency", currency)):
        if view.items and value not in (None, getattr(cart, attribute)):
            raise CartNotEmpty(attribute)
    for attribute, value in (("name", name), ("currency", currency), ("price_mode", price_mode), ("store", store)):
        if value is not None:
            setattr(cart, attribute, value)
    await session.flush()
    return view


async def set_guest_item_quantity(
    session: AsyncSession, *, guest_key: str, cart_uuid: str, sku: str, quantity: int
) -> CartView:
    """Set the line of `sku` to `quantity`. Raises CartNotFound, ItemNotFound, ValueError (bad quantity)."""
    problem = quantity_problem(quantity)
    if problem:
        raise ValueError(problem)
    cart = await _claim_guest_cart(session, guest_key=guest_key, cart_uuid=cart_uuid)
    changed = await session.execute(
        update(CartItem)
        .where(CartItem.cart_id == cart.id, CartItem.sku == sku)
        .values(quantity=quantity, updated_at=utcnow())
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        raise ItemNotFound(sku)
    return await _view(session, cart)


async def remove_guest_item(session: AsyncSession, *, guest_key: str, cart_uuid: str, sku: str) -> None:
    """Remove the line of `sku`. Raises CartNotFound, ItemNotFound."""
    cart = await _claim_guest_cart(session, guest_key=guest_key, cart_uuid=cart_uuid)
    removed = await session.execute(delete(CartItem).where(CartItem.cart_id == cart.id, CartItem.sku == sku))
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise ItemNotFound(sku)


# --- customers ----------------------------------------------------------------------------------------


async def convert_guest_cart(session: AsyncSession, *, guest_key: str, customer_id: int, now: datetime) -> bool:
    """Checkout sign-up: the guest's cart becomes the customer's. One conditional UPDATE, so at most once.

    Called by the activation inside its transaction; the caller holds the customer's row.
    """
    has_default = await session.scalar(
        select(Cart.id).where(Cart.customer_id == customer_id, Cart.is_default.is_(True)).limit(1)
    )
    result = await session.execute(
        update(Cart)
        .where(Cart.guest_key == guest_key, Cart.customer_id.is_(None))
        .values(customer_id=customer_id, guest_key=None, converted_at=now, is_default=has_default is None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def merge_guest_cart(session: AsyncSession, *, guest_key: str, customer_id: int, now: datetime) -> bool:
    """Sign-in with the header: the guest's lines join the customer's default cart, then the guest cart goes.

    Same SKU: quantities are summed (at most MAX_QUANTITY) and a price the guest's line has replaces the
    line's. A guest cart in another currency or price mode is not summed: it becomes one more cart of
    the customer's. False when the guest has no cart (nothing is written).
    """
    await lock_customer(session, customer_id=customer_id)
    guest = (
        await session.execute(
            update(Cart)
            .where(Cart.guest_key == guest_key, Cart.customer_id.is_(None))
            .values(guest_key=None, converted_at=now)
            .returning(Cart.id, Cart.currency, Cart.price_mode, Cart.store, Cart.name)
        )
    ).one_or_none()
    if guest is None:
        return False
    target = await session.scalar(
        select(Cart).where(Cart.customer_id == customer_id, Cart.is_default.is_(True)).order_by(Cart.id).limit(1)
    )
    if target is None or (target.currency, target.price_mode) != (guest.currency, guest.price_mode):
        await session.execute(
            update(Cart).where(Cart.id == guest.id).values(customer_id=customer_id, is_default=target is None)
        )
        return True
    lines = await session.scalars(select(CartItem).where(CartItem.cart_id == guest.id).order_by(CartItem.id))
    for line in lines:
        await _add_line(
            session,
            cart_id=target.id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=line.unit_price or None,
            clamp=True,
        )
    await session.execute(delete(CartItem).where(CartItem.cart_id == guest.id))
    await session.execute(delete(Cart).where(Cart.id == guest.id))
    target.updated_at = now
    return True


async def customer_carts(session: AsyncSession, *, customer_id: int) -> list[CartView]:
    carts = list(await session.scalars(select(Cart).where(Cart.customer_id == customer_id).order_by(Cart.id)))
    return await _views(session, carts)


async def find_customer_cart(session: AsyncSession, *, customer_id: int, cart_uuid: str) -> CartView | None:
    cart = await session.scalar(select(Cart).where(Cart.uuid == cart_uuid, Cart.customer_id == customer_id))
    return None if cart is None else await _view(session, cart)


async def delete_customer_carts(session: AsyncSession, *, customer_id: int) -> None:
    """Anonymization: a cart says what a person meant to buy."""
    owned = select(Cart.id).where(Cart.customer_id == customer_id)
    await session.execute(delete(CartItem).where(CartItem.cart_id.in_(owned)))
    await session.execute(delete(Cart).where(Cart.customer_id == customer_id))


# --- helpers ------------------------------------------------------------------------------------------


async def _claim_guest_cart(session: AsyncSession, *, guest_key: str, cart_uuid: str) -> Cart:
    """The guest's cart, claimed with a write first. Raises CartNotFound.

    The write takes the row lock (PostgreSQL) or the database lock (SQLite), so changes to one cart
    queue, and a conversion running now waits for this change (and takes it along) or has happened
    already (then the guest no longer reaches the cart).
    """
    cart_id = (
        await session.execute(
            update(Cart)
            .where(Cart.uuid == cart_uuid, Cart.guest_key == guest_key)
            .values(updated_at=utcnow())
            .returning(Cart.id)
        )
    ).scalar_one_or_none()
    if cart_id is None:
        raise CartNotFound(cart_uuid)
    cart = await session.scalar(select(Cart).where(Cart.id == cart_id).execution_options(populate_existing=True))
    assert cart is not None
    return cart


async def _guest_cart(session: AsyncSession, *, guest_key: str) -> Cart | None:
    return await session.scalar(select(Cart).where(Cart.guest_key == guest_key))


async def _add_line(
    session: AsyncSession, *, cart_id: int, sku: str, quantity: int, unit_price: int | None, clamp: bool = False
) -> bool:
    """Add to the line of `sku` (or create it). The caller holds the cart; False when over MAX_QUANTITY."""
    line = await session.scalar(
        select(CartItem)
        .where(CartItem.cart_id == cart_id, CartItem.sku == sku)
        .execution_options(populate_existing=True)
    )
    if line is None:
        session.add(
            CartItem(cart_id=cart_id, sku=sku, quantity=min(quantity, MAX_QUANTITY), unit_price=unit_price or 0)
        )
        await session.flush()
        return True
    total = line.quantity + quantity
    if total > MAX_QUANTITY and not clamp:
        return False
    line.quantity = min(total, MAX_QUANTITY)
    if unit_price is not None:
        line.unit_price = unit_price
    line.updated_at = utcnow()
    await session.flush()
    return True


async def _view(session: AsyncSession, cart: Cart) -> CartView:
    return (await _views(session, [cart]))[0]


async def _views(session: AsyncSession, carts: Sequence[Cart]) -> list[CartView]:
    if not carts:
        return []
    items: dict[int, list[CartItem]] = {cart.id: [] for cart in carts}
    rows = await session.scalars(
        select(CartItem)
        .where(CartItem.cart_id.in_(list(items)))
        .order_by(CartItem.id)
        .execution_options(populate_existing=True)
    )
    for item in rows:
        items[item.cart_id].append(item)
    return [CartView(cart, items[cart.id]) for cart in carts]


def cart_attributes(view: CartView) -> dict[str, Any]:
    """Glue's cart attributes (guest-carts and carts alike)."""
    cart = view.cart
    return {
        "priceMode": cart.price_mode,
        "currency": cart.currency,
        "store": cart.store,
        "name": cart.name,
        "isDefault": cart.is_default,
        "totals": view.totals,
        "discounts": [],
        "thresholds": [],
    }
