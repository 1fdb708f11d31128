"""Shopify Flow triggers: which shops have a workflow using them, and the events owed or sent

Revision ID: 0010_flow_triggers
Revises: 0009_actions
Create Date: 2026-12-07 03:04:31.874406
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0010_flow_triggers"
down_revision: str | None = "0009_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flow_workflows",
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("changed_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.Column("enabled_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_flow_workflows_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", "trigger", name=op.f("pk_flow_workflows")),
    )
    op.create_table(
        "flow_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("entered_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name=op.f("fk_flow_events_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_flow_events_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_events")),
        sa.UniqueConstraint(
            "segment_id", "customer_id", "entered_at", "trigger", name="uq_flow_events_entry"
        ),
    )
    with op.batch_alter_table("flow_events", schema=None) as batch_op:
        batch_op.create_index("ix_flow_events_shop_status", ["shop_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flow_events", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_events_shop_status")

    op.drop_table("flow_events")
    op.drop_table("flow_workflows")
