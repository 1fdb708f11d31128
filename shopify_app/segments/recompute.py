"""Background tasks that turn a shop's data into Segment, Membership and SegmentHistory rows.

- ``segments.recompute_shop(shop_id)``: load the dataset, evaluate every segment, make sure
  every segment row exists (built-ins are created on the first run), replace memberships by
  difference (new members inserted, departed ones deleted, ``since`` of the others kept),
  write today's history row per segment, cache the shop-level yardsticks
  (:class:`~shopify_app.segments.library.context.ShopStats`) in
  ``Shop.segment_stats``, store the retention metrics in ``ShopMetrics``, then
  queue ``tags.sync``, ``meta.sync_shop`` and ``actions.flow_events`` when those tasks exist.
- ``segments.recompute_customer(shop_id, customer_id)``: after a webhook, re-evaluate one
  customer against the cached yardsticks and fix only their memberships and the counts.
- ``segments.daily``: a full recompute of every installed shop (days pass: "lapsed" changes
  without any new order).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from shopify_app import db, jobs
from shopify_app.db.models import (
    Customer,
    FlowEvent,
    FlowWorkflow,
    Membership,
    MetaConnection,
    ScoreDigest,
    Segment,
    SegmentEntry,
    SegmentHistory,
    Shop,
    ShopMetrics,
    TagLedger,
    Tombstone,
)
from shopify_app.db.types import utcnow
from shopify_app.errors import InputError
from shopify_app.segments import crosssell, library, loader, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, IntArray, distinct
from shopify_app.segments.library.context import SegmentDef, ShopStats
from shopify_app.states import FlowEventStatus

log = logging.getLogger(__name__)

MEMBERSHIPS = cast(Table, Membership.__table__)
SEGMENTS = cast(Table, Segment.__table__)
HISTORY = cast(Table, SegmentHistory.__table__)
CUSTOMERS = cast(Table, Customer.__table__)
COPY_CHUNK = 50_000  # rows per piece of a COPY (bounds the text built at once)
SQLITE_CACHE_KIB = 512 * 1024  # an upper bound: SQLite allocates pages only as it reads them
# The incremental recompute's statements, built once (bound per call): it runs for every
# webhook. First the shop's segments, each with its stored memberships of the customers in hand
# (if any): one read in place of two.
_SEGMENTS_AND_MEMBERSHIPS = (
    select(
        SEGMENTS.c.id,
        SEGMENTS.c.handle,
        SEGMENTS.c.enabled,
        MEMBERSHIPS.c.customer_id,
        MEMBERSHIPS.c.reason,
    )
    .select_from(
        SEGMENTS.outerjoin(
            MEMBERSHIPS,
            and_(
                MEMBERSHIPS.c.segment_id == SEGMENTS.c.id,
                MEMBERSHIPS.c.customer_id.in_(bindparam("ids", expanding=True)),
            ),
        )
    )
    .where(SEGMENTS.c.shop_id == bindparam("shop"))
)
_DELETE_MEMBERSHIPS = (
    delete(MEMBERSHIPS)
    .where(
        tuple_(MEMBERSHIPS.c.segment_id, MEMBERSHIPS.c.customer_id).in_(
            bindparam("pairs", expanding=True)
        )
    )
    .returning(MEMBERSHIPS.c.segment_id)
)
_MOVE_COUNTS = (
    update(SEGMENTS)
    .where(SEGMENTS.c.id == bindparam("sid"))
    .values(member_count=SEGMENTS.c.member_count + bindparam("by"))
)
_NEW_REASONS = (
    update(MEMBERSHIPS)
    .where(
        MEMBERSHIPS.c.segment_id == bindparam("sid"),
        MEMBERSHIPS.c.customer_id == bindparam("cid"),
    )
    .values(reason=bindparam("new_reason"))
)
_STORED_FIGURES = [
    (CUSTOMERS.c.id, "q"),
    (func.coalesce(CUSTOMERS.c.number_of_orders, -1), "q"),
    (func.coalesce(CUSTOMERS.c.amount_spent, -1), "d"),
]
_NEW_FIGURES = (
    update(CUSTOMERS)
    .where(CUSTOMERS.c.shop_id == bindparam("shop"), CUSTOMERS.c.id == bindparam("cid"))
    .values(number_of_orders=bindparam("orders"), amount_spent=bindparam("spent"))
)
SHOPS = cast(Table, Shop.__table__)


@functools.cache
def _shop_state(dialect: str) -> Any:
    """What the incremental recompute needs of the shop, in one read built once per dialect:
    its settings and cached yardsticks as stored text (parsed only when they changed, see
    :func:`_parsed`), and who listens to its membership changes besides its tags: Meta (a
    connection row) and Flow (an enabled workflow, or events still owed). Without listeners the
    follow-up tasks would do nothing, at the cost of a queued task each."""
    shop: BindParameter[int] = bindparam("shop")
    return select(
        loader.json_text(dialect, SHOPS.c.settings),
        loader.json_text(dialect, SHOPS.c.segment_stats),
        exists().where(MetaConnection.shop_id == shop),
        or_(
            exists().where(FlowWorkflow.shop_id == shop, FlowWorkflow.enabled),
            exists().where(FlowEvent.shop_id == shop, FlowEvent.status == FlowEventStatus.PENDING),
        ),
    ).where(SHOPS.c.id == shop)


def shop_config(shop: Shop) -> ShopConfig:
    """The shop's config; a stored config that no longer validates falls back to defaults."""
    return _config(shop.id, shop.settings)


