"""Writing rows: one upsert statement per table, and the checkpointed ingest of bulk results.

Rows are written through one upsert statement per table, built with the dialect's own
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL), compiled once and executed with
plain tuples. Large batches go in by the thousand rows per statement: PostgreSQL takes them
through ``COPY`` (straight into a table a first import found empty), SQLite as multi-row
``VALUES`` lists. The upserts are idempotent and keyed by ``(shop_id, numeric id)``, and never
take a row back in time (``updated_at``).

A bulk result is ingested in batches; the number of lines done is committed *in the same
transaction* as each batch, so a process killed mid-ingest resumes from the checkpoint without
duplicating or losing a row. A first import into empty tables builds their secondary indexes
once at the end instead of row by row.

Parsing (this thread) and writing (a writer thread) overlap on two cores while the database
works without the GIL. Each time the writer comes back from the database it needs the GIL
again, and the parser, never blocking, hands it over only every switch interval (5 ms): with
``executemany`` (a return per row) the writer starved, and even a few dozen returns per batch
cost a third of the ingest's time. Statements of thousands of rows, and on SQLite a 0.5 ms
switch interval while an ingest runs (:func:`_short_gil_turns`), keep the writer fed.
"""

from __future__ import annotations

import itertools
import logging
import queue
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Dialect, Table, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shopify_app import db, jobs
from shopify_app.db import transaction
from shopify_app.db.models import Customer, LineItem, Order, Product, SyncRun, Variant
from shopify_app.db.types import utcnow
from shopify_app.errors import SyncError, stored_error
from shopify_app.shopify.client import AdminClient
from shopify_app.states import SyncRunStatus
from shopify_app.sync.rows import COLUMNS, Batch, Row, parse_line
from shopify_app.sync.runs import fail_run, release_run
from shopify_app.sync.tombstones import purge_deleted_customers

log = logging.getLogger(__name__)

BATCH_LINES = 20_000  # lines per transaction: big enough to amortise commits, small RSS
DOWNLOAD_ATTEMPTS = 3  # resumed downloads per ingest


RESOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "customers": ("customers",),
    "orders": ("orders", "line_items"),
    "products": ("products", "variants"),
}
"""The tables a sync run of each resource fills."""

TABLES: dict[str, Table] = {
    "customers": Customer.__table__,  # type: ignore[dict-item]
    "orders": Order.__table__,  # type: ignore[dict-item]
    "line_items": LineItem.__table__,  # type: ignore[dict-item]
    "products": Product.__table__,  # type: ignore[dict-item]
    "variants": Variant.__table__,  # type: ignore[dict-item]
}


# --- the upsert statements --------------------------------------------------------------------

_GUARDED = ("customers", "orders", "products")  # tables with updated_at: never go back in time
_SQL_CACHE: dict[tuple[str, str], str] = {}


def upsert_sql(dialect: Dialect, table_name: str) -> str:
    """``INSERT ... ON CONFLICT (shop_id, id) DO UPDATE`` for ``table_name``, positional params.

    Rows whose stored ``updated_at`` is newer than the incoming one are left alone, so a bulk
    export taken before a webhook cannot undo it.
    """
    key = (dialect.name, table_name)
    cached = _SQL_CACHE.get(key)
    if cached is not None:
        return cached
    table = TABLES[table_name]
    columns = COLUMNS[table_name]
    module: Any
    target: Dialect
    if dialect.name == "sqlite":
        module, target = sqlite, sqlite.dialect(paramstyle="qmark")
    elif dialect.name == "postgresql":
        module, target = postgresql, postgresql.psycopg.dialect(paramstyle="format")
    else:
        raise SyncError(f"the database {dialect.name} is not supported")
    stmt = module.insert(table).values({c: bindparam(c) for c in columns})
    changes = {c: stmt.excluded[c] for c in columns if c not in ("shop_id", "id")}
    where = None
    if table_name in _GUARDED:
        where = or_(table.c.updated_at.is_(None), stmt.excluded.updated_at >= table.c.updated_at)
    stmt = stmt.on_conflict_do_update(index_elements=["shop_id", "id"], set_=changes, where=where)
    compiled = stmt.compile(dialect=target)
    order = tuple(compiled.positiontup or ())
    if order != columns:
        raise SyncError(f"upsert parameters out of order for {table_name}: {order}")
    _SQL_CACHE[key] = compiled.string
    return compiled.string


