"""Back-office sign-out ends a member's web sessions everywhere, copied cookies included.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("staff", sa.Column("sessions_revoked_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("staff", "sessions_revoked_at")