def _config(shop_id: int, settings: dict[str, Any] | None) -> ShopConfig:
    try:
        return ShopConfig.from_settings(settings)
    except InputError as exc:
        log.warning("shop %s has invalid segment settings (%s): using defaults", shop_id, exc)
        return ShopConfig()


def cached_stats(shop: Shop) -> ShopStats | None:
    """The yardsticks cached by the last full recompute, if any."""
    return _stats(shop.segment_stats)


def _stats(data: dict[str, Any] | None) -> ShopStats | None:
    if not data:
        return None
    try:
        return ShopStats.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class _Parsed:
    """A shop's config and yardsticks with the stored texts they were parsed from."""

    settings: str | None
    stats: str | None
    cfg: ShopConfig
    yardsticks: ShopStats | None
    definitions: list[SegmentDef]  # which follow from the two (none without yardsticks)


# Parsing the yardsticks' JSON for every webhook cost more than evaluating its customers. Keyed
# by the texts just read in the caller's transaction, an entry is never stale, whichever process
# or thread wrote the row; the parsed objects are shared, and nothing mutates them.
_PARSED: dict[int, _Parsed] = {}
_PARSED_LOCK = threading.Lock()
_PARSED_SHOPS = 1024  # entries kept (the oldest goes first): a worker serves many shops


def _parsed(shop_id: int, settings: str | None, stats: str | None) -> _Parsed:
    """The shop's config and yardsticks from their stored texts, parsed once per change."""
    known = _PARSED.get(shop_id)
    if known is not None and known.settings == settings and known.stats == stats:
        return known
    cfg = _config(shop_id, json.loads(settings) if settings is not None else None)
    yardsticks = _stats(json.loads(stats) if stats is not None else None)
    definitions = library.segment_definitions(cfg, yardsticks) if yardsticks is not None else []
    fresh = _Parsed(settings, stats, cfg, yardsticks, definitions)
    with _PARSED_LOCK:
        _PARSED.pop(shop_id, None)
        while len(_PARSED) >= _PARSED_SHOPS:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[shop_id] = fresh
    return fresh


def _ensure_segments(
    session: Session, shop_id: int, cfg: ShopConfig, defs: list[SegmentDef]
) -> dict[str, Segment]:
    """Segment rows for every definition (created on first sight), keyed by handle.

    A new segment's tag is the prefix plus its handle; after that the tag is the segment's own
    (the merchant may rename it, and a prefix change moves it), so it is never reset here.
    """
    existing = {
        seg.handle: seg
        for seg in session.scalars(select(Segment).where(Segment.shop_id == shop_id))
    }
    for d in defs:
        seg = existing.get(d.handle)
        if seg is None:
            seg = Segment(
                shop_id=shop_id,
                handle=d.handle,
                kind=d.kind,
                name=d.name,
                definition=d.definition,
                enabled=True,
                tag=f"{cfg.tag_prefix}{d.handle}",
            )
            session.add(seg)
            existing[d.handle] = seg
        else:
            if seg.definition != d.definition:
                seg.definition = d.definition
            if seg.kind != d.kind:
                seg.kind = d.kind
            if seg.name != d.name:  # a lapsed tier's name says its days, which may change
                seg.name = d.name
    session.flush()
    return existing


@dataclass
class MembershipDiff:
    """Changes that turn the stored memberships into the wanted ones, as parallel columns.

    Pairs are (segment id, customer id), the memberships' primary key; ``since`` of members
    kept is left alone.
    """

    add_segment: IntArray
    add_customer: IntArray
    add_reason: list[str]
    drop_segment: IntArray
    drop_customer: IntArray
    change_segment: IntArray
    change_customer: IntArray
    change_reason: list[str]


