"""The Meta endpoints over real HTTP, served by ``create_app`` with its session-token
middleware, with Facebook Login and the Graph API on the stand-in."""

from __future__ import annotations

import csv
import io
import time
import urllib.parse
from collections.abc import Iterator

import pytest
import requests

from shopify_app.db.models import MetaConnection
from shopify_app.jobs import Context
from shopify_app.meta.identifiers import CSV_HEADER
from shopify_app.server.api import meta as web
from tests.fixtures_api import ApiClient, serving
from tests.fixtures_meta import AD_ACCOUNT, MetaStand, add_segment, connect_shop, make_people


@pytest.fixture
def app_url(meta_ctx: Context) -> Iterator[str]:
    with serving(meta_ctx) as url:
        yield url


def _callback(app_url: str, query: str) -> requests.Response:
    """Facebook Login's redirect back: a top-level browser tab, no session token."""
    return requests.get(f"{app_url}/meta/callback?{query}", timeout=30)


def _login(app_url: str, api: ApiClient) -> requests.Response:
    url = api.post("/meta/connect").json()["url"]
    dialog = requests.get(url, allow_redirects=False, timeout=10)
    assert dialog.status_code == 302
    back = urllib.parse.urlsplit(dialog.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://goldpan.test/meta/callback"
    return _callback(app_url, back.query)


def test_facebook_login_account_choice_terms_sync_lookalike_and_file(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    assert api.get("/meta/status").json()["status"] == "disconnected"

    url = api.post("/meta/connect").json()["url"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert url.startswith(f"{meta.url}/v26.0/dialog/oauth")
    assert query["scope"] == ["ads_management"] and query["client_id"] == [meta.sandbox.app_id]
    assert query["redirect_uri"] == ["https://goldpan.test/meta/callback"]

    page = _login(app_url, api)
    assert page.status_code == 200 and "Meta connected" in page.text
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.status == "pending"
        token = meta_ctx.cipher.decrypt(conn.access_token or "")
        assert meta.sandbox.tokens[token].kind == "long"  # exchanged for a long-lived token
        assert conn.token_expires_at is not None

    accounts = api.get("/meta/adaccounts").json()["data"]
    assert [a["id"] for a in accounts] == [AD_ACCOUNT]

    meta.sandbox.set_tos(AD_ACCOUNT, False)
    answer = api.post("/meta/account", {"ad_account_id": AD_ACCOUNT})
    body = answer.json()
    assert body["status"] == "terms" and body["tos_accepted"] is False
    assert body["terms_url"].endswith("?act=100200300")
    still = api.get("/meta/status").json()
    assert still["status"] == "terms" and still["error"].startswith("Accept Meta's")
    # The merchant accepts the terms in Ads Manager, in another tab; the page's next load of
    # the status notices without the account being chosen again.
    meta.sandbox.set_tos(AD_ACCOUNT, True)
    body = api.get("/meta/status").json()
    assert body["status"] == "connected" and body["connected"] is True and body["error"] is None
    body = api.post("/meta/account", {"ad_account_id": AD_ACCOUNT}).json()
    assert body["status"] == "connected" and body["tos_accepted"] is True

    people = make_people(150, seed=shop.id, subscribed=0.9)
    meta.sandbox.seed_people(people, match_rate=1.0)
    segment_id, _ = add_segment(meta_ctx.sessions, shop.id, people, meta_sync=False)
    synced = api.post(f"/meta/segments/{segment_id}/sync", {"enabled": True})
    assert synced.status_code == 200
    (aud,) = synced.json()["audiences"]
    allowed = sum(p.email_marketing_state == "SUBSCRIBED" for p in people)
    assert aud["status"] == "ready" and aud["received"] == allowed

    look = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "US", "ratio": 2})
    assert look.status_code == 201 and look.json()["spec"] == {"country": "US", "ratio": 0.02}
    bad = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "US", "ratio": 20})
    assert bad.status_code == 400 and bad.json()["field"] == "ratio"

    status = api.get("/meta/status").json()
    assert [a["kind"] for a in status["audiences"]] == ["custom", "lookalike"]

    file = api.get(f"/meta/segments/{segment_id}/file")
    assert file.status_code == 200 and file.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(file.text)))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 1 + allowed
    assert all(len(cell) in (0, 64) for row in rows[1:] for cell in row)

    off = api.post(f"/meta/segments/{segment_id}/sync", {"enabled": False})
    assert off.json()["audiences"][0]["status"] == "paused"


