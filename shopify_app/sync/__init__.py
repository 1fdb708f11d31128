"""Keeping the app's copy of a store exact: bulk import, webhook upserts, reconciliation.

**Initial sync.** ``sync.initial`` starts one bulk query per resource (customers, orders with
their line items, products with their variants) — they run concurrently on Shopify — and records
a :class:`SyncRun` for each. Completion arrives by the ``bulk_operations/finish`` webhook
(:func:`on_bulk_finish`) or, as a fallback, ``sync.poll``. The result JSONL is streamed and
ingested in batches of idempotent upserts keyed by ``(shop_id, numeric id)``; the number of
lines done is committed *in the same transaction* as each batch, so a process killed mid-ingest
resumes from the checkpoint without duplicating or losing a row. Line items and variants carry
their parent's id from ``__parentId`` and need no parent row, so the JSONL's lack of ordering
does not matter. ``FAILED``/``EXPIRED``/``CANCELED`` operations and broken downloads are retried
a bounded number of times.

**Incremental.** :func:`apply_webhook` upserts ``orders/*`` and ``customers/*`` deliveries
(REST-shaped payloads) unless what is stored is newer, and asks the segments engine to
recompute the customer concerned. ``customers/delete`` leaves a :class:`Tombstone`: Shopify never
reuses an id, so whatever arrives about a deleted customer afterwards — a late webhook, a bulk
export or reconciliation page read before the deletion — is stale and kept out.

**Reconciliation.** ``sync.reconcile`` pages through what changed since the watermark (cost-
aware through :class:`AdminClient`) to repair missed webhooks; ``sync.reconcile_all`` runs it for
every installed shop. Pages are sized under Shopify's 1,000-point query limit, so an order's
line items (a product's variants) may not all fit on one: the rest are paged from that order
(product) before the page commits.

Rows are written through one upsert statement per table, built with the dialect's own
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL), compiled once and executed with
plain tuples: the bulk path moves millions of rows and ORM objects would dominate its cost.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shopify_app import db, jobs
from shopify_app.db import transaction
from shopify_app.db.models import (
    Customer,
    LineItem,
    Order,
    Product,
    Shop,
    SyncRun,
    Tombstone,
    Variant,
    utcnow,
)
from shopify_app.errors import ShopifyError, SyncError, stored_error
from shopify_app.segments import recompute
from shopify_app.shopify.client import AdminClient, gid_number

log = logging.getLogger(__name__)

RESOURCES = ("customers", "orders", "products")
BATCH_LINES = 20_000  # lines per transaction: big enough to amortise commits, small RSS
MAX_ATTEMPTS = 3  # bulk operations started per resource before giving up
DOWNLOAD_ATTEMPTS = 3  # resumed downloads per ingest
POLL_INTERVAL = 5.0
STALL_SECONDS = 120.0  # an ingest whose checkpoint has not moved this long lost its worker
ACTIVE = ("running", "ingesting")
# Reconciliation page sizes. Shopify refuses a query whose requested cost (2 per connection plus
# its page size times the cost of a node, 1 per object) exceeds 1,000 points, so each page is
# sized to stay below: customers 702, orders 822 (10 orders with room for 15 line items each,
# more than most orders have), products 929 (9 products with 100 variants each); the rest of
# an order's line items 753 a page, of a product's variants 253.
PAGE_SIZES = {"customers": 100, "orders": 10, "products": 9}
ORDER_LINE_ITEMS = 15  # line items per order on an orders page
LINE_ITEMS_PAGE = 150  # line items per page of one order's remainder (order_line_items)
VARIANTS_PAGE = 250  # variants per page of one product's remainder (product_variants)
RECOMPUTE_ONE_BY_ONE = 100  # above this many changed customers, recompute the whole shop
# Reconciliation re-reads a little before its watermark: Shopify's updated_at and our clock
# are not the same clock.
WATERMARK_OVERLAP = dt.timedelta(minutes=5)

NOTICE_READ_ALL_ORDERS = "read_all_orders_missing"


# --- values ---------------------------------------------------------------------------------


def utc_text(value: str | None) -> str | None:
    """An ISO-8601 timestamp as the naive-UTC text the DateTime columns hold.

    Admin GraphQL always answers ``2026-01-02T03:04:05Z``; that common case is sliced rather
    than parsed (the bulk path does it millions of times). Webhook payloads carry the shop's
    offset (``-05:00``) and are converted.
    """
    if not value:
        return None
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":
        return f"{value[:10]} {value[11:19]}.000000"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _aware(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _money(value: Any) -> float:
    if isinstance(value, dict):
        value = value.get("amount")
    return float(value) if value not in (None, "") else 0.0


def _shop_money(value: dict[str, Any] | None) -> dict[str, Any]:
    return (value or {}).get("shopMoney") or {}


def _upper(value: str | None) -> str | None:
    return value.upper() if value else None


# --- row shapes: one tuple per row, columns in the order of COLUMNS --------------------------

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "shop_id", "id", "first_name", "last_name", "email", "email_marketing_state", "phone",
        "phone_marketing_state", "country_code", "province_code", "city", "zip", "company",
        "tags", "number_of_orders", "amount_spent", "rfm_group", "predicted_spend_tier",
        "created_at", "updated_at",
    ),
    "orders": (
        "shop_id", "id", "customer_id", "name", "email", "created_at", "processed_at",
        "updated_at", "cancelled_at", "test", "total", "currency", "discount_codes",
        "billing_company",
    ),
    "line_items": (
        "shop_id", "id", "order_id", "product_id", "variant_id", "sku", "title", "quantity",
        "amount",
    ),
    "products": (
        "shop_id", "id", "title", "handle", "product_type", "vendor", "status", "updated_at",
    ),
    "variants": ("shop_id", "id", "product_id", "title", "sku", "price"),
}  # fmt: skip

TABLES: dict[str, Table] = {
    "customers": Customer.__table__,  # type: ignore[dict-item]
    "orders": Order.__table__,  # type: ignore[dict-item]
    "line_items": LineItem.__table__,  # type: ignore[dict-item]
    "products": Product.__table__,  # type: ignore[dict-item]
    "variants": Variant.__table__,  # type: ignore[dict-item]
}

Row = tuple[Any, ...]


def customer_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Customer`` node as a ``customers`` row."""
    email = node.get("defaultEmailAddress") or {}
    phone = node.get("defaultPhoneNumber") or {}
    address = node.get("defaultAddress") or {}
    stats = node.get("statistics") or {}
    return (
        shop_id,
        gid_number(node["id"]),
        node.get("firstName"),
        node.get("lastName"),
        email.get("emailAddress"),
        email.get("marketingState"),
        phone.get("phoneNumber"),
        (phone.get("smsMarketingConsent") or {}).get("state"),
        address.get("countryCodeV2"),
        address.get("provinceCode"),
        address.get("city"),
        address.get("zip"),
        address.get("company"),
        json.dumps(node.get("tags") or []),
        int(node.get("numberOfOrders") or 0),
        _money(node.get("amountSpent")),
        stats.get("rfmGroup"),
        stats.get("predictedSpendTier"),
        utc_text(node.get("createdAt")),
        utc_text(node.get("updatedAt")),
    )


