"""The JSON API behind the embedded page: one declarative ``routes`` table, paths relative to /api.

``shopify_app.server.app`` mounts :data:`routes` under ``/api`` behind the session-token middleware,
which sets ``request.state.shop_id`` (and ``shop_domain``, ``user_id``). Every query here is
filtered by that shop id: an id belonging to another shop answers 404, exactly as an id that
does not exist, so nothing leaks across shops.

Endpoints are sync functions (Starlette runs them in its threadpool) using SQLAlchemy sessions
from ``request.app.state.ctx.sessions``. Bad input answers 400 ``{"error": ..., "field": ...}``.

The two hot paths — the segments list and a 50-member page — read precomputed columns
(``Segment.member_count``, ``SegmentHistory``) and walk the ``memberships`` primary key
(``segment_id, customer_id``) as a keyset, so a 300,000-customer shop answers as fast as a
small one. Everything heavier (analytics) is cached per shop until the segments are recomputed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shopify_app.db.models import (
    AuditEntry,
    Customer,
    DataRequest,
    LineItem,
    MetaAudience,
    MetaConnection,
    Order,
    Product,
    Segment,
    SegmentHistory,
    Shop,
    SyncRun,
)
from shopify_app.errors import GoldpanError, InputError
from shopify_app.meta import audiences
from shopify_app.meta.identifiers import consent_allows
from shopify_app.segments import settings_change
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.library import reasons
from shopify_app.tagging import changes as tag_changes
from shopify_app.tagging import ledger as tag_ledger
from shopify_app.tagging import usage as tag_usage
from shopify_app.tagging.tags import segment_tag, tag_key, validate_tag

log = logging.getLogger(__name__)

PAGE_SIZE = 50
"""Members per page on the segment detail view."""

MEMBER_SORTS = ("id", "name", "spent", "orders", "since")
"""Accepted ``sort`` values for the members list (``-`` prefix: descending)."""


class NotFound(GoldpanError):
    """The object does not exist in the requesting shop (404)."""


# --------------------------------------------------------------------------- plumbing


def error_response(
    status: int, message: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error every page endpoint answers: ``{"error", "field", ...}``."""
    return JSONResponse({"error": message, "field": field, **extra}, status_code=status)


def endpoint(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Map deliberate errors to JSON: InputError → 400 with the field, NotFound → 404.

    The app's exception handlers would do the same; doing it here keeps the API's answers
    identical however it is mounted (the tests mount it in a bare Starlette app).
    """

    @wraps(fn)
    def wrapper(request: Request) -> Response:
        try:
            return fn(request)
        except NotFound as exc:
            return error_response(404, str(exc) or "not found")
        except InputError as exc:
            return error_response(400, str(exc), exc.field)

    return wrapper


def request_shop_id(request: Request) -> int:
    """The requesting shop, set by the session-token middleware."""
    shop_id = getattr(request.state, "shop_id", None)
    if not isinstance(shop_id, int):
        # The middleware always sets it; reaching here means the routes were mounted unguarded.
        raise RuntimeError("api routes mounted without the session-token middleware")
    return shop_id


def _session(request: Request) -> Session:
    return request.app.state.ctx.sessions()  # type: ignore[no-any-return,unused-ignore]


def _enqueue(request: Request, name: str, **kwargs: Any) -> None:
    """Queue follow-up work (tag sync, recompute) after a change the merchant made."""
    request.app.state.ctx.enqueue(name, **kwargs)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be a whole number", field=name) from None
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}", field=name)
    return value


def _path_id(request: Request) -> int:
    raw = request.path_params.get("segment_id", "")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InputError("segment id must be a number", field="segment_id") from None
    if value <= 0 or value > 2**31:
        raise NotFound("segment not found")
    return value


def _json_body(request: Request, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise InputError("request body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object", field="body")
    return body


def _read_body(request: Request) -> bytes:
    """The raw body from a sync endpoint (Starlette's ``body()`` is a coroutine)."""
    import anyio.from_thread

    return anyio.from_thread.run(request.body)


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _segment(session: Session, shop_id: int, segment_id: int) -> Segment:
    seg = session.scalar(
        select(Segment).where(Segment.id == segment_id, Segment.shop_id == shop_id)
    )
    if seg is None:
        raise NotFound("segment not found")
    return seg


def _shop(session: Session, shop_id: int) -> Shop:
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise NotFound("shop not found")
    return shop


# --------------------------------------------------------------------------- per-shop cache


class _ShopCache:
    """Expensive per-shop results, kept until the shop's segments are recomputed (or 5 min)."""

    def __init__(self, ttl: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, int], tuple[Any, float, Any]] = {}
        self.ttl = ttl

    def get(self, kind: str, shop_id: int, version: Any, build: Callable[[], Any]) -> Any:
        key = (kind, shop_id)
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] == version and now - hit[1] < self.ttl:
            return hit[2]
        value = build()
        with self._lock:
            self._data[key] = (version, now, value)
        return value


_cache = _ShopCache()