def _concat(parts: list[IntArray]) -> IntArray:
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def diff_memberships(
    current: tuple[IntArray, IntArray, list[str | None]],
    wanted: dict[int, tuple[IntArray, list[str]]],
) -> MembershipDiff:
    """Compare stored memberships with the wanted ones, segment by segment, in numpy.

    ``current`` is (segment ids, customer ids, reasons) in any order; ``wanted`` maps a segment
    id to its members' customer ids and reasons. A stored segment missing from ``wanted`` loses
    every member. Set operations on sorted id arrays replace a million dict look-ups.
    """
    cur_seg, cur_cid, cur_reason_list = current
    order = np.lexsort((cur_cid, cur_seg))
    cur_seg, cur_cid = cur_seg[order], cur_cid[order]
    cur_reason = np.asarray(cur_reason_list, dtype=object)[order] if len(order) else None
    seg_ids = distinct(np.concatenate([cur_seg, np.fromiter(wanted, dtype=np.int64)]))
    bounds = np.searchsorted(cur_seg, np.append(seg_ids, np.iinfo(np.int64).max))
    add_s: list[IntArray] = []
    add_c: list[IntArray] = []
    add_r: list[str] = []
    drop_s: list[IntArray] = []
    drop_c: list[IntArray] = []
    chg_s: list[IntArray] = []
    chg_c: list[IntArray] = []
    chg_r: list[str] = []
    for k, sid in enumerate(seg_ids.tolist()):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        have = cur_cid[lo:hi]
        want_ids, want_reasons = wanted.get(sid, (np.empty(0, dtype=np.int64), []))
        want_ids = np.asarray(want_ids, dtype=np.int64)
        w_order = np.argsort(want_ids, kind="stable")
        want_sorted = want_ids[w_order]
        reasons = np.asarray(want_reasons, dtype=object)[w_order] if len(w_order) else None
        _, hi_idx, wi_idx = np.intersect1d(
            have, want_sorted, assume_unique=True, return_indices=True
        )
        gone = np.ones(len(have), dtype=bool)
        gone[hi_idx] = False
        new = np.ones(len(want_sorted), dtype=bool)
        new[wi_idx] = False
        if gone.any():
            drop_c.append(have[gone])
            drop_s.append(np.full(int(gone.sum()), sid, dtype=np.int64))
        if new.any() and reasons is not None:
            add_c.append(want_sorted[new])
            add_s.append(np.full(int(new.sum()), sid, dtype=np.int64))
            add_r.extend(reasons[new].tolist())
        if len(wi_idx) and reasons is not None and cur_reason is not None:
            stored = cur_reason[lo:hi][hi_idx]
            fresh = reasons[wi_idx]
            differs = np.asarray(stored != fresh, dtype=bool)
            if differs.any():
                chg_c.append(want_sorted[wi_idx][differs])
                chg_s.append(np.full(int(differs.sum()), sid, dtype=np.int64))
                chg_r.extend(fresh[differs].tolist())
    return MembershipDiff(
        add_segment=_concat(add_s),
        add_customer=_concat(add_c),
        add_reason=add_r,
        drop_segment=_concat(drop_s),
        drop_customer=_concat(drop_c),
        change_segment=_concat(chg_s),
        change_customer=_concat(chg_c),
        change_reason=chg_r,
    )


def _current_memberships(
    session: Session, shop_id: int
) -> tuple[IntArray, IntArray, list[str | None]]:
    """Every stored membership of the shop as (segment ids, customer ids, reasons)."""
    t = MEMBERSHIPS
    rows = loader.fetch_rows(
        session, select(t.c.segment_id, t.c.customer_id, t.c.reason).where(t.c.shop_id == shop_id)
    )
    segment_ids, customer_ids, reasons = loader.columns(rows, 3)
    return (
        np.array(segment_ids, dtype=np.int64),
        np.array(customer_ids, dtype=np.int64),
        list(reasons),
    )


def _copy_escaped(texts: list[str]) -> list[str]:
    """``texts`` escaped for COPY's text format (backslash, tab, newline, carriage return).

    Reasons are JSON: no raw control characters, so usually at most backslashes need doubling,
    which one ``replace`` over all of them at once does.
    """
    if not texts:
        return texts
    joined = "\n".join(texts)
    if "\t" not in joined and "\r" not in joined and joined.count("\n") == len(texts) - 1:
        return joined.replace("\\", "\\\\").split("\n") if "\\" in joined else texts
    table = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
    return [t.translate(table) for t in texts]


def _copy_in(cursor: Any, sql: str, columns: list[list[Any]]) -> None:
    """COPY rows (given as parallel columns, the last one text) into ``sql``'s table.

    One text stream, built with C-speed joins: psycopg's array parameters escape every
    element of a text array with a regular expression, which at a million reasons cost more
    than the database's own work.
    """
    *plain, last = columns
    texts = _copy_escaped([str(v) for v in last])
    # One statement, written in pieces: the server inserts one piece while the next is built.
    with cursor.copy(sql) as copy:
        for lo in range(0, len(texts), COPY_CHUNK):
            parts = [col[lo : lo + COPY_CHUNK] for col in plain] + [texts[lo : lo + COPY_CHUNK]]
            lines = map("\t".join, zip(*([str(v) for v in part] for part in parts), strict=True))
            copy.write("\n".join(lines) + "\n")


