"""Shared fixtures: real databases (SQLite file, or PostgreSQL when the test command starts one),
settings with a test secret, and a factory for installed shops.

``GOLDPAN_TEST_DATABASE_URL`` (set by ``./dev test`` for its second pass) points at a throwaway
PostgreSQL cluster; each pytest session creates its own database in it and migrates it to head,
so the schema under test is exactly what ``shopify-app db upgrade`` produces. Every test that
uses that database starts with it empty (:func:`empty_database`): migrating once per session
and emptying the tables per test costs milliseconds, a database per test would cost a migration.
Fixtures that must keep rows across a module's tests (the running demo) use a database of
their own (:func:`fresh_database`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from shopify_app import db
from shopify_app.crypto import TokenCipher, generate_key
from shopify_app.db.models import Base, Shop
from shopify_app.jobs import Context
from shopify_app.settings import Settings

pytest_plugins = (
    "tests.fixtures_auth",
    "tests.fixtures_demo",
    "tests.fixtures_meta",
    "tests.fixtures_sandbox",
    "tests.fixtures_scaleout",
    "tests.fixtures_browser",
    "tests.fixtures_sync",
    "tests.fixtures_tagging",
)
"""Fixture modules, registered once here: a test names their fixtures and imports only the
plain helpers it calls. A module that imports another comes after it (the browser's imports
the cluster's ``wait_until``), so that pytest rewrites the asserts of both."""

TEST_API_KEY = "test-api-key"
TEST_API_SECRET = "test-api-secret-0123456789abcdef0123"
# Shopify's published Admin schema, vendored once in the package (the sandbox reads it at runtime).
SCHEMA_PATH = (
    Path(__file__).parent.parent
    / "goldpan_sandbox"
    / "data"
    / "admin-2026-10.introspection.json.gz"
)


def _postgres_url() -> str | None:
    return os.environ.get("GOLDPAN_TEST_DATABASE_URL") or None


@contextmanager
def fresh_database(tmp: Path) -> Iterator[str]:
    """Create an empty database (SQLite file under ``tmp``, or a new PostgreSQL database)."""
    pg = _postgres_url()
    if pg is None:
        yield f"sqlite:///{tmp / f'goldpan-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    name = f"goldpan_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database for this test session, migrated to head."""
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        db.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.make_sessionmaker(engine)


def empty_database(engine: Engine) -> None:
    """Delete every row of the app's tables and restart their ids (the schema stays).

    DELETE rather than TRUNCATE on PostgreSQL too: on tables as small as a test's, deleting
    was about ten times faster than truncating (which gives every table and index new files).
    """
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # Fail rather than hang if a connection a previous test left open holds a lock.
            conn.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
        for table in reversed(Base.metadata.sorted_tables):  # children first: foreign keys
            conn.execute(table.delete())
        if postgres:
            conn.exec_driver_sql(
                "SELECT setval(c.oid, 1, false) FROM pg_class c"
                " WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace"
            )
        elif conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).first():
            conn.exec_driver_sql("DELETE FROM sqlite_sequence")


@pytest.fixture(autouse=True)
def _empty_database(request: pytest.FixtureRequest) -> None:
    """Each test that uses the session's database (directly or through another fixture)
    starts with it empty, before any of its own fixtures write to it."""
    if "database_url" in request.fixturenames:
        empty_database(request.getfixturevalue("engine"))


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return generate_key()


@pytest.fixture
def settings(database_url: str, encryption_key: str, tmp_path: Path) -> Settings:
    """Settings as the Shopify CLI would pass them, with a test secret."""
    return Settings.from_env(
        {
            "SHOPIFY_API_KEY": TEST_API_KEY,
            "SHOPIFY_API_SECRET": TEST_API_SECRET,
            "TOKEN_ENCRYPTION_KEY": encryption_key,
            "SHOPIFY_APP_URL": "https://goldpan.test",
            "DATABASE_URL": database_url,
            "HUEY_PATH": str(tmp_path / "huey.sqlite3"),
            "LOG_JSON": "false",
            # Each delivery handled when its task runs: the tests that call the inbox directly
            # say when. The gathering default runs in the multi-process (scale-out) tests.
            "WEBHOOK_GATHER_MS": "0",
        }
    )


@pytest.fixture
def cipher(encryption_key: str) -> TokenCipher:
    return TokenCipher((encryption_key,))


@pytest.fixture
def ctx(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session], cipher: TokenCipher
) -> Context:
    """A job context without a queue: enqueued tasks run inline."""
    return Context(settings=settings, engine=engine, sessions=sessions, cipher=cipher)


@pytest.fixture
def make_shop(sessions: sessionmaker[Session], cipher: TokenCipher):  # type: ignore[no-untyped-def]
    """Create an installed shop with an expiring token; returns the ``Shop`` row.

    Shops are named ``shop-1.myshopify.com``, ``shop-2...`` in the order a test creates them.
    """
    numbers = itertools.count(1)

    def factory(domain: str | None = None, *, token: str = "shpat_test", **fields: object) -> Shop:
        now = dt.datetime.now(dt.UTC)
        shop = Shop(
            domain=domain or f"shop-{next(numbers)}.myshopify.com",
            access_token=cipher.encrypt(token),
            access_token_expires_at=now + dt.timedelta(hours=1),
            refresh_token=cipher.encrypt("shprt_test"),
            refresh_token_expires_at=now + dt.timedelta(days=90),
            scopes="read_customers,write_customers,read_orders,read_products",
            installed_at=now,
            settings={},
        )
        for key, value in fields.items():
            setattr(shop, key, value)
        with sessions.begin() as session:
            session.add(shop)
        return shop

    return factory
