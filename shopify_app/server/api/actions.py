"""The actions view: per lapsed tier, the win-back discount switch and its code; the scores
switch and when they were last written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.actions import discounts, scores
from shopify_app.db.models import ScoreDigest, ScoreSettings
from shopify_app.errors import InputError
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
            "scores": {
                "enabled": bool(row is not None and row.enabled),
                "written_at": iso(row.written_at) if row is not None else None,
                "customers": int(written or 0),
                "fields": [{"key": s.key, "name": s.name} for s in scores.SCORES],
                "namespace": scores.NAMESPACE,
            },
        }


def actions_get(request: Request) -> Response:
    """The switches and where each action stands."""
    return JSONResponse(_state(request, request_shop_id(request)))


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
