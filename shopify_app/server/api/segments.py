"""The segments views: the list, one segment, its members (page and CSV), tag sync, native
segments."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import io
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from shopify_app.db.models import (
    AuditEntry,
    Customer,
    Segment,
    SegmentHistory,
    Shop,
)
from shopify_app.errors import InputError
from shopify_app.meta import view as meta_view
from shopify_app.segments import backtest, library, loader, recompute, rules
from shopify_app.segments.library import reasons
from shopify_app.segments.recompute import cached_stats
from shopify_app.server import context
from shopify_app.server.api.cache import data_version, shop_cache
from shopify_app.server.api.request import (
    PAGE_SIZE,
    db_session,
    db_write,
    enqueue,
    get_segment,
    get_shop,
    int_param,
    iso,
    json_body,
    path_id,
    request_shop_id,
    today,
)
from shopify_app.server.api.settings import load_config
from shopify_app.server.assets import WEB_DIR
from shopify_app.states import AuditTarget
from shopify_app.tagging import changes as tag_changes
from shopify_app.tagging import ledger as tag_ledger
from shopify_app.tagging import state as tag_state
from shopify_app.tagging import usage as tag_usage
from shopify_app.tagging.tags import segment_tag, tag_key, validate_tag

MEMBER_SORTS = ("id", "name", "spent", "orders", "since")
"""Accepted ``sort`` values for the members list (``-`` prefix: descending)."""

PREDICTED = ("likely-to-buy", "at-risk")
"""Segments the shop's backtest checks: their view says how it did."""


def _prefix(shop: Shop) -> str:
    return str(load_config(shop)["tag_prefix"])


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
    total = shop_cache.get(
        "total_spend",
        shop_id,
        data_version(session, shop_id),
        lambda: session.scalar(
            select(func.coalesce(func.sum(Customer.amount_spent), 0)).where(
                Customer.shop_id == shop_id
            )
        ),
    )
    return {sid: float(rev or 0) for sid, rev in revenue.items()}, float(total or 0)


def _week_ago_members(session: Session, shop_id: int) -> dict[int, int]:
    """Each segment's member count a week ago (its newest history row up to then)."""
    week_ago = today() - dt.timedelta(days=7)
    members = _latest_history(session, shop_id, SegmentHistory.members, up_to=week_ago)
    return {sid: int(n) for sid, n in members.items()}


def _tags_written(
    session: Session, shop_id: int, segments: Sequence[Segment], prefix: str
) -> dict[int, int]:
    """Tag sync's progress for the segments that have it on."""
    synced = {
        s.id: segment_tag(s.tag, s.handle, prefix) for s in segments if s.tag_sync and s.enabled
    }
    return tag_state.tag_progress(session, shop_id, synced)


def _segment_row(
    seg: Segment,
    prefix: str,
    revenue: dict[int, float],
    total: float,
    week_ago: dict[int, int],
    meta: dict[int, dict[str, Any]],
    written: dict[int, int],
) -> dict[str, Any]:
    before = week_ago.get(seg.id)
    shown = meta.get(seg.id, {})
    audience = shown.get("audience")
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
        "tag_sync": {
            "enabled": seg.tag_sync,
            "tag": segment_tag(seg.tag, seg.handle, prefix),
            # Members carrying the tag so far: the page shows progress until all of them do.
            "written": written.get(seg.id),
        },
        "native_segment": seg.native_segment_id,
        "meta_sync": {
            "enabled": seg.meta_sync,
            "status": shown.get("state"),
            "error": audience["error"] if audience else None,
        },
        # The list describes every segment in one line from what defines it.
        "definition": seg.definition,
        "computed_at": iso(seg.computed_at),
    }


