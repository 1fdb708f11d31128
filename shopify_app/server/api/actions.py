"""The actions view: per lapsed tier, the win-back discount switch and its code; the scores
switch and when they were last written; the results (treated vs hold-out, redemptions,
recovered customers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.actions import discounts, entries, scores
from shopify_app.db.models import ScoreDigest, ScoreSettings
from shopify_app.errors import InputError
from shopify_app.segments.recompute import shop_config
from shopify_app.server import context
from shopify_app.server.api.request import db_session, get_shop, iso, json_body, request_shop_id


def _enabled(body: dict[str, Any]) -> bool:
    value = body.get("enabled")
    if not isinstance(value, bool):
        raise InputError("enabled must be true or false", field="enabled")
    return value


def _state(request: Request, shop_id: int) -> dict[str, Any]:
    with db_session(request) as session:
        get_shop(session, shop_id)
        row = session.get(ScoreSettings, shop_id)
        written = session.scalar(
            select(func.count()).select_from(ScoreDigest).where(ScoreDigest.shop_id == shop_id)
        )
        return {
            "discounts": discounts.status(session, shop_id),
            "holdouts": shop_config(get_shop(session, shop_id)).holdouts,
            "scores": {
                "enabled": bool(row is not None and row.enabled),
                "written_at": iso(row.written_at) if row is not None else None,
                "customers": int(written or 0),
                "fields": [{"key": s.key, "name": s.name} for s in scores.SCORES],
                "namespace": scores.NAMESPACE,
            },
        }


def actions_get(request: Request) -> Response:
    """The switches, where each action stands, and its results so far."""
    shop_id = request_shop_id(request)
    state = _state(request, shop_id)
    with db_session(request) as session:
        state["results"] = entries.load_report(session, shop_id, dt.datetime.now(dt.UTC).date())
    return JSONResponse(state)


def discount_put(request: Request) -> Response:
    """Switch tier ``tier``'s win-back discount on or off (``{"enabled": bool}``)."""
    shop_id = request_shop_id(request)
    raw = request.path_params["tier"]
    if not str(raw).isdigit():
        raise InputError("tier must be a whole number", field="tier")
    discounts.set_enabled(context(request), shop_id, int(raw), _enabled(json_body(request)))
    return JSONResponse(_state(request, shop_id))


def scores_put(request: Request) -> Response:
    """Switch the score metafields on or off (``{"enabled": bool}``)."""
    shop_id = request_shop_id(request)
    scores.set_enabled(context(request), shop_id, _enabled(json_body(request)))
    return JSONResponse(_state(request, shop_id))
