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


def _insert_shops(
    conn: Any, shops: Any, settings: dict[int, dict[str, Any]], at: dt.datetime
) -> None:
    """Shop rows with the given ``settings`` by id, as an older revision's columns hold them."""
    conn.execute(
        insert(shops),
        [
            {
                "id": n,
                "domain": f"s{n}.myshopify.com",
                "settings": values,
                "token_version": 0,
                "scopes": "",
                "api_cost_spent": 0,
                "created_at": at,
                "updated_at": at,
            }
            for n, values in settings.items()
        ],
    )


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


LEAKED_TOKEN = "EAAG" + "Zx9" * 20
LEAKED_PROOF = "ab12" * 16
LEAKED_ERROR = (
    "Meta could not be reached: HTTPSConnectionPool(host='graph.facebook.com', port=443): Max "
    "retries exceeded with url: /v26.0/act_1/customaudiences?fields=id&access_token="
    f"{LEAKED_TOKEN}&appsecret_proof={LEAKED_PROOF} (Caused by NewConnectionError('refused'))"
)
SIGNED_URL = (
    "https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk/1.jsonl"
    "?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=assets%40shopify.iam&"
    "X-Goog-Expires=604800&X-Goog-SignedHeaders=host&X-Goog-Signature=0badc0de"
)


def test_upgrade_redacts_credentials_stored_by_0001_era_code(tmp_path: Path) -> None:
    """Error columns held raw ``requests`` text with the Meta token; audit details held URLs."""
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        released = MetaData()
        released.reflect(engine)
        with_error = [t for t in released.sorted_tables if "error" in t.c]
        assert {"meta_audiences", "meta_connections", "audit_log", "sync_runs"} <= {
            t.name for t in with_error
        }
        audit = released.tables["audit_log"]
        with engine.begin() as conn:
            for table in released.sorted_tables:
                if table.name == "alembic_version":
                    continue
                row = {
                    c.name: _dummy(c, 1)
                    for c in table.columns
                    if not c.nullable or c.primary_key or c.foreign_keys
                }
                if "error" in table.c:
                    row["error"] = LEAKED_ERROR
                conn.execute(insert(table), [row])
            leaky_detail = {"download": SIGNED_URL, "answers": [{"message": LEAKED_ERROR}]}
            conn.execute(audit.update().values(detail=leaky_detail))
            clean = {c.name: _dummy(c, 2) for c in audit.columns if not c.nullable}
            conn.execute(
                insert(audit), [{**clean, "shop_id": 1, "error": "bulk operation failed (TIMEOUT)"}]
            )
        db.upgrade(url)
        redacted = LEAKED_ERROR.replace(LEAKED_TOKEN, "[redacted]").replace(
            LEAKED_PROOF, "[redacted]"
        )
        with engine.connect() as conn:
            for table in with_error:
                stored = conn.scalar(select(table.c.error).order_by(*table.primary_key.columns))
                assert stored == redacted, table.name
            detail = conn.scalar(select(audit.c.detail).where(audit.c.id == 1))
            assert detail == {
                "download": SIGNED_URL.split("?")[0] + "?[redacted]",
                "answers": [{"message": redacted}],
            }
            untouched = conn.scalar(select(audit.c.error).where(audit.c.id == 2))
            assert untouched == "bulk operation failed (TIMEOUT)"


def test_0004_moves_the_metrics_out_of_the_shop_settings_and_back(tmp_path: Path) -> None:
    shops = table_clause(
        "shops",
        Column("id", Integer),
        Column("domain", String),
        Column("settings", JSON),
        Column("token_version", Integer),
        Column("scopes", String),
        Column("api_cost_spent", Integer),
        Column("created_at", DateTime),
        Column("updated_at", DateTime),
    )
    figures = {"as_of": "2026-11-20", "customers": 12, "clv": {"simple": 90.5}}
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        at = dt.datetime(2026, 11, 23, 12, 0)
        with engine.begin() as conn:
            _insert_shops(
                conn,
                shops,
                {1: {"vip_share": 0.2, "segment_metrics": figures}, 2: {"vip_share": 0.1}},
                at,
            )
        db.upgrade(url, "0004_shop_metrics")
        stored = table_clause(
            "shop_metrics", Column("shop_id", Integer), Column("as_of", Date), Column("data", JSON)
        )
        with engine.connect() as conn:
            assert conn.execute(select(stored.c.shop_id, stored.c.as_of, stored.c.data)).all() == [
                (1, dt.date(2026, 11, 20), figures)
            ]
            settings = dict(conn.execute(select(shops.c.id, shops.c.settings)).all())
        assert settings == {1: {"vip_share": 0.2}, 2: {"vip_share": 0.1}}
        db.downgrade(url, "0001")
        with engine.connect() as conn:
            settings = dict(conn.execute(select(shops.c.id, shops.c.settings)).all())
        assert settings == {
            1: {"vip_share": 0.2, "segment_metrics": figures},
            2: {"vip_share": 0.1},
        }
        engine.dispose()


def test_0008_moves_running_bulk_jobs_to_job_status(tmp_path: Path) -> None:
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


def test_0010_moves_the_yardsticks_out_of_the_shop_settings_and_back(tmp_path: Path) -> None:
    shops = table_clause(
        "shops",
        Column("id", Integer),
        Column("domain", String),
        Column("settings", JSON),
        Column("token_version", Integer),
        Column("scopes", String),
        Column("api_cost_spent", Integer),
        Column("created_at", DateTime),
        Column("updated_at", DateTime),
    )
    moved = table_clause(
        "shops",
        Column("id", Integer),
        Column("settings", JSON),
        Column("segment_stats", JSON),
        Column("cross_sell_suggestions", JSON),
    )
    stats = {"model_status": "fallback", "median_gap_days": 41.5}
    rules = [{"antecedent": "Napkins", "consequent": "Rings", "lift": 2.5}]
    before = {
        1: {"tag_prefix": "gp-", "segment_stats": stats, "cross_sell_suggestions": rules},
        2: {"vip_share": 0.1},
    }
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0013_results")
        engine = db.make_engine(url)
        at = dt.datetime(2026, 11, 23, 12, 0)
        with engine.begin() as conn:
            _insert_shops(conn, shops, before, at)
        db.upgrade(url, "0014_cpu_shop_yardsticks")
        with engine.connect() as conn:
            rows = conn.execute(select(moved).order_by(moved.c.id)).all()
        assert [tuple(r) for r in rows] == [
            (1, {"tag_prefix": "gp-"}, stats, rules),
            (2, {"vip_share": 0.1}, None, None),
        ]
        db.downgrade(url, "0013_results")
        with engine.connect() as conn:
            settings = dict(conn.execute(select(shops.c.id, shops.c.settings)).all())
            columns = {c["name"] for c in inspect(conn).get_columns("shops")}
        assert settings == before
        assert "segment_stats" not in columns and "cross_sell_suggestions" not in columns
        engine.dispose()
