"""The Meta endpoints served on loopback (real HTTP), with Facebook Login and the Graph API on
the stand-in. A tiny ASGI middleware stands in for the session-token middleware."""

from __future__ import annotations

import csv
import io
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from goldpan_sandbox.server import start_server
from shopify_app.db.models import MetaConnection
from shopify_app.jobs import Context
from shopify_app.meta.identifiers import CSV_HEADER
from shopify_app.server import meta_api as web
from tests.fixtures_meta import *  # noqa: F403
from tests.fixtures_meta import AD_ACCOUNT, MetaStand, add_segment, connect_shop, make_people


class FakeSessionMiddleware:
    """Sets ``request.state.shop_id`` from ``X-Test-Shop`` like the real middleware would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            headers = dict(scope["headers"])
            shop = headers.get(b"x-test-shop")
            scope.setdefault("state", {})["shop_id"] = int(shop) if shop else None
        await self.app(scope, receive, send)


class Client:
    """``requests`` against the app on loopback, with paths relative to its base URL."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, timeout=30, **kw)


@pytest.fixture
def client(meta_ctx: Context) -> Iterator[Client]:
    app = Starlette(routes=[Mount("/api/meta", routes=web.routes), *web.public_routes])
    app.state.ctx = meta_ctx
    server = start_server(FakeSessionMiddleware(app))
    try:
        yield Client(server.url)
    finally:
        server.stop()