def segment_list(request: Request) -> Response:
    """Every segment of the shop with size, revenue share, weekly change and sync state."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        prefix = _prefix(shop)
        rows = session.scalars(
            select(Segment).where(Segment.shop_id == shop_id).order_by(Segment.id)
        ).all()
        stats = recompute.cached_stats(shop)
        cfg = recompute.shop_config(shop)
        # A deleted rule's (or a region's that left the top) row stays for its history and
        # tag ledger; ``defined: false`` lets the page leave it out of the list. An archived
        # custom segment is not defined either, but listed under "Archived" to be restored.
        defined = (
            {d.handle for d in library.segment_definitions(cfg, stats)}
            if stats is not None
            else None
        )
        archived = {f"custom-{c['handle']}" for c in cfg.custom_segments if c.get("archived")}
        revenue, total = _segment_revenue(session, shop_id)
        week_ago = _week_ago_members(session, shop_id)
        meta = meta_view.segment_meta(session, shop_id)
        written = _tags_written(session, shop_id, rows, prefix)
        return JSONResponse(
            {
                "segments": [
                    {
                        **_segment_row(s, prefix, revenue, total, week_ago, meta, written),
                        "defined": s.handle not in archived
                        and (defined is None or s.handle in defined),
                        "archived": s.handle in archived,
                    }
                    for s in rows
                ],
                "total_revenue": total,
            }
        )


def _prediction(shop: Shop, handle: str) -> dict[str, Any] | None:
    """What the shop's backtest says about a prediction segment: message keys and parameters
    the page translates (``prediction.<key>``), and the same in English. None for the other
    segments, and before the first full recompute."""
    stats = cached_stats(shop) if handle in PREDICTED else None
    if stats is None:
        return None
    said = stats.backtest.messages(handle)
    return {
        "enough": stats.backtest.enough,
        "ranking": stats.ranking,
        "messages": [{"key": key, "params": params} for key, params in said],
        "text": " ".join(backtest.english(key, params) for key, params in said),
    }


def segment_detail(request: Request) -> Response:
    """One segment: its row, definition, 30 days of history, its Meta audiences, and for the
    predicted segments how the shop's backtest did."""
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    with db_session(request) as session:
        seg = get_segment(session, shop_id, segment_id)
        shop = get_shop(session, shop_id)
        prefix = _prefix(shop)
        revenue, total = _segment_revenue(session, shop_id)
        week_ago = _week_ago_members(session, shop_id)
        meta = meta_view.segment_meta(session, shop_id)
        history = session.execute(
            select(SegmentHistory.day, SegmentHistory.members, SegmentHistory.revenue)
            .where(SegmentHistory.segment_id == seg.id)
            .order_by(SegmentHistory.day.desc())
            .limit(30)
        ).all()
        written = _tags_written(session, shop_id, [seg], prefix)
        row = _segment_row(seg, prefix, revenue, total, week_ago, meta, written)
        row["history"] = [
            {"day": d.isoformat(), "members": m, "revenue": float(r or 0)}
            for d, m, r in reversed(history)
        ]
        row["meta"] = meta.get(seg.id, {"audience": None, "lookalikes": []})
        row["prediction"] = _prediction(shop, seg.handle)
        # The share of it kept as a control group; a hold-out of a hold-out group means nothing.
        holdouts = load_config(shop)["holdouts"]
        row["holdouts"] = holdouts
        row["holdout_allowed"] = not seg.handle.startswith("holdout-")
        return JSONResponse(row)


_MEMBER_COLUMNS: dict[str, Any] = {
    "spent": Customer.amount_spent,
    "orders": Customer.number_of_orders,
}


def _member_match(q: str) -> Any:
    """Name, email or company contains ``q`` as typed: ``%`` and ``_`` are not wildcards."""
    literal = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = f"%{literal}%"
    return or_(
        func.lower(Customer.email).like(like, escape="\\"),
        func.lower(
            func.coalesce(Customer.first_name, "") + " " + func.coalesce(Customer.last_name, "")
        ).like(like, escape="\\"),
        func.lower(func.coalesce(Customer.company, "")).like(like, escape="\\"),
    )


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
        stmt = stmt.where(_member_match(q))
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


def _match_count(session: Session, seg: Segment, q: str) -> int:
    """How many members a search matches (the page says it beside the results)."""
    matches = _member_query(seg, q, "id").order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(matches)) or 0)


def _member_params(request: Request) -> tuple[str | None, str, int]:
    q = (request.query_params.get("q") or "").strip() or None
    if q is not None and len(q) > 100:
        raise InputError("search is limited to 100 characters", field="q")
    sort = request.query_params.get("sort") or "id"
    if sort.lstrip("-") not in MEMBER_SORTS or sort.count("-") > 1:
        raise InputError(f"sort must be one of {', '.join(MEMBER_SORTS)}", field="sort")
    page = int_param(request, "page", 1, 1, 1_000_000)
    return q, sort, page


