"""Expensive per-shop results (the segments' total spend), kept until they change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shopify_app.db.models import Order, Segment


class ShopCache:
    """Expensive per-shop results, kept until the shop's segments are recomputed (or 5 min)."""

    def __init__(self, ttl: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, int], tuple[Any, float, Any]] = {}
        self.ttl = ttl

    def get(self, kind: str, shop_id: int, version: Any, build: Callable[[], Any]) -> Any:
        """The cached ``kind`` for the shop at ``version``, else ``build()`` (and keep it)."""
        key = (kind, shop_id)
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] == version and now - hit[1] < self.ttl:
            return hit[2]
        value = build()
        with self._lock:
            self._data[key] = (version, now, value)
        return value


shop_cache = ShopCache()


def data_version(session: Session, shop_id: int) -> Any:
    """Changes whenever segments are recomputed or the order book grows."""
    seg = session.execute(
        select(func.max(Segment.computed_at), func.count(Segment.id)).where(
            Segment.shop_id == shop_id
        )
    ).one()
    # max(id) walks the primary key: cheap even with a million orders.
    newest_order = session.scalar(select(func.max(Order.id)).where(Order.shop_id == shop_id))
    return (tuple(seg), newest_order)