def order_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Order`` node as an ``orders`` row."""
    total = _shop_money(node.get("currentTotalPriceSet"))
    customer = node.get("customer")
    return (
        shop_id,
        gid_number(node["id"]),
        gid_number(customer["id"]) if customer else None,
        node.get("name"),
        node.get("email"),
        utc_text(node.get("createdAt")),
        utc_text(node.get("processedAt") or node.get("createdAt")),
        utc_text(node.get("updatedAt")),
        utc_text(node.get("cancelledAt")),
        bool(node.get("test")),
        _money(total),
        total.get("currencyCode"),
        json.dumps(node.get("discountCodes") or []),
        (node.get("billingAddress") or {}).get("company"),
    )


def line_item_row(shop_id: int, node: dict[str, Any], order_id: int) -> Row:
    """A GraphQL ``LineItem`` node as a ``line_items`` row (quantity is the current one)."""
    # The hot path of a bulk import (2.5 line items per order): lookups are inlined.
    product = node.get("product")
    variant = node.get("variant")
    quantity = node.get("currentQuantity")
    if quantity is None:
        quantity = node.get("quantity") or 0
    total = node.get("discountedTotalSet")
    amount = (total.get("shopMoney") or {}).get("amount") if total else None
    return (
        shop_id,
        gid_number(node["id"]),
        order_id,
        gid_number(product["id"]) if product else None,
        gid_number(variant["id"]) if variant else None,
        node.get("sku"),
        node.get("title") or "",
        int(quantity),
        float(amount) if amount else 0.0,
    )


def product_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Product`` node as a ``products`` row."""
    return (
        shop_id,
        gid_number(node["id"]),
        node.get("title") or "",
        node.get("handle"),
        node.get("productType"),
        node.get("vendor"),
        node.get("status"),
        utc_text(node.get("updatedAt")),
    )


def variant_row(shop_id: int, node: dict[str, Any], product_id: int) -> Row:
    """A GraphQL ``ProductVariant`` node as a ``variants`` row."""
    price = node.get("price")
    return (
        shop_id,
        gid_number(node["id"]),
        product_id,
        node.get("title") or "",
        node.get("sku"),
        float(price) if price not in (None, "") else None,
    )


@dataclass
class Batch:
    """Rows parsed from some JSONL lines, grouped by table."""

    rows: dict[str, list[Row]]
    lines: int = 0

    @classmethod
    def empty(cls) -> Batch:
        return cls({name: [] for name in COLUMNS})


_GID_PREFIX = len("gid://shopify/")


