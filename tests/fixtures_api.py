"""Fixtures for the page's API: a seeded shop, and the real app on loopback with a client that
signs a fresh session token per request.

:func:`seed_shop` writes customers, orders, line items, products, segments with memberships and
reasons, a week of segment history, sync runs and audit entries straight into the database with
Core inserts (fast enough for the 300,000-customer benchmark). :func:`serving` runs
``create_app`` — the production routes, session-token middleware and error map — and
:class:`ApiClient` calls it as App Bridge's fetch does, with real HS256 session tokens signed
with the test secret.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.server import start_server
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    LineItem,
    Membership,
    Order,
    Product,
    Segment,
    SegmentHistory,
    SyncRun,
)
from shopify_app.jobs import Context
from shopify_app.server.app import create_app
from shopify_app.server.pages import ShopifyAdmin
from shopify_app.states import AuditResult, AuditTarget, SegmentKind, SyncRunKind, SyncRunStatus
from tests.fixtures_auth import session_token

PRODUCTS = (
    "Dinner Napkins",
    "Cocktail Napkins",
    "Tea Napkins",
    "Placemats",
    "Wedding Handkerchiefs",
    "Handkerchief Gift Box",
    "Table Runner",
    "Linen Tablecloth",
)
FIRST_NAMES = ("Anna", "Omar", "Ji-woo", "Eleni", "Marco", "Layla", "Min-jun", "Nikos", "Sara")
LAST_NAMES = ("Smith", "Haddad", "Kim", "Papadopoulos", "Rossi", "Nasser", "Park", "Jones")
SEGMENTS = (
    ("business-buyers", "Business buyers"),
    ("repeat-customers", "Repeat customers"),
    ("true-fans", "True fans"),
    ("one-time-buyers", "One-time buyers"),
    ("lapsed-tier-1", "Lapsed 60–89 days"),
    ("lapsed-tier-2", "Lapsed 90+ days"),
    ("vip", "VIP"),
)


@contextmanager
def serving(ctx: Context, admin: ShopifyAdmin | None = None) -> Iterator[str]:
    """``create_app(ctx, admin=admin)`` served on loopback; yields its base URL."""
    running = start_server(create_app(ctx, admin=admin))
    try:
        yield running.url
    finally:
        running.stop()


@dataclass
class RecordingRuntime:
    """Stands in for the huey runtime: records what the API queues instead of running it."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))


@contextmanager
def serving_recorded(ctx: Context, runtime: RecordingRuntime) -> Iterator[str]:
    """The app served on loopback with ``runtime`` recording what it queues; yields its URL."""
    app_ctx = Context(
        settings=ctx.settings,
        engine=ctx.engine,
        sessions=ctx.sessions,
        cipher=ctx.cipher,
        runtime=runtime,  # type: ignore[arg-type]
    )
    with serving(app_ctx) as url:
        yield url


