"""A customer's address book and Glue's default rules; every entry point changes addresses through here.

- The first address becomes the default billing and the default shipping address (more generally: an
  added address takes every default the customer does not have).
- `isDefaultBilling` / `isDefaultShipping` set to true moves that default to the address; false changes
  nothing, as in Spryker: a default moves by naming another address, so a customer who has addresses
  always has both defaults.
- Removing a default address hands that default to the most recently added remaining address, or
  clears it when none remains.

Each change holds the customer's row lock, so two requests of one customer apply these rules one after
the other, and records one audit event whose details name the address (its uuid), never its content.
Addresses are plain rows written in the caller's transaction: they have no lifecycle, so no workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import audit
from accounts.locks import lock_customer
from accounts.models import Address, Customer

EDITABLE_FIELDS = frozenset(
    {
        "salutation",
        "first_name",
        "last_name",
        "address1",
        "address2",
        "address3",
        "zip_code",
        "city",
        "country",
        "iso2_code",
        "company",
        "phone",
    }
)


@dataclass(frozen=True)
class CustomerAddress:
    """An address as its owner sees it: the row and whether it is one of their defaults."""

    address: Address
    is_default_billing: bool
    is_default_shipping: bool


def _view(customer: Customer, address: Address) -> CustomerAddress:
    return CustomerAddress(
        address,
        is_default_billing=customer.default_billing_address_id == address.id,
        is_default_shipping=customer.default_shipping_address_id == address.id,
    )


def _check_fields(values: Mapping[str, object]) -> None:
    unknown = set(values) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not address fields: {sorted(unknown)}")


async def _owned(session: AsyncSession, *, customer_id: int, address_uuid: str) -> Address | None:
    # The owner is part of the lookup: another customer's uuid is as unknown as a made-up one.
    return await session.scalar(select(Address).where(Address.uuid == address_uuid, Address.customer_id == customer_id))


async def list_addresses(session: AsyncSession, *, customer_id: int) -> list[CustomerAddress]:
    """Oldest first."""
    customer = await session.get_one(Customer, customer_id)
    rows = await session.scalars(
        select(Address).where(Address.customer_id == customer_id).order_by(Address.created_at, Address.id)
    )
    return [_view(customer, address) for address in rows]


async def find_address(session: AsyncSession, *, customer_id: int, address_uuid: str) -> CustomerAddress | None:
    address = await _owned(session, customer_id=customer_id, address_uuid=address_uuid)
    if address is None:
        return None
    return _view(await session.get_one(Customer, customer_id), address)


async def add_address(
    session: AsyncSession,
    *,
    customer_id: int,
    values: Mapping[str, object],
    default_billing: bool,
    default_shipping: bool,
    channel: str,
    actor: str,
) -> CustomerAddress:
    _check_fields(values)
    customer = await lock_customer(session, customer_id=customer_id)
    address = Address(uuid=str(uuid.uuid4()), customer_id=customer_id, **values)
    session.add(address)
    await session.flush()  # the id the defaults point at
    if default_billing or customer.default_billing_address_id is None:
        customer.default_billing_address_id = address.id
    if default_shipping or customer.default_shipping_address_id is None:
        customer.default_shipping_address_id = address.id
    _record(session, customer, address, "address_added", channel=channel, actor=actor)
    return _view(customer, address)


async def update_address(
    session: AsyncSession,
    *,
    customer_id: int,
    address_uuid: str,
    values: Mapping[str, object],
    default_billing: bool,
    default_shipping: bool,
    channel: str,
    actor: str,
) -> CustomerAddress | None:
    """None when the customer has no such address. Only a real change is written and recorded."""
    _check_fields(values)
    customer = await lock_customer(session, customer_id=customer_id)
    address = await _owned(session, customer_id=customer_id, address_uuid=address_uuid)
    if address is None:
        return None
    changed = False
    for name, value in values.items():
        if getattr(address, name) != value:
            setattr(address, name, value)
            changed = True
    if default_billing and customer.default_billing_address_id != address.id:
        customer.default_billing_address_id = address.id
        changed = True
    if default_shipping and customer.default_shipping_address_id != address.id:
        customer.default_shipping_address_id = address.id
        changed = True
    if changed:
        _record(session, customer, address, "address_updated", channel=channel, actor=actor)
    return _view(customer, address)


async def remove_address(
    session: AsyncSession, *, customer_id: int, address_uuid: str, channel: str, actor: str
) -> bool:
    """False when the customer has no such address."""
    customer = await lock_customer(session, customer_id=customer_id)
    address = await _owned(session, customer_id=customer_id, address_uuid=address_uuid)
    if address is None:
        return False
    successor = await session.scalar(
        select(Address.id)
        .where(Address.customer_id == customer_id, Address.id != address.id)
        .order_by(Address.created_at.desc(), Address.id.desc())
        .limit(1)
    )
    if customer.default_billing_address_id == address.id:
        customer.default_billing_address_id = successor
    if customer.default_shipping_address_id == address.id:
        customer.default_shipping_address_id = successor
    # The defaults move before the row goes (no ORM relationship orders the two statements), so
    # ON DELETE SET NULL never has to act behind the session's back.
    await session.flush()
    await session.delete(address)
    _record(session, customer, address, "address_removed", channel=channel, actor=actor)
    return True


def _record(
    session: AsyncSession, customer: Customer, address: Address, event: str, *, channel: str, actor: str
) -> None:
    audit.record(
        session,
        customer_reference=customer.customer_reference,
        event=event,
        channel=channel,
        actor=actor,
        details={"uuid": address.uuid},
    )
