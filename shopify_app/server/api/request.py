"""What every API endpoint reads from its request: the session's shop, parameters, the body.

Also the requesting shop's rows: :func:`get_shop` and :func:`get_segment` raise
:class:`~shopify_app.errors.NotFound` for another shop's id as for a missing one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from contextlib import AbstractContextManager
from typing import Any

import anyio.from_thread
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from shopify_app.db import transaction
from shopify_app.db.models import Segment, Shop
from shopify_app.errors import InputError, NotFound
from shopify_app.server import context

PAGE_SIZE = 50
"""Rows per page: segment members, audit entries, data requests."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (settings need about 14)."""

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}")
"""A whole number as a URL carries one: ASCII digits only. ``int()`` also takes other scripts'
digits (``'٣'`` is 3), underscores and spaces, and raises on superscripts (``'²'``)."""


def request_shop_id(request: Request) -> int:
    """The requesting shop, set by the session-token middleware."""
    shop_id = getattr(request.state, "shop_id", None)
    if not isinstance(shop_id, int):
        # The middleware always sets it; reaching here means the routes were mounted unguarded.
        raise RuntimeError("api routes mounted without the session-token middleware")
    return shop_id


def db_session(request: Request) -> Session:
    """A database session of the app's context, for reading (close it: use it in a ``with``)."""
    return context(request).sessions()


def db_write(request: Request) -> AbstractContextManager[Session]:
    """A session in one write transaction (:func:`shopify_app.db.transaction`): every endpoint
    that writes uses it, so that on SQLite it waits its turn instead of failing with
    "database is locked" when it read before writing."""
    return transaction(context(request).sessions)


def enqueue(request: Request, name: str, **kwargs: Any) -> None:
    """Queue follow-up work (tag sync, recompute) after a change the merchant made."""
    context(request).enqueue(name, **kwargs)


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as a whole number in ``[lo, hi]`` (``default`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise InputError(f"{name} must be a whole number", field=name)
    value = int(raw)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}", field=name)
    return value


def path_id(
    request: Request, name: str = "segment_id", thing: str = "segment", maximum: int = 2**31
) -> int:
    """Path parameter ``name``, the id of a ``thing``: not a number is bad input (400); out of
    range cannot exist, so it is not found (404) like any id the shop does not have.
    ``maximum``: our ids are 32-bit integer columns, Shopify's (customers) 64-bit."""
    raw = request.path_params.get(name, "")
    if not isinstance(raw, str) or not _WHOLE_NUMBER.fullmatch(raw):
        raise InputError(f"{thing} id must be a number", field=name)
    value = int(raw)
    if not 0 < value < maximum:
        raise NotFound(f"{thing} not found")
    return value


def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); see :func:`parse_json`.

    Sync endpoints run in a worker thread; Starlette's ``body()`` is a coroutine, so it is run
    on the event loop from here.
    """
    body = parse_json(anyio.from_thread.run(request.body) or b"{}")
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object", field="body")
    return body


def parse_json(raw: bytes | str) -> Any:
    """JSON as the API accepts it: finite numbers that fit 64 bits, at most
    :data:`MAX_JSON_DEPTH` deep; anything else is an :class:`InputError` (400).

    Python's parser takes ``NaN``, ``Infinity`` and ``1e400`` (infinity) though they are not
    JSON; stored, they make every later answer fail to serialise. A 400-digit integer overflows
    every float conversion and database column after it. And the parser's recursion limit turns
    a deeply nested body into a ``RecursionError``, not a refusal.
    """
    try:
        value = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite, parse_int=_int64)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise InputError("request body is not valid JSON", field="body") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _too_deep()
    return value


def _not_a_number(text: str) -> Any:
    raise InputError(f"numbers must be finite, got {text}", field="body")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"numbers must be finite, got {text[:32]}", field="body")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise InputError(f"numbers must fit in 64 bits, got {text[:32]}…", field="body")
    return value


def _too_deep() -> InputError:
    return InputError(f"request body nests deeper than {MAX_JSON_DEPTH} levels", field="body")


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
