"""audit_log.job_status: a bulk job's state apart from its result

``result`` held ``running`` while a tag bulk mutation ran on Shopify, then its outcome. The state
moves to ``job_status`` (``running`` → ``done``; empty for writes that are not jobs), and
``result`` becomes only the outcome, empty until a job has one.

Revision ID: 0008_audit_job_status
Revises: 0007_meta_login
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_job_status"
down_revision: str | None = "0007_meta_login"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Ledger entries of tag bulk mutations that started (one refused at the start has no subject).
_BULK_JOBS = "action IN ('tags.bulk_add', 'tags.bulk_remove') AND subject IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_status", sa.String(length=16), nullable=True))
        batch_op.alter_column("result", existing_type=sa.String(length=16), nullable=True)
    op.execute(
        "UPDATE audit_log SET job_status = 'running', result = NULL WHERE result = 'running'"
    )
    finished = f"{_BULK_JOBS} AND result IS NOT NULL"
    op.execute(f"UPDATE audit_log SET job_status = 'done' WHERE {finished}")


def downgrade() -> None:
    op.execute("UPDATE audit_log SET result = 'running' WHERE job_status = 'running'")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("result", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("job_status")
