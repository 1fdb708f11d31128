"""What every API endpoint reads from its request: the session's shop, parameters, the body.

Also the requesting shop's rows: :func:`get_shop` and :func:`get_segment` raise
:class:`~shopify_app.errors.NotFound` for another shop's id as for a missing one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import anyio.from_thread
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from shopify_app.db.models import Segment, Shop
from shopify_app.errors import InputError, NotFound
from shopify_app.server import context

PAGE_SIZE = 50
"""Rows per page: segment members, audit entries, data requests."""


def request_shop_id(request: Request) -> int:
    """The requesting shop, set by the session-token middleware."""
    shop_id = getattr(request.state, "shop_id", None)
    if not isinstance(shop_id, int):
        # The middleware always sets it; reaching here means the routes were mounted unguarded.
        raise RuntimeError("api routes mounted without the session-token middleware")
    return shop_id


def db_session(request: Request) -> Session:
    """A database session of the app's context (close it: use it in a ``with``)."""
    return context(request).sessions()


def enqueue(request: Request, name: str, **kwargs: Any) -> None:
    """Queue follow-up work (tag sync, recompute) after a change the merchant made."""
    context(request).enqueue(name, **kwargs)


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as a whole number in ``[lo, hi]`` (``default`` when absent)."""
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


def path_id(request: Request, name: str = "segment_id", thing: str = "segment") -> int:
    """Path parameter ``name``, the id of a ``thing``: not a number is bad input (400); out of
    range cannot exist, so it is not found (404) like any id the shop does not have."""
    raw = request.path_params.get(name, "")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InputError(f"{thing} id must be a number", field=name) from None
    if not 0 < value < 2**31:  # ids are 32-bit integer columns
        raise NotFound(f"{thing} not found")
    return value


def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``).

    Sync endpoints run in a worker thread; Starlette's ``body()`` is a coroutine, so it is run
    on the event loop from here.
    """
    raw = anyio.from_thread.run(request.body)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise InputError("request body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object", field="body")
    return body


def iso(value: dt.datetime | dt.date | None) -> str | None:
    """ISO 8601 text, or None."""
    return value.isoformat() if value is not None else None


def today() -> dt.date:
    """Today in UTC: the day every "as of" on the page refers to."""
    return dt.datetime.now(dt.UTC).date()


def get_segment(session: Session, shop_id: int, segment_id: int) -> Segment:
    """The shop's segment ``segment_id``."""
    seg = session.scalar(
        select(Segment).where(Segment.id == segment_id, Segment.shop_id == shop_id)
    )
    if seg is None:
        raise NotFound("segment not found")
    return seg


def get_shop(session: Session, shop_id: int) -> Shop:
    """The requesting shop's row."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise NotFound("shop not found")
    return shop
