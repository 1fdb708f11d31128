"""shop metrics in their own table

The retention metrics each full recompute produces move out of ``shops.settings``
(``"segment_metrics"``, about 12 KB of JSON parsed on every read of a shop row) into
``shop_metrics``, one row per shop, read only by the views that show them.

Revision ID: 0004_shop_metrics
Revises: 0003_tag_ledger
Create Date: 2026-12-14 10:00:00
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0004_shop_metrics"
down_revision: str | None = "0003_tag_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTINGS_KEY = "segment_metrics"

shops = sa.table("shops", sa.column("id", sa.Integer()), sa.column("settings", sa.JSON()))
shop_metrics = sa.table(
    "shop_metrics",
    sa.column("shop_id", sa.Integer()),
    sa.column("as_of", sa.Date()),
    sa.column("computed_at", shopify_app.db.types.UTCDateTime()),
    sa.column("data", sa.JSON()),
)


def _as_of(data: dict[str, Any], fallback: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(str(data.get("as_of")))
    except ValueError:
        return fallback


def upgrade() -> None:
    op.create_table(
        "shop_metrics",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_shop_metrics_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_shop_metrics")),
    )
    conn = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    for shop_id, settings in conn.execute(sa.select(shops.c.id, shops.c.settings)).all():
        if not isinstance(settings, dict) or SETTINGS_KEY not in settings:
            continue
        data = settings.pop(SETTINGS_KEY)
        if isinstance(data, dict):
            conn.execute(
                sa.insert(shop_metrics).values(
                    shop_id=shop_id, as_of=_as_of(data, now.date()), computed_at=now, data=data
                )
            )
        conn.execute(sa.update(shops).where(shops.c.id == shop_id).values(settings=settings))


def downgrade() -> None:
    conn = op.get_bind()
    stored = dict(conn.execute(sa.select(shop_metrics.c.shop_id, shop_metrics.c.data)).all())
    for shop_id, settings in conn.execute(sa.select(shops.c.id, shops.c.settings)).all():
        if shop_id in stored:
            kept = {**(settings if isinstance(settings, dict) else {})}
            kept[SETTINGS_KEY] = stored[shop_id]
            conn.execute(sa.update(shops).where(shops.c.id == shop_id).values(settings=kept))
    op.drop_table("shop_metrics")