def parse_line(shop_id: int, obj: dict[str, Any], batch: Batch) -> None:
    """Route one bulk JSONL object to its table (by the type in its GID)."""
    gid = obj.get("id") or ""
    end = gid.find("/", _GID_PREFIX)
    kind = gid[_GID_PREFIX:end] if end > 0 else ""
    if kind == "LineItem":
        batch.rows["line_items"].append(
            line_item_row(shop_id, obj, gid_number(obj.get("__parentId")) or 0)
        )
    elif kind == "Order":
        batch.rows["orders"].append(order_row(shop_id, obj))
    elif kind == "Customer":
        batch.rows["customers"].append(customer_row(shop_id, obj))
    elif kind == "Product":
        batch.rows["products"].append(product_row(shop_id, obj))
    elif kind == "ProductVariant":
        batch.rows["variants"].append(
            variant_row(shop_id, obj, gid_number(obj.get("__parentId")) or 0)
        )
    else:
        log.warning("unexpected bulk object %r skipped", gid[:80])


_DECODER = json.JSONDecoder()


def load_line(line: bytes | str) -> Any:
    """Parse one JSONL line. Decoding to ``str`` first and calling the decoder directly skips
    ``json.loads``'s encoding sniffing, which is a third of its cost on short lines."""
    text = line.decode() if isinstance(line, bytes) else line
    return _DECODER.raw_decode(text)[0]


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


COPY_THRESHOLD = 200  # rows; below this PostgreSQL gets a plain executemany


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


def _copy_upsert(conn: Connection, table_name: str, rows: list[Row]) -> None:
    # COPY is several times faster than row-by-row INSERTs on PostgreSQL. A batch may hold the
    # same row twice (an object re-read after a retried export): keep the last, since one
    # INSERT ... ON CONFLICT cannot update a row twice.
    unique = list({(r[0], r[1]): r for r in rows}.values())
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _stage_{table_name} "
            f"(LIKE {table_name}) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            f"COPY _stage_{table_name} ({', '.join(COLUMNS[table_name])}) FROM STDIN"
        ) as copy:
            for row in unique:
                copy.write_row(row)
        cur.execute(merge_sql(table_name))
        cur.execute(f"DELETE FROM _stage_{table_name}")


def write_batch(conn: Connection, batch: Batch) -> None:
    """Upsert every row of ``batch`` on ``conn`` (inside the caller's transaction).

    Customers Shopify deleted (see :class:`Tombstone`) are removed again in the same
    transaction: a bulk export or a reconciliation page read before the deletion must not bring
    them back.
    """
    postgres = conn.dialect.name == "postgresql"
    for name, rows in batch.rows.items():
        if not rows:
            continue
        if postgres and len(rows) >= COPY_THRESHOLD:
            _copy_upsert(conn, name, rows)
        else:
            conn.exec_driver_sql(upsert_sql(conn.dialect, name), rows)
    customers = batch.rows.get("customers")
    if customers:
        for shop_id in {r[0] for r in customers}:
            _purge_deleted_customers(conn, shop_id)


def _purge_deleted_customers(conn: Connection, shop_id: int) -> None:
    # Tombstones are few; the primary keys of both tables make this a handful of index probes.
    deleted = select(Tombstone.id).where(
        Tombstone.shop_id == shop_id, Tombstone.resource == "customers"
    )
    recompute.forget_customers(conn, shop_id, deleted)
    conn.execute(delete(Customer).where(Customer.shop_id == shop_id, Customer.id.in_(deleted)))


# --- ingest -----------------------------------------------------------------------------------


def ingest_lines(
    ctx: jobs.Context,
    run_id: int,
    shop_id: int,
    lines: Iterable[bytes | str],
    *,
    start: int = 0,
    batch_lines: int = BATCH_LINES,
    loads: Callable[[bytes | str], Any] = load_line,
) -> int:
    """Ingest JSONL ``lines`` (the ones after checkpoint ``start``); returns the new checkpoint.

    Each batch and the checkpoint that counts it commit together: after a crash the run's
    ``checkpoint`` says exactly which lines are in the database. Parsing the next batch overlaps
    with writing the previous one (a single writer thread commits batches in order), since
    the database spends most of its time outside the GIL.
    """
    writer = _Writer(ctx, run_id, start)
    try:
        batch = Batch.empty()
        for line in lines:
            parse_line(shop_id, loads(line), batch)
            batch.lines += 1
            if batch.lines >= batch_lines:
                writer.put(batch)
                batch = Batch.empty()
        if batch.lines:
            writer.put(batch)
    finally:
        # On any error in the reader, batches already handed over are still committed (with
        # their checkpoint), then the error propagates.
        done = writer.close()
    return done


class _Writer:
    """Commits batches in order on its own thread; at most two wait in line."""

    def __init__(self, ctx: jobs.Context, run_id: int, start: int) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.done = start
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
                self.done = _commit(self.ctx, self.run_id, batch, self.done)
            except BaseException as exc:
                self.error = exc

    def put(self, batch: Batch) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(batch)

    def close(self) -> int:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.done


SQLITE_CACHE_KIB = 65_536  # the default 2 MB page cache thrashes on million-row indexes


def _commit(ctx: jobs.Context, run_id: int, batch: Batch, done: int) -> int:
    done += batch.lines
    with db.write_engine(ctx.engine).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        write_batch(conn, batch)
        conn.execute(
            update(SyncRun).where(SyncRun.id == run_id).values(checkpoint=done, objects_done=done)
        )
    return done


