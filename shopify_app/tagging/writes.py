"""Tag writes to Shopify: only the difference, never the same change twice.

* **Small diffs** go out as aliased ``tagsRemove``/``tagsAdd`` requests (:mod:`.diff`'s batch
  documents), each batch re-diffed under its claim just before it is sent.
* **Above the bulk threshold** (default 500 changed customers) the rows go out as bulk
  mutations (``tags_remove`` and ``tags_add`` over a staged JSONL upload), recorded as running
  until :mod:`.bulk` sees them finish.

After a write, Goldpan stores the tags Shopify answered with (the mutation selects the
customer's resulting ``tags``), so the echoed ``customers/update`` computes an empty diff: no
loops, no second write. The same transaction records each successful add in the ledger and
deletes each successful remove from it (:mod:`.ledger`): only tags in the ledger are ever
removed.

Concurrent writers for the same customer (50 webhooks/s on several workers) must not write the
same diff twice. On PostgreSQL the batch holds ``SELECT ... FOR UPDATE`` on its customer rows
across the request; on SQLite (one process by design) process-local customer locks serialise
writers of the same customer and the stored tags are updated compare-and-set, so a newer
``customers/update`` that landed during the request is never overwritten by an older answer.

A run for a few customers (up to one request's worth: the follow-up of a webhook group) is
read, planned, sent and stored under one claim, with plain connections and Core statements
built once: no planning pass that the claim then reads again, and with nothing to change no
client and no write transaction. It runs per webhook, so every statement counts.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, insert, select, update

from shopify_app import jobs
from shopify_app.db import write_engine
from shopify_app.db.models import AuditEntry, Customer, Shop, utcnow
from shopify_app.errors import ShopifyError, stored_error
from shopify_app.shopify.client import thread_client
from shopify_app.states import AuditResult, AuditTarget, JobStatus
from shopify_app.tagging import ledger
from shopify_app.tagging.diff import (
    ADD_DOCUMENT,
    BATCH_SLOTS,
    REMOVE_DOCUMENT,
    TagDiff,
    apply,
    batch_request,
    batches,
    customer_gid,
    diff,
    plan,
)
from shopify_app.tagging.state import ShopTags, bulk_running, current_tags, in_flight
from shopify_app.tagging.tags import MAX_TAGS_PER_CUSTOMER, written

log = logging.getLogger(__name__)

MAX_BULK_ATTEMPTS = 3
"""After this many bulk attempts the leftovers go out as small requests (which never loop)."""


class AdminAPI(Protocol):
    """The part of :class:`~shopify_app.shopify.client.AdminClient` tagging uses."""

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...

    def run_bulk_mutation(self, document_name: str, rows: Iterable[dict[str, Any]]) -> str: ...

    def bulk_operation(self, gid: str) -> dict[str, Any]: ...

    def stream_jsonl(self, url: str) -> Iterator[dict[str, Any]]: ...


def admin_client(
    ctx: jobs.Context, shop_id: int, *, seen: tuple[str, int] | None = None
) -> AdminAPI:
    """The Admin API client of ``shop_id``: this worker thread's, kept across tag writes
    (``seen``: see :func:`~shopify_app.shopify.client.thread_client`)."""
    client: AdminAPI = thread_client(ctx, shop_id, seen=seen)
    return client


@dataclass
class SyncReport:
    """The outcome of one run (the task returns :meth:`summary`)."""

    checked: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    requests: int = 0
    bulk_operations: list[str] = field(default_factory=list)
    in_flight: int = 0
    limited: dict[int, tuple[str, ...]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts only (safe to store as a task result)."""
        return {
            "checked": self.checked,
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "requests": self.requests,
            "bulk_operations": list(self.bulk_operations),
            "in_flight": self.in_flight,
            "limited": len(self.limited),
            "failed": len(self.failed),
        }


_STRIPES = tuple(threading.Lock() for _ in range(256))
"""Process-local customer locks for SQLite, striped: writes for different customers of one
shop run in parallel (50 webhooks/s need that), writes for the same customer never do."""


