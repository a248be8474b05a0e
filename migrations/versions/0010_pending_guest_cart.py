"""The guest cart a checkout sign-up brings, kept on the customer until the account is activated.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column: no table rebuild on SQLite (a rebuild of `customers` would cascade into its children)
    op.add_column("customers", sa.Column("guest_cart_key", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("customers", "guest_cart_key")