def ingest_run(ctx: jobs.Context, client: AdminClient, run_id: int) -> None:
    """Download the result of ``run_id`` and ingest it from its checkpoint; marks it done."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        with ctx.sessions() as session:
            run = session.get(SyncRun, run_id)
            if run is None or run.status != "ingesting":
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
                    _fail(ctx, run_id, stored_error(exc))
                    raise
                continue
            except Exception:
                # Anything else (a database blip, a killed connection): hand the run back so the
                # task's retry, or the poller, claims it again at once from the checkpoint
                # instead of waiting for the stall detector.
                _release(ctx, run_id)
                raise
        with transaction(ctx.sessions) as session:
            run = session.get(SyncRun, run_id)
            assert run is not None
            run.status = "done"
            run.finished_at = utcnow()
            run.objects_done = checkpoint
            run.object_count = max(run.object_count, checkpoint)
            run.error = None
        log.info(
            "bulk import done", extra={"shop": client.shop, "run": run_id, "lines": checkpoint}
        )
        return


def _release(ctx: jobs.Context, run_id: int) -> None:
    with db.write_engine(ctx.engine).begin() as conn:
        conn.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == "ingesting")
            .values(status="running")
        )


def _fail(ctx: jobs.Context, run_id: int, error: str) -> None:
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is not None:
            run.status = "failed"
            run.error = error[:2000]
            run.finished_at = utcnow()


# --- bulk operations lifecycle ---------------------------------------------------------------


def check_scopes(ctx: jobs.Context, shop_id: int) -> bool:
    """Store (or clear) the notice a shop without ``read_all_orders`` must see; True if missing.

    Without that scope Shopify returns only the last 60 days of orders: segments built on
    them would silently call long-standing customers new.
    """
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return False
        scopes = {s.strip() for s in (shop.scopes or "").split(",")}
        missing = "read_all_orders" not in scopes
        settings = dict(shop.settings or {})
        notices = [
            n for n in settings.get("notices", []) if n.get("code") != NOTICE_READ_ALL_ORDERS
        ]
        if missing:
            notices.append(
                {
                    "code": NOTICE_READ_ALL_ORDERS,
                    "tone": "warning",
                    "message": (
                        "Goldpan can only see the last 60 days of orders. Segments that look "
                        "further back (true fans, going cold, one-time buyers) will be incomplete "
                        "until the app is granted access to all orders."
                    ),
                }
            )
        if notices != settings.get("notices", []):
            settings["notices"] = notices
            shop.settings = settings
    return missing


def active_runs(ctx: jobs.Context, shop_id: int, kind: str = "initial") -> list[SyncRun]:
    """The runs of ``kind`` still running or ingesting for the shop."""
    with ctx.sessions() as session:
        return list(
            session.scalars(
                select(SyncRun).where(
                    SyncRun.shop_id == shop_id,
                    SyncRun.kind == kind,
                    SyncRun.status.in_(ACTIVE),
                )
            )
        )


@jobs.task("sync.initial", retries=3, retry_delay=30)
def initial(
    ctx: jobs.Context, shop_id: int, *, http: Any = None, poll_interval: float = POLL_INTERVAL
) -> list[int]:
    """Start the bulk export of every resource; returns the SyncRun ids.

    Does nothing while an initial sync of the shop is already under way (a reinstall or a
    double click must not start a second set of exports). Then waits for completion: the
    webhook normally wins, ``sync.poll`` is the fallback.
    """
    check_scopes(ctx, shop_id)
    running = {r.resource for r in active_runs(ctx, shop_id)}
    # A retry of this task after a partial start (say Shopify refused the third export) starts
    # only what is missing.
    missing = [r for r in RESOURCES if r not in running]
    if not missing:
        log.info("initial sync already running", extra={"shop_id": shop_id})
        return []
    started = utcnow()
    run_ids: list[int] = []
    with AdminClient(ctx, shop_id, http=http) as client:
        for resource in missing:
            gid = client.run_bulk_query(f"bulk_{resource}")
            with transaction(ctx.sessions) as session:
                run = SyncRun(
                    shop_id=shop_id,
                    kind="initial",
                    resource=resource,
                    status="running",
                    bulk_operation_id=gid,
                    attempts=1,
                    watermark=started,
                    started_at=started,
                )
                session.add(run)
                session.flush()
                run_ids.append(run.id)
    log.info("initial sync started", extra={"shop_id": shop_id, "runs": run_ids})
    schedule_poll(ctx, shop_id, poll_interval, http=http)
    return run_ids


def schedule_poll(
    ctx: jobs.Context, shop_id: int, delay: float = POLL_INTERVAL, *, http: Any = None
) -> None:
    """Poll later (queued) — or now, in a loop, when there is no queue (CLI, scripts)."""
    if ctx.runtime is not None:
        ctx.runtime.enqueue_in(delay, "sync.poll", shop_id=shop_id)
    else:
        poll(ctx, shop_id, wait=True, interval=delay, http=http)


@jobs.task("sync.poll", retries=5, retry_delay=30)
def poll(
    ctx: jobs.Context,
    shop_id: int,
    *,
    wait: bool = False,
    interval: float = POLL_INTERVAL,
    stalled: dict[str, list[int]] | None = None,
    stall_seconds: float = STALL_SECONDS,
    http: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Check the shop's bulk operations and ingest finished ones; True when all are settled.

    Queued, it re-enqueues itself while something still runs; with ``wait`` it loops instead.
    A run left ``ingesting`` whose checkpoint stops moving for ``stall_seconds`` lost its
    worker (killed, redeployed): it is resumed from its checkpoint. ``stalled`` carries what the
    previous polls saw from one queued poll to the next.
    """
    # {run id: [checkpoint last seen, consecutive polls without progress]}
    seen: dict[str, list[int]] = {k: list(v) for k, v in (stalled or {}).items()}
    patience = max(1, int(stall_seconds / max(interval, 0.001)))
    with AdminClient(ctx, shop_id, http=http) as client:
        while True:
            pending = False
            for run in active_runs(ctx, shop_id):
                if run.status == "ingesting":
                    # Someone is ingesting it — or was, and died. Resume only when stalled.
                    last, quiet = seen.get(str(run.id), [-1, 0])
                    quiet = quiet + 1 if last == run.checkpoint else 0
                    seen[str(run.id)] = [run.checkpoint, quiet]
                    if quiet < patience:
                        pending = True
                        continue
                    log.warning("resuming a stalled ingest", extra={"run": run.id})
                    seen.pop(str(run.id), None)
                    ingest_run(ctx, client, run.id)
                    _maybe_finished(ctx, shop_id)
                    continue
                op = client.bulk_operation(run.bulk_operation_id or "")
                if not advance(ctx, client, run.id, op):
                    pending = True
            if not pending:
                return True
            if not wait:
                break
            sleep(interval)
    if ctx.runtime is not None:
        ctx.runtime.enqueue_in(interval, "sync.poll", shop_id=shop_id, stalled=seen)
    return False