def _login(client: Client, shop_id: int) -> requests.Response:
    url = client.post("/api/meta/connect", headers={"X-Test-Shop": str(shop_id)}).json()["url"]
    dialog = requests.get(url, allow_redirects=False, timeout=10)
    assert dialog.status_code == 302
    back = urllib.parse.urlsplit(dialog.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://goldpan.test/meta/callback"
    return client.get(f"/meta/callback?{back.query}")


def test_facebook_login_account_choice_terms_sync_lookalike_and_file(
    client: Client, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    h = {"X-Test-Shop": str(shop.id)}
    assert client.get("/api/meta/status", headers=h).json()["status"] == "disconnected"

    url = client.post("/api/meta/connect", headers=h).json()["url"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert url.startswith(f"{meta.url}/v26.0/dialog/oauth")
    assert query["scope"] == ["ads_management"] and query["client_id"] == [meta.sandbox.app_id]
    assert query["redirect_uri"] == ["https://goldpan.test/meta/callback"]

    page = _login(client, shop.id)
    assert page.status_code == 200 and "Meta connected" in page.text
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.status == "pending"
        token = meta_ctx.cipher.decrypt(conn.access_token or "")
        assert meta.sandbox.tokens[token].kind == "long"  # exchanged for a long-lived token
        assert conn.token_expires_at is not None

    accounts = client.get("/api/meta/adaccounts", headers=h).json()["data"]
    assert [a["id"] for a in accounts] == [AD_ACCOUNT]

    meta.sandbox.set_tos(AD_ACCOUNT, False)
    answer = client.post("/api/meta/account", headers=h, json={"ad_account_id": AD_ACCOUNT})
    body = answer.json()
    assert body["status"] == "terms" and body["tos_accepted"] is False
    assert body["terms_url"].endswith("?act=100200300")
    still = client.get("/api/meta/status", headers=h).json()
    assert still["status"] == "terms" and still["error"].startswith("Accept Meta's")
    # The merchant accepts the terms in Ads Manager, in another tab; the page's next load of
    # the status notices without the account being chosen again.
    meta.sandbox.set_tos(AD_ACCOUNT, True)
    body = client.get("/api/meta/status", headers=h).json()
    assert body["status"] == "connected" and body["connected"] is True and body["error"] is None
    body = client.post("/api/meta/account", headers=h, json={"ad_account_id": AD_ACCOUNT}).json()
    assert body["status"] == "connected" and body["tos_accepted"] is True

    people = make_people(150, seed=shop.id, subscribed=0.9)
    meta.sandbox.seed_people(people, match_rate=1.0)
    segment_id, _ = add_segment(meta_ctx.sessions, shop.id, people, meta_sync=False)
    synced = client.post(f"/api/meta/segments/{segment_id}/sync", headers=h, json={"enabled": True})
    assert synced.status_code == 200
    (aud,) = synced.json()["audiences"]
    allowed = sum(p.email_marketing_state == "SUBSCRIBED" for p in people)
    assert aud["status"] == "ready" and aud["received"] == allowed

    look = client.post(
        f"/api/meta/segments/{segment_id}/lookalike", headers=h, json={"country": "US", "ratio": 2}
    )
    assert look.status_code == 201 and look.json()["spec"] == {"country": "US", "ratio": 0.02}
    bad = client.post(
        f"/api/meta/segments/{segment_id}/lookalike", headers=h, json={"country": "US", "ratio": 20}
    )
    assert bad.status_code == 400 and bad.json()["field"] == "ratio"

    status = client.get("/api/meta/status", headers=h).json()
    assert [a["kind"] for a in status["audiences"]] == ["custom", "lookalike"]

    file = client.get(f"/api/meta/segments/{segment_id}/file", headers=h)
    assert file.status_code == 200 and file.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(file.text)))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 1 + allowed
    assert all(len(cell) in (0, 64) for row in rows[1:] for cell in row)

    off = client.post(f"/api/meta/segments/{segment_id}/sync", headers=h, json={"enabled": False})
    assert off.json()["audiences"][0]["status"] == "paused"


def test_callback_rejects_forged_expired_and_denied_logins(
    client: Client, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    secret = meta_ctx.settings.api_secret
    forged = web.sign_state("not-the-secret", shop.id)
    assert client.get(f"/meta/callback?code=x&state={forged}").status_code == 400
    old = web.sign_state(secret, shop.id, now=time.time() - 3600)
    assert client.get(f"/meta/callback?code=x&state={old}").status_code == 400
    assert client.get("/meta/callback?code=x&state=garbage").status_code == 400
    meta.sandbox.login_outcome = "deny"
    page = _login(client, shop.id)
    assert page.status_code == 400 and "cancelled" in page.text
    with meta_ctx.sessions() as s:
        assert s.get(MetaConnection, shop.id) is None


def test_code_cannot_be_replayed(client: Client, meta: MetaStand, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    url = client.post("/api/meta/connect", headers={"X-Test-Shop": str(shop.id)}).json()["url"]
    location = requests.get(url, allow_redirects=False, timeout=10).headers["location"]
    query = urllib.parse.urlsplit(location).query
    assert client.get(f"/meta/callback?{query}").status_code == 200
    again = client.get(f"/meta/callback?{query}")
    assert again.status_code == 400 and "Meta connection failed" in again.text


def test_system_user_token_paste(
    client: Client, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    h = {"X-Test-Shop": str(shop.id)}
    bad = client.post("/api/meta/token", headers=h, json={"token": "EAAG" + "x" * 40})
    assert bad.status_code == 400 and bad.json()["field"] == "token"
    short = client.post("/api/meta/token", headers=h, json={"token": "abc"})
    assert short.status_code == 400
    token = meta.sandbox.issue_system_user_token()
    ok = client.post("/api/meta/token", headers=h, json={"token": token})
    assert ok.status_code == 200 and ok.json()["token_expires_at"] is None
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.access_token != token  # encrypted at rest
        assert meta_ctx.cipher.decrypt(conn.access_token or "") == token


def test_errors_are_answered_for_the_page(
    client: Client, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    other = make_shop()
    h = {"X-Test-Shop": str(shop.id)}
    segment_id, _ = add_segment(meta_ctx.sessions, other.id, make_people(2), meta_sync=False)
    # Not connected yet.
    assert client.get("/api/meta/adaccounts", headers=h).status_code == 400
    mine, _ = add_segment(meta_ctx.sessions, shop.id, make_people(2), meta_sync=False)
    refused = client.post(f"/api/meta/segments/{mine}/sync", headers=h, json={"enabled": True})
    assert refused.status_code == 400 and refused.json()["field"] == "meta"
    # Another shop's segment does not exist here.
    assert client.get(f"/api/meta/segments/{segment_id}/file", headers=h).status_code == 404
    assert (
        client.post(f"/api/meta/segments/{segment_id}/sync", headers=h, json={"enabled": False})
    ).status_code == 404

    token = connect_shop(meta_ctx, meta, shop.id)
    meta.sandbox.throttle(80003, minutes=10)
    throttled = client.get("/api/meta/adaccounts", headers=h)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "600"
    meta.sandbox.revoke_token(token)
    revoked = client.get("/api/meta/adaccounts", headers=h)
    assert revoked.status_code == 409 and revoked.json()["field"] == "token"
    status = client.get("/api/meta/status", headers=h).json()
    assert status["status"] == "revoked" and status["connected"] is False
    assert (
        client.post("/api/meta/account", headers=h, json={"ad_account_id": "x"}).status_code == 400
    )
    gone = client.post("/api/meta/disconnect", headers=h).json()
    assert gone["status"] == "disconnected"


def test_connect_without_meta_app_configured(ctx: Context, make_shop) -> None:  # type: ignore[no-untyped-def]
    app = Starlette(routes=[Mount("/api/meta", routes=web.routes)])
    app.state.ctx = ctx  # settings without META_APP_ID / META_APP_SECRET
    server = start_server(FakeSessionMiddleware(app))
    try:
        shop = make_shop()
        answer = Client(server.url).post("/api/meta/connect", headers={"X-Test-Shop": str(shop.id)})
        assert answer.status_code == 503 and answer.json()["field"] == "meta"
        status = Client(server.url).get("/api/meta/status", headers={"X-Test-Shop": str(shop.id)})
        assert status.json()["configured"] is False
    finally:
        server.stop()
