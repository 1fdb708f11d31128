"""tag ledger: the tags Goldpan wrote, seeded from what is safe to claim

Revision ID: 0003_tag_ledger
Revises: 0001
Create Date: 2026-12-09 10:00:00

Goldpan owns only the tags it wrote (shopify_app.tagging.ledger). A migration cannot know who
wrote a tag on an existing install, so it claims only what Goldpan would write again anyway: a
segment's current tag on a current member of that segment, for enabled segments with tag sync
on. Every other tag stays the merchant's, including ``goldpan-`` tags on customers who are not
members (left behind by older versions, or typed by hand): Goldpan never removes them; the
merchant can, with Shopify's bulk editor.

The migration reads its tables through ``sa.table`` clauses, never through the models.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0003_tag_ledger"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PREFIX = "goldpan-"  # as shipped with 0001; a copy, so this revision never changes
BATCH = 5_000

shops = sa.table("shops", sa.column("id", sa.Integer), sa.column("settings", sa.JSON))
segments = sa.table(
    "segments",
    sa.column("id", sa.Integer),
    sa.column("shop_id", sa.Integer),
    sa.column("handle", sa.String),
    sa.column("tag", sa.String),
    sa.column("enabled", sa.Boolean),
    sa.column("tag_sync", sa.Boolean),
)
memberships = sa.table(
    "memberships",
    sa.column("segment_id", sa.Integer),
    sa.column("customer_id", sa.BigInteger),
    sa.column("shop_id", sa.Integer),
)
customers = sa.table(
    "customers",
    sa.column("shop_id", sa.Integer),
    sa.column("id", sa.BigInteger),
    sa.column("tags", sa.JSON),
)
ledger = sa.table(
    "tag_ledger",
    sa.column("shop_id", sa.Integer),
    sa.column("customer_id", sa.BigInteger),
    sa.column("tag_key", sa.Text),
    sa.column("tag", sa.Text),
    sa.column("written_at", shopify_app.db.types.UTCDateTime()),
)


def _key(tag: str) -> str:
    return tag.strip().lower()


def upgrade() -> None:
    op.create_table(
        "tag_ledger",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tag_key", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("written_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_tag_ledger_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", "customer_id", "tag_key", name=op.f("pk_tag_ledger")),
    )
    conn = op.get_bind()
    for shop_id, settings in conn.execute(sa.select(shops.c.id, shops.c.settings)).all():
        _seed_ledger(conn, int(shop_id), _prefix(settings))


def _prefix(settings: Any) -> str:
    value = (settings or {}).get("tag_prefix") if isinstance(settings, dict) else None
    return value if isinstance(value, str) and value.strip() else DEFAULT_PREFIX


def _seed_ledger(conn: sa.Connection, shop_id: int, prefix: str) -> None:
    """Claim each synced segment's tag on the members that carry it (see the module docstring)."""
    synced = {
        int(sid): _key((tag or "").strip() or f"{prefix}{handle}")
        for sid, handle, tag in conn.execute(
            sa.select(segments.c.id, segments.c.handle, segments.c.tag).where(
                segments.c.shop_id == shop_id,
                segments.c.enabled.is_(True),
                segments.c.tag_sync.is_(True),
            )
        )
    }
    if not synced:
        return
    wanted: dict[int, set[str]] = defaultdict(set)
    for sid, cid in conn.execute(
        sa.select(memberships.c.segment_id, memberships.c.customer_id).where(
            memberships.c.shop_id == shop_id, memberships.c.segment_id.in_(sorted(synced))
        )
    ):
        wanted[int(cid)].add(synced[int(sid)])
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for cid, tags in conn.execute(
        sa.select(customers.c.id, customers.c.tags).where(customers.c.shop_id == shop_id)
    ):
        keys = wanted.get(int(cid))
        if not keys:
            continue
        seen: set[str] = set()
        for tag in tags or []:
            key = _key(str(tag))
            if key in keys and key not in seen:
                seen.add(key)
                rows.append(
                    {
                        "shop_id": shop_id,
                        "customer_id": int(cid),
                        "tag_key": key,
                        "tag": str(tag).strip(),
                        "written_at": now,
                    }
                )
        if len(rows) >= BATCH:
            conn.execute(ledger.insert(), rows)
            rows = []
    if rows:
        conn.execute(ledger.insert(), rows)


def downgrade() -> None:
    op.drop_table("tag_ledger")
