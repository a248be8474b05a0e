"""staff.email, and one-time tokens of staff members: the staff lock email's one-time link.

`one_time_tokens.customer_id` becomes nullable beside a new `staff_id`; exactly one of them is set (a
CHECK, as `device_tokens` does it in code). SQLite cannot alter a column in place: batch mode rebuilds
`one_time_tokens`, which no table references, so dropping the old copy cascades into nothing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

STAFF_FK = "fk_one_time_tokens_staff_id_staff"
ONE_OWNER = "ck_one_time_tokens_one_owner"


def upgrade() -> None:
    op.add_column("staff", sa.Column("email", sa.String(255), nullable=True))
    with op.batch_alter_table("one_time_tokens") as batch:
        batch.alter_column("customer_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("staff_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(STAFF_FK, "staff", ["staff_id"], ["id"], ondelete="CASCADE")
        batch.create_check_constraint(ONE_OWNER, "(customer_id IS NULL) <> (staff_id IS NULL)")
    op.create_index("ix_one_time_tokens_staff_id", "one_time_tokens", ["staff_id"])


def downgrade() -> None:
    op.execute("DELETE FROM one_time_tokens WHERE staff_id IS NOT NULL")
    op.drop_index("ix_one_time_tokens_staff_id", table_name="one_time_tokens")
    with op.batch_alter_table("one_time_tokens") as batch:
        batch.drop_constraint(ONE_OWNER, type_="check")
        batch.drop_constraint(STAFF_FK, type_="foreignkey")
        batch.drop_column("staff_id")
        batch.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("staff") as batch:
        batch.drop_column("email")