@contextmanager
def _local_locks(shop_id: int, customer_ids: Sequence[int]) -> Iterator[None]:
    # Sorted acquisition: two batches sharing stripes cannot deadlock.
    stripes = sorted({hash((shop_id, cid)) % len(_STRIPES) for cid in customer_ids})
    with ExitStack() as stack:
        for stripe in stripes:
            stack.enter_context(_STRIPES[stripe])
        yield


@dataclass
class _Claim:
    """Customers held for one write: their stored rows, tags and ledger rows as read, and what
    to store afterwards (Shopify's answers, the ledger's changes, audit rows).

    A claim of a few customers' whole run (:func:`_read_run`) also holds the plan: the changes
    to send, the report so far and the shop's (domain, token_version) as read; ``report`` is
    ``None`` when the shop is not installed."""

    rows: list[Row[Any]]
    owned: ledger.Written
    current: dict[int, list[str]] = field(init=False)
    results: dict[int, list[str]] = field(default_factory=dict)
    updated_at: dict[int, dt.datetime] = field(default_factory=dict)
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[tuple[int, str]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[int, TagDiff] = field(default_factory=dict)
    report: SyncReport | None = None
    seen: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        self.current = {r.id: list(r.tags or []) for r in self.rows}

    @property
    def to_store(self) -> bool:
        """Anything for the second transaction (SQLite) to write."""
        return bool(self.results or self.added or self.removed or self.audit)

    def answer(self, customer_id: int, node: Mapping[str, Any]) -> bool:
        """Take Shopify's answer for a customer (its tags, updatedAt); False if it had none."""
        tags = node.get("tags")
        if not isinstance(tags, list):
            return False
        self.results[customer_id] = [str(t) for t in tags]
        stamp = parse_timestamp(node.get("updatedAt"))
        if stamp is not None:
            self.updated_at[customer_id] = stamp
        return True


def parse_timestamp(value: Any) -> dt.datetime | None:
    """Shopify's ``updatedAt`` (ISO 8601, ``Z`` for UTC) as an aware datetime, else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _later(stored: dt.datetime | None, answered: dt.datetime | None) -> dt.datetime | None:
    """``updated_at`` after a write: Shopify's answer if newer, else what was stored (see
    :func:`store_answer`)."""
    if answered is not None and (stored is None or answered > stored):
        return answered
    return stored


def store_answer(row: Customer, tags: list[str], updated_at: dt.datetime | None) -> None:
    """Store Shopify's answer. ``updated_at`` moves forward only, so an older customers/update
    arriving late (say, the merchant's edit from before our write) is seen as stale by sync
    and cannot bring back tags Shopify no longer has."""
    row.tags = list(tags)
    if updated_at is not None and (row.updated_at is None or updated_at > row.updated_at):
        row.updated_at = updated_at


_CUSTOMERS = cast(Table, Customer.__table__)
_STORE_ANSWER = (
    update(_CUSTOMERS)
    .where(_CUSTOMERS.c.shop_id == bindparam("shop"), _CUSTOMERS.c.id == bindparam("customer_id"))
    .values(tags=bindparam("new_tags"), updated_at=bindparam("new_updated_at"))
)
"""Shopify's answers stored for a batch in one executemany (built once: it runs per write)."""
_STORED = (
    select(_CUSTOMERS.c.id, _CUSTOMERS.c.tags, _CUSTOMERS.c.updated_at)
    .where(
        _CUSTOMERS.c.shop_id == bindparam("shop"),
        _CUSTOMERS.c.id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(_CUSTOMERS.c.id)
)
_WITH_LEDGER = _STORED.add_columns(ledger.LEDGER.c.tag_key, ledger.LEDGER.c.tag).outerjoin(
    ledger.LEDGER,
    and_(
        ledger.LEDGER.c.shop_id == _CUSTOMERS.c.shop_id,
        ledger.LEDGER.c.customer_id == _CUSTOMERS.c.id,
    ),
)
"""A claim's customers with their ledger rows (a row per ledger row, or one without)."""
_LOCK = (
    select(_CUSTOMERS.c.id)
    .where(
        _CUSTOMERS.c.shop_id == bindparam("shop"),
        _CUSTOMERS.c.id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(_CUSTOMERS.c.id)
    .with_for_update()
)
_SHOP = select(
    Shop.is_installed.label("installed"),
    Shop.domain,
    Shop.token_version,
    Shop.settings,
    bulk_running(Shop.id).label("bulk_running"),
).where(Shop.id == bindparam("shop"))
"""What a run reads of the shop: plain columns, no ORM object (its tokens stay unread), and
whether a bulk mutation runs (rarely: then its customers are read)."""
_AUDIT = insert(cast(Table, AuditEntry.__table__))


def audit_row(
    shop_id: int,
    action: str,
    *,
    target: AuditTarget = AuditTarget.SHOPIFY,
    subject: str | None = None,
    count: int = 0,
    result: AuditResult | None = AuditResult.OK,
    job_status: JobStatus | None = None,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A tag write's audit-log row, for a Core insert (every column, so rows insert together)."""
    return {
        "shop_id": shop_id,
        "at": utcnow(),
        "target": target,
        "action": action,
        "subject": subject,
        "count": count,
        "result": result,
        "job_status": job_status,
        "detail": detail if detail is not None else {},
        "error": error,
    }


def _stored(conn: Connection, shop_id: int, ids: Sequence[int]) -> list[Row[Any]]:
    """The customers' stored tags and ``updated_at``, as plain rows (no ORM objects)."""
    return list(conn.execute(_STORED, {"shop": shop_id, "ids": list(ids)}))


def _store_results(conn: Connection, claim: _Claim, shop_id: int, rows: list[Row[Any]]) -> None:
    """Store Shopify's answers for the claimed customers still as read (``rows``), then the
    ledger's changes and the audit rows, in the caller's transaction."""
    stored_at = {r.id: r.updated_at for r in rows}
    answers = [
        {
            "shop": shop_id,
            "customer_id": customer_id,
            "new_tags": list(tags),
            "new_updated_at": _later(stored_at[customer_id], claim.updated_at.get(customer_id)),
        }
        for customer_id, tags in claim.results.items()
        if customer_id in stored_at
    ]
    if answers:
        conn.execute(_STORE_ANSWER, answers)
    # Shopify applied these whether or not its answer was stored above.
    ledger.record(conn, shop_id, claim.added, claim.removed)
    if claim.audit:
        conn.execute(_AUDIT, claim.audit)


def _read_batch(conn: Connection, shop_id: int, ids: list[int], for_update: bool) -> _Claim:
    """A batch's customers and their ledger rows, in one read. ``for_update`` (PostgreSQL)
    locks the customers first, in a statement of its own: a joined read that waited for the
    lock would see the ledger as it was before the last holder committed."""
    params = {"shop": shop_id, "ids": ids}
    if for_update:
        conn.execute(_LOCK, params)
    rows: dict[int, Row[Any]] = {}
    owned: ledger.Written = defaultdict(dict)
    for row in conn.execute(_WITH_LEDGER, params):
        rows.setdefault(row.id, row)
        if row.tag_key is not None:
            owned[row.id][row.tag_key] = row.tag
    return _Claim(list(rows.values()), owned)


def _read_run(conn: Connection, shop_id: int, ids: list[int], for_update: bool) -> _Claim:
    """A few customers' whole run, read and planned at once: the shop, its tag settings, the
    customers, their ledger rows, the segments with their memberships, the bulk mutations in
    flight. One read instead of a planning pass and a claim that reads the customers and
    ledger again."""
    shop = conn.execute(_SHOP, {"shop": shop_id}).first()
    if shop is None or not shop.installed:
        return _Claim([], {})
    claim = _read_batch(conn, shop_id, ids, for_update)
    claim.seen = (shop.domain, shop.token_version)
    found = ShopTags.with_wanted(conn, shop_id, shop.settings, list(claim.current))[1]
    wanted = {cid: found.get(cid, set()) for cid in claim.current}
    planned, limited = plan(claim.current, wanted, claim.owned)
    gone = ledger.stale(claim.current, wanted, claim.owned)
    busy = in_flight(conn, shop_id) if shop.bulk_running and (planned or gone) else set()
    claim.report = SyncReport(
        checked=len(claim.current), in_flight=len(busy & planned.keys()), limited=dict(limited)
    )
    claim.changes = {cid: change for cid, change in planned.items() if cid not in busy}
    claim.removed.extend((cid, tag) for cid, tag in gone if cid not in busy)
    claim.audit.extend(_limits_rows(shop_id, limited))
    return claim


@contextmanager
def _claim(
    ctx: jobs.Context,
    shop_id: int,
    customer_ids: Sequence[int],
    read: Callable[[Connection, int, list[int], bool], _Claim] = _read_batch,
) -> Iterator[_Claim]:
    """Hold ``customer_ids`` against other tag writers for one request (see module docstring);
    ``read`` reads what the request needs, under the claim."""
    ids = sorted(set(customer_ids))
    if ctx.engine.dialect.name == "postgresql":
        with write_engine(ctx.engine).begin() as conn:
            claim = read(conn, shop_id, ids, True)
            yield claim
            _store_results(conn, claim, shop_id, claim.rows)
        return
    with _local_locks(shop_id, ids):
        # A plain read: the customer locks hold off other writers; a customers/update stored
        # during the request is caught by the compare-and-set below.
        with ctx.engine.connect() as conn:
            claim = read(conn, shop_id, ids, False)
        yield claim
        if not claim.to_store:
            return  # nothing written, nothing to store: no write transaction
        with write_engine(ctx.engine).begin() as conn:
            # Compare-and-set: a customers/update stored during the request is newer.
            answered = sorted(claim.results)
            rows = [
                r
                for r in (_stored(conn, shop_id, answered) if answered else [])
                if list(r.tags or []) == claim.current.get(r.id)
            ]
            _store_results(conn, claim, shop_id, rows)


shopify_audit = functools.partial(AuditEntry.of, target=AuditTarget.SHOPIFY)
"""An ORM audit-log entry of a write to Shopify (target ``"shopify"``)."""


def _record(ctx: jobs.Context, *rows: dict[str, Any]) -> None:
    with write_engine(ctx.engine).begin() as conn:
        conn.execute(_AUDIT, list(rows))


def _write_small(
    ctx: jobs.Context,
    client: AdminAPI,
    shop_id: int,
    planned: Mapping[int, TagDiff],
    wanted: Mapping[int, set[str]],
    report: SyncReport,
) -> None:
    """Write ``planned`` with aliased requests, re-diffing each batch under its claim."""
    for batch in batches(planned):
        with _claim(ctx, shop_id, batch) as claim:
            # Re-diff against the tags (and ledger) as they are now: another writer or a
            # customers/update may have changed them since planning.
            changes: dict[int, TagDiff] = {}
            for cid in batch:
                if cid in claim.current:
                    owned = written(claim.owned.get(cid, ()))
                    change = diff(claim.current[cid], wanted.get(cid, set()), owned)
                    if not change.empty:
                        changes[cid] = change
            if changes:
                _send(ctx, client, shop_id, claim, changes, report)


def _send(
    ctx: jobs.Context,
    client: AdminAPI,
    shop_id: int,
    claim: _Claim,
    changes: Mapping[int, TagDiff],
    report: SyncReport,
) -> None:
    """Send one batch of ``changes`` (customers held by ``claim``) and take Shopify's answers
    into the claim, which stores them."""
    document, variables, keys = batch_request(changes)
    try:
        data = client.execute(document, variables)
    except ShopifyError as exc:
        _record(
            ctx,
            audit_row(
                shop_id,
                "tags.write",
                subject=document,
                count=len(changes),
                result=AuditResult.ERROR,
                detail=_change_detail(changes),
                error=stored_error(exc),
            ),
        )
        raise
    report.requests += 1
    failed: dict[int, str] = {}
    for key, customer_id in keys:
        payload = data.get(key) or {}
        errors = payload.get("userErrors") or []
        if errors:
            failed[customer_id] = "; ".join(str(e.get("message")) for e in errors)
            continue
        one = changes[customer_id]
        removing = key.startswith("r") or key == "tagsRemove"
        if removing:
            claim.removed.extend((customer_id, tag) for tag in one.remove)
        else:
            claim.added.extend((customer_id, tag) for tag in one.add)
        # The node's tags are Shopify's state after this field, whatever came before.
        node = payload.get("node") or {}
        if not claim.answer(customer_id, node):
            # An answer without the node: assume Shopify applied what was asked.
            base = claim.results.get(customer_id, claim.current[customer_id])
            step = TagDiff(remove=one.remove) if removing else TagDiff(add=one.add)
            claim.results[customer_id] = apply(base, step)
    ok = {cid: c for cid, c in changes.items() if cid not in failed}
    report.changed += len(ok)
    report.added += sum(len(c.add) for c in ok.values())
    report.removed += sum(len(c.remove) for c in ok.values())
    report.failed.update(failed)
    claim.audit.append(
        audit_row(
            shop_id,
            "tags.write",
            subject=document,
            count=len(changes),
            result=AuditResult.PARTIAL if failed else AuditResult.OK,
            detail={**_change_detail(changes), "failed": {str(k): v for k, v in failed.items()}},
        )
    )
    if failed:
        log.warning("tag write for shop %s: userErrors for %s", shop_id, failed)


def _change_detail(changes: Mapping[int, TagDiff]) -> dict[str, Any]:
    return {
        "customers": len(changes),
        "added": sum(len(c.add) for c in changes.values()),
        "removed": sum(len(c.remove) for c in changes.values()),
        "changes": [[cid, list(c.add), list(c.remove)] for cid, c in sorted(changes.items())],
    }


def _write_bulk(
    ctx: jobs.Context,
    client: AdminAPI,
    state: ShopTags,
    planned: Mapping[int, TagDiff],
    report: SyncReport,
    attempt: int,
) -> None:
    """Start bulk mutations (removes, then adds) and record them as running."""
    for action, document in (
        ("tags.bulk_remove", REMOVE_DOCUMENT),
        ("tags.bulk_add", ADD_DOCUMENT),
    ):
        rows: list[tuple[int, list[str]]] = [
            (cid, list(c.add if document == ADD_DOCUMENT else c.remove))
            for cid, c in sorted(planned.items())
        ]
        rows = [(cid, tags) for cid, tags in rows if tags]
        if not rows:
            continue
        try:
            gid = client.run_bulk_mutation(
                document, ({"id": customer_gid(cid), "tags": tags} for cid, tags in rows)
            )
        except ShopifyError as exc:
            _record(
                ctx,
                audit_row(
                    state.shop_id,
                    action,
                    count=len(rows),
                    result=AuditResult.ERROR,
                    error=stored_error(exc),
                ),
            )
            raise
        report.requests += 1
        report.bulk_operations.append(gid)
        _record(
            ctx,
            audit_row(
                state.shop_id,
                action,
                subject=gid,
                count=len(rows),
                result=None,
                job_status=JobStatus.RUNNING,
                detail={"operation": gid, "attempt": attempt, "rows": [list(r) for r in rows]},
            ),
        )


def _limits_rows(shop_id: int, limited: Mapping[int, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The audit row (none when nobody is at the limit) saying who got no Goldpan tags."""
    if not limited:
        return []
    log.warning(
        "shop %s: %d customers at Shopify's %d-tag limit; Goldpan tags not added",
        shop_id,
        len(limited),
        MAX_TAGS_PER_CUSTOMER,
    )
    sample = dict(list(sorted(limited.items()))[:100])
    return [
        audit_row(
            shop_id,
            "tags.limit",
            target=AuditTarget.APP,
            count=len(limited),
            result=AuditResult.PARTIAL,
            detail={
                "message": (
                    f"{len(limited)} customers already have {MAX_TAGS_PER_CUSTOMER} tags; "
                    "Goldpan did not add its tags to them and never removes the merchant's "
                    "tags to make room"
                ),
                "customers": {str(cid): list(tags) for cid, tags in sample.items()},
            },
        )
    ]


def sync_tags(
    ctx: jobs.Context,
    shop_id: int,
    customer_ids: Sequence[int] | None = None,
    *,
    client: AdminAPI | None = None,
    wanted_override: Mapping[int, set[str]] | None = None,
    attempt: int = 1,
) -> SyncReport:
    """Write the tag diff of ``customer_ids`` (all customers when ``None``) to Shopify.

    Every tag in the ledger that is not wanted comes off (a renamed segment's old tag, the
    tags of the old prefix, a segment whose sync is off); nothing else does. ``wanted_override``
    replaces the memberships (``remove_all`` wants nothing). An unchanged customer costs
    nothing; a changed one one slot in an aliased request, or one bulk row.

    A few customers (one request's worth: the follow-up of a webhook) are read, planned,
    written and stored under one claim (:func:`_sync_few`); one request is never worth a bulk
    operation, whatever the threshold.
    """
    if customer_ids is not None and wanted_override is None:
        few = sorted(set(customer_ids))
        if len(few) <= BATCH_SLOTS:
            return _sync_few(ctx, shop_id, few, client)
    with ctx.engine.connect() as conn:
        shop = conn.execute(_SHOP, {"shop": shop_id}).first()
        if shop is None or not shop.installed:
            # Uninstalled (or redacted): nothing can be written, and nothing should be.
            log.info("tags for shop %s skipped: not installed", shop_id)
            return SyncReport()
        state = ShopTags.of(conn, shop_id, shop.settings)
        current = current_tags(conn, shop_id, customer_ids)
        chosen = list(current) if customer_ids is not None else None
        found = wanted_override if wanted_override is not None else state.wanted(conn, chosen)
        wanted = {cid: set(found.get(cid, set())) for cid in current}
        owned = ledger.owned(conn, shop_id, chosen)
        planned, limited = plan(current, wanted, owned)
        gone = ledger.stale(current, wanted, owned)
        busy = in_flight(conn, shop_id) if shop.bulk_running and (planned or gone) else set()
    report = SyncReport(checked=len(current), limited=dict(limited))
    for customer_id in busy & planned.keys():
        del planned[customer_id]
        report.in_flight += 1
    gone = [(cid, tag) for cid, tag in gone if cid not in busy]
    limits = _limits_rows(shop_id, limited)
    if gone or limits:
        with write_engine(ctx.engine).begin() as conn:
            ledger.record(conn, shop_id, removed=gone)
            if limits:
                conn.execute(_AUDIT, limits)
    if not planned:
        return report
    client = client or admin_client(ctx, shop_id)
    if len(planned) > state.threshold and attempt <= MAX_BULK_ATTEMPTS:
        _write_bulk(ctx, client, state, planned, report, attempt)
    else:
        _write_small(ctx, client, shop_id, planned, wanted, report)
    log.info("tags for shop %s: %s", shop_id, report.summary())
    return report


def _sync_few(
    ctx: jobs.Context, shop_id: int, customer_ids: list[int], client: AdminAPI | None
) -> SyncReport:
    """:func:`sync_tags` for customers that fit one request: one claim reads the run, plans it
    (:func:`_read_run`) and holds the customers across the request; with nothing to change it
    needs no client and writes nothing (unless the ledger or the limits have news). Without a
    ``client`` the thread's is checked against the token version the claim read."""
    with _claim(ctx, shop_id, customer_ids, _read_run) as claim:
        if claim.report is None:
            log.info("tags for shop %s skipped: not installed", shop_id)
            return SyncReport()
        report = claim.report
        if claim.changes:
            client = client or admin_client(ctx, shop_id, seen=claim.seen)
            _send(ctx, client, shop_id, claim, claim.changes, report)
    if claim.changes:
        # At a write per webhook the audit row is the record; the line is for debugging.
        log.debug("tags for shop %s: %s", shop_id, report.summary())
    return report
