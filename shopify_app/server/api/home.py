"""The home view: who is calling, sync progress, notices, the first-steps checklist, and the
retention headline (the stored metrics' headline figures, now and a year earlier)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import (
    AuditEntry,
    MetaConnection,
    Order,
    ScoreSettings,
    Segment,
    Shop,
    SyncRun,
    WinBackDiscount,
)
from shopify_app.server.api.analytics import stored_metrics
from shopify_app.server.api.request import db_session, get_shop, iso, request_shop_id
from shopify_app.states import AuditResult, MetaConnectionStatus, SyncRunStatus
from shopify_app.sync.runs import FINISHED


def session(request: Request) -> Response:
    """Who the session token says the caller is (the page uses it; tests probe isolation)."""
    state = request.state
    return JSONResponse(
        {"shop": state.shop_domain, "shop_id": state.shop_id, "user_id": state.user_id}
    )


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
    running = [r for r in items if r.status not in FINISHED]
    failed = [r for r in items if r.status == SyncRunStatus.FAILED]
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
        "finished_at": iso(max(finished)) if finished and not running else None,
    }


def _notices(session: Session, shop: Shop, sync: dict[str, Any]) -> list[dict[str, Any]]:
    notices: list[dict[str, Any]] = []
    scopes = {s.strip() for s in (shop.scopes or "").split(",")}
    if "read_all_orders" not in scopes:
        # Shopify shows an app only the last 60 days of orders without this scope; say which
        # orders the figures really use (a CSV import or an earlier grant may reach further).
        oldest = session.scalar(
            select(func.min(Order.processed_at)).where(Order.shop_id == shop.id)
        )
        notices.append(
            {
                "key": "scope_all_orders",
                "tone": "info",
                "params": {"since": oldest.date().isoformat() if oldest else None},
            }
        )
    if sync["state"] == "failed":
        err = next((r["error"] for r in sync["resources"] if r["error"]), "")
        notices.append({"key": "sync_failed", "tone": "critical", "params": {"error": err}})
    conn = session.get(MetaConnection, shop.id)
    if conn is not None and conn.status in (
        MetaConnectionStatus.EXPIRED,
        MetaConnectionStatus.REVOKED,
        MetaConnectionStatus.ERROR,
        MetaConnectionStatus.TERMS,
    ):
        notices.append(
            {"key": f"meta_{conn.status}", "tone": "warning", "params": {"error": conn.error or ""}}
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    errors = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.shop_id == shop.id,
            AuditEntry.at >= since,
            AuditEntry.result == AuditResult.ERROR,
        )
    )
    if errors:
        notices.append({"key": "write_errors", "tone": "warning", "params": {"count": errors}})
    return notices


def _checklist(session: Session, shop_id: int) -> list[dict[str, Any]]:
    """The playbook's first steps in order, each done or not as the database has it, with the
    view where the merchant does it."""

    def exists(query: Any) -> bool:
        return session.scalar(select(query.exists())) or False

    segments = select(Segment.id).where(Segment.shop_id == shop_id)
    meta = session.get(MetaConnection, shop_id)
    scores = session.get(ScoreSettings, shop_id)
    steps = [
        ("review_segments", "#/segments", exists(segments.where(Segment.computed_at.is_not(None)))),
        ("tag_sync", "#/segments", exists(segments.where(Segment.tag_sync.is_(True)))),
        (
            "connect_meta",
            "#/settings",
            meta is not None and meta.status == MetaConnectionStatus.CONNECTED,
        ),
        (
            "win_back",
            "#/settings",
            exists(
                select(WinBackDiscount.tier).where(
                    WinBackDiscount.shop_id == shop_id, WinBackDiscount.enabled.is_(True)
                )
            ),
        ),
        ("scores", "#/settings", scores is not None and scores.enabled),
    ]
    return [{"key": key, "href": href, "done": bool(done)} for key, href, done in steps]


def home(request: Request) -> Response:
    """Sync status, notices, the checklist, and the retention headline (``metrics`` null until
    computed)."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        sync = _sync_status(session, shop_id)
        stored = stored_metrics(session, shop_id)
        headline = (
            {
                "as_of": stored[0]["as_of"],
                "computed_at": stored[1],
                "headline": stored[0]["headline"],
                "year_before": stored[0]["year_before"],
            }
            if stored
            else None
        )
        return JSONResponse(
            {
                "shop": {"domain": shop.domain, "name": shop.name, "currency": shop.currency},
                "sync": sync,
                "notices": _notices(session, shop, sync),
                "checklist": _checklist(session, shop_id),
                "metrics": headline,
                "segments_total": session.scalar(
                    select(func.count(Segment.id)).where(Segment.shop_id == shop_id)
                ),
            }
        )
