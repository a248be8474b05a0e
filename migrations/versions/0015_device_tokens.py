"""Device tokens: a client that signed in to an account before is counted apart from untrusted guesses.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=True),
        sa.Column("staff_id", sa.Integer(), sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_device_tokens_customer_id", "device_tokens", ["customer_id"])
    op.create_index("ix_device_tokens_staff_id", "device_tokens", ["staff_id"])


def downgrade() -> None:
    op.drop_index("ix_device_tokens_staff_id", "device_tokens")
    op.drop_index("ix_device_tokens_customer_id", "device_tokens")
    op.drop_table("device_tokens")