def test_callback_rejects_forged_expired_and_denied_logins(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    secret = meta_ctx.settings.api_secret
    forged = web.sign_state("not-the-secret", shop.id)
    assert _callback(app_url, f"code=x&state={forged}").status_code == 400
    old = web.sign_state(secret, shop.id, now=time.time() - 3600)
    assert _callback(app_url, f"code=x&state={old}").status_code == 400
    assert _callback(app_url, "code=x&state=garbage").status_code == 400
    meta.sandbox.login_outcome = "deny"
    page = _login(app_url, ApiClient(app_url, shop.domain))
    assert page.status_code == 400 and "cancelled" in page.text
    with meta_ctx.sessions() as s:
        assert s.get(MetaConnection, shop.id) is None


def test_code_cannot_be_replayed(app_url: str, meta: MetaStand, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    url = ApiClient(app_url, shop.domain).post("/meta/connect").json()["url"]
    location = requests.get(url, allow_redirects=False, timeout=10).headers["location"]
    query = urllib.parse.urlsplit(location).query
    assert _callback(app_url, query).status_code == 200
    again = _callback(app_url, query)
    assert again.status_code == 400 and "Meta connection failed" in again.text


def test_system_user_token_paste(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    bad = api.post("/meta/token", {"token": "EAAG" + "x" * 40})
    assert bad.status_code == 400 and bad.json()["field"] == "token"
    short = api.post("/meta/token", {"token": "abc"})
    assert short.status_code == 400
    token = meta.sandbox.issue_system_user_token()
    ok = api.post("/meta/token", {"token": token})
    assert ok.status_code == 200 and ok.json()["token_expires_at"] is None
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.access_token != token  # encrypted at rest
        assert meta_ctx.cipher.decrypt(conn.access_token or "") == token


def test_errors_are_answered_for_the_page(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    other = make_shop()
    api = ApiClient(app_url, shop.domain)
    segment_id, _ = add_segment(meta_ctx.sessions, other.id, make_people(2), meta_sync=False)
    # Not connected yet.
    assert api.get("/meta/adaccounts").status_code == 400
    mine, _ = add_segment(meta_ctx.sessions, shop.id, make_people(2), meta_sync=False)
    refused = api.post(f"/meta/segments/{mine}/sync", {"enabled": True})
    assert refused.status_code == 400 and refused.json()["field"] == "meta"
    # Another shop's segment does not exist here; a malformed id is bad input, as everywhere.
    assert api.get(f"/meta/segments/{segment_id}/file").status_code == 404
    malformed = api.get("/meta/segments/abc/file")
    assert malformed.status_code == 400 and malformed.json()["field"] == "segment_id"
    assert (api.post(f"/meta/segments/{segment_id}/sync", {"enabled": False})).status_code == 404

    token = connect_shop(meta_ctx, meta, shop.id)
    meta.sandbox.throttle(80003, minutes=10)
    throttled = api.get("/meta/adaccounts")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "600"
    meta.sandbox.revoke_token(token)
    revoked = api.get("/meta/adaccounts")
    assert revoked.status_code == 409 and revoked.json()["field"] == "token"
    status = api.get("/meta/status").json()
    assert status["status"] == "revoked" and status["connected"] is False
    assert api.post("/meta/account", {"ad_account_id": "x"}).status_code == 400
    gone = api.post("/meta/disconnect").json()
    assert gone["status"] == "disconnected"


def test_connect_without_meta_app_configured(ctx: Context, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    with serving(ctx) as url:  # settings without META_APP_ID / META_APP_SECRET
        api = ApiClient(url, shop.domain)
        answer = api.post("/meta/connect")
        assert answer.status_code == 503 and answer.json()["field"] == "meta"
        assert api.get("/meta/status").json()["configured"] is False