def _version(session: Session, shop_id: int) -> Any:
    """Changes whenever segments are recomputed or the order book grows."""
    seg = session.execute(
        select(func.max(Segment.computed_at), func.count(Segment.id)).where(
            Segment.shop_id == shop_id
        )
    ).one()
    # max(id) walks the primary key: cheap even with a million orders.
    newest_order = session.scalar(select(func.max(Order.id)).where(Order.shop_id == shop_id))
    return (tuple(seg), newest_order)


# --------------------------------------------------------------------------- shop config


def _load_config(shop: Shop) -> dict[str, Any]:
    """The shop's segment settings, validated, every key present (defaults filled in)."""
    return ShopConfig.from_settings(shop.settings or {}).to_settings()


def _prefix(shop: Shop) -> str:
    return str(_load_config(shop)["tag_prefix"])


# --------------------------------------------------------------------------- home


FINISHED = ("done", "completed", "failed", "canceled", "cancelled", "expired")
"""SyncRun statuses that mean the run is over."""


def _sync_status(session: Session, shop_id: int) -> dict[str, Any]:
    runs = session.scalars(
        select(SyncRun).where(SyncRun.shop_id == shop_id).order_by(SyncRun.id.desc()).limit(20)
    ).all()
    if not runs:
        return {"state": "never", "progress": None, "resources": [], "finished_at": None}
    latest: dict[str, SyncRun] = {}
    for run in runs:  # newest first: keep the latest run per resource
        latest.setdefault(run.resource, run)
    items = sorted(latest.values(), key=lambda r: r.resource)
    # Anything not finished is in progress (pending, running, ingesting, ...).
    running = [r for r in items if r.status not in FINISHED]
    failed = [r for r in items if r.status == "failed"]
    total = sum(r.object_count for r in running)
    done = sum(min(r.objects_done, r.object_count or r.objects_done) for r in running)
    state = "running" if running else "failed" if failed else "done"
    finished = [r.finished_at for r in items if r.finished_at is not None]
    return {
        "state": state,
        "kind": runs[0].kind,
        "progress": (done / total if total else 0.0) if running else None,
        "resources": [
            {
                "resource": r.resource,
                "status": r.status,
                "done": r.objects_done,
                "total": r.object_count,
                "error": r.error,
            }
            for r in items
        ],
        "finished_at": _iso(max(finished)) if finished and not running else None,
    }


def _notices(session: Session, shop: Shop, sync: dict[str, Any]) -> list[dict[str, Any]]:
    notices: list[dict[str, Any]] = []
    scopes = {s.strip() for s in (shop.scopes or "").split(",")}
    if "read_all_orders" not in scopes:
        notices.append({"key": "scope_all_orders", "tone": "info", "params": {}})
    if sync["state"] == "failed":
        err = next((r["error"] for r in sync["resources"] if r["error"]), "")
        notices.append({"key": "sync_failed", "tone": "critical", "params": {"error": err}})
    conn = session.get(MetaConnection, shop.id)
    if conn is not None and conn.status in ("expired", "revoked", "error", "terms"):
        notices.append(
            {"key": f"meta_{conn.status}", "tone": "warning", "params": {"error": conn.error or ""}}
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    errors = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.shop_id == shop.id, AuditEntry.at >= since, AuditEntry.result == "error"
        )
    )
    if errors:
        notices.append({"key": "write_errors", "tone": "warning", "params": {"count": errors}})
    return notices


HEADLINE_KEYS = ("repeat_rate", "days_between_orders", "orders_per_customer", "aov", "clv")


def _headline(session: Session, shop_id: int) -> dict[str, Any]:
    """Retention headline: the last 12 months against the 12 months before."""
    as_of = _today()
    previous_as_of = as_of - dt.timedelta(days=365)
    orders = _orders(session, shop_id)
    now = _period_metrics(orders, as_of)
    before = _period_metrics(orders, previous_as_of)
    return {
        "as_of": as_of.isoformat(),
        "previous_as_of": previous_as_of.isoformat(),
        "customers": now["customers"],
        "metrics": [
            {"key": key, "value": now[key], "previous": before[key]} for key in HEADLINE_KEYS
        ],
    }


@endpoint
def home(request: Request) -> Response:
    """Sync status, notices, and the retention headline (plus the model's predicted CLV)."""
    shop_id = request_shop_id(request)
    with _session(request) as session:
        shop = _shop(session, shop_id)
        sync = _sync_status(session, shop_id)
        version = _version(session, shop_id)
        headline = dict(
            _cache.get("headline", shop_id, version, lambda: _headline(session, shop_id))
        )
        headline["predicted_clv"] = _engine_extras(shop).get("clv", {}).get("predicted_12m")
        return JSONResponse(
            {
                "shop": {"domain": shop.domain, "name": shop.name, "currency": shop.currency},
                "sync": sync,
                "notices": _notices(session, shop, sync),
                "headline": headline,
                "segments_total": session.scalar(
                    select(func.count(Segment.id)).where(Segment.shop_id == shop_id)
                ),
            }
        )


# --------------------------------------------------------------------------- segments