def on_bulk_finish(ctx: jobs.Context, shop_id: int, payload: dict[str, Any]) -> None:
    """``bulk_operations/finish`` for a query: ingest (or retry) the run it belongs to."""
    gid = str(payload.get("admin_graphql_api_id") or "")
    with ctx.sessions() as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.shop_id == shop_id, SyncRun.bulk_operation_id == gid)
        )
    if run is None or run.status != "running":
        log.info("bulk finish for an unknown or claimed operation", extra={"gid": gid})
        return
    with AdminClient(ctx, shop_id) as client:
        # The webhook carries no URL or count: ask for them.
        advance(ctx, client, run.id, client.bulk_operation(gid))


def advance(ctx: jobs.Context, client: AdminClient, run_id: int, op: dict[str, Any]) -> bool:
    """Move ``run_id`` forward given its bulk operation's state; True once the run is settled.

    Ingesting is claimed with a conditional UPDATE (``running`` → ``ingesting``): when the
    webhook and the poller both see COMPLETED, exactly one of them ingests.
    """
    status = str(op.get("status") or "").upper()
    count = int(op.get("objectCount") or 0)
    gid = op.get("id")
    if status in ("CREATED", "RUNNING", "CANCELING"):
        with transaction(ctx.sessions) as session:
            session.execute(update(SyncRun).where(SyncRun.id == run_id).values(object_count=count))
        return False
    if status == "COMPLETED":
        with transaction(ctx.sessions) as session:
            claim = session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id, SyncRun.status == "running")
                .values(status="ingesting", url=op.get("url"), object_count=count)
                .execution_options(synchronize_session=False)
            )
            claimed = getattr(claim, "rowcount", 0) == 1
            shop_id = session.scalar(select(SyncRun.shop_id).where(SyncRun.id == run_id))
        if not claimed:
            return True  # another worker has it (or it is settled)
        ingest_run(ctx, client, run_id)
        if shop_id is not None:
            _maybe_finished(ctx, shop_id)
        return True
    # FAILED, EXPIRED, CANCELED: start the export again (a partial result is re-read in full
    # by the new one; upserts are idempotent) — a bounded number of times.
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is None or run.status != "running" or (gid and run.bulk_operation_id != gid):
            return True  # settled, or already retried by someone else
        shop_id, resource, attempts = run.shop_id, run.resource, run.attempts
    reason = f"bulk operation {status.lower()} ({op.get('errorCode') or 'no error code'})"
    if attempts >= MAX_ATTEMPTS:
        _fail(ctx, run_id, f"{reason} after {attempts} attempts")
        log.error("bulk import failed", extra={"shop": client.shop, "run": run_id})
        _maybe_finished(ctx, shop_id)
        return True
    new_gid = client.run_bulk_query(f"bulk_{resource}")
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        run.bulk_operation_id = new_gid
        run.attempts = attempts + 1
        run.status = "running"
        run.error = reason
        # The new export's lines come in another order: start counting again.
        run.checkpoint = 0
        run.objects_done = 0
        run.url = None
    log.warning("bulk operation retried", extra={"shop": client.shop, "run": run_id})
    return False


