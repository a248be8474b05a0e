"""Registration's database steps run as Temporal retries them: twice, after a committed first attempt."""

from __future__ import annotations

import uuid

from conftest import Database, unique_email
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from accounts.models import AuditEvent, Customer
from activities.customers import CustomerActivities, ExpiryInput, NewCustomer


async def test_expiring_a_registration_twice_records_one_event_and_keeps_the_row(database: Database) -> None:
    activities = CustomerActivities(database.sessions)
    env = ActivityEnvironment()
    reference = f"{database.reference_prefix}EXP-{uuid.uuid4().hex[:8]}"
    await env.run(
        activities.create_customer,
        NewCustomer(customer_reference=reference, email=unique_email(), locale="en_US", channel="api"),
    )
    expiry = ExpiryInput(reference, "api", "keep", f"registration:{reference}/{uuid.uuid4()}/expired")

    await env.run(activities.expire_registration, expiry)
    await env.run(activities.expire_registration, expiry)  # the retry after a lost completion

    async with database.sessions() as session:
        events = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.customer_reference == reference, AuditEvent.event == "registration_expired")
        )
        customer = await session.scalar(select(Customer).where(Customer.customer_reference == reference))
    assert events == 1
    assert customer is not None and customer.anonymized_at is None and customer.registered_at is None
