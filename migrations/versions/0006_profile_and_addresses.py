"""Addresses; on customers the preferred shipping method and the default billing and shipping addresses.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DEFAULT_ADDRESS_COLUMNS = {
    "default_billing_address_id": "fk_customers_default_billing_address",
    "default_shipping_address_id": "fk_customers_default_shipping_address",
}


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("salutation", sa.String(8), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("address1", sa.String(255), nullable=False),
        sa.Column("address2", sa.String(255), nullable=False),
        sa.Column("address3", sa.String(255)),
        sa.Column("zip_code", sa.String(15), nullable=False),
        sa.Column("city", sa.String(255), nullable=False),
        sa.Column("country", sa.String(255)),
        sa.Column("iso2_code", sa.String(2), nullable=False),
        sa.Column("company", sa.String(255)),
        sa.Column("phone", sa.String(255)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_addresses_customer_id", "addresses", ["customer_id"])
    op.add_column("customers", sa.Column("preferred_shipping_method", sa.String(64)))
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column, constraint in DEFAULT_ADDRESS_COLUMNS.items():
        # SQLite cannot add a constraint to an existing table; batch mode would rebuild `customers`,
        # and dropping the old table under PRAGMA foreign_keys=ON cascades into every table that
        # references it. An inline REFERENCES on ADD COLUMN needs no rebuild (SQLite allows it for a
        # column whose default is NULL). PostgreSQL gets a named constraint.
        op.add_column(
            "customers",
            sa.Column(column, sa.Integer(), sa.ForeignKey("addresses.id", ondelete="SET NULL", name=constraint)),
            inline_references=sqlite,
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Dropping the columns rebuilds `customers`, and dropping the old table with foreign keys on
        # deletes every row that references a customer (tokens, addresses). The pragma only takes
        # effect outside a transaction: refuse rather than lose data when it did not.
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError("on SQLite, downgrade 0006 on its own: `alembic downgrade 0005` from 0006")
    with op.batch_alter_table("customers") as batch:
        for column in (*DEFAULT_ADDRESS_COLUMNS, "preferred_shipping_method"):
            batch.drop_column(column)
    op.drop_index("ix_addresses_customer_id", table_name="addresses")
    op.drop_table("addresses")
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")
