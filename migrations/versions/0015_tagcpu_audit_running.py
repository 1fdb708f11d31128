"""audit_log index on (shop_id, job_status): finding a shop's running tag bulk jobs

Every tag write asks whether one of the shop's tag bulk mutations is still running. With only
the (shop_id, at) index that scans every audit entry of the shop, and a tag write adds one:
about 40 ms per write at 200,000 entries, growing for ever. This index answers it directly.

Revision ID: 0015_tagcpu_audit_running
Revises: 0014_cpu_shop_yardsticks
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_tagcpu_audit_running"
down_revision: str | None = "0014_cpu_shop_yardsticks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_log_shop_job_status", "audit_log", ["shop_id", "job_status"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_shop_job_status", table_name="audit_log")
