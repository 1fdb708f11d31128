"""inbox_drains: one queued drain per shop's group of webhook deliveries, not a task per delivery

Revision ID: 0016_inbox_drains
Revises: 0015_tagcpu_audit_running
Create Date: 2026-12-07 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0016_inbox_drains"
down_revision: str | None = "0015_tagcpu_audit_running"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox_drains",
        sa.Column("shop_domain", sa.String(length=255), nullable=False),
        sa.Column("due_at", shopify_app.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("shop_domain", name=op.f("pk_inbox_drains")),
    )


def downgrade() -> None:
    op.drop_table("inbox_drains")
