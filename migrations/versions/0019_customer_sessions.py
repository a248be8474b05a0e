"""Customer sessions: each sign-in (refresh-token family) with its device, network prefix and times.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_sessions",
        sa.Column("family_id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("network_prefix", sa.String(64), nullable=True),
        sa.Column("device_token_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_customer_sessions_customer_id", "customer_sessions", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_sessions_customer_id", "customer_sessions")
    op.drop_table("customer_sessions")