BULK_ROWS = 200  # rows; below this a plain executemany (PostgreSQL and SQLite)

SQLITE_VALUES_ROWS = 2_048
"""Rows per multi-row ``VALUES`` statement on SQLite (fewer if the variable limit says so)."""

_VALUES_SQL: dict[tuple[str, int], str] = {}


def values_upsert_sql(table_name: str, rows: int) -> str:
    """SQLite: :func:`upsert_sql` with ``rows`` rows of ``?`` in one ``VALUES`` list."""
    key = (table_name, rows)
    cached = _VALUES_SQL.get(key)
    if cached is not None:
        return cached
    plain = upsert_sql(sqlite.dialect(), table_name)
    values_at, conflict_at = plain.index(" VALUES ("), plain.index(") ON CONFLICT")
    one = "(" + ", ".join("?" * len(COLUMNS[table_name])) + ")"
    sql = f"{plain[:values_at]} VALUES {', '.join([one] * rows)}{plain[conflict_at + 1 :]}"
    _VALUES_SQL[key] = sql
    return sql


def _values_upsert(conn: Connection, table_name: str, rows: list[Row]) -> None:
    # One statement per few thousand rows: the driver binds them in C and SQLite inserts them
    # in one step, where executemany goes back to Python (and the GIL) for every row.
    raw: Any = conn.connection.driver_connection
    width = len(COLUMNS[table_name])
    per = min(SQLITE_VALUES_ROWS, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    cursor = raw.cursor()
    try:
        start = 0
        for size in _chunk_sizes(len(rows), per):
            params = list(itertools.chain.from_iterable(rows[start : start + size]))
            cursor.execute(values_upsert_sql(table_name, size), params)
            start += size
    finally:
        cursor.close()


def _chunk_sizes(total: int, per: int) -> Iterator[int]:
    """``total`` as chunks of ``per``, the rest in powers of two: the statements (and the
    driver's cache of prepared ones) come in a few sizes, not one per remainder."""
    yield from (per for _ in range(total // per))
    rest = total % per
    while rest:
        size = 1 << (rest.bit_length() - 1)
        yield size
        rest -= size


def merge_sql(table_name: str) -> str:
    """PostgreSQL: upsert a staged batch (``COPY``-ed into a temp table) into ``table_name``."""
    columns = COLUMNS[table_name]
    names = ", ".join(columns)
    changes = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("shop_id", "id"))
    guard = (
        f" WHERE {table_name}.updated_at IS NULL OR EXCLUDED.updated_at >= {table_name}.updated_at"
        if table_name in _GUARDED
        else ""
    )
    return (
        f"INSERT INTO {table_name} ({names}) SELECT {names} FROM _stage_{table_name} "
        f"ON CONFLICT (shop_id, id) DO UPDATE SET {changes}{guard}"
    )


def _copy_upsert(conn: Connection, table_name: str, rows: list[Row], fresh: set[str]) -> None:
    # COPY is several times faster than row-by-row INSERTs on PostgreSQL.
    raw: Any = conn.connection.driver_connection
    columns = ", ".join(COLUMNS[table_name])
    if table_name in fresh:
        # A first import: straight into the table, no staging and no merge. Should a row be
        # there already (a webhook got in first, an object repeated in the export), the
        # savepoint undoes the COPY and the batch, and the rest of the import, merge.
        try:
            with (
                conn.begin_nested(),
                raw.cursor() as cur,
                cur.copy(f"COPY {table_name} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        except conn.dialect.loaded_dbapi.IntegrityError:
            fresh.discard(table_name)
    # A batch may hold the same row twice (an object re-read after a retried export): keep
    # the last, since one INSERT ... ON CONFLICT cannot update a row twice.
    unique = list({(r[0], r[1]): r for r in rows}.values())
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _stage_{table_name} "
            f"(LIKE {table_name}) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY _stage_{table_name} ({columns}) FROM STDIN") as copy:
            for row in unique:
                copy.write_row(row)
        cur.execute(merge_sql(table_name))
        cur.execute(f"DELETE FROM _stage_{table_name}")


def write_batch(conn: Connection, batch: Batch, fresh: set[str] | None = None) -> None:
    """Upsert every row of ``batch`` on ``conn`` (inside the caller's transaction).

    ``fresh``: tables this ingest found empty; on PostgreSQL they are ``COPY``-ed into directly
    until a row collides (then the table leaves the set).

    Customers Shopify deleted (see :class:`Tombstone`) are removed again in the same
    transaction: a bulk export or a reconciliation page read before the deletion must not bring
    them back.
    """
    dialect = conn.dialect.name
    for name, rows in batch.rows.items():
        if not rows:
            continue
        if len(rows) < BULK_ROWS:
            conn.exec_driver_sql(upsert_sql(conn.dialect, name), rows)
        elif dialect == "postgresql":
            _copy_upsert(conn, name, rows, fresh if fresh is not None else set())
        else:
            _values_upsert(conn, name, rows)
    customers = batch.rows.get("customers")
    if customers:
        for shop_id in {r[0] for r in customers}:
            purge_deleted_customers(conn, shop_id)


# --- ingest -----------------------------------------------------------------------------------


def ingest_lines(
    ctx: jobs.Context,
    run_id: int,
    shop_id: int,
    lines: Iterable[bytes | str],
    *,
    start: int = 0,
    batch_lines: int = BATCH_LINES,
) -> int:
    """Ingest JSONL ``lines`` (the ones after checkpoint ``start``); returns the new checkpoint.

    Each batch and the checkpoint that counts it commit together: after a crash the run's
    ``checkpoint`` says exactly which lines are in the database. Parsing the next batch overlaps
    with writing the previous one (a single writer thread commits batches in order), since
    the database spends most of its time outside the GIL.
    """
    # PostgreSQL's writer mostly waits on the server, and shorter turns only cost switching
    # there (measured: 69 s against 77-85 s for the 1M-order benchmark).
    sqlite_db = ctx.engine.dialect.name == "sqlite"
    turns: AbstractContextManager[None] = _short_gil_turns() if sqlite_db else nullcontext()
    with turns:
        writer = _Writer(ctx, run_id, start)
        try:
            batch = Batch.empty()
            for line in lines:
                parse_line(shop_id, line, batch)
                batch.lines += 1
                if batch.lines >= batch_lines:
                    writer.put(batch)
                    batch = Batch.empty()
            if batch.lines:
                writer.put(batch)
        finally:
            # On any error in the reader, batches already handed over are still committed
            # (with their checkpoint), then the error propagates.
            done = writer.close()
    return done


INGEST_SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL before handing it to a waiting one, while an ingest runs."""

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def _short_gil_turns() -> Iterator[None]:
    """Lower the interpreter's switch interval for the block (process-wide; see the module
    docstring), and restore it when the last of the ingests running at once ends."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, INGEST_SWITCH_INTERVAL))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class _Writer:
    """Commits batches in order on its own thread; at most two wait in line.

    The first batch that writes a table that is still empty (a first import) drops the
    table's secondary indexes (see :class:`Tables`); :meth:`close` builds every missing
    secondary index of the tables the run's resource fills and of those written, whatever
    happened (see :func:`build_indexes`).
    """

    def __init__(self, ctx: jobs.Context, run_id: int, start: int) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.done = start
        self.tables = Tables()
        with ctx.sessions() as session:
            resource = session.scalar(select(SyncRun.resource).where(SyncRun.id == run_id))
        self.fills = set(RESOURCE_TABLES.get(resource or "", ()))
        self.error: BaseException | None = None
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._run, name=f"ingest-{run_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is not None:
                continue  # drain without writing: a later batch must not skip a failed one
            try:
                self.done = commit_batch(self.ctx, self.run_id, batch, self.done, self.tables)
            except BaseException as exc:
                self.error = exc

    def put(self, batch: Batch) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(batch)

    def close(self) -> int:
        self.queue.put(None)
        self.thread.join()
        try:
            build_indexes(self.ctx, self.fills | self.tables.written)
        except Exception:
            if self.error is None:
                raise
            log.exception("building indexes after a failed ingest failed too")
        if self.error is not None:
            raise self.error
        return self.done


SQLITE_CACHE_KIB = 65_536  # the default 2 MB page cache thrashes on million-row indexes


@dataclass
class Tables:
    """What one ingest learnt about the tables it writes.

    The first time it writes a table, in that batch's transaction, it looks whether the table
    is empty (a first import). An empty table's secondary indexes are dropped, for
    :func:`build_indexes` to build in one pass at the end (maintaining them row by row was a
    third to half of a first import's write time), and on PostgreSQL its rows are copied in
    directly (see :func:`write_batch`).
    """

    written: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)

    def first_write(self, conn: Connection, batch: Batch) -> None:
        """Look at the tables ``batch`` writes for the first time (inside its transaction)."""
        for name, rows in batch.rows.items():
            if not rows or name in self.written:
                continue
            self.written.add(name)
            table = TABLES[name]
            if conn.execute(select(1).select_from(table).limit(1)).first() is not None:
                continue
            self.fresh.add(name)
            for index in table.indexes:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")


def commit_batch(
    ctx: jobs.Context, run_id: int, batch: Batch, done: int, tables: Tables | None = None
) -> int:
    """Write ``batch`` and move the run's checkpoint by its lines, in one transaction.

    ``tables``: the ingest's knowledge of its tables (a bulk ingest passes one; reconciliation
    pages do not).
    """
    done += batch.lines
    with db.write_engine(ctx.engine).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        if tables is not None:
            tables.first_write(conn, batch)
        write_batch(conn, batch, tables.fresh if tables is not None else None)
        conn.execute(
            update(SyncRun).where(SyncRun.id == run_id).values(checkpoint=done, objects_done=done)
        )
    return done


def build_indexes(ctx: jobs.Context, table_names: Iterable[str]) -> None:
    """Create the secondary indexes of ``table_names`` that do not exist.

    Runs at the end of every ingest of the tables, not only one that dropped them: a worker
    killed mid-way through a first import leaves them dropped, and the resumed ingest (which
    finds the tables no longer empty and drops nothing) builds them.
    """
    indexes = [index for name in sorted(table_names) for index in TABLES[name].indexes]
    if not indexes:
        return
    with db.write_engine(ctx.engine).begin() as conn:
        for index in indexes:
            index.create(conn, checkfirst=True)


def ingest_run(ctx: jobs.Context, client: AdminClient, run_id: int) -> None:
    """Download the result of ``run_id`` and ingest it from its checkpoint; marks it done."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        with ctx.sessions() as session:
            run = session.get(SyncRun, run_id)
            if run is None or run.status != SyncRunStatus.INGESTING:
                return
            url, checkpoint, shop_id = run.url, run.checkpoint, run.shop_id
        if url:
            try:
                checkpoint = ingest_lines(
                    ctx,
                    run_id,
                    shop_id,
                    client.stream_lines(url, skip=checkpoint),
                    start=checkpoint,
                )
            except SyncError as exc:
                log.warning(
                    "bulk download broke off; resuming from the checkpoint",
                    extra={
                        "shop": client.shop,
                        "run": run_id,
                        "attempt": attempt,
                        "error": str(exc),
                    },
                )
                if attempt == DOWNLOAD_ATTEMPTS:
                    fail_run(ctx, run_id, stored_error(exc))
                    raise
                continue
            except Exception:
                # Anything else (a database blip, a killed connection): hand the run back so the
                # task's retry, or the poller, claims it again at once from the checkpoint
                # instead of waiting for the stall detector.
                release_run(ctx, run_id)
                raise
        with transaction(ctx.sessions) as session:
            run = session.get(SyncRun, run_id)
            assert run is not None
            run.status = SyncRunStatus.DONE
            run.finished_at = utcnow()
            run.objects_done = checkpoint
            run.object_count = max(run.object_count, checkpoint)
            run.error = None
        log.info(
            "bulk import done", extra={"shop": client.shop, "run": run_id, "lines": checkpoint}
        )
        return
