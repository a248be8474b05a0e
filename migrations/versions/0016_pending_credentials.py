"""Pending credentials: password hashes (and a sign-up's profile) wait here, not in workflow payloads.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_credentials",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("customer_reference", sa.String(32), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("replaces_hash", sa.Text(), nullable=True),
        sa.Column("sign_up", sa.JSON(), nullable=True),
        sa.Column("owner_reference", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_pending_credentials_customer_reference", "pending_credentials", ["customer_reference"])
    op.create_index("ix_pending_credentials_expires_at", "pending_credentials", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_pending_credentials_expires_at", "pending_credentials")
    op.drop_index("ix_pending_credentials_customer_reference", "pending_credentials")
    op.drop_table("pending_credentials")