def _write_diff(session: Session, shop_id: int, now: dt.datetime, diff: MembershipDiff) -> None:
    """Apply a membership diff with a handful of bulk statements on the current transaction.

    PostgreSQL gets COPY: new rows straight into the table, departed and changed ones into
    temporary tables that one DELETE and one UPDATE join against. SQLite, in-process, gets
    ``executemany`` of primary-key statements on the raw cursor, which skips SQLAlchemy's
    per-row parameter handling.
    """
    conn = session.connection()
    dialect = conn.dialect
    t = MEMBERSHIPS.name
    # ``since`` is the same for every new row: convert it once, as the column type would.
    since_type = MEMBERSHIPS.c.since.type.dialect_impl(dialect)
    processor = since_type.bind_processor(dialect)
    since: Any = processor(now) if processor is not None else now
    if dialect.name == "postgresql":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(diff.drop_customer):
                cursor.execute(
                    "CREATE TEMP TABLE goldpan_membership_drop "
                    "(segment_id integer, customer_id bigint) ON COMMIT DROP"
                )
                _copy_in(
                    cursor,
                    "COPY goldpan_membership_drop (segment_id, customer_id) FROM STDIN",
                    [diff.drop_segment.tolist(), diff.drop_customer.tolist()],
                )
                cursor.execute("ANALYZE goldpan_membership_drop")
                cursor.execute(
                    f"DELETE FROM {t} m USING goldpan_membership_drop d "
                    "WHERE m.segment_id = d.segment_id AND m.customer_id = d.customer_id"
                )
            if len(diff.change_customer):
                cursor.execute(
                    "CREATE TEMP TABLE goldpan_membership_change "
                    "(segment_id integer, customer_id bigint, reason text) ON COMMIT DROP"
                )
                _copy_in(
                    cursor,
                    "COPY goldpan_membership_change (segment_id, customer_id, reason) FROM STDIN",
                    [
                        diff.change_segment.tolist(),
                        diff.change_customer.tolist(),
                        diff.change_reason,
                    ],
                )
                cursor.execute("ANALYZE goldpan_membership_change")
                cursor.execute(
                    f"UPDATE {t} m SET reason = d.reason FROM goldpan_membership_change d "
                    "WHERE m.segment_id = d.segment_id AND m.customer_id = d.customer_id"
                )
            if len(diff.add_customer):
                n = len(diff.add_customer)
                # In customer order, the (shop, customer) index grows at its end and the primary
                # key at one end per segment, instead of a pass through the whole index per
                # segment (about 10% less COPY time for a million rows).
                order = np.lexsort((diff.add_segment, diff.add_customer))
                _copy_in(
                    cursor,
                    f"COPY {t} (segment_id, customer_id, shop_id, since, reason) FROM STDIN",
                    [
                        diff.add_segment[order].tolist(),
                        diff.add_customer[order].tolist(),
                        [shop_id] * n,
                        [since.isoformat(sep=" ")] * n,
                        [diff.add_reason[i] for i in order.tolist()],
                    ],
                )
        finally:
            cursor.close()
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if len(diff.drop_customer):
            cursor.executemany(
                f"DELETE FROM {t} WHERE segment_id = ? AND customer_id = ?",
                list(zip(diff.drop_segment.tolist(), diff.drop_customer.tolist(), strict=True)),
            )
        if len(diff.change_customer):
            cursor.executemany(
                f"UPDATE {t} SET reason = ? WHERE segment_id = ? AND customer_id = ?",
                list(
                    zip(
                        diff.change_reason,
                        diff.change_segment.tolist(),
                        diff.change_customer.tolist(),
                        strict=True,
                    )
                ),
            )
        if len(diff.add_customer):
            # Rows arrive sorted by primary key, so SQLite appends to its B-trees.
            cursor.executemany(
                f"INSERT INTO {t} (segment_id, customer_id, shop_id, since, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                list(
                    zip(
                        diff.add_segment.tolist(),
                        diff.add_customer.tolist(),
                        itertools.repeat(shop_id),
                        itertools.repeat(since),
                        diff.add_reason,
                    )
                ),
            )
    finally:
        cursor.close()


def _write_history(
    session: Session, shop_id: int, day: dt.date, rows: list[tuple[int, int, float]]
) -> None:
    """Today's (segment id, members, revenue) rows, replacing any written earlier today."""
    if not rows:
        return
    t = HISTORY
    session.execute(delete(t).where(t.c.segment_id.in_([r[0] for r in rows]), t.c.day == day))
    session.execute(
        insert(t),
        [
            {
                "segment_id": sid,
                "day": day,
                "shop_id": shop_id,
                "members": members,
                "revenue": round(revenue, 2),
            }
            for sid, members, revenue in rows
        ],
    )


