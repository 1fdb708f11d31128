"""The analytics view: the shop's retention metrics, as the last full recompute stored them,
or for one segment and a range of months.

The numbers are :mod:`shopify_app.segments.metrics`'s, the same engine ``shopify-app
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

from shopify_app.db.models import Membership, Shop, ShopMetrics
from shopify_app.errors import InputError
from shopify_app.segments import library, loader, metrics
from shopify_app.segments.dataset import day_date
from shopify_app.segments.recompute import cached_stats, shop_config
from shopify_app.server.api.request import (
    db_session,
    get_segment,
    get_shop,
    int_param,
    iso,
    request_shop_id,
    today,
)

MAX_MONTHS = 36
"""Months one filtered request may span (each is a row of the cohort heat map)."""

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
    customers back, the backtest (``metrics`` null until computed).

    Unfiltered: the stored metrics. With ``segment`` (one of the shop's segments) and/or a
    month range ``from``..``to`` (``YYYY-MM``, at most :data:`MAX_MONTHS`, one missing end
    filled as for twelve months): computed on request by the same engine, as of the stored
    day, on the segment's members (:func:`metrics.compute`) or their orders in the range
    (:func:`metrics.compute_range`, which says what a range means for each figure). The
    backtest stays the whole shop's.
    """
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        stored = stored_metrics(session, shop_id)
        as_of = dt.date.fromisoformat(stored[0]["as_of"]) if stored else today()
        segment_id, months = _filter(request, session, shop_id, as_of)
        found = stored[0] if stored else None
        if found is not None and (segment_id or months):
            found = _filtered(session, shop, segment_id, months, as_of, found["backtest"])
        return JSONResponse(
            {
                "currency": shop.currency,
                "computed_at": stored[1] if stored else None,
                "filter": {
                    "segment": segment_id or None,
                    "from": metrics.month_label(months[0]) if months else None,
                    "to": metrics.month_label(months[1]) if months else None,
                },
                "metrics": found,
            }
        )


def _filter(
    request: Request, session: Session, shop_id: int, as_of: dt.date
) -> tuple[int, tuple[int, int] | None]:
    """The requested segment (0: everyone; another shop's is not found) and month range
    (None: all time), each refused with its field named."""
    this_month = metrics.month_number(as_of.isoformat()[:7])
    months = None
    if request.query_params.get("from") or request.query_params.get("to"):
        last = _month_param(request, "to", this_month)
        first = _month_param(request, "from", last - metrics.COHORT_MONTHS + 1)
        if last > this_month:
            raise InputError(
                f"to must not be after {metrics.month_label(this_month)}, the metrics' month",
                field="to",
            )
        if first > last:
            raise InputError("from must not be after to", field="from")
        if last - first >= MAX_MONTHS:
            raise InputError(f"a range is at most {MAX_MONTHS} months", field="from")
        months = (first, last)
    segment_id = int_param(request, "segment", 0, 0, 2**31 - 1)
    if segment_id:
        get_segment(session, shop_id, segment_id)
    return segment_id, months


def _filtered(
    session: Session,
    shop: Shop,
    segment_id: int,
    months: tuple[int, int] | None,
    as_of: dt.date,
    whole_shop_backtest: dict[str, Any],
) -> dict[str, Any]:
    """The metrics of the segment's members (everyone for 0) in the month range (all time for
    None), scored with the shop's cached yardsticks; the whole shop's backtest."""
    members = (
        session.scalars(
            select(Membership.customer_id).where(Membership.segment_id == segment_id)
        ).all()
        if segment_id
        else None
    )
    ds = loader.load(session, shop.id, members)
    end = as_of
    if months is not None:
        end = min(as_of, day_date(metrics.month_start(months[1] + 1) - 1))
    stats = cached_stats(shop)
    evaluation = library.evaluate(ds, shop_config(shop), end, stats=stats) if stats else None
    if months is None:
        found = metrics.compute(ds, as_of, evaluation=evaluation)
    else:
        found = metrics.compute_range(ds, *months, as_of, evaluation=evaluation)
    return {**found, "backtest": whole_shop_backtest}


def _month_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name) or ""
    if not raw:
        return default
    if not _MONTH.fullmatch(raw):
        raise InputError(f"{name} must be a month as YYYY-MM", field=name)
    return metrics.month_number(raw)