def _meta_states(session: Session, shop_id: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    rows = session.scalars(
        select(MetaAudience).where(MetaAudience.shop_id == shop_id).order_by(MetaAudience.id)
    ).all()
    for aud in rows:
        entry = out.setdefault(aud.segment_id, {"audience": None, "lookalikes": []})
        data = {
            "id": aud.id,
            "audience_id": aud.audience_id,
            "status": aud.status,
            "received": aud.received,
            "invalid": aud.invalid,
            "approximate_lower": aud.approximate_lower,
            "approximate_upper": aud.approximate_upper,
            "error": aud.error,
            "spec": aud.spec,
            "last_synced_at": _iso(aud.last_synced_at),
        }
        if aud.kind == "lookalike":
            entry["lookalikes"].append(data)
        else:
            entry["audience"] = data
    return out


def _latest_history(
    session: Session, shop_id: int, column: Any, up_to: dt.date | None = None
) -> dict[int, Any]:
    """One SegmentHistory column per segment, from each segment's newest day (≤ ``up_to``)."""
    where = [SegmentHistory.shop_id == shop_id]
    if up_to is not None:
        where.append(SegmentHistory.day <= up_to)
    newest = (
        select(SegmentHistory.segment_id, func.max(SegmentHistory.day).label("day"))
        .where(*where)
        .group_by(SegmentHistory.segment_id)
        .subquery()
    )
    rows = session.execute(
        select(SegmentHistory.segment_id, column).join(
            newest,
            and_(
                SegmentHistory.segment_id == newest.c.segment_id,
                SegmentHistory.day == newest.c.day,
            ),
        )
    ).all()
    return {int(sid): value for sid, value in rows}


def _segment_revenue(session: Session, shop_id: int) -> tuple[dict[int, float], float]:
    """Latest revenue per segment (from SegmentHistory) and the shop's total net spend."""
    revenue = _latest_history(session, shop_id, SegmentHistory.revenue)
    # The shop's total spend scans every customer: computed once per recompute, not per request.
    total = _cache.get(
        "total_spend",
        shop_id,
        _version(session, shop_id),
        lambda: session.scalar(
            select(func.coalesce(func.sum(Customer.amount_spent), 0)).where(
                Customer.shop_id == shop_id
            )
        ),
    )
    return {sid: float(rev or 0) for sid, rev in revenue.items()}, float(total or 0)


def _week_ago_members(session: Session, shop_id: int) -> dict[int, int]:
    """Each segment's member count a week ago (its newest history row up to then)."""
    week_ago = _today() - dt.timedelta(days=7)
    members = _latest_history(session, shop_id, SegmentHistory.members, up_to=week_ago)
    return {sid: int(n) for sid, n in members.items()}


def _segment_row(
    seg: Segment,
    prefix: str,
    revenue: dict[int, float],
    total: float,
    week_ago: dict[int, int],
    meta: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    before = week_ago.get(seg.id)
    audience = meta.get(seg.id, {}).get("audience")
    rev = revenue.get(seg.id)
    return {
        "id": seg.id,
        "handle": seg.handle,
        "kind": seg.kind,
        "name": seg.name,
        "enabled": seg.enabled,
        "tag": segment_tag(seg.tag, seg.handle, prefix),
        "members": seg.member_count,
        "revenue": rev,
        "revenue_share": (rev / total) if rev is not None and total > 0 else None,
        "change_week": (seg.member_count - before) if before is not None else None,
        "tag_sync": {"enabled": seg.tag_sync, "tag": segment_tag(seg.tag, seg.handle, prefix)},
        "native_segment": seg.native_segment_id,
        "meta_sync": {
            "enabled": seg.meta_sync,
            "status": audience["status"] if audience else None,
            "error": audience["error"] if audience else None,
        },
        "computed_at": _iso(seg.computed_at),
    }


@endpoint
def segments(request: Request) -> Response:
    """Every segment of the shop with size, revenue share, weekly change and sync state."""
    shop_id = request_shop_id(request)
    with _session(request) as session:
        prefix = _prefix(_shop(session, shop_id))
        rows = session.scalars(
            select(Segment).where(Segment.shop_id == shop_id).order_by(Segment.id)
        ).all()
        revenue, total = _segment_revenue(session, shop_id)
        week_ago = _week_ago_members(session, shop_id)
        meta = _meta_states(session, shop_id)
        return JSONResponse(
            {
                "segments": [_segment_row(s, prefix, revenue, total, week_ago, meta) for s in rows],
                "total_revenue": total,
            }
        )


@endpoint
def segment_detail(request: Request) -> Response:
    """One segment: its row, definition, 30 days of history and its Meta audiences."""
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    with _session(request) as session:
        seg = _segment(session, shop_id, segment_id)
        prefix = _prefix(_shop(session, shop_id))
        revenue, total = _segment_revenue(session, shop_id)
        week_ago = _week_ago_members(session, shop_id)
        meta = _meta_states(session, shop_id)
        history = session.execute(
            select(SegmentHistory.day, SegmentHistory.members, SegmentHistory.revenue)
            .where(SegmentHistory.segment_id == seg.id)
            .order_by(SegmentHistory.day.desc())
            .limit(30)
        ).all()
        row = _segment_row(seg, prefix, revenue, total, week_ago, meta)
        row["definition"] = seg.definition
        row["history"] = [
            {"day": d.isoformat(), "members": m, "revenue": float(r or 0)}
            for d, m, r in reversed(history)
        ]
        row["meta"] = meta.get(seg.id, {"audience": None, "lookalikes": []})
        return JSONResponse(row)


_MEMBER_COLUMNS: dict[str, Any] = {
    "spent": Customer.amount_spent,
    "orders": Customer.number_of_orders,
}


def _member_query(seg: Segment, q: str | None, sort: str) -> Any:
    from shopify_app.db.models import Membership

    stmt = (
        select(Membership.customer_id, Membership.reason, Membership.since, Customer)
        .join(
            Customer,
            and_(Customer.shop_id == Membership.shop_id, Customer.id == Membership.customer_id),
        )
        # The segment was already checked to be this shop's; filtering on segment_id alone lets
        # the primary key (segment_id, customer_id) drive the walk (shop_id would pick the
        # shop-wide index and scan every membership of the shop).
        .where(Membership.segment_id == seg.id)
    )
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Customer.email).like(like),
                func.lower(
                    func.coalesce(Customer.first_name, "")
                    + " "
                    + func.coalesce(Customer.last_name, "")
                ).like(like),
                func.lower(func.coalesce(Customer.company, "")).like(like),
            )
        )
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    col: Any
    if key == "since":
        col = Membership.since
    elif key == "name":
        col = func.lower(
            func.coalesce(Customer.first_name, "") + " " + func.coalesce(Customer.last_name, "")
        )
    else:
        col = _MEMBER_COLUMNS.get(key, Membership.customer_id)
    # Membership.customer_id breaks ties so pages are stable; for the default sort it is the
    # primary-key walk itself (segment_id, customer_id), which needs no sorting at all.
    if key == "id":
        order = [Membership.customer_id.desc() if desc else Membership.customer_id.asc()]
    else:
        order = [col.desc() if desc else col.asc(), Membership.customer_id.asc()]
    return stmt.order_by(*order)