def write_evaluation(
    session: Session,
    shop: Shop,
    cfg: ShopConfig,
    ev: library.Evaluation,
    as_of: dt.date,
    loaded_at: dt.datetime | None = None,
) -> dict[str, int]:
    """Persist a full evaluation; returns member counts by handle (enabled segments).

    ``loaded_at`` is when the evaluated data was read: customers deleted since then are in the
    evaluation but must not keep memberships (no foreign key refuses them), so theirs are
    taken out again before the transaction commits.
    """
    defs = library.segment_definitions(cfg, ev.stats)
    segments = _ensure_segments(session, shop.id, cfg, defs)
    now = utcnow()
    ids = ev.dataset.customer_ids
    spend = ev.features.spend
    counts: dict[str, int] = {}
    wanted: dict[int, tuple[IntArray, list[str]]] = {}
    history: list[tuple[int, int, float]] = []
    for handle, seg in segments.items():
        result = ev.segments.get(handle)
        if result is None or not seg.enabled:
            # A segment no longer defined (rule deleted, region no longer in the top) or
            # switched off keeps its row but loses its members, so their tags come off.
            members: IntArray = np.empty(0, dtype=np.int64)
            reasons: list[str] = []
            revenue = 0.0
        else:
            members = ids[result.members]
            reasons = result.reasons
            revenue = float(spend[result.members].sum())
            counts[handle] = len(members)
        wanted[seg.id] = (members, reasons)
        seg.member_count = len(members)
        seg.computed_at = now
        history.append((seg.id, len(members), revenue))
    with loader.many_rows():
        diff = diff_memberships(_current_memberships(session, shop.id), wanted)
    _write_diff(session, shop.id, now, diff)
    if loaded_at is not None:
        forget_customers(
            session.connection(),
            shop.id,
            select(Tombstone.id).where(
                Tombstone.shop_id == shop.id,
                Tombstone.resource == "customers",
                Tombstone.deleted_at >= loaded_at - dt.timedelta(seconds=5),
            ),
        )
    _write_history(session, shop.id, as_of, history)
    write_figures(session.connection(), shop.id, ev)
    db.bump_data_version(session.connection(), shop.id)
    return counts


def write_figures(
    conn: Connection,
    shop_id: int,
    ev: library.Evaluation,
    stored: loader.StoredFigures | None = None,
) -> int:
    """Store the engine's orders and net spend of the evaluated customers where they differ.

    The members list shows and sorts by these columns beside reasons the engine wrote, so
    they must be the engine's figures (orders that count, net of refunds), not Shopify's
    counters from the last sync: a customer created by an order webhook has none. ``stored``
    are the figures read with the customers (the incremental path); without them the whole
    shop's are read. Returns how many changed.
    """
    ids = ev.dataset.customer_ids
    if not len(ids):
        return 0
    c = CUSTOMERS.c
    if stored is None:
        stored_id, stored_orders, stored_spent = loader.fetch_number_columns(
            conn, _STORED_FIGURES, c.shop_id == shop_id
        )
    else:
        stored_id, stored_orders, stored_spent = stored.customer_ids, stored.orders, stored.spent
    at = np.searchsorted(ids, stored_id)
    known = at < len(ids)
    known[known] = ids[at[known]] == stored_id[known]
    at = at[known]
    orders = ev.features.n_orders[at]
    spent = np.round(ev.features.spend[at], 2)
    differs = (orders != stored_orders[known]) | (np.abs(spent - stored_spent[known]) >= 0.005)
    if not differs.any():
        return 0
    conn.execute(
        _NEW_FIGURES,
        [
            {"shop": shop_id, "cid": cid, "orders": n, "spent": v}
            for cid, n, v in zip(
                stored_id[known][differs].tolist(),
                orders[differs].tolist(),
                spent[differs].tolist(),
                strict=True,
            )
        ],
    )
    return int(differs.sum())


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: PostgreSQL's JSON refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _follow_up(ctx: jobs.Context, name: str, **kwargs: Any) -> None:
    """Queue the follow-up task ``name`` (tag and Meta sync of what changed)."""
    ctx.enqueue(name, **kwargs)


@contextmanager
def _sqlite_cache(session: Session) -> Iterator[None]:
    """On SQLite, a page cache large enough for a whole shop while a full recompute runs.

    The default 2 MB cache makes the million-row reads and the inserts into the memberships'
    secondary index (customer order, not insertion order) go back to the file page by page.
    The setting is per connection, so it is restored before the connection returns to the pool.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = {-SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(previous or -2000)}")


@dataclass
class PhaseTimes:
    """Wall-clock and CPU seconds spent per phase of a full recompute (for logs, benchmarks).

    CPU is the process's: phases that overlap (metrics runs beside the write) both count it.
    """

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def mark() -> tuple[float, float]:
        """The clocks now, to pass to :meth:`add` later."""
        return time.perf_counter(), time.process_time()

    def add(self, name: str, since: tuple[float, float]) -> None:
        """Count the time from ``since`` (a :meth:`mark`) to now as ``name``."""
        wall, cpu = self.mark()
        self.wall[name] = self.wall.get(name, 0.0) + wall - since[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - since[1]

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``name`` (accumulating if the name repeats)."""
        since = self.mark()
        try:
            yield
        finally:
            self.add(name, since)

    def summary(self) -> str:
        """``load 1.20 s (cpu 1.10 s), ...`` in phase order."""
        return ", ".join(
            f"{name} {wall:.2f} s (cpu {self.cpu[name]:.2f} s)" for name, wall in self.wall.items()
        )