def _maybe_finished(ctx: jobs.Context, shop_id: int) -> None:
    with ctx.sessions() as session:
        latest = session.scalars(
            select(SyncRun)
            .where(SyncRun.shop_id == shop_id, SyncRun.kind == "initial")
            .order_by(SyncRun.id.desc())
            .limit(len(RESOURCES))
        ).all()
    settled = latest and all(r.status in ("done", "failed") for r in latest)
    if settled and any(r.status == "done" for r in latest):
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)


def progress(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """The latest run per resource, for the page and the CLI."""
    out: dict[str, Any] = {}
    with ctx.sessions() as session:
        for resource in RESOURCES:
            run = session.scalar(
                select(SyncRun)
                .where(SyncRun.shop_id == shop_id, SyncRun.resource == resource)
                .order_by(SyncRun.id.desc())
                .limit(1)
            )
            if run is not None:
                out[resource] = {
                    "kind": run.kind,
                    "status": run.status,
                    "objects_done": run.objects_done,
                    "object_count": run.object_count,
                    "error": run.error,
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                }
    return out


# --- webhooks ---------------------------------------------------------------------------------


def _rest_customer_row(shop_id: int, p: dict[str, Any], stored: Any) -> Row:
    """A REST ``customers/*`` payload as a row; ``stored`` (the current row, or None) fills in
    what the payload leaves out."""
    address = p.get("default_address") or {}
    email_consent = p.get("email_marketing_consent") or {}
    sms_consent = p.get("sms_marketing_consent") or {}
    raw_tags = p.get("tags")
    if isinstance(raw_tags, str):
        tags = [t.strip() for t in raw_tags.split(",") if t.strip()]
    elif isinstance(raw_tags, list):
        tags = [str(t) for t in raw_tags]
    else:
        tags = list(stored.tags) if stored else []

    def keep(key: str, current: Any, default: Any) -> Any:
        # Newer API versions leave some counters out of the payload: keep what we know.
        if key in p and p[key] is not None:
            return p[key]
        return current if stored is not None else default

    return (
        shop_id,
        int(p["id"]),
        p.get("first_name"),
        p.get("last_name"),
        p.get("email"),
        _upper(email_consent.get("state")),
        p.get("phone"),
        _upper(sms_consent.get("state")),
        address.get("country_code"),
        address.get("province_code"),
        address.get("city"),
        address.get("zip"),
        address.get("company"),
        json.dumps(tags),
        int(keep("orders_count", stored.number_of_orders if stored else 0, 0)),
        _money(keep("total_spent", stored.amount_spent if stored else 0, 0)),
        stored.rfm_group if stored else None,
        stored.predicted_spend_tier if stored else None,
        utc_text(p.get("created_at")),
        utc_text(p.get("updated_at")),
    )


def _rest_order_rows(shop_id: int, p: dict[str, Any]) -> tuple[Row, list[Row]]:
    order_id = int(p["id"])
    customer = p.get("customer") or {}
    order = (
        shop_id,
        order_id,
        int(customer["id"]) if customer.get("id") else None,
        p.get("name"),
        p.get("email") or p.get("contact_email"),
        utc_text(p.get("created_at")),
        utc_text(p.get("processed_at") or p.get("created_at")),
        utc_text(p.get("updated_at")),
        utc_text(p.get("cancelled_at")),
        bool(p.get("test")),
        _money(p.get("current_total_price") or p.get("total_price")),
        p.get("currency"),
        json.dumps([d.get("code") for d in p.get("discount_codes") or [] if d.get("code")]),
        (p.get("billing_address") or {}).get("company"),
    )
    items = []
    for li in p.get("line_items") or []:
        quantity = li.get("current_quantity", li.get("quantity")) or 0
        amount = _money(li.get("price")) * int(li.get("quantity") or 0) - _money(
            li.get("total_discount")
        )
        items.append(
            (
                shop_id,
                int(li["id"]),
                order_id,
                li.get("product_id"),
                li.get("variant_id"),
                li.get("sku"),
                li.get("title") or "",
                int(quantity),
                round(amount, 2),
            )
        )
    return order, items


def is_deleted(conn: Connection, shop_id: int, resource: str, object_id: int) -> bool:
    """True if Shopify deleted ``object_id`` of ``resource`` (a :class:`Tombstone` exists)."""
    found = conn.execute(
        select(Tombstone.id).where(
            Tombstone.shop_id == shop_id,
            Tombstone.resource == resource,
            Tombstone.id == object_id,
        )
    ).first()
    return found is not None


def record_deletion(conn: Connection, shop_id: int, resource: str, object_id: int) -> None:
    """Remember that Shopify deleted ``object_id`` (idempotent: a redelivery changes nothing)."""
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        module.insert(Tombstone)
        .values(shop_id=shop_id, resource=resource, id=object_id, deleted_at=utcnow())
        .on_conflict_do_nothing(index_elements=["shop_id", "resource", "id"])
    )


def _is_stale(stored_updated: dt.datetime | None, incoming: str | None) -> bool:
    if stored_updated is None or incoming is None:
        return False
    return stored_updated > (_aware(incoming) or stored_updated)


