"""Request budgets of unauthenticated work (accounts.rate_limits), and an index that lets the cleanup
schedule find expired login throttles without scanning the table.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_counts",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_request_counts_window_ends_at", "request_counts", ["window_ends_at"])
    op.create_index("ix_login_throttles_window_ends_at", "login_throttles", ["window_ends_at"])


def downgrade() -> None:
    op.drop_index("ix_login_throttles_window_ends_at", table_name="login_throttles")
    op.drop_index("ix_request_counts_window_ends_at", table_name="request_counts")
    op.drop_table("request_counts")