def _member_params(request: Request) -> tuple[str | None, str, int]:
    q = (request.query_params.get("q") or "").strip() or None
    if q is not None and len(q) > 100:
        raise InputError("search is limited to 100 characters", field="q")
    sort = request.query_params.get("sort") or "id"
    if sort.lstrip("-") not in MEMBER_SORTS or sort.count("-") > 1:
        raise InputError(f"sort must be one of {', '.join(MEMBER_SORTS)}", field="sort")
    page = _int_param(request, "page", 1, 1, 1_000_000)
    return q, sort, page


@endpoint
def segment_members(request: Request) -> Response:
    """A page of 50 members with why each qualifies; ``q`` searches name, email, company."""
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    q, sort, page = _member_params(request)
    after = request.query_params.get("after")
    with _session(request) as session:
        seg = _segment(session, shop_id, segment_id)
        stmt = _member_query(seg, q, sort)
        if after and sort == "id" and page == 1:
            # Keyset continuation for the default order: constant time however deep.
            from shopify_app.db.models import Membership

            try:
                after_id = int(after)
            except ValueError:
                raise InputError("after must be a customer id", field="after") from None
            stmt = stmt.where(Membership.customer_id > after_id)
        rows = session.execute(stmt.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all()
        # The tags Goldpan wrote on them (the ledger), as Shopify spells them.
        ours = tag_ledger.owned(session, shop_id, [cust.id for *_, cust in rows[:PAGE_SIZE]])
        members = [
            {
                "id": cust.id,
                "first_name": cust.first_name,
                "last_name": cust.last_name,
                "email": cust.email,
                "company": cust.company,
                "orders": cust.number_of_orders,
                "spent": float(cust.amount_spent or 0),
                "country": cust.country_code,
                "reason": reason,
                "since": _iso(since),
                "tags": [t for t in cust.tags or [] if tag_key(str(t)) in ours.get(cust.id, {})],
            }
            for _cid, reason, since, cust in rows[:PAGE_SIZE]
        ]
        return JSONResponse(
            {
                "members": members,
                "page": page,
                "page_size": PAGE_SIZE,
                "has_next": len(rows) > PAGE_SIZE,
                "next_after": members[-1]["id"] if members and len(rows) > PAGE_SIZE else None,
                "total": None if q else seg.member_count,
                "q": q,
                "sort": sort,
            }
        )


def _csv_safe(value: Any) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported text."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


@endpoint
def segment_members_csv(request: Request) -> Response:
    """Every member as CSV (streamed), for spreadsheets and other tools."""
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    sessions = request.app.state.ctx.sessions
    with _session(request) as session:
        seg = _segment(session, shop_id, segment_id)
        handle = seg.handle

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            [
                "customer_id",
                "first_name",
                "last_name",
                "email",
                "phone",
                "company",
                "country",
                "orders",
                "amount_spent",
                "reason",
                "member_since",
            ]
        )
        with sessions() as s:
            stmt = _member_query(seg, None, "id").execution_options(yield_per=2000)
            for _cid, reason, since, c in s.execute(stmt):
                writer.writerow(
                    [c.id]
                    + [
                        _csv_safe(v)
                        for v in (
                            c.first_name,
                            c.last_name,
                            c.email,
                            c.phone,
                            c.company,
                            c.country_code,
                        )
                    ]
                    + [
                        c.number_of_orders,
                        f"{float(c.amount_spent or 0):.2f}",
                        # Spreadsheets get the reason in English, not the page's JSON.
                        _csv_safe(reasons.render(reason)),
                        _iso(since),
                    ]
                )
                if buf.tell() > 64_000:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="goldpan-{handle}.csv"'},
    )


