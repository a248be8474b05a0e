"""Customers, reference counter, one-time tokens, email outbox, audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accounts.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_reference", sa.String(32), nullable=False, unique=True),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("email_key", sa.String(255), nullable=False, unique=True),
        sa.Column("salutation", sa.String(8)),
        sa.Column("first_name", sa.String(100)),
        sa.Column("last_name", sa.String(100)),
        sa.Column("gender", sa.String(8)),
        sa.Column("date_of_birth", sa.Date()),
        sa.Column("phone", sa.String(255)),
        sa.Column("company", sa.String(255)),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("registered_at", UTCDateTime()),
        sa.Column("anonymized_at", UTCDateTime()),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    counters = op.create_table(
        "reference_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.bulk_insert(counters, [{"name": "customer", "value": 0}])
    op.create_table(
        "one_time_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("issue_key", sa.String(200), nullable=False, unique=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_one_time_tokens_customer_id", "one_time_tokens", ["customer_id"])
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("customer_reference", sa.String(32)),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
    )
    op.create_index("ix_email_outbox_customer_reference", "email_outbox", ["customer_reference"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_reference", sa.String(32), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_audit_events_customer_reference", "audit_events", ["customer_reference"])


def downgrade() -> None:
    for table in ("audit_events", "email_outbox", "one_time_tokens", "reference_counters", "customers"):
        op.drop_table(table)
