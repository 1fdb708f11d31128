"""segment entries: who entered a measured segment when, and whether they were held out

Revision ID: 0013_results
Revises: 0012_drill_order_refunded
Create Date: 2026-12-07 03:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0013_results"
down_revision: str | None = "0012_drill_order_refunded"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_entries",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entered_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_segment_entries_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "shop_id", "segment_id", "customer_id", "entered_at", name=op.f("pk_segment_entries")
        ),
    )


def downgrade() -> None:
    op.drop_table("segment_entries")