def _tag_preview(session: Session, shop_id: int, seg: Segment) -> dict[str, int]:
    entry = tag_changes.preview(session, shop_id).get(seg.handle)
    if entry is None:  # a disabled segment: nobody carries its tag because of Goldpan
        return {"gain": 0, "lose": 0}
    return {"gain": int(entry["gain"]), "lose": int(entry["lose"])}


@endpoint
def segment_tag_sync(request: Request) -> Response:
    """Turn tag sync on or off. Turning it on first answers the preview; ``confirm`` applies.

    Body: ``{"enabled": bool, "confirm": bool, "tag": optional new tag}``.
    """
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    body = _json_body(request, _read_body(request))
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise InputError("enabled must be true or false", field="enabled")
    confirm = body.get("confirm", False)
    if not isinstance(confirm, bool):
        raise InputError("confirm must be true or false", field="confirm")
    tag = body.get("tag")
    if tag is not None:
        if not isinstance(tag, str):
            raise InputError("the tag must be text", field="tag")
        tag = validate_tag(tag)
    with _session(request) as session, session.begin():
        shop = _shop(session, shop_id)
        seg = _segment(session, shop_id, segment_id)
        prefix = _prefix(shop)
        old_tag = segment_tag(seg.tag, seg.handle, prefix)
        new_tag = tag if tag is not None else old_tag
        if new_tag != old_tag:
            ctx = request.app.state.ctx
            tag_usage.refuse_rename(ctx, session, shop_id, seg.id, new_tag, prefix=prefix)
        if enabled and not confirm and not seg.tag_sync:
            preview = _tag_preview(session, shop_id, seg)
            return JSONResponse({"applied": False, "preview": preview, "tag": new_tag})
        if new_tag != old_tag:
            seg.tag = new_tag
        seg.tag_sync = enabled
        session.add(
            AuditEntry(
                shop_id=shop_id,
                target="app",
                action="tag_sync.enable" if enabled else "tag_sync.disable",
                subject=seg.handle,
                count=seg.member_count,
                detail={"tag": new_tag, "user_id": getattr(request.state, "user_id", None)},
            )
        )
        sync_now = seg.tag_sync
    _enqueue(
        request,
        "tags.segment_changed",
        shop_id=shop_id,
        segment_id=segment_id,
        old_tag=old_tag if old_tag != new_tag else None,
    )
    return JSONResponse({"applied": True, "tag_sync": sync_now, "tag": new_tag})


@endpoint
def segment_meta_preview(request: Request) -> Response:
    """Before Meta sync is turned on: how many members the consent policy lets us upload.

    Switching it on and off, lookalikes and the hashed file are ``/api/meta/...`` (meta.web).
    """
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    with _session(request) as session:
        shop = _shop(session, shop_id)
        seg = _segment(session, shop_id, segment_id)
        policy = audiences.consent_policy(shop)
        upload = sum(
            1
            for _cid, person in audiences.segment_people(session, shop_id, seg.id)
            if consent_allows(policy, person)
        )
        conn = session.get(MetaConnection, shop_id)
        return JSONResponse(
            {
                "preview": {"upload": upload, "members": seg.member_count},
                "policy": policy,
                "connected": conn is not None and conn.status == "connected",
            }
        )


# --------------------------------------------------------------------------- analytics


def _orders(session: Session, shop_id: int) -> list[tuple[int, dt.datetime, float, list[Any], int]]:
    """Counted orders (not cancelled, not test) with a customer, oldest first."""
    rows = session.execute(
        select(Order.customer_id, Order.processed_at, Order.total, Order.discount_codes, Order.id)
        .where(
            Order.shop_id == shop_id,
            Order.customer_id.is_not(None),
            Order.cancelled_at.is_(None),
            Order.test.is_(False),
        )
        .order_by(Order.processed_at, Order.id)
    ).all()
    return [(int(c), p, float(t or 0), list(d or []), int(i)) for c, p, t, d, i in rows]


