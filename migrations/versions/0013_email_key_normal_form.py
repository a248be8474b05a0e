"""Every stored `customers.email_key` recomputed by `accounts.email_address.email_key` (NFC, IDNA domain).

Keys written before were `email.strip().lower()`: `anna@bücher.de` and `anna@xn--bcher-kva.de` were two
keys, and a sign-in typed in the other form found no account. Only rows whose key changes are written
(addresses with a non-ASCII domain or a non-NFC text), and only to a key no row holds yet, so the
unique index never sees two rows with one key, whatever the order of the updates. If two accounts turn
out to be one address, the one that already holds the key (else the oldest) gets it; the others keep
theirs and are logged by reference, for support to merge or anonymize. The rule is imported, not
copied: the keys must agree with the code that compares them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from accounts.email_address import email_key

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
customers = sa.table(
    "customers", sa.column("id", sa.Integer), sa.column("email", sa.String), sa.column("email_key", sa.String)
)
customer_references = sa.table("customers", sa.column("id", sa.Integer), sa.column("customer_reference", sa.String))
BATCH = 5000


def upgrade() -> None:
    _recompute(email_key)


def downgrade() -> None:
    _recompute(lambda email: email.strip().lower())


def _recompute(rule: Callable[[str], str]) -> None:
    connection = op.get_bind()
    changes: dict[int, str] = {}  # only the rows whose key changes (few): a million rows are read, not held
    last = 0
    while True:
        rows = connection.execute(
            sa.select(customers.c.id, customers.c.email, customers.c.email_key)
            .where(customers.c.id > last)
            .order_by(customers.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        changes.update((row.id, key) for row in rows if (key := rule(row.email)) != row.email_key)
    wanted = sorted(set(changes.values()))
    held: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        held.update(
            connection.execute(sa.select(customers.c.email_key).where(customers.c.email_key.in_(chunk))).scalars()
        )
    # A key some row holds now stays with it, and of two rows that want one key the older gets it: no two
    # rows ever hold one key, so the updates need no order.
    taken, claimed = [], set(held)
    for customer_id, key in sorted(changes.items()):
        if key in claimed:
            taken.append(customer_id)
        claimed.add(key)
    for customer_id in taken:
        del changes[customer_id]
    if taken:
        references = connection.execute(
            sa.select(customer_references.c.customer_reference).where(customer_references.c.id.in_(taken))
        ).scalars()
        log.warning(
            "email_key: these accounts share an address with another and keep their key: %s", ", ".join(references)
        )
    if changes:
        update = (
            sa.update(customers).where(customers.c.id == sa.bindparam("row_id")).values(email_key=sa.bindparam("key"))
        )
        connection.execute(update, [{"row_id": i, "key": key} for i, key in changes.items()])
