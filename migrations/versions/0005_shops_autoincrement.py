"""shops.id never reused on SQLite (AUTOINCREMENT)

Without AUTOINCREMENT SQLite hands out the largest rowid + 1, so after ``shop/redact`` deleted
the newest shop the next install got the same id, and anything still naming the old id (a
queued job, a log line, an export) would point at another merchant. AUTOINCREMENT keeps the
highest id ever used in ``sqlite_sequence``. PostgreSQL sequences never go back: nothing to do.

SQLite cannot add AUTOINCREMENT to a table; the table is rebuilt (a batch copy, ids kept). Every
shop-scoped table references ``shops`` with ``ON DELETE CASCADE`` and dropping a table deletes
its rows first, so foreign keys are switched off around the rebuild — otherwise it would empty
every child table — and checked afterwards. Ids freed before this revision may be used once more.

Revision ID: 0005_shops_autoincrement
Revises: 0004_shop_metrics
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

revision: str = "0005_shops_autoincrement"
down_revision: str | None = "0004_shop_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextmanager
def _foreign_keys_off() -> Iterator[None]:
    """SQLite ignores ``PRAGMA foreign_keys`` inside a transaction: switch it between them."""
    context = op.get_context()
    with context.autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"rebuilding shops broke foreign keys: {broken[:5]}")
    finally:
        with context.autocommit_block():
            op.execute("PRAGMA foreign_keys=ON")


def _rebuild_shops(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with (
        _foreign_keys_off(),
        op.batch_alter_table(
            "shops", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ),
    ):
        pass


def upgrade() -> None:
    _rebuild_shops(autoincrement=True)


def downgrade() -> None:
    _rebuild_shops(autoincrement=False)
