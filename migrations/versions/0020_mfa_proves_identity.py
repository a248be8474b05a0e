"""MFA methods that prove who the customer is: activated with the current password (issue 16's review).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # methods activated before this column stand as activated without a password: they guard protected
    # requests, but a new email and a deletion still ask for the password
    op.add_column("mfa_methods", sa.Column("proves_identity", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("mfa_methods") as batch:
        batch.drop_column("proves_identity")
