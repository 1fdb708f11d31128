"""Facebook Login: single-use logins bound to a browser, and who the token belongs to

Revision ID: 0007_meta_login
Revises: 0006_webhook_body_hash
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shopify_app.db.types

revision: str = "0007_meta_login"
down_revision: str | None = "0006_webhook_body_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meta_logins",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", shopify_app.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_meta_logins_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_meta_logins")),
    )
    with op.batch_alter_table("meta_logins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meta_logins_shop_id"), ["shop_id"], unique=False)
    with op.batch_alter_table("meta_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_name", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meta_connections", schema=None) as batch_op:
        batch_op.drop_column("user_name")
    with op.batch_alter_table("meta_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meta_logins_shop_id"))
    op.drop_table("meta_logins")
