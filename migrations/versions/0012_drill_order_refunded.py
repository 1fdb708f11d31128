"""orders.refunded: the money an order's refunds gave back, for the customer drill-down

Revision ID: 0012_drill_order_refunded
Revises: 0011_live_data_version
Create Date: 2026-12-07 03:25:00

Nullable: orders synced before it existed show no refund figure until Shopify sends them again
(an update, a reconciliation or the next full sync), rather than a made-up 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_drill_order_refunded"
down_revision: str | None = "0011_live_data_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("refunded", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("refunded")
