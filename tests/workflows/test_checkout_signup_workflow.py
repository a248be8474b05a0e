"""Checkout sign-up in the registration workflow (time-skipping): the guest cart follows the activation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import StackFactory, token_from, unique_email
from sqlalchemy import select

from accounts import carts
from accounts.locks import lock_customer
from accounts.models import AuditEvent, Cart, Customer
from activities.customers import CustomerActivities, NewCustomer, activate
from activities.lookup import load_customer
from activities.passwords import PasswordActivities, SetPassword
from starter import Registration
from workflows.registration import RegistrationWorkflow

PASSWORD = "Vq8#nT2!pLm4-kettle"
NEW_PASSWORD = "Lantern-7#quiet-harbor"


@pytest.fixture
def ts_stack(stack: StackFactory, time_skipping: Any, sqlite_database: Any) -> Any:
    def build(**overrides: object) -> Any:
        return stack(time_skipping, sqlite_database, **overrides)

    return build


async def guest_with_cart(stack: Any) -> tuple[str, str]:
    """A guest's key (the hash of a fresh anonymous id) and the uuid of their cart with one line."""
    key = carts.guest_key(f"anon-{uuid.uuid4()}")
    assert key is not None
    view, _ = await carts.get_or_create_guest_cart(stack.database.sessions, guest_key=key)
    async with stack.database.sessions.begin() as session:
        await carts.add_guest_item(session, guest_key=key, cart_uuid=view.cart.uuid, sku="tea", quantity=2)
    return key, view.cart.uuid


async def owner_of(stack: Any, cart_uuid: str) -> tuple[str | None, str | None]:
    """(guest key, customer reference) of a cart."""
    async with stack.database.sessions() as session:
        row = (
            await session.execute(
                select(Cart.guest_key, Customer.customer_reference)
                .outerjoin(Customer, Customer.id == Cart.customer_id)
                .where(Cart.uuid == cart_uuid)
            )
        ).one()
        return row[0], row[1]


def checkout(email: str, key: str) -> Registration:
    return Registration(
        email=email, channel="checkout", locale="en_US", password=PASSWORD, first_name="Ada", guest_cart_key=key
    )


async def test_manual_verification_converts_the_guest_cart(ts_stack: Any) -> None:
    async with ts_stack() as stack:
        key, cart_uuid = await guest_with_cart(stack)
        registered = await stack.accounts.register(checkout(unique_email(), key))
        reference = registered.customer_reference
        assert await owner_of(stack, cart_uuid) == (key, None)

        await stack.accounts.verify_manually(reference, agent="alice", reason="checkout by phone")
        assert await owner_of(stack, cart_uuid) == (None, reference)
        status = await stack.accounts.registration_status(reference)
        assert (status.stage, status.channel) == ("verified", "checkout")


async def test_an_expired_checkout_sign_up_leaves_the_cart_with_the_guest(ts_stack: Any) -> None:
    async with ts_stack() as stack:
        key, cart_uuid = await guest_with_cart(stack)
        registered = await stack.accounts.register(checkout(unique_email(), key))
        handle = stack.client.get_workflow_handle_for(RegistrationWorkflow.run, registered.workflow_id)
        await stack.env.sleep(timedelta(days=4))
        assert (await handle.result()).outcome == "expired"
        assert await owner_of(stack, cart_uuid) == (key, None)


async def test_a_reset_link_before_the_verification_link_activates_once_and_ends_the_wait(ts_stack: Any) -> None:
    """The reset link proves the address: one activation (cart converted), the registration stops waiting
    (no reminder to a verified customer) and welcomes, and the verification link then finds it active."""
    async with ts_stack() as stack:
        key, cart_uuid = await guest_with_cart(stack)
        email = unique_email()
        registered = await stack.accounts.register(checkout(email, key))
        reference = registered.customer_reference
        verification = token_from(await stack.mail_to(email, "confirm"))

        await stack.accounts.passwords.forgotten(email)
        await stack.accounts.passwords.complete_reset(token_from(await stack.mail_to(email, "reset")), NEW_PASSWORD)
        assert await owner_of(stack, cart_uuid) == (None, reference)
        handle = stack.client.get_workflow_handle_for(RegistrationWorkflow.run, registered.workflow_id)
        assert (await handle.result()).outcome == "verified"
        await stack.mail_to(email, "welcome")
        await stack.env.sleep(timedelta(days=2))
        assert not [m for m in stack.sink.to(email) if "reminder" in m.subject.lower()]
        assert (await stack.accounts.registration_status(reference)).verified_by == "password_link"
        assert (await stack.accounts.confirm_email(verification)).outcome == "already_active"
        async with stack.database.sessions() as session:
            events = list(
                await session.scalars(
                    select(AuditEvent.event).where(
                        AuditEvent.customer_reference == reference, AuditEvent.event == "email_verified"
                    )
                )
            )
        assert events == ["email_verified"]


async def test_a_reset_link_racing_the_verification_link_activates_once(database: Any) -> None:
    """The reset read the account while it was unverified; the verification link's activation commits
    before the reset writes. The reset must not activate it again (no second event, registered_at kept)."""
    sessions = database.sessions
    reference = f"{database.reference_prefix}race-{uuid.uuid4().hex[:8]}"
    await CustomerActivities(sessions).create_customer(
        NewCustomer(customer_reference=reference, email=unique_email(), locale="en_US", channel="api")
    )
    async with sessions() as session:
        customer_id = (await load_customer(session, reference)).id
    reset = SetPassword(reference, "new-hash", "password_reset", "api", reference, f"race/{reference}", True)
    verified_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async with sessions.begin() as link:  # the verification link's activation holds the row
        row = await lock_customer(link, customer_id=customer_id)
        racing = asyncio.create_task(PasswordActivities(sessions).set_password(reset))
        await asyncio.sleep(0.5)  # the reset has read the row and waits to write it
        assert await activate(link, row, now=verified_at)
    await racing

    async with sessions() as session:
        after = await load_customer(session, reference)
        by_reset = list(
            await session.scalars(
                select(AuditEvent.id).where(
                    AuditEvent.customer_reference == reference, AuditEvent.event == "email_verified"
                )
            )
        )
    assert (after.registered_at, after.password_hash) == (verified_at, "new-hash")
    assert by_reset == []
