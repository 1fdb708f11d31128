"""The analytics view: the shop's retention metrics, as the last full recompute stored them.

The numbers are :func:`shopify_app.segments.metrics.compute`'s, the same ones ``shopify-app
analyze`` prints; nothing here computes a figure of its own. :mod:`.home` shows the headline
from the same stored row.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import Membership, ShopMetrics
from shopify_app.errors import InputError
from shopify_app.segments import loader, metrics
from shopify_app.segments.dataset import day_number
from shopify_app.server.api.request import (
    db_session,
    get_segment,
    get_shop,
    int_param,
    iso,
    request_shop_id,
    today,
)

MAX_COHORT_MONTHS = 36
"""First-order months one cohort request may span (each is a row of the heat map)."""

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


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


def _month_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name) or ""
    if not raw:
        return default
    if not _MONTH.fullmatch(raw):
        raise InputError(f"{name} must be a month as YYYY-MM", field=name)
    return metrics.month_number(raw)


def cohorts(request: Request) -> Response:
    """Cohort retention for first-order months ``from``..``to`` (``YYYY-MM``, at most
    :data:`MAX_COHORT_MONTHS`; the last twelve by default), of one segment's members when
    ``segment`` is given. Computed on request by the engine the stored metrics come from, as
    of the same day."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        stored = stored_metrics(session, shop_id)
        as_of = dt.date.fromisoformat(stored[0]["as_of"]) if stored else today()
        this_month = metrics.month_number(as_of.isoformat()[:7])
        last = _month_param(request, "to", this_month)
        first = _month_param(request, "from", last - metrics.COHORT_MONTHS + 1)
        if first > last:
            raise InputError("from must not be after to", field="from")
        if last - first >= MAX_COHORT_MONTHS:
            raise InputError(f"a range is at most {MAX_COHORT_MONTHS} months", field="from")
        segment_id = int_param(request, "segment", 0, 0, 2**31 - 1)
        members = None
        if segment_id:
            segment = get_segment(session, shop_id, segment_id)
            members = session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == segment.id)
            ).all()
        ds = loader.load(session, shop_id, members).upto(as_of)
        found = metrics.cohorts(ds, day_number(as_of), first, last)
        return JSONResponse({"as_of": as_of.isoformat(), "segment": segment_id or None, **found})
