"""The analytics view: the shop's retention metrics, as the last full recompute stored them.

The numbers are :func:`shopify_app.segments.metrics.compute`'s, the same ones ``shopify-app
analyze`` prints; nothing here computes a figure of its own. :mod:`.home` shows the headline
from the same stored row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import ShopMetrics
from shopify_app.segments import metrics
from shopify_app.server.api.request import db_session, get_shop, iso, request_shop_id


def stored_metrics(session: Session, shop_id: int) -> tuple[dict[str, Any], str | None] | None:
    """The shop's stored metrics and when they were computed; None until a full recompute has
    stored them in the current shape (an older shape waits for the next one)."""
    row = session.get(ShopMetrics, shop_id)
    if row is None or not isinstance(row.data, dict) or row.data.get("version") != metrics.VERSION:
        return None
    return row.data, iso(row.computed_at)


def analytics(request: Request) -> Response:
    """Cohorts, time between orders, RFM grid, repeat trend, products and codes that bring
    customers back, the backtest: the stored metrics (``metrics`` null until computed)."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        stored = stored_metrics(session, shop_id)
        return JSONResponse(
            {
                "currency": shop.currency,
                "computed_at": stored[1] if stored else None,
                "metrics": stored[0] if stored else None,
            }
        )
