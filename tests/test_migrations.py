"""Migrations are code under test: upgrade → downgrade → upgrade, and no drift from the models."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy import table as table_clause

from shopify_app import db
from shopify_app.db.models import Base
from tests.conftest import fresh_database


def test_upgrade_downgrade_upgrade_and_no_drift(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        _round_trip(url)


def _round_trip(database_url: str) -> None:
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    db.downgrade(database_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(database_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()


# 0001 as released on 2026-12-07. Released revisions are never edited: a database created from
# an earlier 0001 would report "at head" with another schema. Change the schema in a new revision.
RELEASED = {
    "0001_initial_schema.py": "fa2334fddf7bd35b6faf28901f4382260fa6dc65c8095abd5286360570c12fcc",
}
VERSIONS = Path(db.MIGRATIONS_DIR) / "versions"


def test_released_revisions_are_frozen() -> None:
    for name, digest in RELEASED.items():
        text = (VERSIONS / name).read_bytes()
        assert hashlib.sha256(text).hexdigest() == digest, f"{name} was edited after release"


def _dummy(column: Column[Any], n: int) -> Any:
    """A value of the column's type for row ``n`` (unique where keys need it)."""
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, Numeric):
        return 12.5
    if isinstance(kind, DateTime):
        return dt.datetime(2026, 11, 23, 12, 0)
    if isinstance(kind, Date):
        return dt.date(2026, 11, 23)
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, String) and kind.length:
        return f"v{n}"[: kind.length]
    return f"value {n}"


def test_a_populated_0001_database_upgrades_to_head(tmp_path: Path) -> None:
    """Every table of the released schema holds rows; upgrading keeps them and ends at head."""
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        released = MetaData()
        released.reflect(engine)
        counts: dict[str, int] = {}
        with engine.begin() as conn:
            for table in released.sorted_tables:
                if table.name == "alembic_version":
                    continue
                rows = [
                    {
                        c.name: _dummy(c, n)
                        for c in table.columns
                        if not c.nullable or c.primary_key or c.foreign_keys
                    }
                    for n in (1, 2)
                ]
                conn.execute(insert(table), rows)
                counts[table.name] = len(rows)
        db.upgrade(url)
        with engine.connect() as conn:
            for name, expected in counts.items():
                assert conn.scalar(select(func.count()).select_from(table_clause(name))) == expected
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        engine.dispose()


def test_0005_moves_running_bulk_jobs_to_job_status(tmp_path: Path) -> None:
    """A bulk job stored as ``result = 'running'`` (0001) gets its own ``job_status``."""
    entries = [  # id, action, subject, result as 0001 stored them
        (1, "tags.bulk_add", "gid://shopify/BulkOperation/1", "running"),
        (2, "tags.bulk_remove", "gid://shopify/BulkOperation/2", "partial"),
        (3, "tags.bulk_add", None, "error"),  # refused before it started: not a job
        (4, "tags.write", "mutation", "ok"),
    ]
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        released = MetaData()
        released.reflect(engine)
        shops, audit_log = released.tables["shops"], released.tables["audit_log"]
        with engine.begin() as conn:
            conn.execute(insert(shops), {c.name: _dummy(c, 1) for c in shops.columns})
            conn.execute(
                insert(audit_log),
                [
                    {c.name: _dummy(c, pk) for c in audit_log.columns}
                    | {"shop_id": 1, "action": action, "subject": subject, "result": result}
                    for pk, action, subject, result in entries
                ],
            )
        db.upgrade(url)
        current = MetaData()
        current.reflect(engine)
        audit_log = current.tables["audit_log"]
        rows = select(audit_log.c.id, audit_log.c.result, audit_log.c.job_status)
        with engine.connect() as conn:
            assert conn.execute(rows.order_by(audit_log.c.id)).all() == [
                (1, None, "running"),
                (2, "partial", "done"),
                (3, "error", None),
                (4, "ok", None),
            ]
        db.downgrade(url, "0001")
        with engine.connect() as conn:
            results = conn.execute(text("SELECT id, result FROM audit_log ORDER BY id")).all()
        assert results == [(pk, result) for pk, _, _, result in entries]
        engine.dispose()
