"""Inactive accounts' domain rules: the settings (months, the order of the three durations), when a sign-in
writes, what the back office shows, and migration 0022's backfill of the last sign-in, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from test_email_address import empty_database

from accounts import inactivity
from accounts.db import session_factory
from accounts.migrate import alembic_config, upgrade_async
from accounts.models import Customer
from accounts.settings import Settings
from starter.schedules import inactivity_sweep_schedule

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


def test_durations_count_years_and_months_and_the_feature_is_off_unless_the_reminder_is_set() -> None:
    on = settings(inactive_remind_after="P23M", inactive_warn_after="P1Y11M14D", inactive_retire_after="P2Y")
    assert on.inactive_remind_after == timedelta(days=690)
    assert on.inactive_warn_after == timedelta(days=365 + 330 + 14)
    assert on.inactive_retire_after == timedelta(days=730)
    assert inactivity_sweep_schedule(on) is not None
    assert settings(inactive_remind_after="60", inactive_warn_after="PT2M", inactive_retire_after="P1DT1H")
    off = settings()
    assert off.inactive_remind_after is None and inactivity_sweep_schedule(off) is None
    assert settings(inactive_remind_after="").inactive_remind_after is None


@pytest.mark.parametrize(
    "values",
    [
        {"inactive_remind_after": "P23M"},  # the other two missing
        {"inactive_remind_after": "P23M", "inactive_warn_after": "P22M", "inactive_retire_after": "P2Y"},
        {"inactive_remind_after": "P23M", "inactive_warn_after": "P2Y", "inactive_retire_after": "P2Y"},
        {"inactive_remind_after": "P23 months"},
    ],
)
def test_durations_out_of_order_or_unreadable_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"INACTIVE|duration|timedelta"):
        settings(**values)


def test_an_active_customers_sign_in_writes_once_a_day_and_a_standing_always() -> None:
    assert inactivity.needs_sign_in_write(None, None, NOW)
    assert not inactivity.needs_sign_in_write(NOW - timedelta(hours=23), None, NOW)
    assert inactivity.needs_sign_in_write(NOW - timedelta(days=1), None, NOW)
    for stage in ("reminded", "warned", "kept"):
        assert inactivity.needs_sign_in_write(NOW, stage, NOW)
    assert not inactivity.needs_sign_in_write(NOW, "exempt", NOW)
    assert inactivity.needs_sign_in_write(NOW, "retired", NOW)  # to meet the row lock, which refuses it


def test_the_standing_dates_the_next_steps_from_the_reminder() -> None:
    timeline = inactivity.Timeline(timedelta(days=690), timedelta(days=704), timedelta(days=730))
    reminded = Customer(inactivity_stage="reminded", inactivity_since=NOW)
    shown = inactivity.standing(reminded, timeline)
    assert (shown.warning_due, shown.retirement_due) == (NOW + timedelta(days=14), NOW + timedelta(days=40))
    warned = inactivity.standing(Customer(inactivity_stage="warned", inactivity_since=NOW), timeline)
    assert (warned.warning_due, warned.retirement_due) == (None, NOW + timedelta(days=26))
    active = inactivity.standing(Customer(last_signed_in_at=NOW), timeline)
    assert (active.stage, active.since) == ("active", NOW)
    exempt = inactivity.standing(Customer(inactivity_stage="exempt", inactivity_since=NOW), None)
    assert (exempt.stage, exempt.retirement_due) == ("exempt", None)


INSERT = text(
    "INSERT INTO customers (customer_reference, email, email_key, locale, channel, token_version, created_at,"
    " updated_at, registered_at, password_reset_required) VALUES (:reference, :email, :email, 'en_US', 'api', 0,"
    " :created, :created, :registered, false)"
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_0022_takes_the_last_sign_in_from_refresh_tokens_else_the_rows_creation(
    kind: str, tmp_path: Path
) -> None:
    created = datetime(2024, 3, 1, tzinfo=UTC)
    registered_long_before = datetime(2015, 1, 1, tzinfo=UTC)  # an imported customer's original registration
    refreshed = datetime(2025, 6, 1, tzinfo=UTC)
    async with empty_database(kind, tmp_path) as url:
        await upgrade_async(url, "0020")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                for reference in ("M-1", "M-2"):
                    await connection.execute(
                        INSERT,
                        {
                            "reference": reference,
                            "email": f"{reference}@example.com",
                            "created": created,
                            "registered": registered_long_before,
                        },
                    )
                customer_id = (
                    await connection.execute(text("SELECT id FROM customers WHERE customer_reference = 'M-1'"))
                ).scalar()
                for n, when in enumerate((refreshed - timedelta(days=30), refreshed)):
                    await connection.execute(
                        text(
                            "INSERT INTO refresh_tokens (customer_id, token_hash, family_id, expires_at, created_at)"
                            " VALUES (:customer, :hash, 'f', :expires, :created)"
                        ),
                        {"customer": customer_id, "hash": f"{n:064d}", "expires": when, "created": when},
                    )
            await upgrade_async(url)
            async with session_factory(engine)() as session:
                found = await session.execute(select(Customer.customer_reference, Customer.last_signed_in_at))
                rows = {reference: when for reference, when in found}
            assert rows == {"M-1": refreshed, "M-2": created}
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0020")
        finally:
            await engine.dispose()