def recompute_shop_now(
    ctx: jobs.Context,
    shop_id: int,
    as_of: dt.date | None = None,
    times: PhaseTimes | None = None,
) -> dict[str, int]:
    """Full recompute of one shop; returns member counts by handle.

    Segments and memberships are written in one transaction. The cached yardsticks and
    suggestions go into their ``Shop`` columns afterwards in a short write of their own
    (row-locked on PostgreSQL); the metrics replace the shop's
    ``ShopMetrics`` row in the same transaction. ``times``, if given, receives the
    duration of each phase (load, evaluate, write, metrics, settings).
    """
    as_of = as_of or library.today()
    times = times if times is not None else PhaseTimes()
    started = utcnow()
    # Read and evaluate on a snapshot, then write in a transaction of its own that takes the
    # write lock up front: on SQLite a long read transaction cannot upgrade to a write once a
    # webhook has committed meanwhile, and holding the write lock through the whole read would
    # stall webhook intake. A customer changed in between is re-evaluated by the incremental
    # recompute its webhook queued.
    with ctx.sessions() as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            log.info("recompute: shop %s is gone", shop_id)
            return {}
        cfg = shop_config(shop)
        with _sqlite_cache(session), times.phase("load"):
            ds = loader.load(session, shop_id)
    with times.phase("evaluate"):
        ev = library.evaluate(ds, cfg, as_of)

    figures: dict[str, Any] | None = None

    def page_extras() -> dict[str, Any]:
        nonlocal figures
        extra: dict[str, Any] = {"segment_stats": ev.stats.to_dict()}
        with times.phase("metrics"):
            try:
                figures = _json_safe(metrics.compute(ev.dataset, as_of, evaluation=ev))
                extra["cross_sell_suggestions"] = [s.to_dict() for s in crosssell.mine(ev.dataset)]
            except Exception:  # the page's extras must never cost the segments themselves
                log.exception("metrics for shop %s failed", shop_id)
        return extra

    # The page's metrics need only the evaluation: computed on a second thread while the write
    # mostly waits on the database (its server, or SQLite's C code, which releases the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics") as pool:
        extras = pool.submit(page_extras)
        with ctx.sessions() as session:
            with session.begin():
                conn = session.connection(execution_options={"sqlite_immediate": True})
                # No per-customer recompute may commit between the diff and the COPY.
                db.lock_shop(conn, shop_id)
                shop = session.get(Shop, shop_id)
                if shop is None:
                    return {}
                with _sqlite_cache(session), times.phase("write"):
                    counts = write_evaluation(session, shop, cfg, ev, as_of, loaded_at=started)
                # The commit is part of the write (on SQLite it is when the WAL is synced).
                commit_started = times.mark()
            times.add("write", commit_started)
        extra = extras.result()
    with times.phase("settings"), ctx.sessions() as session, session.begin():
        fresh = session.get(Shop, shop_id, with_for_update=True)
        if fresh is not None:
            # Columns of their own, not Shop.settings: see Shop.segment_stats.
            for column, value in _json_safe(extra).items():
                setattr(fresh, column, value)
            if figures is not None:
                session.merge(
                    ShopMetrics(shop_id=shop_id, as_of=as_of, computed_at=utcnow(), data=figures)
                )
    log.info(
        "recomputed %d segments for shop %s (%d customers): %s",
        len(counts),
        shop_id,
        ds.n_customers,
        times.summary(),
    )
    return counts


@jobs.task("segments.recompute_shop")
def recompute_shop(ctx: jobs.Context, shop_id: int) -> dict[str, int]:
    """Task: full recompute, then tag and Meta sync of the whole shop.

    Two full recomputes of one shop never overlap: ``jobs.SHOP_LOCKS`` holds a per-shop lease
    around this task on every worker.
    """
    counts = recompute_shop_now(ctx, shop_id)
    if counts:
        _follow_up(ctx, "actions.record_entries", shop_id=shop_id)
        _follow_up(ctx, "tags.sync", shop_id=shop_id, customer_ids=None)
        _follow_up(ctx, "meta.sync_shop", shop_id=shop_id)
        _follow_up(ctx, "actions.flow_events", shop_id=shop_id)
    return counts


def recompute_customer_now(
    ctx: jobs.Context, shop_id: int, customer_id: int, as_of: dt.date | None = None
) -> bool | None:
    """Re-evaluate one customer; ``True`` if a membership changed, ``None`` if no stats yet."""
    changed = recompute_customers_now(ctx, shop_id, [customer_id], as_of)
    return None if changed is None else bool(changed)


