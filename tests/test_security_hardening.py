"""Security review, Low and Info findings (issue 16): writes that wait for the database's write
lock, response headers, ``/metrics``, file modes, shop ids, and how long audit entries keep
customer ids."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, column, delete, func, insert, select, table, update
from sqlalchemy.orm import Session, sessionmaker

from shopify_app import db, jobs
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    Membership,
    MetaAudience,
    MetaConnection,
    Segment,
    Shop,
)
from shopify_app.jobs import Context
from shopify_app.meta import audiences
from shopify_app.server.app import build_context
from shopify_app.settings import Settings
from shopify_app.states import AuditTarget, JobStatus
from shopify_app.sync import audit_retention
from tests.conftest import fresh_database
from tests.fixtures_api import ApiClient, seed_shop, serving
from tests.test_api import RecordingRuntime


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    """The app on loopback; what the API queues is recorded, not run."""
    app_ctx = Context(ctx.settings, ctx.engine, ctx.sessions, ctx.cipher)
    app_ctx.runtime = RecordingRuntime()  # type: ignore[assignment]
    with serving(app_ctx) as url:
        yield url


@contextmanager
def another_writer(engine: Engine, seconds: float = 1.0) -> Iterator[None]:
    """Another process's write transaction, open while the block starts and committed after
    ``seconds``: on SQLite it holds the write lock, as a settings save or a sync does."""
    conn = db.write_engine(engine).connect()
    tx = conn.begin()
    conn.execute(update(Shop).where(Shop.id == -1).values(name="busy"))
    timer = threading.Timer(seconds, tx.commit)
    timer.start()
    try:
        yield
    finally:
        timer.join()
        conn.close()


# --- writes wait for the lock ----------------------------------------------------------------


def test_meta_disconnect_waits_for_another_writer(
    server: str, make_shop: Any, sessions: sessionmaker[Session], ctx: Context
) -> None:
    shop = make_shop()
    with sessions.begin() as session:
        session.add(
            MetaConnection(
                shop_id=shop.id, access_token=ctx.cipher.encrypt("EAAG-token"), status="connected"
            )
        )
    with another_writer(ctx.engine):
        r = ApiClient(server, shop.domain).post("/meta/disconnect")
    assert r.status_code == 200, r.text
    with sessions() as session:
        conn = session.get(MetaConnection, shop.id)
        assert conn is not None and conn.status == "disconnected" and conn.access_token is None


def test_a_meta_job_waits_for_another_writer(
    make_shop: Any, sessions: sessionmaker[Session], ctx: Context
) -> None:
    shop = make_shop()
    with sessions.begin() as session:
        segment = Segment(shop_id=shop.id, handle="vip", name="VIP")
        session.add(segment)
        session.flush()
        session.add(
            MetaAudience(shop_id=shop.id, segment_id=segment.id, kind="custom", audience_id="77")
        )
    # Meta is not connected: the job records that it could not remove the person.
    with another_writer(ctx.engine):
        done = audiences.forget_customer(ctx, shop.id, customer_id=5, email="a@example.com")
    assert done == 0
    with sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.shop_id == shop.id)).all()
    assert [(e.action, e.result) for e in entries] == [("forget_customer", "error")]


def test_a_settings_save_waits_for_another_writer(
    server: str, make_shop: Any, ctx: Context
) -> None:
    shop = make_shop()
    client = ApiClient(server, shop.domain)
    with another_writer(ctx.engine):
        r = client.put("/settings", {"settings": {"vip_share": 0.2}})
    assert r.status_code == 200, r.text
    assert client.get("/settings").json()["settings"]["vip_share"] == 0.2


# --- CSV exports -----------------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("https://evil.example")',
    " =1+1",
    "\n=1+1",
    "  \t@SUM(A1)",
    "＝1+1",
    "＋1+1",
    "－1+1",
    "＠SUM(A1)",
    "﹦1+1",
    "\tplain",
    "\rplain",
    "-5",
]


def test_members_csv_neutralises_every_formula_form(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=150, seed=3, history=False)
    with sessions.begin() as session:
        members = session.scalars(
            select(Membership)
            .where(Membership.segment_id == ids["vip"])
            .order_by(Membership.customer_id)
        ).all()
        assert len(members) >= len(FORMULAS) + 1
        names = {}
        for member, formula in zip(members, [*FORMULAS, " Anna"], strict=False):
            customer = session.get(Customer, (shop.id, member.customer_id))
            assert customer is not None
            customer.first_name = names[customer.id] = formula
    r = ApiClient(server, shop.domain).get(f"/segments/{ids['vip']}/members.csv")
    rows = {
        int(row["customer_id"]): row
        for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))
    }
    for customer_id, name in names.items():
        cell = rows[customer_id]["first_name"]
        if name == " Anna":
            assert cell == " Anna"  # a leading space alone is kept as written
        else:
            assert cell == "'" + name, (name, cell)


# --- response headers ------------------------------------------------------------------------


def test_every_response_carries_nosniff_a_referrer_policy_and_hsts_behind_https(
    server: str, make_shop: Any
) -> None:
    shop = make_shop()
    answers = [
        requests.get(f"{server}/healthz", timeout=10),
        requests.get(f"{server}/api/home", timeout=10),  # 401: no session token
        requests.get(f"{server}/metrics", timeout=10),  # 404: no METRICS_TOKEN
        ApiClient(server, shop.domain).get("/settings"),
        # The page: its bounce page inside the admin, and the redirect there from outside.
        requests.get(f"{server}/", params={"shop": shop.domain, "embedded": "1"}, timeout=10),
        requests.get(f"{server}/", params={"shop": shop.domain}, allow_redirects=False, timeout=10),
    ]
    assert [r.status_code for r in answers] == [200, 401, 404, 200, 200, 302]
    assert answers[4].headers["content-type"].startswith("text/html")
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin", r.url
        assert r.headers["strict-transport-security"] == "max-age=31536000", r.url


def test_plain_http_gets_no_hsts(ctx: Context) -> None:
    plain = Context(
        ctx.settings.with_overrides(app_url="http://127.0.0.1:8000"),
        ctx.engine,
        ctx.sessions,
        ctx.cipher,
    )
    with serving(plain) as url:
        r = requests.get(f"{url}/healthz", timeout=10)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in r.headers


# --- file modes ------------------------------------------------------------------------------


def test_sqlite_and_huey_files_are_created_owner_only(tmp_path: Path, settings: Settings) -> None:
    local = settings.with_overrides(
        database_url=f"sqlite:///{tmp_path / 'data' / 'goldpan.sqlite3'}",
        huey_path=str(tmp_path / "queue" / "huey.sqlite3"),
    )
    old_umask = os.umask(0o022)  # the usual default: new files readable by everyone
    try:
        ctx = build_context(local)
        with ctx.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
            files = [*sorted((tmp_path / "data").iterdir()), tmp_path / "queue" / "huey.sqlite3"]
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
        ctx.engine.dispose()
    finally:
        os.umask(old_umask)
    assert set(modes) == {
        "goldpan.sqlite3",
        "goldpan.sqlite3-wal",
        "goldpan.sqlite3-shm",
        "huey.sqlite3",
    }
    assert modes == dict.fromkeys(modes, 0o600)


# --- shop ids --------------------------------------------------------------------------------


def test_a_deleted_shops_id_is_never_given_to_the_next_install(
    make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    redacted = make_shop()  # the newest shop: the one SQLite used to hand out again
    with sessions.begin() as session:
        session.execute(delete(Shop).where(Shop.id == redacted.id))
    assert make_shop().id > redacted.id


def test_the_autoincrement_rebuild_keeps_every_shops_rows(tmp_path: Path) -> None:
    """0007 rebuilds ``shops`` on SQLite; the tables that cascade from it must keep their rows."""
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0002_redact_secrets")
        engine = db.make_engine(url)
        shops = table(
            "shops",
            *(column(name) for name in ("id", "domain", "token_version", "scopes", "settings")),
            *(column(name) for name in ("api_cost_spent", "created_at", "updated_at")),
        )
        segments = table(
            "segments",
            *(column(name) for name in ("shop_id", "handle", "kind", "name", "definition")),
            *(column(name) for name in ("enabled", "tag_sync", "meta_sync", "member_count")),
            *(column(name) for name in ("created_at", "updated_at")),
        )
        now = dt.datetime(2026, 12, 1, 12, 0)

        def add_shop(conn: Any, domain: str) -> int:
            row = {"domain": domain, "token_version": 0, "scopes": "", "settings": "{}"}
            row |= {"api_cost_spent": 0, "created_at": now, "updated_at": now}
            return int(conn.execute(insert(shops).values(row).returning(shops.c.id)).scalar_one())

        with engine.begin() as conn:
            ids = [add_shop(conn, f"s{n}.myshopify.com") for n in range(3)]
            conn.execute(
                insert(segments),
                [
                    {"shop_id": shop_id, "handle": "vip", "kind": "builtin", "name": "VIP"}
                    | {"definition": "{}", "enabled": True, "tag_sync": False, "meta_sync": False}
                    | {"member_count": 0, "created_at": now, "updated_at": now}
                    for shop_id in ids
                ],
            )
        db.upgrade(url)
        with engine.begin() as conn:
            assert conn.scalar(select(func.count()).select_from(segments)) == 3
            newest = add_shop(conn, "new.myshopify.com")
            conn.execute(delete(shops).where(shops.c.id == newest))
            assert add_shop(conn, "next.myshopify.com") > newest
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        db.downgrade(url, "0002_redact_secrets")
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(segments)) == 3
            assert conn.scalar(select(func.count()).select_from(shops)) == 4
        engine.dispose()


# --- how long audit entries keep customer ids ------------------------------------------------


def test_audit_entries_keep_customer_ids_for_30_days(
    make_shop: Any, sessions: sessionmaker[Session], ctx: Context
) -> None:
    shop = make_shop()
    now = dt.datetime.now(dt.UTC)
    old, recent = now - dt.timedelta(days=31), now - dt.timedelta(days=29)
    write = {
        "customers": 2,
        "added": 2,
        "removed": 0,
        "changes": [[5001, ["goldpan-vip"], []], [5002, ["goldpan-vip"], []]],
        "failed": {"5003": "gid://shopify/Customer/5003 is locked"},
    }
    running = {"operation": "gid://shopify/BulkOperation/1", "attempt": 1, "rows": [[5001, ["a"]]]}
    entries = {
        "write": AuditEntry.of(shop.id, "tags.write", target="shopify", at=old, detail=write),
        "recent": AuditEntry.of(shop.id, "tags.write", target="shopify", at=recent, detail=write),
        "running": AuditEntry.of(
            shop.id,
            "tags.bulk_add",
            target=AuditTarget.SHOPIFY,
            at=old,
            result=None,
            job_status=JobStatus.RUNNING,
            detail=running,
        ),
        "finished": AuditEntry.of(
            shop.id,
            "tags.bulk_add",
            target="shopify",
            at=old,
            detail={"operation": "gid://shopify/BulkOperation/2", "rows": 120, "failed": {}},
        ),
        "limit": AuditEntry.of(
            shop.id, "tags.limit", target="app", at=old, detail={"customers": {"5004": ["a"]}}
        ),
        "meta": AuditEntry.of(
            shop.id,
            "forget_customer",
            target="meta",
            at=old,
            subject="77",
            detail={"customer_id": 5005},
            error="Meta refused gid://shopify/Customer/5005",
        ),
        "redact": AuditEntry.of(shop.id, "customers/redact", target="app", at=old, subject="5006"),
    }
    with sessions.begin() as session:
        session.add_all(entries.values())
    ids = {name: entry.id for name, entry in entries.items()}

    assert audit_retention.purge_customer_ids(ctx) >= 5
    with sessions() as session:
        got = {name: session.get(AuditEntry, pk) for name, pk in ids.items()}
    purged = {"customer_ids_removed": True}
    assert got["write"].detail == {  # type: ignore[union-attr]
        "customers": 2, "added": 2, "removed": 0, "changes": 2, "failed": 1, **purged
    }  # fmt: skip
    assert got["recent"].detail == write  # type: ignore[union-attr]
    assert got["running"].detail == running  # type: ignore[union-attr]
    assert got["finished"].detail == {  # type: ignore[union-attr]
        "operation": "gid://shopify/BulkOperation/2", "rows": 120, "failed": 0, **purged
    }  # fmt: skip
    assert got["limit"].detail == {"customers": 1, **purged}  # type: ignore[union-attr]
    meta = got["meta"]
    assert meta is not None and meta.detail == purged and meta.subject == "77"
    assert meta.error == "Meta refused gid://shopify/Customer/-"
    redact = got["redact"]
    assert redact is not None and redact.subject is None and redact.detail == purged
    # Done once: the next day's run finds nothing more to do.
    assert audit_retention.purge_customer_ids(ctx) == 0


def test_the_purge_runs_daily() -> None:
    jobs.load_task_modules()
    spec = jobs._REGISTRY["audit.purge_customer_ids"]
    assert spec.fn is audit_retention.purge_customer_ids
    assert spec.schedule == {"hour": "4", "minute": "40"}
