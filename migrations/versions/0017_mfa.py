"""Multi-factor authentication: methods (pending/active, TOTP secrets encrypted), emailed codes, recovery codes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mfa_methods",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=True),
        sa.Column("staff_id", sa.Integer(), sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("last_used_step", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("customer_id", "type", name="uq_mfa_methods_customer_type"),
        sa.UniqueConstraint("staff_id", "type", name="uq_mfa_methods_staff_type"),
    )
    op.create_index("ix_mfa_methods_customer_id", "mfa_methods", ["customer_id"])
    op.create_index("ix_mfa_methods_staff_id", "mfa_methods", ["staff_id"])
    op.create_table(
        "mfa_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_mfa_codes_customer_id", "mfa_codes", ["customer_id"])
    op.create_index("ix_mfa_codes_created_at", "mfa_codes", ["created_at"])
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_mfa_recovery_codes_customer_id", "mfa_recovery_codes", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_mfa_recovery_codes_customer_id", "mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_index("ix_mfa_codes_created_at", "mfa_codes")
    op.drop_index("ix_mfa_codes_customer_id", "mfa_codes")
    op.drop_table("mfa_codes")
    op.drop_index("ix_mfa_methods_staff_id", "mfa_methods")
    op.drop_index("ix_mfa_methods_customer_id", "mfa_methods")
    op.drop_table("mfa_methods")
