"""tag ledger: the tags Goldpan wrote, seeded from what is safe to claim; lapsed tiers by position

Revision ID: 0003_tag_ledger
Revises: 0002_redact_secrets
Create Date: 2026-12-09 10:00:00

Goldpan owns only the tags it wrote (shopify_app.tagging.ledger). A migration cannot know who
wrote a tag on an existing install, so it claims only what Goldpan would write again anyway: a
segment's current tag on a current member of that segment, for enabled segments with tag sync
on. Every other tag stays the merchant's, including ``goldpan-`` tags on customers who are not
members (left behind by older versions, or typed by hand): Goldpan never removes them; the
merchant can, with Shopify's bulk editor.

Lapsed tiers become segments by position: ``lapsed-60`` / ``lapsed-90`` (named after their
days) become ``lapsed-tier-1`` / ``lapsed-tier-2`` in the order of the shop's configured tiers,
keeping their id, members, tag and syncs (so Meta audiences and tags carry over). A row whose
days are no longer a configured tier (left behind by an earlier tier change, with 0 members) has
its tag and Meta syncs turned off, with an audit entry, as a settings change does now.

The migration reads its tables through ``sa.table`` clauses, never through the models.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0003_tag_ledger"
down_revision: str | None = "0002_redact_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PREFIX = "goldpan-"  # as shipped with 0001; copies, so this revision never changes
DEFAULT_TIER_DAYS = (60, 90)
BATCH = 5_000
DAYS_HANDLE = re.compile(r"^lapsed-(\d+)$")

shops = sa.table("shops", sa.column("id", sa.Integer), sa.column("settings", sa.JSON))
segments = sa.table(
    "segments",
    sa.column("id", sa.Integer),
    sa.column("shop_id", sa.Integer),
    sa.column("handle", sa.String),
    sa.column("tag", sa.String),
    sa.column("enabled", sa.Boolean),
    sa.column("tag_sync", sa.Boolean),
    sa.column("meta_sync", sa.Boolean),
)
audit_log = sa.table(
    "audit_log",
    sa.column("shop_id", sa.Integer),
    sa.column("at", shopify_app.db.types.UTCDateTime()),
    sa.column("target", sa.String),
    sa.column("action", sa.String),
    sa.column("subject", sa.String),
    sa.column("count", sa.Integer),
    sa.column("result", sa.String),
    sa.column("detail", sa.JSON),
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
        _tiers_by_position(conn, int(shop_id), settings)


def _prefix(settings: Any) -> str:
    value = (settings or {}).get("tag_prefix") if isinstance(settings, dict) else None
    return value if isinstance(value, str) and value.strip() else DEFAULT_PREFIX


def _tier_days(settings: Any) -> list[int]:
    """The shop's configured tier days, in order (the defaults when none are stored)."""
    tiers = settings.get("lapsed_tiers") if isinstance(settings, dict) else None
    if isinstance(tiers, list) and tiers:
        days = [t.get("days") for t in tiers if isinstance(t, dict)]
        if days and all(isinstance(d, int) for d in days):
            return [int(d) for d in days]
    return list(DEFAULT_TIER_DAYS)


def _tiers_by_position(conn: sa.Connection, shop_id: int, settings: Any) -> None:
    """``lapsed-<days>`` → ``lapsed-tier-<n>`` (see the module docstring); the tag is kept."""
    prefix = _prefix(settings)
    position = {days: n for n, days in enumerate(_tier_days(settings), 1)}
    now = dt.datetime.now(dt.UTC)
    rows = conn.execute(
        sa.select(
            segments.c.id,
            segments.c.handle,
            segments.c.tag,
            segments.c.tag_sync,
            segments.c.meta_sync,
        ).where(segments.c.shop_id == shop_id, segments.c.handle.like("lapsed-%"))
    ).all()
    for sid, handle, tag, tag_sync, meta_sync in rows:
        match = DAYS_HANDLE.match(handle)
        if match is None:
            continue
        kept = (tag or "").strip() or f"{prefix}{handle}"
        tier = position.get(int(match.group(1)))
        if tier is not None:
            conn.execute(
                segments.update()
                .where(segments.c.id == sid)
                .values(handle=f"lapsed-tier-{tier}", tag=kept)
            )
        elif tag_sync or meta_sync:
            conn.execute(
                segments.update()
                .where(segments.c.id == sid)
                .values(tag=kept, tag_sync=False, meta_sync=False)
            )
            conn.execute(
                audit_log.insert().values(
                    shop_id=shop_id,
                    at=now,
                    target="app",
                    action="segment.removed",
                    subject=handle,
                    count=0,
                    result="ok",
                    detail={
                        "reason": "lapsed tier no longer in the settings",
                        "tag_sync": bool(tag_sync),
                        "meta_sync": bool(meta_sync),
                    },
                )
            )


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
    conn = op.get_bind()
    for shop_id, settings in conn.execute(sa.select(shops.c.id, shops.c.settings)).all():
        taken = set(conn.scalars(sa.select(segments.c.handle).where(segments.c.shop_id == shop_id)))
        for n, days in enumerate(_tier_days(settings), 1):
            if f"lapsed-{days}" not in taken:
                conn.execute(
                    segments.update()
                    .where(segments.c.shop_id == shop_id, segments.c.handle == f"lapsed-tier-{n}")
                    .values(handle=f"lapsed-{days}")
                )
    op.drop_table("tag_ledger")