def _period_metrics(
    orders: list[tuple[int, dt.datetime, float, list[Any], int]], as_of: dt.date
) -> dict[str, Any]:
    """Retention figures over the 365 days ending ``as_of`` (customers' full history counts)."""
    start = as_of - dt.timedelta(days=365)
    history: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    for cid, at, total, _codes, _oid in orders:
        day = at.date()
        if day <= as_of:
            history[cid].append((day, total))
    active = {cid: h for cid, h in history.items() if h[-1][0] > start}
    n = len(active)
    in_period = [(d, t) for h in active.values() for d, t in h if d > start]
    repeaters = sum(1 for h in active.values() if len(h) >= 2)
    gaps = [
        (h[i][0] - h[i - 1][0]).days
        for h in active.values()
        for i in range(1, len(h))
        if h[i][0] > start
    ]
    revenue = sum(t for _d, t in in_period)
    aov = revenue / len(in_period) if in_period else None
    orders_per = len(in_period) / n if n else None
    # Historic CLV: AOV × purchase frequency per year × average lifespan in years (≥ 1 year).
    lifespans = [max((h[-1][0] - h[0][0]).days / 365.0, 1.0) for h in active.values()]
    clv = (
        aov * orders_per * (sum(lifespans) / len(lifespans))
        if aov is not None and orders_per is not None and lifespans
        else None
    )
    return {
        "customers": n,
        "repeat_rate": repeaters / n if n else None,
        "days_between_orders": sum(gaps) / len(gaps) if gaps else None,
        "orders_per_customer": orders_per,
        "aov": aov,
        "clv": clv,
    }


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _months_between(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def _quintile_scores(values: Mapping[int, float], reverse: bool = False) -> dict[int, int]:
    ranked = sorted(values, key=lambda k: (values[k], k), reverse=reverse)
    n = len(ranked)
    return {cid: 1 + (i * 5) // n for i, cid in enumerate(ranked)} if n else {}


def _analytics(session: Session, shop_id: int) -> dict[str, Any]:
    orders = _orders(session, shop_id)
    as_of = _today()
    by_customer: dict[int, list[tuple[dt.date, float, list[Any], int]]] = defaultdict(list)
    for cid, at, total, codes, oid in orders:
        by_customer[cid].append((at.date(), total, codes, oid))
    first_order_ids = [h[0][3] for h in by_customer.values()]
    first_product: dict[int, str] = {}
    for chunk_start in range(0, len(first_order_ids), 5000):
        chunk = first_order_ids[chunk_start : chunk_start + 5000]
        for oid, title in session.execute(
            select(LineItem.order_id, LineItem.title)
            .where(LineItem.shop_id == shop_id, LineItem.order_id.in_(chunk))
            .order_by(LineItem.order_id, LineItem.id)
        ):
            first_product.setdefault(int(oid), title or "—")

    # Cohorts: share of a cohort ordering again in month k after its first month.
    def cohort_table(key_of: Callable[[list[Any]], str | None], limit: int) -> dict[str, Any]:
        groups: dict[str, list[list[Any]]] = defaultdict(list)
        for h in by_customer.values():
            key = key_of(h)
            if key is not None:
                groups[key].append(h)
        chosen = sorted(groups, key=lambda k: (-len(groups[k]), k))[:limit]
        if key_of is _first_month:
            chosen = sorted(groups)[-limit:]
        rows = []
        for key in chosen:
            members = groups[key]
            counts = [0] * 12
            for h in members:
                first = h[0][0]
                seen = {_months_between(first, d) for d, *_ in h[1:]}
                for k in seen:
                    if 1 <= k <= 12:
                        counts[k - 1] += 1
            rows.append(
                {"key": key, "size": len(members), "retention": [c / len(members) for c in counts]}
            )
        return {"offsets": list(range(1, 13)), "rows": rows}

    def _first_product(h: list[Any]) -> str | None:
        return first_product.get(h[0][3])

    def _first_code(h: list[Any]) -> str | None:
        codes = h[0][2]
        return str(codes[0]).upper() if codes else None

    # Time between orders histogram (days, fixed bins).
    bins = [0, 7, 14, 30, 60, 90, 120, 180, 270, 365]
    hist = [0] * len(bins)
    for h in by_customer.values():
        for i in range(1, len(h)):
            gap = (h[i][0] - h[i - 1][0]).days
            idx = max(j for j, lo in enumerate(bins) if gap >= lo)
            hist[idx] += 1

    # RFM grid: recency score × frequency score, counts and average spend.
    recency = {cid: -(as_of - h[-1][0]).days for cid, h in by_customer.items()}
    frequency = {cid: float(len(h)) for cid, h in by_customer.items()}
    r_score = _quintile_scores(recency)
    f_score = _quintile_scores(frequency)
    grid: dict[tuple[int, int], list[float]] = defaultdict(list)
    for cid, h in by_customer.items():
        grid[(r_score[cid], f_score[cid])].append(sum(t for _d, t, *_ in h))
    rfm = [
        {"r": r, "f": f, "customers": len(v), "avg_spend": sum(v) / len(v) if v else 0}
        for (r, f), v in sorted(grid.items())
    ]

    # Repeat-rate trend: per month, share of ordering customers who had ordered before.
    month_customers: dict[str, set[int]] = defaultdict(set)
    month_returning: dict[str, set[int]] = defaultdict(set)
    for cid, h in by_customer.items():
        for i, (d, *_rest) in enumerate(h):
            m = _month(d)
            month_customers[m].add(cid)
            if i > 0:
                month_returning[m].add(cid)
    months = sorted(month_customers)[-24:]
    trend = [
        {
            "month": m,
            "customers": len(month_customers[m]),
            "repeat_rate": len(month_returning[m]) / len(month_customers[m]),
        }
        for m in months
    ]

    # Products that bring customers back: repeat rate by first product.
    prod: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for h in by_customer.values():
        first_title = first_product.get(h[0][3])
        if first_title:
            prod[first_title][0] += 1
            prod[first_title][1] += 1 if len(h) >= 2 else 0
    ranked = sorted(
        ((t, n, r / n) for t, (n, r) in prod.items() if n >= 3),
        key=lambda p: (-p[2], -p[1], p[0]),
    )[:10]
    products = [{"title": t, "customers": n, "repeat_rate": rate} for t, n, rate in ranked]

    return {
        "as_of": as_of.isoformat(),
        "customers": len(by_customer),
        "orders": len(orders),
        "cohorts": {
            "month": cohort_table(_first_month, 12),
            "product": cohort_table(_first_product, 8),
            "discount": cohort_table(_first_code, 8),
        },
        "histogram": {"bins": bins, "counts": hist},
        "rfm": rfm,
        "repeat_trend": trend,
        "products": products,
    }


def _first_month(h: list[Any]) -> str | None:
    return _month(h[0][0])


@endpoint
def analytics(request: Request) -> Response:
    """Cohorts, time between orders, RFM grid, repeat trend, products bringing customers back."""
    shop_id = request_shop_id(request)
    with _session(request) as session:
        shop = _shop(session, shop_id)
        version = _version(session, shop_id)
        data = _cache.get("analytics", shop_id, version, lambda: _analytics(session, shop_id))
        return JSONResponse({**data, **_engine_extras(shop)})


METRICS_KEY = "segment_metrics"
"""Where the segments engine leaves its latest ``metrics.compute`` output in ``Shop.settings``."""


def _engine_extras(shop: Shop) -> dict[str, Any]:
    """What only the segments engine knows: the official RFM grid and the model's CLV.

    The engine scores RFM with its own edges (recency × the mean of frequency and monetary), so
    when it has run, its grid replaces the page's quick recency × frequency quintiles.
    """
    engine = (shop.settings or {}).get(METRICS_KEY)
    if not isinstance(engine, dict):
        return {"rfm_source": "page"}
    extras: dict[str, Any] = {"rfm_source": "page"}
    grid = ((engine.get("rfm") or {}).get("grid") or {}).get("counts")
    if isinstance(grid, list) and len(grid) == 5:
        extras["rfm"] = [
            {"r": r + 1, "f": f + 1, "customers": int(count), "avg_spend": None}
            for r, row in enumerate(grid)
            for f, count in enumerate(row)
            if count
        ]
        extras["rfm_source"] = "engine"
        extras["rfm_groups"] = (engine.get("rfm") or {}).get("groups") or {}
    clv = engine.get("clv") or {}
    extras["clv"] = {"simple": clv.get("simple"), "predicted_12m": clv.get("predicted_12m")}
    extras["engine_as_of"] = engine.get("as_of")
    return extras


# --------------------------------------------------------------------------- settings


@endpoint
def settings_get(request: Request) -> Response:
    """The shop's segment settings, the products its cross-sell rules name, and Meta state."""
    shop_id = request_shop_id(request)
    with _session(request) as session:
        shop = _shop(session, shop_id)
        config = _load_config(shop)
        # Cross-sell rules name products by id (picked) or by title words (typed).
        ids = {
            int(ref)
            for rule in config["cross_sell"]
            for side in ("bought", "never")
            for ref in rule[side]
            if str(ref).isdigit() and len(str(ref)) < 19
        }
        products = (
            session.execute(
                select(Product.id, Product.title).where(
                    Product.shop_id == shop_id, Product.id.in_(sorted(ids))
                )
            ).all()
            if ids
            else []
        )
        conn = session.get(MetaConnection, shop_id)
        return JSONResponse(
            {
                "settings": config,
                "products": {str(pid): title for pid, title in products},
                "meta": {
                    "status": conn.status if conn else "disconnected",
                    "ad_account_id": conn.ad_account_id if conn else None,
                    "tos_accepted": conn.tos_accepted if conn else False,
                    "error": conn.error if conn else None,
                },
            }
        )


@endpoint
def settings_put(request: Request) -> Response:
    """Change settings (``{"settings": {...}}``, a partial object); refused with the failing
    field. A change that moves tags or Meta audiences answers 409 with its effect (and a
    ``token``) and is applied only when sent again with ``"confirm": <token>``; then recompute.
    """
    shop_id = request_shop_id(request)
    body = _json_body(request, _read_body(request))
    confirm = body.pop("confirm", None)
    changes = body.get("settings", body)
    if not isinstance(changes, dict) or not changes:
        raise InputError("send the settings to change", field="settings")
    ctx = request.app.state.ctx
    change = settings_change.prepare(ctx, shop_id, changes)
    if change.effect.moves and confirm != change.token:
        return JSONResponse({"applied": False, **change.preview()}, status_code=409)
    settings_change.apply(ctx, change, user_id=getattr(request.state, "user_id", None))
    _enqueue(request, "segments.recompute_shop", shop_id=shop_id)
    old_prefix, new_prefix = change.before["tag_prefix"], change.after["tag_prefix"]
    if new_prefix != old_prefix:
        # Every tag Goldpan wrote under the old names moves to the new ones.
        _enqueue(request, "tags.prefix_changed", shop_id=shop_id, old_prefix=old_prefix)
    return JSONResponse({"applied": True, "settings": change.after, **change.preview()})


@endpoint
def segment_native(request: Request) -> Response:
    """Create (or refresh) the segment's native Shopify segment on its tag."""
    shop_id = request_shop_id(request)
    segment_id = _path_id(request)
    with _session(request) as session:
        seg = _segment(session, shop_id, segment_id)
        if not seg.tag_sync:
            raise InputError(
                "turn tag sync on first: the native segment follows the tag", field="tag_sync"
            )
    _enqueue(request, "tags.native_segment", shop_id=shop_id, segment_id=segment_id)
    return JSONResponse({"queued": True}, status_code=202)


@endpoint
def tags_remove_all(request: Request) -> Response:
    """Remove every Goldpan tag from every customer (for merchants who leave). Needs confirm."""
    shop_id = request_shop_id(request)
    body = _json_body(request, _read_body(request))
    if body.get("confirm") is not True:
        raise InputError("confirm the removal of every Goldpan tag", field="confirm")
    with _session(request) as session:
        _shop(session, shop_id)
    _enqueue(request, "tags.remove_all", shop_id=shop_id)
    return JSONResponse({"queued": True}, status_code=202)


# --------------------------------------------------------------------------- pickers, audit


@endpoint
def products(request: Request) -> Response:
    """Products for pickers: title search, 20 at a time."""
    shop_id = request_shop_id(request)
    q = (request.query_params.get("q") or "").strip()
    if len(q) > 100:
        raise InputError("search is limited to 100 characters", field="q")
    with _session(request) as session:
        stmt = select(Product.id, Product.title, Product.status).where(Product.shop_id == shop_id)
        if q:
            stmt = stmt.where(func.lower(Product.title).like(f"%{q.lower()}%"))
        rows = session.execute(stmt.order_by(Product.title, Product.id).limit(20)).all()
        return JSONResponse(
            {"products": [{"id": pid, "title": title, "status": st} for pid, title, st in rows]}
        )


@endpoint
def audit(request: Request) -> Response:
    """The latest writes to Shopify and Meta, newest first; ``before`` pages back by id."""
    shop_id = request_shop_id(request)
    before = _int_param(request, "before", 0, 0, 2**62)
    with _session(request) as session:
        stmt = select(AuditEntry).where(AuditEntry.shop_id == shop_id)
        if before:
            stmt = stmt.where(AuditEntry.id < before)
        rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE + 1)).all()
        return JSONResponse(
            {
                "entries": [
                    {
                        "id": e.id,
                        "at": _iso(e.at),
                        "target": e.target,
                        "action": e.action,
                        "subject": e.subject,
                        "count": e.count,
                        "result": e.result,
                        "error": e.error,
                    }
                    for e in rows[:PAGE_SIZE]
                ],
                "has_next": len(rows) > PAGE_SIZE,
            }
        )


