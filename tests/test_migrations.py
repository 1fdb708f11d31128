"""Migrations are code under test: upgrade → downgrade → upgrade, and no drift from the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
