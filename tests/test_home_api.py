"""The home and analytics API against a real SQLite database over loopback HTTP: the
first-steps checklist follows what the shop has switched on, the older-orders notice names the
orders the figures really use (the analytics filter: test_analytics_api.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import (
    MetaConnection,
    Order,
    ScoreSettings,
    Segment,
    Shop,
    WinBackDiscount,
)
from shopify_app.jobs import Context
from shopify_app.states import MetaConnectionStatus
from tests.fixtures_api import ApiClient, seed_shop, serving
from tests.fixtures_auth import session_token


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    with serving(ctx) as url:
        yield url


@pytest.fixture
def seeded(make_shop: Any, sessions: sessionmaker[Session]) -> tuple[Shop, dict[str, int]]:
    shop = make_shop()
    return shop, seed_shop(sessions, shop.id, customers=120, seed=9)


def _steps(client: ApiClient) -> dict[str, bool]:
    body = client.get("/home").json()
    return {step["key"]: step["done"] for step in body["checklist"]}


def test_the_checklist_follows_what_the_shop_has_done(
    server: str, make_shop: Any, seeded, sessions: sessionmaker[Session]
) -> None:
    fresh = make_shop()
    assert not any(_steps(ApiClient(server, fresh.domain)).values())
    shop, _ = seeded
    with sessions.begin() as session:  # the seeded shop syncs some tags already
        session.execute(update(Segment).where(Segment.shop_id == shop.id).values(tag_sync=False))
    client = ApiClient(server, shop.domain)
    body = client.get("/home").json()
    assert [s["key"] for s in body["checklist"]] == [
        "review_segments",
        "tag_sync",
        "connect_meta",
        "win_back",
        "scores",
    ]
    assert all(s["href"].startswith("#/") for s in body["checklist"])
    assert _steps(client) == {
        "review_segments": True,
        "tag_sync": False,
        "connect_meta": False,
        "win_back": False,
        "scores": False,
    }
    with sessions.begin() as session:
        session.execute(
            update(Segment)
            .where(Segment.shop_id == shop.id, Segment.handle == "vip")
            .values(tag_sync=True)
        )
        session.add(MetaConnection(shop_id=shop.id, status=MetaConnectionStatus.PENDING))
        session.add(WinBackDiscount(shop_id=shop.id, tier=1, enabled=True))
        session.add(ScoreSettings(shop_id=shop.id, enabled=False))
    steps = _steps(client)
    assert steps["tag_sync"] and steps["win_back"]
    assert not steps["connect_meta"]  # logged in, no ad account yet: not connected
    assert not steps["scores"]
    with sessions.begin() as session:
        session.get_one(MetaConnection, shop.id).status = MetaConnectionStatus.CONNECTED
        session.get_one(ScoreSettings, shop.id).enabled = True
    assert all(_steps(client).values())
    assert not any(_steps(ApiClient(server, fresh.domain)).values())  # per shop


def test_the_older_orders_notice_names_the_orders_the_figures_use(
    server: str, seeded, sessions: sessionmaker[Session]
) -> None:
    shop, _ = seeded
    client = ApiClient(server, shop.domain)
    with sessions() as session:
        oldest = session.scalar(
            select(func.min(Order.processed_at)).where(Order.shop_id == shop.id)
        )
    assert oldest is not None
    # The seeded history reaches far beyond 60 days: the notice says so instead of "60 days".
    assert (dt.datetime.now(dt.UTC) - oldest).days > 60
    (notice,) = [n for n in client.get("/home").json()["notices"] if n["key"] == "scope_all_orders"]
    assert notice["params"]["since"] == oldest.date().isoformat()
    with sessions.begin() as session:
        session.get_one(Shop, shop.id).scopes += ",read_all_orders"
    notices = client.get("/home").json()["notices"]
    assert all(n["key"] != "scope_all_orders" for n in notices)


@pytest.mark.parametrize("path", ["/segments", "/analytics", "/settings"])
def test_each_section_of_the_admin_sidebar_is_served_the_page(
    server: str, seeded, path: str
) -> None:
    shop, _ = seeded
    # Without a session token the admin's frame is sent for one and back to the same path.
    r = requests.get(
        f"{server}{path}",
        params={"shop": shop.domain, "embedded": "1"},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302
    assert parse_qs(urlparse(r.headers["location"]).query)["shopify-reload"][0].startswith(path)
    page = requests.get(
        f"{server}{path}", params={"id_token": session_token(shop.domain)}, timeout=5
    )
    assert page.status_code == 200 and 'id="app"' in page.text
    assert f'<s-link href="{path}"' in page.text  # the sidebar links here
    assert requests.get(f"{server}/nowhere", timeout=5).status_code == 404