@endpoint
def data_requests(request: Request) -> Response:
    """Customers' data requests (``customers/data_request``), newest first, for the merchant."""
    shop_id = request_shop_id(request)
    with _session(request) as session:
        rows = session.scalars(
            select(DataRequest)
            .where(DataRequest.shop_id == shop_id)
            .order_by(DataRequest.id.desc())
            .limit(PAGE_SIZE)
        ).all()
        return JSONResponse(
            {
                "requests": [
                    {
                        "id": r.id,
                        "request_id": r.request_id,
                        "customer_id": r.customer_id,
                        "requested_at": _iso(r.requested_at),
                    }
                    for r in rows
                ]
            }
        )


@endpoint
def data_request_export(request: Request) -> Response:
    """One data request's export: everything Goldpan holds about that customer, as JSON."""
    shop_id = request_shop_id(request)
    raw = request.path_params.get("request_id", "")
    if not str(raw).isdigit():
        raise InputError("request id must be a number", field="request_id")
    with _session(request) as session:
        row = session.get(DataRequest, int(raw))
        if row is None or row.shop_id != shop_id:
            raise NotFound("no such data request")
        return JSONResponse(
            row.export,
            headers={"Content-Disposition": f'attachment; filename="data-request-{row.id}.json"'},
        )


routes: list[Route] = [
    Route("/home", home, methods=["GET"]),
    Route("/segments", segments, methods=["GET"]),
    Route("/segments/{segment_id}", segment_detail, methods=["GET"]),
    Route("/segments/{segment_id}/members", segment_members, methods=["GET"]),
    Route("/segments/{segment_id}/members.csv", segment_members_csv, methods=["GET"]),
    Route("/segments/{segment_id}/tag-sync", segment_tag_sync, methods=["POST"]),
    Route("/segments/{segment_id}/meta-preview", segment_meta_preview, methods=["GET"]),
    Route("/segments/{segment_id}/native-segment", segment_native, methods=["POST"]),
    Route("/tags/remove-all", tags_remove_all, methods=["POST"]),
    Route("/analytics", analytics, methods=["GET"]),
    Route("/settings", settings_get, methods=["GET"]),
    Route("/settings", settings_put, methods=["PUT"]),
    Route("/products", products, methods=["GET"]),
    Route("/audit", audit, methods=["GET"]),
    Route("/data-requests", data_requests, methods=["GET"]),
    Route("/data-requests/{request_id}", data_request_export, methods=["GET"]),
]
"""The API table; ``server.app`` mounts it under ``/api`` behind session-token checks."""
