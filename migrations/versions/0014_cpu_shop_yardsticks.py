"""segment yardsticks and cross-sell suggestions out of shops.settings

Every full recompute caches the segments' yardsticks (``"segment_stats"``) and the mined
cross-sell rules (``"cross_sell_suggestions"``) in ``shops.settings``: about 6 KB of JSON
parsed on every read of a shop row, several per webhook. They move into columns of their own
that the model defers, so only the code that evaluates segments or shows them reads them.

Revision ID: 0014_cpu_shop_yardsticks
Revises: 0013_results
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_cpu_shop_yardsticks"
down_revision: str | None = "0013_results"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVED = {"segment_stats": "segment_stats", "cross_sell_suggestions": "cross_sell_suggestions"}
"""settings key -> column."""

shops = sa.table(
    "shops",
    sa.column("id", sa.Integer()),
    sa.column("settings", sa.JSON()),
    *(sa.column(name, sa.JSON()) for name in MOVED.values()),
)


def upgrade() -> None:
    for column in MOVED.values():
        op.add_column("shops", sa.Column(column, sa.JSON(), nullable=True))
    conn = op.get_bind()
    for shop_id, settings in conn.execute(sa.select(shops.c.id, shops.c.settings)).all():
        if not isinstance(settings, dict) or not MOVED.keys() & settings.keys():
            continue
        values = {column: settings.pop(key, None) for key, column in MOVED.items()}
        conn.execute(
            sa.update(shops).where(shops.c.id == shop_id).values(settings=settings, **values)
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(shops.c.id, shops.c.settings, *(shops.c[c] for c in MOVED.values()))
    ).all()
    for row in rows:
        moved = {key: row._mapping[column] for key, column in MOVED.items()}
        moved = {key: value for key, value in moved.items() if value is not None}
        if moved:
            settings = {**(row.settings if isinstance(row.settings, dict) else {}), **moved}
            conn.execute(sa.update(shops).where(shops.c.id == row.id).values(settings=settings))
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild of ``shops`` would cascade deletes.
    for column in MOVED.values():
        op.drop_column("shops", column)
