"""A permanent SMTP refusal is recorded on its outbox row (status "bounced") instead of retried forever.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("email_outbox", sa.Column("smtp_code", sa.Integer(), nullable=True))
    op.add_column("email_outbox", sa.Column("smtp_reply", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("email_outbox", "smtp_reply")
    op.drop_column("email_outbox", "smtp_code")
