"""redact credentials from stored error text and audit details

Before this revision raw exception text was stored: ``requests``' errors quote the URL, and the
Graph client put the Meta user token and ``appsecret_proof`` in query strings, so error columns
held ``access_token=EAAG…``; a failed bulk download stored its signed URL. New errors are stored
as :func:`shopify_app.errors.stored_error` text; this revision runs the rows already stored
through the same :func:`shopify_app.logs.redact` that logging and that function use.

Revision ID: 0002_redact_secrets
Revises: 0001
Create Date: 2026-12-07 00:22:55
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from shopify_app.logs import redact

revision: str = "0002_redact_secrets"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 1000

# Tables with an ``error`` text column, and their primary key, as 0001 created them. Spelled out
# here rather than imported from the models: this revision must keep meaning what it means now.
ERROR_TABLES = {
    "meta_audiences": "id",
    "meta_connections": "shop_id",
    "audit_log": "id",
    "sync_runs": "id",
    "webhook_events": "id",
}


def _redact_json(value: Any) -> Any:
    """``value`` with every string in it redacted (audit details quote upstream answers)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    return value


def _rewrite(
    conn: sa.Connection,
    name: str,
    key: str,
    column: str,
    kind: sa.types.TypeEngine[Any],
    clean: Callable[[Any], Any],
) -> None:
    """Page through ``name`` by primary key; update the rows whose ``column`` ``clean`` changes."""
    table = sa.table(name, sa.column(key, sa.Integer), sa.column(column, kind))
    pk, col = table.c[key], table.c[column]
    last: int | None = None
    while True:
        stmt = sa.select(pk, col).where(col.is_not(None)).order_by(pk).limit(PAGE)
        if last is not None:
            stmt = stmt.where(pk > last)
        rows = conn.execute(stmt).all()
        if not rows:
            return
        for ident, value in rows:
            cleaned = clean(value)
            if cleaned != value:
                conn.execute(sa.update(table).where(pk == ident).values({column: cleaned}))
        last = rows[-1][0]


def upgrade() -> None:
    conn = op.get_bind()
    for name, key in ERROR_TABLES.items():
        _rewrite(conn, name, key, "error", sa.Text(), redact)
    _rewrite(conn, "audit_log", "id", "detail", sa.JSON(), _redact_json)


def downgrade() -> None:
    # Nothing to undo: the schema did not change, and the values removed were credentials that
    # should never have been stored — no revision may put them back.
    pass
