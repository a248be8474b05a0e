"""Inactive accounts: the last sign-in (indexed, for the sweep) and the inactivity standing.

The last sign-in of existing customers is their newest refresh token (each sign-in issues one and each
refresh rotates one; none is ever deleted), else the creation of their row (an imported customer's: the
import), never their original registration date: nobody is taken for inactive for a missing record.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column: no table rebuild on SQLite (a rebuild of `customers` would cascade into its children)
    op.add_column("customers", sa.Column("last_signed_in_at", UTCDateTime(), nullable=True))
    op.add_column("customers", sa.Column("inactivity_stage", sa.String(16), nullable=True))
    op.add_column("customers", sa.Column("inactivity_since", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE customers SET last_signed_in_at = COALESCE("
        "(SELECT MAX(r.created_at) FROM refresh_tokens r WHERE r.customer_id = customers.id), created_at)"
    )
    op.create_index("ix_customers_last_signed_in_at", "customers", ["last_signed_in_at"])


def downgrade() -> None:
    op.drop_index("ix_customers_last_signed_in_at", "customers")
    for column in ("inactivity_since", "inactivity_stage", "last_signed_in_at"):
        op.drop_column("customers", column)
