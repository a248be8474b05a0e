"""Writes that can still land after a deletion: an activity attempt of a cancelled lifecycle finishes
after its run closed (a cancelled run does not wait for it). Each finds the row anonymized under its
row lock and does nothing; every email of the customer but the deletion notice stops once the deletion
has started. Real activities on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from conftest import Database, unique_email
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from accounts import audit
from accounts.anonymization import DELETION_STARTED
from accounts.emails import EmailContent, EmailRenderer
from accounts.models import AuditEvent, Customer, EmailOutbox, utcnow
from accounts.settings import Settings
from activities.anonymization import AnonymizationActivities, Anonymize
from activities.customers import ActivationInput, CustomerActivities
from activities.email_change import ApplyEmailChange, EmailChangeActivities
from activities.emails import EmailActivities, NoticeInput
from activities.passwords import ForceReset, PasswordActivities, SetPassword


class Outgoing:
    """Stands in for the SMTP server: what was handed over."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def send(
        self, *, sender: str, to: str, content: EmailContent, headers: Mapping[str, str] | None = None
    ) -> None:
        self.subjects.append(content.subject)


async def new_customer(database: Database, *, verified: bool) -> str:
    reference = f"{database.reference_prefix}W{uuid.uuid4().hex[:10]}"
    email = unique_email("gone")
    async with database.sessions.begin() as session:
        session.add(
            Customer(
                customer_reference=reference,
                email=email,
                email_key=email,
                locale="en_US",
                channel="api",
                password_hash="$argon2id$old",
                first_name="Ada",
                registered_at=utcnow() if verified else None,
            )
        )
    return reference


async def anonymized(database: Database, client_env: WorkflowEnvironment, *, verified: bool = True) -> str:
    reference = await new_customer(database, verified=verified)
    await ActivityEnvironment().run(
        AnonymizationActivities(database.sessions, client_env.client).anonymize_customer,
        Anonymize(reference, "api", reference, f"anonymization:{reference}/anonymized"),
    )
    return reference


async def row(database: Database, reference: str) -> Customer:
    async with database.sessions() as session:
        return (await session.execute(select(Customer).where(Customer.customer_reference == reference))).scalar_one()


async def events(database: Database, reference: str) -> list[str]:
    async with database.sessions() as session:
        return list(await session.scalars(select(AuditEvent.event).where(AuditEvent.customer_reference == reference)))


async def test_set_password_stores_no_hash_on_an_anonymized_row(database: Database, time_skipping: Any) -> None:
    reference = await anonymized(database, time_skipping, verified=False)
    before = await row(database, reference)

    await ActivityEnvironment().run(
        PasswordActivities(database.sessions).set_password,
        SetPassword(reference, "$argon2id$new", "password_reset", "storefront", reference, "reset/set", True),
    )

    after = await row(database, reference)
    assert after.password_hash is None
    assert after.registered_at is None  # the reset link's proof of the address activates nothing either
    assert after.token_version == before.token_version
    assert await events(database, reference) == ["customer_anonymized"]


async def test_a_forced_reset_changes_nothing_on_an_anonymized_row(database: Database, time_skipping: Any) -> None:
    reference = await anonymized(database, time_skipping)
    before = await row(database, reference)

    await ActivityEnvironment().run(
        PasswordActivities(database.sessions).force_reset, ForceReset(reference, "agent", "reset/forced")
    )

    after = await row(database, reference)
    assert (after.password_reset_required, after.token_version) == (False, before.token_version)
    assert await events(database, reference) == ["customer_anonymized"]


async def test_an_anonymized_account_is_never_activated(database: Database, time_skipping: Any) -> None:
    reference = await anonymized(database, time_skipping, verified=False)

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            CustomerActivities(database.sessions).activate_customer,
            ActivationInput(reference, "api", "link", reference),
        )

    assert refused.value.type == "CustomerAnonymized" and refused.value.non_retryable
    assert (await row(database, reference)).registered_at is None
    assert await events(database, reference) == ["customer_anonymized"]


async def test_an_email_change_is_not_applied_to_an_anonymized_row(database: Database, time_skipping: Any) -> None:
    reference = await anonymized(database, time_skipping)
    scrubbed = (await row(database, reference)).email

    applied = await ActivityEnvironment().run(
        EmailChangeActivities(database.sessions).apply_email_change,
        ApplyEmailChange(reference, unique_email("new"), "hash", "api", reference, "change/changed"),
    )

    assert applied.outcome == "inactive"
    assert (await row(database, reference)).email == scrubbed


async def test_once_a_deletion_started_only_its_own_email_goes_out(database: Database) -> None:
    reference = await new_customer(database, verified=True)
    async with database.sessions.begin() as session:
        audit.record(session, customer_reference=reference, event=DELETION_STARTED, channel="api", actor=reference)
    settings = Settings(_env_file=None, database_url=database.url)  # type: ignore[call-arg]
    outgoing = Outgoing()
    emails = EmailActivities(
        database.sessions, EmailRenderer(settings.templates_dir, default_locale="en_US"), outgoing, settings
    )

    changed = NoticeInput(reference, "password_changed", f"change:{reference}/changed", changed_at=utcnow())
    assert await ActivityEnvironment().run(emails.send_notice, changed) is False
    deleted = NoticeInput(reference, "account_deleted", f"anonymization:{reference}/deleted")
    await ActivityEnvironment().run(emails.send_notice, deleted)

    assert len(outgoing.subjects) == 1 and "was deleted" in outgoing.subjects[0]
    async with database.sessions() as session:
        keys = list(
            await session.scalars(select(EmailOutbox.template).where(EmailOutbox.customer_reference == reference))
        )
    assert keys == ["account_deleted"]