def apply_webhook(ctx: jobs.Context, shop_id: int, topic: str, payload: dict[str, Any]) -> bool:
    """Apply an ``orders/*`` or ``customers/*`` delivery; True if it changed anything.

    A delivery older than the stored row (by ``updated_at``) is ignored: webhooks arrive at
    least once and in any order. The customer concerned is then recomputed.
    """
    customer_id: int | None
    if topic in ("orders/create", "orders/updated", "orders/cancelled", "orders/edited"):
        order, items = _rest_order_rows(shop_id, payload)
        customer_id = order[2]
        with db.write_engine(ctx.engine).begin() as conn:
            stored = conn.execute(
                select(Order.updated_at).where(Order.shop_id == shop_id, Order.id == order[1])
            ).first()
            if stored is not None and _is_stale(stored[0], order[7]):
                return False
            batch = Batch.empty()
            batch.rows["orders"].append(order)
            batch.rows["line_items"] = items
            write_batch(conn, batch)
            # Line items removed by an order edit disappear from the payload: drop them too.
            conn.execute(
                delete(LineItem).where(
                    LineItem.shop_id == shop_id,
                    LineItem.order_id == order[1],
                    LineItem.id.not_in([i[1] for i in items] or [-1]),
                )
            )
    elif topic in ("customers/create", "customers/update"):
        customer_id = int(payload["id"])
        with db.write_engine(ctx.engine).begin() as conn:
            db.lock_customers(conn, shop_id, [customer_id])
            if is_deleted(conn, shop_id, "customers", customer_id):
                # Shopify never reuses an id: anything about a deleted customer is stale.
                return False
            stored_customer = conn.execute(
                select(Customer.__table__).where(
                    Customer.shop_id == shop_id, Customer.id == customer_id
                )
            ).first()
            if stored_customer is not None and _is_stale(
                stored_customer.updated_at, utc_text(payload.get("updated_at"))
            ):
                return False
            # The upsert alone, not write_batch: its purge of every deleted customer of the
            # shop is for bulk pages read before a deletion; this one customer was just
            # checked to be alive, under its lock.
            conn.exec_driver_sql(
                upsert_sql(conn.dialect, "customers"),
                [_rest_customer_row(shop_id, payload, stored_customer)],
            )
    elif topic == "customers/delete":
        customer_id = int(payload["id"])
        with db.write_engine(ctx.engine).begin() as conn:
            db.lock_customers(conn, shop_id, [customer_id])
            record_deletion(conn, shop_id, "customers", customer_id)
            recompute.forget_customers(conn, shop_id, [customer_id])
            conn.execute(
                delete(Customer).where(Customer.shop_id == shop_id, Customer.id == customer_id)
            )
    else:
        log.warning("topic %s is not a sync topic", topic)
        return False
    if customer_id is not None:
        ctx.enqueue("segments.recompute_customer", shop_id=shop_id, customer_id=customer_id)
    return True


# --- reconciliation ---------------------------------------------------------------------------


def _watermark(ctx: jobs.Context, shop_id: int, resource: str) -> dt.datetime | None:
    with ctx.sessions() as session:
        return session.scalar(
            select(SyncRun.watermark)
            .where(
                SyncRun.shop_id == shop_id,
                SyncRun.resource == resource,
                SyncRun.status == "done",
            )
            .order_by(SyncRun.watermark.desc())
            .limit(1)
        )


def _page_rows(
    shop_id: int,
    resource: str,
    node: dict[str, Any],
    batch: Batch,
    unfinished: list[tuple[str, str | None]] | None = None,
) -> set[int]:
    """Rows of one page node; returns the customer ids it concerns.

    An order whose line items (a product whose variants) did not fit on the page is appended
    to ``unfinished`` as ``(its GID, cursor after the last child read)``.
    """
    if resource == "customers":
        batch.rows["customers"].append(customer_row(shop_id, node))
        return {gid_number(node["id"]) or 0}
    if resource == "orders":
        order = order_row(shop_id, node)
        batch.rows["orders"].append(order)
        connection = node.get("lineItems") or {}
        for item in connection.get("nodes") or []:
            batch.rows["line_items"].append(line_item_row(shop_id, item, order[1]))
        info = connection.get("pageInfo") or {}
        if info.get("hasNextPage") and unfinished is not None:
            unfinished.append((node["id"], info.get("endCursor")))
        return {order[2]} if order[2] else set()
    batch.rows["products"].append(product_row(shop_id, node))
    product_id = gid_number(node["id"]) or 0
    connection = node.get("variants") or {}
    for variant in connection.get("nodes") or []:
        batch.rows["variants"].append(variant_row(shop_id, variant, product_id))
    info = connection.get("pageInfo") or {}
    if info.get("hasNextPage") and unfinished is not None:
        unfinished.append((node["id"], info.get("endCursor")))
    return set()


