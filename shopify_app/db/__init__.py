"""Engine and sessions. SQLite by default (WAL, one file), PostgreSQL for scale-out.

Schema changes only ever go through Alembic (``shopify-app db upgrade``); nothing here creates
tables, so the test suite exercises the same migrations production runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.resources import resource_dir

MIGRATIONS_DIR = resource_dir("migrations")


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
            options = conn.get_execution_options()
            if options.get("isolation_level") == "AUTOCOMMIT":
                return  # no transaction: what a migration needs for PRAGMA foreign_keys
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")

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
    """``engine`` whose ``begin()`` takes SQLite's write lock up front (see :func:`transaction`).

    Made once per engine and kept on it: making one copies the engine's event dispatch, and
    every webhook asks for it several times.
    """
    made: Engine | None = engine.__dict__.get("_goldpan_write_engine")
    if made is None:
        made = engine.__dict__["_goldpan_write_engine"] = engine.execution_options(
            sqlite_immediate=True
        )
    return made


def lock_customers(conn: Connection, shop_id: int, customer_ids: Iterable[int]) -> None:
    """PostgreSQL: hold a lock per customer of the shop until the transaction ends.

    Serialises work on the same customers across processes (deliveries about one customer,
    recomputes of overlapping groups). Keys are (shop, customer id folded to 32 bits), taken
    in ascending order so that two transactions sharing customers cannot deadlock; a fold
    collision only serialises two unrelated customers. Each also takes the shop's lock in
    shared mode, so :func:`lock_shop` waits for them and holds them off. SQLite write
    transactions here begin IMMEDIATE: one at a time already.
    """
    if conn.dialect.name != "postgresql":
        return
    keys = sorted(
        {
            folded - (1 << 32) if folded >= 1 << 31 else folded
            for folded in ((c ^ (c >> 32)) & 0xFFFFFFFF for c in customer_ids)
        }
    )
    if not keys:
        return
    # One round trip: the filter takes the shop's shared lock while the keys are read, before
    # the sort; the customers' locks are taken after it, in order (see the plan: Result over
    # Sort over the filtered Function Scan).
    conn.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int4[]) AS k"
        " WHERE pg_advisory_xact_lock_shared(%s) IS NOT NULL ORDER BY k",
        (shop_id, keys, _shop_key(shop_id)),
    )


def lock_shop(conn: Connection, shop_id: int) -> None:
    """PostgreSQL: exclude every :func:`lock_customers` of the shop until the transaction ends.

    A full recompute's membership write takes it: it diffs against the memberships it read
    and COPYs the new ones, which a per-customer write committing in between would collide with.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_shop_key(shop_id),))


def _shop_key(shop_id: int) -> int:
    # The one-bigint advisory key space is apart from the two-int4 one used per customer.
    return (0x6770 << 32) | shop_id


def alembic_config(database_url: str) -> Any:
    """The Alembic config for the shipped migrations and ``database_url`` (no ``alembic.ini``)."""
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


def bump_data_version(conn: Connection, shop_id: int) -> None:
    """Tell the shop's open pages that what they show changed (``GET /api/version``).

    Call it in the transaction that writes the change, so a page that sees the new version
    reads the new figures. The counter says nothing itself: pages only compare it.
    """
    conn.execute(
        text("UPDATE shops SET data_version = data_version + 1 WHERE id = :shop_id"),
        {"shop_id": shop_id},
    )