def segment_members(request: Request) -> Response:
    """A page of 50 members with why each qualifies; ``q`` searches name, email, company."""
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    q, sort, page = _member_params(request)
    after = request.query_params.get("after")
    with db_session(request) as session:
        seg = get_segment(session, shop_id, segment_id)
        stmt = _member_query(seg, q, sort)
        if after and sort == "id" and page == 1:
            # Keyset continuation for the default order: constant time however deep.
            from shopify_app.db.models import Membership

            after_id = int_param(request, "after", 0, 0, 2**63 - 1)
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
                "since": iso(since),
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
                "total": _match_count(session, seg, q) if q else seg.member_count,
                "q": q,
                "sort": sort,
            }
        )


_FORMULA_STARTS = frozenset("=+-@")
_PHONE = re.compile(r"\+?[0-9][0-9 ]*")
"""A phone as Shopify stores it (E.164, ``+15551234567``), or spaced digits: data, not a
formula (no function, no reference), so it is exported as is and stays dialable."""
CSV_LANGUAGES = ("en", "ar", "el", "ko")
"""``?lang=`` values of the CSV export: the page's languages."""


def _csv_safe(value: Any) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported text: a leading apostrophe
    makes the cell text.

    Spreadsheets read a cell as a formula when it starts with ``= + - @`` also after leading
    spaces or line breaks, and in the full-width and small forms (``＝ ＋ － ＠``, which NFKC
    folds to ASCII); a leading tab or carriage return is neutralised too.
    """
    text = "" if value is None else str(value)
    first = text.lstrip()[:1]
    if text[:1] in ("\t", "\r", "\n") or unicodedata.normalize("NFKC", first) in _FORMULA_STARTS:
        return "'" + text
    return text


def _csv_phone(value: str | None) -> str:
    """A phone cell: a plain phone number as is, anything else guarded like other text."""
    if value is not None and _PHONE.fullmatch(value):
        return value
    return _csv_safe(value)


def _csv_time(value: dt.datetime | None) -> str:
    """A UTC time as spreadsheets read it: ``2026-11-23 14:05:09`` (no microseconds, no zone)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


@functools.cache
def _wording(lang: str) -> reasons.Wording | None:
    """The page's reason wording in ``lang`` (None for English: the templates' own)."""
    if lang == "en":
        return None
    path = WEB_DIR / "i18n" / f"{lang}.json"
    return reasons.Wording(lang, json.loads(path.read_text(encoding="utf-8")))