@functools.cache
def _insert_new_members(dialect: str) -> Any:
    """INSERT of memberships that skips rows already there and returns the inserted ones'
    segment ids (PostgreSQL and SQLite spell ON CONFLICT alike); built once per dialect."""
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    t = MEMBERSHIPS
    return (
        make(t)
        .on_conflict_do_nothing(index_elements=[t.c.segment_id, t.c.customer_id])
        .returning(t.c.segment_id)
    )


@dataclass(frozen=True)
class _Listeners:
    """Whether ``meta.sync_customer`` and ``actions.flow_events`` have anything to do for a
    shop: a Meta connection row; an enabled Flow workflow or events still owed."""

    meta: bool
    flow: bool


def recompute_customers_now(
    ctx: jobs.Context, shop_id: int, customer_ids: Iterable[int], as_of: dt.date | None = None
) -> set[int] | None:
    """Re-evaluate some customers of one shop against the cached yardsticks.

    Returns the ids of those whose memberships changed (a reason alone changing does not
    count: it moves no tag), or ``None`` when the shop has no yardsticks yet (a full recompute
    is due). One dataset load, one vectorised evaluation and one transaction for all of them:
    a group of webhooks of a shop costs about what one costs.
    """
    return _recompute_customers(ctx, shop_id, customer_ids, as_of)[0]


def _recompute_customers(
    ctx: jobs.Context, shop_id: int, customer_ids: Iterable[int], as_of: dt.date | None
) -> tuple[set[int] | None, _Listeners]:
    """:func:`recompute_customers_now`, and who listens to the shop's membership changes (read
    in the same statement as the shop's settings)."""
    as_of = as_of or library.today()
    ids = sorted({int(c) for c in customer_ids})
    if not ids:
        return set(), _Listeners(meta=False, flow=False)
    # BEGIN IMMEDIATE on SQLite: this transaction reads, then writes; a deferred one would get
    # "database is locked" at its first write whenever another process committed meanwhile.
    # Core throughout: no ORM object is read or written here.
    with db.write_engine(ctx.engine).begin() as conn:
        db.lock_customers(conn, shop_id, ids)
        state = conn.execute(_shop_state(conn.dialect.name), {"shop": shop_id}).first()
        if state is None:
            return set(), _Listeners(meta=False, flow=False)
        parsed = _parsed(shop_id, state[0], state[1])
        listeners = _Listeners(meta=bool(state[2]), flow=bool(state[3]))
        stats, cfg = parsed.yardsticks, parsed.cfg
        if stats is None:
            return None, listeners
        ds, stored = loader.load_customers(conn, shop_id, ids)
        segs: dict[str, tuple[int, bool]] = {}
        current: dict[tuple[int, int], str | None] = {}
        for sid, handle, enabled, cid, reason in loader.fetch_rows(
            conn, _SEGMENTS_AND_MEMBERSHIPS, {"shop": shop_id, "ids": ids}
        ):
            segs[handle] = (sid, bool(enabled))
            if cid is not None:
                current[(sid, cid)] = reason
        wanted: dict[tuple[int, int], str] = {}
        figures_changed = 0
        if ds.n_customers:
            ev = library.evaluate(ds, cfg, as_of, stats=stats, definitions=parsed.definitions)
            figures_changed = write_figures(conn, shop_id, ev, stored)
            for handle, result in ev.segments.items():
                seg = segs.get(handle)
                if seg is None or not seg[1] or not len(result.members):
                    continue
                members = ds.customer_ids[result.members].tolist()
                for cid, reason in zip(members, result.reasons, strict=True):
                    wanted[(seg[0], int(cid))] = reason
        added = [pair for pair in wanted if pair not in current]
        removed = [pair for pair in current if pair not in wanted]
        changed = [pair for pair in wanted if pair in current and current[pair] != wanted[pair]]
        delta: dict[int, int] = {}
        if removed:
            # RETURNING: the counts move by what was really deleted.
            for (sid,) in conn.execute(_DELETE_MEMBERSHIPS, {"pairs": removed}):
                delta[int(sid)] = delta.get(int(sid), 0) - 1
        if added:
            now = utcnow()
            # One cached statement run for many rows (a multi-row VALUES would be compiled
            # afresh for every group size). A row a full recompute inserted meanwhile is kept,
            # and not counted twice.
            for (sid,) in conn.execute(
                _insert_new_members(conn.dialect.name),
                [
                    {
                        "segment_id": sid,
                        "customer_id": cid,
                        "shop_id": shop_id,
                        "since": now,
                        "reason": wanted[(sid, cid)],
                    }
                    for sid, cid in sorted(added)
                ],
            ):
                delta[int(sid)] = delta.get(int(sid), 0) + 1
        moved = [{"sid": sid, "by": n} for sid, n in sorted(delta.items()) if n]
        if moved:
            conn.execute(_MOVE_COUNTS, moved)
        if changed:
            conn.execute(
                _NEW_REASONS,
                [
                    {"sid": sid, "cid": cid, "new_reason": wanted[(sid, cid)]}
                    for sid, cid in changed
                ],
            )
        if figures_changed or added or removed or changed:
            db.bump_data_version(conn, shop_id)
    return {cid for _, cid in added} | {cid for _, cid in removed}, listeners