class ApiClient:
    """Calls ``/api`` as ``shop``'s admin user: a fresh session token per request, like App
    Bridge's fetch. Paths are relative to ``/api``."""

    def __init__(self, base_url: str, shop: str) -> None:
        self.base_url = base_url
        self.shop = shop

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {session_token(self.shop)}"}
        return requests.request(
            method, f"{self.base_url}/api{path}", headers=headers, timeout=30, **kwargs
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return self._call("POST", path, json=body)

    def put(self, path: str, body: Any) -> requests.Response:
        return self._call("PUT", path, json=body)


def seed_shop(
    sessions: sessionmaker[Session],
    shop_id: int,
    *,
    customers: int = 120,
    seed: int = 1,
    as_of: dt.date | None = None,
    history: bool = True,
    batch: int = 20_000,
) -> dict[str, int]:
    """Fill a shop with a plausible store and computed segments; returns {handle: segment id}.

    Deterministic for a seed. Orders fall in the two years before ``as_of``; segment membership
    follows the issue's definitions closely enough for the page to show sensible numbers.
    """
    rng = random.Random(seed)
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    end = dt.datetime.combine(as_of, dt.time(12), tzinfo=dt.UTC)
    product_ids = [1000 + i for i in range(len(PRODUCTS))]
    customer_rows: list[dict[str, Any]] = []
    order_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    members: dict[str, list[tuple[int, str]]] = {h: [] for h, _ in SEGMENTS}
    spend: dict[int, float] = {}
    next_order = 1
    with sessions.begin() as session:
        session.execute(
            insert(Product),
            [
                {"shop_id": shop_id, "id": pid, "title": t, "status": "ACTIVE", "handle": None}
                for pid, t in zip(product_ids, PRODUCTS, strict=True)
            ],
        )

    def flush(final: bool = False) -> None:
        if not final and len(order_rows) < batch:
            return
        with sessions.begin() as session:
            # Core table inserts (executemany): the benchmark seeds millions of rows.
            if customer_rows:
                session.execute(insert(Customer.__table__), customer_rows)
            if order_rows:
                session.execute(insert(Order.__table__), order_rows)
            if line_rows:
                session.execute(insert(LineItem.__table__), line_rows)
        customer_rows.clear()
        order_rows.clear()
        line_rows.clear()

    for i in range(customers):
        cid = 5000 + i
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        business = rng.random() < 0.06
        n_orders = 1 if rng.random() < 0.55 else rng.randint(2, 7)
        last_gap = rng.choice((5, 20, 40, 65, 75, 120, 300))
        days = sorted(
            {last_gap + rng.randint(0, 600) for _ in range(n_orders - 1)} | {last_gap}, reverse=True
        )
        total_spent = 0.0
        best: tuple[int, str, dt.date] | None = None
        for day in days:
            oid = next_order
            next_order += 1
            at = end - dt.timedelta(days=day, minutes=rng.randint(0, 600))
            qty = rng.choice((36, 48, 60)) if business else rng.randint(1, 4)
            pidx = rng.randrange(len(PRODUCTS))
            amount = round(qty * rng.choice((4.5, 8.0, 12.0)), 2)
            total_spent += amount
            order_rows.append(
                {
                    "shop_id": shop_id,
                    "id": oid,
                    "customer_id": cid,
                    "name": f"#{1000 + oid}",
                    "created_at": at,
                    "processed_at": at,
                    "updated_at": at,
                    "cancelled_at": None,
                    "test": False,
                    "total": amount,
                    "currency": "USD",
                    "discount_codes": ["WELCOME10"] if rng.random() < 0.2 else [],
                    "billing_company": "Hotel Aurora" if business else None,
                }
            )
            line_rows.append(
                {
                    "shop_id": shop_id,
                    "id": oid * 10,
                    "order_id": oid,
                    "product_id": product_ids[pidx],
                    "variant_id": None,
                    "sku": None,
                    "title": PRODUCTS[pidx],
                    "quantity": qty,
                    "amount": amount,
                }
            )
            if best is None or qty > best[0]:
                best = (qty, PRODUCTS[pidx], at.date())
        spend[cid] = total_spent
        customer_rows.append(
            {
                "shop_id": shop_id,
                "id": cid,
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
                "email_marketing_state": "SUBSCRIBED" if rng.random() < 0.6 else "NOT_SUBSCRIBED",
                "phone": None,
                "country_code": rng.choice(("US", "GR", "KR", "AE")),
                "city": "Athens",
                "company": "Hotel Aurora" if business else None,
                "tags": ["wholesale"] if business else [],
                "number_of_orders": len(days),
                "amount_spent": round(total_spent, 2),
                "created_at": end - dt.timedelta(days=days[0] + 1),
                "updated_at": end,
            }
        )
        assert best is not None
        if business:
            members["business-buyers"].append(
                (cid, f"{best[0]} units of {best[1]} on {best[2].isoformat()}")
            )
        if len(days) >= 2:
            members["repeat-customers"].append((cid, f"{len(days)} orders"))
        if len(days) >= 3 and not business:
            members["true-fans"].append((cid, f"{len(days)} orders, steady"))
        if len(days) == 1:
            members["one-time-buyers"].append((cid, f"1 order on {best[2].isoformat()}"))
        if 60 <= last_gap < 90:
            members["lapsed-tier-1"].append((cid, f"last order {last_gap} days ago"))
        if last_gap >= 90:
            members["lapsed-tier-2"].append((cid, f"last order {last_gap} days ago"))
        flush()
    flush(final=True)

    top = sorted(spend, key=lambda c: -spend[c])[: max(1, customers // 10)]
    members["vip"] = [(cid, f"spent ${spend[cid]:.2f}") for cid in sorted(top)]
    now = dt.datetime.now(dt.UTC)
    ids: dict[str, int] = {}
    with sessions.begin() as session:
        for handle, name in SEGMENTS:
            seg = Segment(
                shop_id=shop_id,
                handle=handle,
                name=name,
                kind=SegmentKind.BUILTIN,
                tag=f"goldpan-{handle}",
                tag_sync=handle in ("vip", "true-fans"),
                member_count=len(members[handle]),
                computed_at=now,
            )
            session.add(seg)
            session.flush()
            ids[handle] = seg.id
    for handle, rows in members.items():
        for start in range(0, len(rows), batch):
            with sessions.begin() as session:
                session.execute(
                    insert(Membership.__table__),
                    [
                        {
                            "segment_id": ids[handle],
                            "customer_id": cid,
                            "shop_id": shop_id,
                            "since": now,
                            "reason": reason,
                        }
                        for cid, reason in rows[start : start + batch]
                    ],
                )
    with sessions.begin() as session:
        if history:
            for handle, rows in members.items():
                revenue = round(sum(spend[c] for c, _ in rows), 2)
                for back in (8, 1, 0):
                    shrink = 1.0 - 0.02 * back
                    session.add(
                        SegmentHistory(
                            segment_id=ids[handle],
                            day=as_of - dt.timedelta(days=back),
                            shop_id=shop_id,
                            members=int(len(rows) * shrink),
                            revenue=revenue * shrink,
                        )
                    )
        session.add(
            SyncRun(
                shop_id=shop_id,
                kind=SyncRunKind.INITIAL,
                resource="orders",
                status=SyncRunStatus.DONE,
                object_count=next_order - 1,
                objects_done=next_order - 1,
                finished_at=now,
            )
        )
        # The customers are all here (tag-name checks read them, not the Admin API).
        session.add(
            SyncRun(
                shop_id=shop_id,
                kind="initial",
                resource="customers",
                status="done",
                object_count=customers,
                objects_done=customers,
                finished_at=now,
            )
        )
        session.add(
            AuditEntry(
                shop_id=shop_id,
                target=AuditTarget.SHOPIFY,
                action="tagsAdd",
                subject="goldpan-vip",
                count=len(members["vip"]),
                result=AuditResult.OK,
            )
        )
    return ids
