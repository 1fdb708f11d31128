"""The home view: who is calling, sync progress, notices, and the retention headline (the
stored metrics' headline figures, now and a year earlier)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import AuditEntry, MetaConnection, Segment, Shop, SyncRun
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
        notices.append({"key": "scope_all_orders", "tone": "info", "params": {}})
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


def home(request: Request) -> Response:
    """Sync status, notices, and the retention headline (``metrics`` null until computed)."""
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
                "metrics": headline,
                "segments_total": session.scalar(
                    select(func.count(Segment.id)).where(Segment.shop_id == shop_id)
                ),
            }
        )