def segment_members_csv(request: Request) -> Response:
    """Every member as CSV (streamed) for spreadsheets and other tools: UTF-8 with a byte
    order mark (Excel reads it as UTF-8 only then), times in UTC, and the reason in the
    page's language with ``?lang=ar|el|ko`` (English by default)."""
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    lang = request.query_params.get("lang") or "en"
    if lang not in CSV_LANGUAGES:
        raise InputError(f"lang must be one of {', '.join(CSV_LANGUAGES)}", field="lang")
    wording = _wording(lang)
    sessions = context(request).sessions
    with db_session(request) as session:
        seg = get_segment(session, shop_id, segment_id)
        handle = seg.handle
        currency = get_shop(session, shop_id).currency

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        buf.write("\ufeff")
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
                    [
                        c.id,
                        _csv_safe(c.first_name),
                        _csv_safe(c.last_name),
                        _csv_safe(c.email),
                        _csv_phone(c.phone),
                        _csv_safe(c.company),
                        _csv_safe(c.country_code),
                        c.number_of_orders,
                        f"{float(c.amount_spent or 0):.2f}",
                        # Spreadsheets get the reason as text, not the page's JSON.
                        _csv_safe(reasons.render(reason, currency, wording)),
                        _csv_time(since),
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


PREVIEW_SAMPLE = 5
"""Members named in a draft's preview: enough to recognise, not a members page."""


def segment_preview(request: Request) -> Response:
    """How many customers a draft custom segment matches, without saving it.

    Body: ``{"segment": {handle?, name?, match, rules}}``. Errors name the rule's path below
    ``segment`` (``segment.rules[1].value``) so the page puts them beside that condition. The
    shop's dataset is loaded once per data version and the yardsticks of the last recompute are
    reused, so a preview per keystroke costs one vectorised evaluation.
    """
    shop_id = request_shop_id(request)
    body = json_body(request)
    draft = body.get("segment")
    if not isinstance(draft, dict):
        raise InputError("send the draft segment", field="segment")
    # A draft has no handle yet: any valid one evaluates the same rules; an archived segment's
    # preview says what restoring it would bring back.
    spec = {**draft, "handle": draft.get("handle") or "draft", "archived": False}
    seg = rules.parse_custom_segment(spec, "segment")
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        cfg = dataclasses.replace(recompute.shop_config(shop), custom_segments=(spec,))
        own = [
            segment_tag(tag, handle, cfg.tag_prefix)
            for tag, handle in session.execute(
                select(Segment.tag, Segment.handle).where(Segment.shop_id == shop_id)
            )
        ]
        # Refused here as on saving, so the builder says so beside the condition at once.
        rules.own_tag_problem(seg, "segment", cfg.tag_prefix, own)
        stats = recompute.cached_stats(shop)
        ds = shop_cache.get(
            "dataset",
            shop_id,
            data_version(session, shop_id),
            lambda: loader.load(session, shop_id),
        )
    result = library.evaluate(ds, cfg, today(), stats=stats).segments[f"custom-{seg.handle}"]
    sample = [int(c) for c in ds.customer_ids[result.members[:PREVIEW_SAMPLE]].tolist()]
    with db_session(request) as session:
        names = {
            c.id: " ".join(p for p in (c.first_name, c.last_name) if p) or c.email or str(c.id)
            for c in session.scalars(
                select(Customer).where(Customer.shop_id == shop_id, Customer.id.in_(sample))
            )
        }
    return JSONResponse(
        {
            "members": result.count,
            "customers": ds.n_customers,
            "description": rules.describe(seg.root, ds.product_titles),
            "sample": [{"id": cid, "name": names.get(cid, str(cid))} for cid in sample],
        }
    )


def _tag_preview(session: Session, shop_id: int, seg: Segment) -> dict[str, int]:
    entry = tag_changes.preview(session, shop_id).get(seg.handle)
    if entry is None:  # a disabled segment: nobody carries its tag because of Goldpan
        return {"gain": 0, "lose": 0}
    return {"gain": int(entry["gain"]), "lose": int(entry["lose"])}


def segment_tag_sync(request: Request) -> Response:
    """Turn tag sync on or off. Turning it on first answers the preview; ``confirm`` applies.

    Body: ``{"enabled": bool, "confirm": bool, "tag": optional new tag}``.
    """
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    body = json_body(request)
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
    with db_write(request) as session:
        shop = get_shop(session, shop_id)
        seg = get_segment(session, shop_id, segment_id)
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
            # Keep the merchant's name; an untouched tag stays None so it follows the prefix.
            seg.tag = new_tag
        seg.tag_sync = enabled
        session.add(
            AuditEntry(
                shop_id=shop_id,
                target=AuditTarget.APP,
                action="tag_sync.enable" if enabled else "tag_sync.disable",
                subject=seg.handle,
                count=seg.member_count,
                detail={"tag": new_tag, "user_id": getattr(request.state, "user_id", None)},
            )
        )
        sync_now = seg.tag_sync
    enqueue(
        request,
        "tags.segment_changed",
        shop_id=shop_id,
        segment_id=segment_id,
        old_tag=old_tag if old_tag != new_tag else None,
    )
    return JSONResponse({"applied": True, "tag_sync": sync_now, "tag": new_tag})


def segment_native(request: Request) -> Response:
    """Create (or refresh) the segment's native Shopify segment on its tag."""
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    with db_session(request) as session:
        seg = get_segment(session, shop_id, segment_id)
        if not seg.tag_sync:
            raise InputError(
                "turn tag sync on first: the native segment follows the tag", field="tag_sync"
            )
    enqueue(request, "tags.native_segment", shop_id=shop_id, segment_id=segment_id)
    return JSONResponse({"queued": True}, status_code=202)
