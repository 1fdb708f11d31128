"""win-back discounts per lapsed tier, score metafield settings and digests

Revision ID: 0009_actions
Revises: 0008_audit_job_status
Create Date: 2026-12-07 01:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0009_actions"
down_revision: str | None = "0008_audit_job_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "win_back_discounts",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("discount_gid", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("segment_gid", sa.String(length=255), nullable=True),
        sa.Column("ends_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_win_back_discounts_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", "tier", name=op.f("pk_win_back_discounts")),
    )
    op.create_table(
        "score_settings",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("definitions_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.Column("written_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_score_settings_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_score_settings")),
    )
    op.create_table(
        "score_digests",
        sa.Column("shop_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "customer_id", name=op.f("pk_score_digests")),
    )


def downgrade() -> None:
    op.drop_table("score_digests")
    op.drop_table("score_settings")
    op.drop_table("win_back_discounts")