def forget_customers(conn: Connection, shop_id: int, customer_ids: Any) -> None:
    """Delete the memberships, tag-ledger, score-digest and Flow event rows of customers being
    deleted, and count them out of their segments.

    Call it in the transaction that deletes the customers: memberships carry no foreign key to
    customers (PostgreSQL would check it row by row on every membership a full recompute
    inserts: most of that write's time), and neither does the ledger, so whoever deletes a
    customer deletes their rows. ``customer_ids`` is a list of ids or a select of them.
    """
    t = MEMBERSHIPS
    s = SEGMENTS
    if isinstance(customer_ids, list | tuple) and not customer_ids:
        return
    theirs = (t.c.shop_id == shop_id, t.c.customer_id.in_(customer_ids))
    leaving = (
        select(func.count())
        .select_from(t)
        .where(t.c.segment_id == s.c.id, *theirs)
        .scalar_subquery()
    )
    conn.execute(
        update(s)
        .where(s.c.shop_id == shop_id, s.c.id.in_(select(t.c.segment_id).where(*theirs)))
        .values(
            member_count=func.max(s.c.member_count - leaving, 0)
            if conn.dialect.name == "sqlite"
            else func.greatest(s.c.member_count - leaving, 0)
        )
    )
    conn.execute(delete(t).where(*theirs))
    for kept in (TagLedger, ScoreDigest, FlowEvent, SegmentEntry):  # per-customer records
        conn.execute(
            delete(kept).where(kept.shop_id == shop_id, kept.customer_id.in_(customer_ids))
        )


@jobs.task("segments.recompute_customer")
def recompute_customer(ctx: jobs.Context, shop_id: int, customer_id: int) -> bool:
    """Task: incremental recompute of one customer (a full one if the shop has none yet)."""
    return bool(recompute_customers(ctx, shop_id, [int(customer_id)]))


@jobs.task("segments.recompute_customers")
def recompute_customers(ctx: jobs.Context, shop_id: int, customer_ids: list[int]) -> list[int]:
    """Task: incremental recompute of some customers of a shop (see
    :func:`recompute_customers_now`), then one tag write for those whose memberships changed;
    returns them. A shop without yardsticks yet gets a full recompute instead.
    """
    ids = sorted({int(c) for c in customer_ids})
    changed, listeners = _recompute_customers(ctx, shop_id, ids, None)
    if changed is None:
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)
        return []
    if changed:
        _follow_up(ctx, "tags.sync", shop_id=shop_id, customer_ids=sorted(changed))
        if listeners.flow:
            _follow_up(ctx, "actions.flow_events", shop_id=shop_id)
    # Even with no membership change a customer may have unsubscribed or changed their email:
    # Meta must hear of it now, not at the next scheduled refresh. A shop that never connected
    # Meta has nothing to hear it: one look here, not a no-op task per customer.
    if listeners.meta:
        for cid in ids:
            _follow_up(ctx, "meta.sync_customer", shop_id=shop_id, customer_id=cid)
    return sorted(changed)


@jobs.periodic("segments.daily", hour="3", minute="20")
def daily(ctx: jobs.Context) -> int:
    """Periodic: queue a full recompute of every installed shop; returns how many."""
    with ctx.sessions() as session:
        shop_ids = list(session.scalars(select(Shop.id).where(Shop.is_installed)))
    for shop_id in shop_ids:
        ctx.enqueue("segments.recompute_shop", shop_id=int(shop_id))
    return len(shop_ids)


def single_customer_dataset(ds: Dataset, index: int) -> Dataset:
    """The slice of ``ds`` holding one customer (what an incremental load returns)."""
    start, end = int(ds.order_start[index]), int(ds.order_start[index + 1])
    lines = (ds.line_order >= start) & (ds.line_order < end)
    return Dataset(
        customer_ids=ds.customer_ids[index : index + 1],
        info={k: v[index : index + 1] for k, v in ds.info.items()},
        order_customer=np.zeros(end - start, dtype=np.int64),
        order_day=ds.order_day[start:end],
        order_total=ds.order_total[start:end],
        order_ids=ds.order_ids[start:end],
        order_discount=ds.order_discount[start:end],
        order_company=ds.order_company[start:end],
        line_order=ds.line_order[lines] - start,
        line_product=ds.line_product[lines],
        line_quantity=ds.line_quantity[lines],
        product_titles=ds.product_titles,
    )
