"""Fixtures for the page's API: a seeded shop and a small app serving ``web/`` and ``/api``.

:func:`seed_shop` writes customers, orders, line items, products, segments with memberships and
reasons, a week of segment history, sync runs and audit entries straight into the database with
Core inserts (fast enough for the 300,000-customer benchmark). :func:`build_page_app` mounts
``shopify_app.server.api.routes`` under ``/api`` behind a middleware that verifies real HS256
session tokens (``shopify.auth.verify_session_token``) like the production middleware, serves
``web/`` like the real app, and offers the sandbox's ``/shops/{shop}/admin/session-token`` so the
page's demo shim works against it. Tests sign tokens with :func:`session_token`.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from shopify_app.db.models import (
    AuditEntry,
    Customer,
    LineItem,
    Membership,
    Order,
    Product,
    Segment,
    SegmentHistory,
    Shop,
    SyncRun,
)
from shopify_app.errors import AuthError
from shopify_app.jobs import Context
from shopify_app.server import api
from shopify_app.server import meta_api as meta_web
from shopify_app.shopify.auth import verify_session_token
from tests.conftest import TEST_API_KEY, TEST_API_SECRET

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

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


def session_token(shop_domain: str, *, user_id: int = 42, expires_in: int = 60) -> str:
    """A session token as App Bridge mints it, signed with the test secret."""
    now = int(time.time())
    return jwt.encode(
        {
            "iss": f"https://{shop_domain}/admin",
            "dest": f"https://{shop_domain}",
            "aud": TEST_API_KEY,
            "sub": str(user_id),
            "exp": now + expires_in,
            "nbf": now - 1,
            "iat": now - 1,
            "jti": uuid.uuid4().hex,
            "sid": uuid.uuid4().hex,
        },
        TEST_API_SECRET,
        algorithm="HS256",
    )


class SessionTokenMiddleware:
    """Verifies ``Authorization: Bearer`` and sets ``request.state`` like the real app does."""

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode()
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        try:
            verified = verify_session_token(self.ctx.settings, token)
        except AuthError as exc:
            response: Response = JSONResponse(
                {"error": exc.reason, "field": None},
                status_code=401,
                headers={"X-Shopify-Retry-Invalid-Session-Request": "1"},
            )
            await response(scope, receive, send)
            return
        with self.ctx.sessions() as session:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == verified.shop))
        if shop_id is None:
            await JSONResponse({"error": "shop not installed", "field": None}, 401)(
                scope, receive, send
            )
            return
        state = scope.setdefault("state", {})
        state.update(shop_id=shop_id, shop_domain=verified.shop, user_id=verified.user_id)
        await self.app(scope, receive, send)


def build_page_app(ctx: Context, *, web_dir: Path = WEB_DIR) -> Starlette:
    """The page and its API on one origin, as ``shopify_app.server.app`` serves them."""

    def index(request: Request) -> Response:
        html = (web_dir / "index.html").read_text(encoding="utf-8")
        base = str(request.base_url).rstrip("/")
        html = html.replace("{{API_KEY}}", TEST_API_KEY).replace("{{SANDBOX_URL}}", base)
        return HTMLResponse(html)

    def mint(request: Request) -> Response:
        shop = request.path_params["shop"]
        return JSONResponse(
            {"token": session_token(shop)}, headers={"Access-Control-Allow-Origin": "*"}
        )

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/shops/{shop}/admin/session-token", mint),
            # /api/meta before /api: a Mount claims every path under its prefix.
            Mount(
                "/api/meta",
                routes=list(meta_web.routes),
                middleware=[Middleware(SessionTokenMiddleware, ctx=ctx)],
            ),
            Mount(
                "/api",
                routes=list(api.routes),
                middleware=[Middleware(SessionTokenMiddleware, ctx=ctx)],
            ),
            Mount("/static", app=StaticFiles(directory=web_dir)),
            Route("/favicon.ico", lambda r: PlainTextResponse("", status_code=204)),
        ]
    )
    app.state.ctx = ctx
    return app


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
                kind="builtin",
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
                kind="initial",
                resource="orders",
                status="completed",
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
                target="shopify",
                action="tagsAdd",
                subject="goldpan-vip",
                count=len(members["vip"]),
                result="ok",
            )
        )
    return ids


@pytest.fixture
def seeded_shop(
    make_shop: Any, sessions: sessionmaker[Session]
) -> Iterator[tuple[Shop, dict[str, int]]]:
    """A shop with 120 customers, seven computed segments and history."""
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=120)
    yield shop, ids


@contextmanager
def preview_server(
    tmp: Path, *, customers: int = 400, seed: int = 7, runtime: Any = None
) -> Iterator[tuple[str, str, Context]]:
    """A seeded shop behind :func:`build_page_app` on loopback, with its own SQLite database.

    Yields ``(base url, shop domain, ctx)``; the page is at ``{url}/?shop=...&demo=1``. Used by
    the browser tests until the sandbox demo is available, and by ``scripts/screenshots.py``.
    """
    from goldpan_sandbox.server import start_server
    from shopify_app import db
    from shopify_app.crypto import TokenCipher, generate_key
    from shopify_app.settings import Settings

    url = f"sqlite:///{tmp / f'page-{uuid.uuid4().hex[:8]}.sqlite3'}"
    db.upgrade(url)
    key = generate_key()
    settings = Settings.from_env(
        {
            "SHOPIFY_API_KEY": TEST_API_KEY,
            "SHOPIFY_API_SECRET": TEST_API_SECRET,
            "TOKEN_ENCRYPTION_KEY": key,
            "DATABASE_URL": url,
            "HUEY_PATH": str(tmp / "huey.sqlite3"),
            "LOG_JSON": "false",
        }
    )
    engine = db.make_engine(url)
    ctx = Context(
        settings=settings,
        engine=engine,
        sessions=db.make_sessionmaker(engine),
        cipher=TokenCipher((key,)),
        runtime=runtime,
    )
    domain = f"linen-{uuid.uuid4().hex[:6]}.myshopify.com"
    with ctx.sessions.begin() as session:
        shop = Shop(
            domain=domain,
            name="Aegean Linen Co.",
            currency="USD",
            access_token=ctx.cipher.encrypt("shpat_preview"),
            scopes="read_customers,write_customers,read_orders,read_products",
            installed_at=dt.datetime.now(dt.UTC),
            settings={},
        )
        session.add(shop)
        session.flush()
        shop_id = shop.id
    seed_shop(ctx.sessions, shop_id, customers=customers, seed=seed)
    server = start_server(build_page_app(ctx))
    try:
        yield server.url, domain, ctx
    finally:
        server.stop()
        engine.dispose()
