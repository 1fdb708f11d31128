"""a per-shop data version that open pages poll to follow changes

Revision ID: 0011_live_data_version
Revises: 0010_flow_triggers
Create Date: 2026-12-07 03:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_live_data_version"
down_revision: str | None = "0010_flow_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "shops", sa.Column("data_version", sa.BigInteger(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    # Not batch mode: SQLite would rebuild ``shops``, and its foreign keys cascade the
    # rebuild's delete into every table of every shop. SQLite drops a column itself (3.35+).
    op.execute("ALTER TABLE shops DROP COLUMN data_version")
