"""webhook events: a body hash in the deduplication key, no payload once handled

A redelivery is the same event id with the same signed body: the event id is a header, which
the HMAC does not cover, so a body signed for another event no longer passes for (or blocks) it.
Handled deliveries keep no payload: the ones stored before this revision lose theirs here, since
they held customers' personal data with nothing left to do with it.

Revision ID: 0006_webhook_body_hash
Revises: 0005_shops_autoincrement
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_webhook_body_hash"
down_revision: str | None = "0005_shops_autoincrement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = sa.table(
    "webhook_events",
    sa.column("id", sa.Integer()),
    sa.column("shop_domain", sa.String()),
    sa.column("event_id", sa.String()),
    sa.column("body_hash", sa.String()),
    sa.column("payload", sa.Text()),
    sa.column("status", sa.String()),
)
BATCH = 1000


def _hash_payloads(conn: sa.Connection) -> None:
    """Fill ``body_hash`` from the stored payloads (the raw bodies, UTF-8), a batch at a time."""
    last = 0
    while True:
        rows = conn.execute(
            sa.select(EVENTS.c.id, EVENTS.c.payload)
            .where(EVENTS.c.id > last)
            .order_by(EVENTS.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        conn.execute(
            EVENTS.update()
            .where(EVENTS.c.id == sa.bindparam("row_id"))
            .values(body_hash=sa.bindparam("digest")),
            [
                {"row_id": r.id, "digest": hashlib.sha256((r.payload or "").encode()).hexdigest()}
                for r in rows
            ],
        )
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch_op.alter_column("payload", existing_type=sa.Text(), nullable=True)
    conn = op.get_bind()
    _hash_payloads(conn)
    conn.execute(
        EVENTS.update().where(EVENTS.c.status.in_(("done", "skipped"))).values(payload=None)
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.alter_column("body_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("uq_webhook_events_shop_domain", type_="unique")
        batch_op.create_unique_constraint(
            "uq_webhook_events_shop_domain", ["shop_domain", "event_id", "body_hash"]
        )


def downgrade() -> None:
    conn = op.get_bind()
    # The older key allows one row per event id: keep the first of each.
    first = sa.select(sa.func.min(EVENTS.c.id)).group_by(EVENTS.c.shop_domain, EVENTS.c.event_id)
    conn.execute(EVENTS.delete().where(EVENTS.c.id.not_in(first)))
    conn.execute(EVENTS.update().where(EVENTS.c.payload.is_(None)).values(payload="{}"))
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhook_events_shop_domain", type_="unique")
        batch_op.create_unique_constraint(
            "uq_webhook_events_shop_domain", ["shop_domain", "event_id"]
        )
        batch_op.alter_column("payload", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("body_hash")
