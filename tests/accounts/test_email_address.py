"""One normal form for email addresses (`accounts.email_address.email_key`), and migration 0013, which brings
the keys stored before it to that form, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from conftest import PG_ADMIN_DSN, _postgres_available
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from accounts.email_address import email_key
from accounts.migrate import alembic_config, upgrade_async


@pytest.mark.parametrize(
    "typed",
    ["anna@bücher.de", "Anna@BÜCHER.de", "anna@xn--bcher-kva.de", "ANNA@XN--BCHER-KVA.DE", "anna@bu\u0308cher.de "],
)
def test_every_spelling_of_one_mailbox_has_one_key(typed: str) -> None:
    assert email_key(typed) == "anna@xn--bcher-kva.de"


def test_the_local_part_is_lower_cased_as_before_and_nfc_normalized() -> None:
    assert email_key(" Hans.Muller@Example.COM ") == "hans.muller@example.com"
    assert email_key("Mu\u0308ller@example.com") == email_key("müller@example.com") == "müller@example.com"
    assert email_key("a@[127.0.0.1]") == "a@[127.0.0.1]"  # IDNA refuses an address literal: kept, lower-cased


@contextlib.asynccontextmanager
async def empty_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}"
        return
    if not await _postgres_available():
        if os.environ.get("ACCOUNTS_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"ACCOUNTS_TEST_REQUIRE_POSTGRES is set but no PostgreSQL answers at {PG_ADMIN_DSN}")
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_DSN}")
    name = f"accounts_migration_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# (reference, email as typed, the key 0012's code stored, the key after 0013)
ROWS = [
    ("M-1", "anna@bücher.de", "anna@bücher.de", "anna@xn--bcher-kva.de"),
    ("M-2", "Hans@Example.com", "hans@example.com", "hans@example.com"),
    ("M-3", "Jo@xn--mller-kva.de", "jo@xn--mller-kva.de", "jo@xn--mller-kva.de"),  # one mailbox with M-4
    ("M-4", "jo@müller.de", "jo@müller.de", "jo@müller.de"),  # M-3 holds the key already: M-4 keeps its own
    ("M-5", "Mu\u0308ller@Straße.de", "mu\u0308ller@straße.de", "müller@xn--strae-oqa.de"),
    ("M-6", "zoe@bücher.de", "zoe@bücher.de", "zoe@xn--bcher-kva.de"),  # both want one new key: the older gets it
    ("M-7", "zoe@bu\u0308cher.de", "zoe@bu\u0308cher.de", "zoe@bu\u0308cher.de"),
]


SELECT_KEYS = "SELECT customer_reference, email_key FROM customers"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_0013_brings_every_stored_key_to_the_normal_form(kind: str, tmp_path: Path) -> None:
    async with empty_database(kind, tmp_path) as url:
        await upgrade_async(url, "0012")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                for reference, email, key, _ in ROWS:
                    await connection.execute(
                        text(
                            "INSERT INTO customers (customer_reference, email, email_key, locale, channel,"
                            " token_version, created_at, updated_at, password_reset_required) VALUES (:reference,"
                            " :email, :key, 'en_US', 'api', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false)"
                        ),
                        {"reference": reference, "email": email, "key": key},
                    )
            await upgrade_async(url)
            async with engine.connect() as connection:
                keys = {str(r): str(k) for r, k in await connection.execute(text(SELECT_KEYS))}
            assert keys == {reference: after for reference, _, _, after in ROWS}

            # the downgrade restores the old rule's keys
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0012")
            async with engine.connect() as connection:
                keys = {str(r): str(k) for r, k in await connection.execute(text(SELECT_KEYS))}
            assert keys == {reference: before for reference, _, before, _ in ROWS}
        finally:
            await engine.dispose()