def _iter_pages(client: AdminClient, resource: str, query: str) -> Iterator[list[dict[str, Any]]]:
    after: str | None = None
    while True:
        variables: dict[str, Any] = {"first": PAGE_SIZES[resource], "after": after, "query": query}
        if resource == "orders":
            variables["lineItemsFirst"] = ORDER_LINE_ITEMS
        data = client.execute(f"{resource}_page", variables)[resource]
        yield data.get("nodes") or []
        info = data.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return
        after = info.get("endCursor")


# Children a reconciliation page may cut short, by resource: (document, parent field,
# connection field, page size, child table).
CHILD_PAGES: dict[str, tuple[str, str, str, int, str]] = {
    "orders": ("order_line_items", "order", "lineItems", LINE_ITEMS_PAGE, "line_items"),
    "products": ("product_variants", "product", "variants", VARIANTS_PAGE, "variants"),
}


def remaining_children(
    client: AdminClient,
    shop_id: int,
    resource: str,
    parent_gid: str,
    after: str | None,
    batch: Batch,
) -> int:
    """Page the children of ``parent_gid`` (an order's line items, a product's variants) after
    cursor ``after`` into ``batch``; returns how many were read. Each page goes through the
    cost-aware client like any other query."""
    document, parent_field, connection_field, size, table = CHILD_PAGES[resource]
    to_row = line_item_row if table == "line_items" else variant_row
    parent_id = gid_number(parent_gid) or 0
    read = 0
    while True:
        variables = {"id": parent_gid, "first": size, "after": after}
        parent = client.execute(document, variables).get(parent_field)
        if parent is None:
            return read  # deleted since its page was read: the next reconciliation sees it
        connection = parent.get(connection_field) or {}
        for node in connection.get("nodes") or []:
            batch.rows[table].append(to_row(shop_id, node, parent_id))
            read += 1
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return read
        cursor = info.get("endCursor")
        if not cursor or cursor == after:
            # Without a cursor that moves, asking again would read the same page forever.
            raise SyncError(f"{parent_gid}: {connection_field} pagination did not advance")
        after = cursor


@jobs.task("sync.reconcile", retries=2, retry_delay=60)
def reconcile(ctx: jobs.Context, shop_id: int, *, http: Any = None) -> int:
    """Pull what changed since each resource's watermark; returns the number of rows upserted.

    A shop without a completed initial sync gets one instead.
    """
    check_scopes(ctx, shop_id)
    if active_runs(ctx, shop_id):
        return 0
    if all(_watermark(ctx, shop_id, r) is None for r in RESOURCES):
        ctx.enqueue("sync.initial", shop_id=shop_id)
        return 0
    changed: set[int] = set()
    total = 0
    with AdminClient(ctx, shop_id, http=http) as client:
        for resource in RESOURCES:
            mark = _watermark(ctx, shop_id, resource)
            if mark is None:
                continue
            started = utcnow()
            since = (mark - WATERMARK_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
            with transaction(ctx.sessions) as session:
                run = SyncRun(
                    shop_id=shop_id,
                    kind="reconcile",
                    resource=resource,
                    status="running",
                    attempts=1,
                    started_at=started,
                )
                session.add(run)
                session.flush()
                run_id = run.id
            done = 0
            try:
                for nodes in _iter_pages(client, resource, f"updated_at:>'{since}'"):
                    batch = Batch.empty()
                    unfinished: list[tuple[str, str | None]] = []
                    for node in nodes:
                        changed |= _page_rows(shop_id, resource, node, batch, unfinished)
                    # Orders (products) with more line items (variants) than the page holds:
                    # the rest are read now, to commit with their parent and the checkpoint
                    # that counts it.
                    for parent_gid, cursor in unfinished:
                        remaining_children(client, shop_id, resource, parent_gid, cursor, batch)
                    batch.lines = len(nodes)
                    done = _commit(ctx, run_id, batch, done)
            except ShopifyError as exc:
                _fail(ctx, run_id, stored_error(exc))
                raise
            with transaction(ctx.sessions) as session:
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id)
                    .values(
                        status="done", watermark=started, object_count=done, finished_at=utcnow()
                    )
                )
            total += done
    if len(changed) > RECOMPUTE_ONE_BY_ONE:
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)
    else:
        for customer_id in sorted(changed):
            ctx.enqueue("segments.recompute_customer", shop_id=shop_id, customer_id=customer_id)
    return total


@jobs.periodic("sync.reconcile_all", minute="17", hour="*/6")
def reconcile_all(ctx: jobs.Context) -> None:
    """Every six hours: reconcile each installed shop; resume stalled bulk imports."""
    with ctx.sessions() as session:
        shops = session.scalars(
            select(Shop.id).where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None))
        ).all()
    for shop_id in shops:
        if active_runs(ctx, shop_id):
            ctx.enqueue("sync.poll", shop_id=shop_id)
        else:
            ctx.enqueue("sync.reconcile", shop_id=shop_id)


__all__ = [
    "apply_webhook",
    "check_scopes",
    "ingest_lines",
    "initial",
    "is_deleted",
    "on_bulk_finish",
    "poll",
    "progress",
    "reconcile",
    "reconcile_all",
    "record_deletion",
    "remaining_children",
    "utc_text",
]
