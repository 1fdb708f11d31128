"""Engine and sessions. SQLite by default (WAL, one file), PostgreSQL for scale-out.

Schema changes only ever go through Alembic (``shopify-app db upgrade``); nothing here creates
tables, so the test suite exercises the same migrations production runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """Create an engine with the pragmas Goldpan relies on.

    SQLite gets WAL (readers never block the writer), a busy timeout (the web process and the
    worker share the file) and enforced foreign keys.
    """
    if database_url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(database_url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling defers BEGIN; let SQLAlchemy emit it so that
            # BEGIN IMMEDIATE can be used for writes that must not interleave.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(database_url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The session factory: no autoflush surprises, objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error.

    On SQLite it takes the write lock at ``BEGIN IMMEDIATE``: a deferred transaction that read
    first cannot wait for the lock when it upgrades to a write (WAL answers "database is locked"
    at once if another writer committed meanwhile), while an immediate one waits its turn under
    ``busy_timeout``. Plain reads use a session without this. Other databases get a plain
    transaction.
    """
    with factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        yield session


def write_engine(engine: Engine) -> Engine:
    """``engine`` whose ``begin()`` takes SQLite's write lock up front (see :func:`transaction`)."""
    return engine.execution_options(sqlite_immediate=True)


def alembic_config(database_url: str) -> Any:
    """The Alembic config pointing at this repository's migrations and ``database_url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``shopify-app db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert migrations down to ``revision``."""
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)
