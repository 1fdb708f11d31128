"""The Meta endpoints over real HTTP, served by ``create_app`` with its session-token
middleware, with Facebook Login and the Graph API on the stand-in."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from goldpan_sandbox.server import free_port
from shopify_app.db.models import MetaConnection, MetaLogin, utcnow
from shopify_app.jobs import Context
from shopify_app.meta.identifiers import CSV_HEADER
from shopify_app.meta.view import LOOKALIKE_REASONS
from shopify_app.states import MetaConnectionStatus, MetaState
from tests.fixtures_api import ApiClient, serving
from tests.fixtures_meta import AD_ACCOUNT, MetaStand, add_segment, connect_shop, make_people

WEB = Path(__file__).resolve().parents[1] / "web"


@pytest.fixture
def app_url(meta_ctx: Context) -> Iterator[str]:
    with serving(meta_ctx) as url:
        yield url


APP = "https://goldpan.test"  # SHOPIFY_APP_URL in the tests; served on loopback


def _on_loopback(app_url: str, url: str, path: str) -> str:
    """``url`` (an address on Goldpan's public origin) as served by the test server."""
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{APP}{path}"
    return f"{app_url}{path}?{parts.query}"


@dataclass
class Tab:
    """A browser tab doing Facebook Login: its cookie for Goldpan's origin, and where it is.

    The cookie is ``Secure`` (Goldpan runs on https); the test server is plain http on
    loopback, so the tab sends it itself, as the browser would to https://goldpan.test.
    """

    app_url: str
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, url: str) -> requests.Response:
        response = requests.get(url, cookies=self.cookies, allow_redirects=False, timeout=30)
        self.cookies.update(response.cookies.get_dict())
        return response

    def open_login(self, login_url: str) -> str:
        """Open the URL the page got from ``/meta/connect``; returns the dialog's URL."""
        start = self.get(_on_loopback(self.app_url, login_url, "/meta/login"))
        assert start.status_code == 302, start.text
        return str(start.headers["location"])

    def consent(self, dialog_url: str) -> str:
        """Facebook Login's dialog: returns where it sends the tab back (Goldpan's callback)."""
        dialog = self.get(dialog_url)
        assert dialog.status_code == 302
        return str(dialog.headers["location"])

    def come_back(self, callback_url: str) -> requests.Response:
        return self.get(_on_loopback(self.app_url, callback_url, "/meta/callback"))


def _login(app_url: str, api: ApiClient) -> requests.Response:
    """The whole Facebook Login, in one tab, as the merchant does it."""
    tab = Tab(app_url)
    return tab.come_back(tab.consent(tab.open_login(api.post("/meta/connect").json()["url"])))


def test_facebook_login_account_choice_terms_sync_lookalike_and_file(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    assert api.get("/meta/status").json()["status"] == "disconnected"

    tab = Tab(app_url)
    login_url = api.post("/meta/connect").json()["url"]
    assert login_url.startswith(f"{APP}/meta/login?state=")  # a Goldpan URL starts the tab
    dialog = tab.open_login(login_url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(dialog).query)
    assert dialog.startswith(f"{meta.url}/v26.0/dialog/oauth")
    assert query["scope"] == ["ads_management"] and query["client_id"] == [meta.sandbox.app_id]
    assert query["redirect_uri"] == [f"{APP}/meta/callback"]

    page = tab.come_back(tab.consent(dialog))
    assert page.status_code == 200 and "Connected as Sandbox Merchant" in page.text
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.status == "confirm"
        token = meta_ctx.cipher.decrypt(conn.access_token or "")
        assert meta.sandbox.tokens[token].kind == "long"  # exchanged for a long-lived token
        assert conn.token_expires_at is not None
    # Nothing is used until the merchant confirms whose Facebook account it is.
    shown = api.get("/meta/status").json()
    assert (shown["status"], shown["user_name"]) == ("confirm", "Sandbox Merchant")
    assert api.get("/meta/adaccounts").json()["field"] == "meta"
    assert api.post("/meta/confirm").json()["status"] == "pending"
    assert api.post("/meta/confirm").status_code == 400  # once

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

    panel = api.get(f"/meta/segments/{segment_id}").json()
    offer = panel["offers"]["custom"]
    assert offer["available"] is True and "US" in offer["countries"]
    assert "XX" not in offer["countries"] and offer["taken"] == []
    look = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "US", "ratio": 2})
    assert look.status_code == 201
    assert look.json()["created"]["spec"] == {"country": "US", "ratio": 0.02}
    # The answer lists the new lookalike, so the page shows it without a reload.
    listed = look.json()["meta"]
    assert [(la["spec"]["country"], la["state"]) for la in listed["lookalikes"]] == [
        ("US", "created")
    ]
    assert listed["offers"]["custom"]["taken"] == [
        {"source": listed["audience"]["audience_id"], "country": "US", "ratio": 0.02}
    ]
    bad = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "US", "ratio": 20})
    assert bad.status_code == 400 and bad.json()["field"] == "ratio"
    nowhere = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "XX", "ratio": 1})
    assert nowhere.status_code == 400 and nowhere.json()["field"] == "country"
    assert "not a country a lookalike can target" in nowhere.json()["error"]
    again = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "us", "ratio": 2})
    assert again.status_code == 400 and "exists already" in again.json()["error"]
    lookalikes = meta.sandbox.requests_to("/customaudiences", "POST")
    assert sum(r.params.get("subtype") == "LOOKALIKE" for r in lookalikes) == 1

    # A value-based audience: the ad account's own terms first, explained with their link.
    meta.sandbox.set_value_tos(AD_ACCOUNT, False)
    terms = api.post(f"/meta/segments/{segment_id}/value-audience", {})
    assert terms.status_code == 400 and terms.json()["field"] == "value_terms"
    assert "act=100200300" in terms.json()["error"]
    meta.sandbox.set_value_tos(AD_ACCOUNT, True)
    made = api.post(f"/meta/segments/{segment_id}/value-audience", {})
    assert made.status_code == 201 and made.json()["value_audience"]["kind"] == "value"
    # These customers never ordered: no purchase model, so no values — said, not faked.
    value = api.get(f"/meta/segments/{segment_id}").json()["value_audience"]
    assert (value["state"], value["records"]) == ("error", 0), value
    assert "no predicted values" in value["error"]

    status = api.get("/meta/status").json()
    assert [a["kind"] for a in status["audiences"]] == ["custom", "lookalike", "value"]

    file = api.get(f"/meta/segments/{segment_id}/file")
    assert file.status_code == 200 and file.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(file.text)))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 1 + allowed
    assert all(len(cell) in (0, 64) for row in rows[1:] for cell in row)

    off = api.post(f"/meta/segments/{segment_id}/sync", {"enabled": False})
    assert off.json()["audiences"][0]["status"] == "paused"
    paused = api.get(f"/meta/segments/{segment_id}").json()
    assert paused["state"] == "paused"
    assert paused["offers"]["custom"] == {**paused["offers"]["custom"], "available": False}
    assert paused["offers"]["custom"]["reason"] == "paused"
    refused = api.post(f"/meta/segments/{segment_id}/lookalike", {"country": "GR", "ratio": 1})
    assert refused.status_code == 400 and "paused" in refused.json()["error"]

    # Logging in again keeps the chosen account once the merchant confirms.
    assert _login(app_url, api).status_code == 200
    assert api.post("/meta/confirm").json()["status"] == "connected"


def test_a_login_completes_only_in_the_browser_that_started_it(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """The review's repro: a second client that learns the login's ``state`` completed the flow
    and attached its own Facebook user's ad account to the shop."""
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    merchant, intruder = Tab(app_url), Tab(app_url)
    login_url = api.post("/meta/connect").json()["url"]
    dialog = merchant.open_login(login_url)
    # The intruder has the dialog's URL (state included) and a Facebook account of its own.
    meta.sandbox.login_user = "10000000000666"
    meta.sandbox.user_names["10000000000666"] = "Mallory"
    back = intruder.consent(dialog)
    refused = intruder.come_back(back)
    assert refused.status_code == 400 and "not started in this browser" in refused.text
    # Nor can it bind the login to itself: the Goldpan URL works once.
    assert intruder.get(_on_loopback(app_url, login_url, "/meta/login")).status_code == 400
    with meta_ctx.sessions() as s:
        assert s.get(MetaConnection, shop.id) is None
    # The merchant's own tab completes it, and the page names the account it connected.
    meta.sandbox.login_user = "10000000000001"
    page = merchant.come_back(merchant.consent(dialog))
    assert page.status_code == 200 and "Connected as Sandbox Merchant" in page.text
    assert api.get("/meta/status").json()["user_name"] == "Sandbox Merchant"


def test_a_connection_the_merchant_does_not_recognise_is_dropped(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    meta.sandbox.login_user = "10000000000777"
    meta.sandbox.user_names["10000000000777"] = "<b>Not the merchant</b>"
    page = _login(app_url, api)
    assert "Connected as &lt;b&gt;Not the merchant&lt;/b&gt;" in page.text  # escaped
    assert api.get("/meta/status").json()["user_name"] == "<b>Not the merchant</b>"
    # "Not me": the page disconnects; nothing was synced and the token is gone.
    gone = api.post("/meta/disconnect").json()
    assert (gone["status"], gone["user_name"]) == ("disconnected", None)
    with meta_ctx.sessions() as s:
        conn = s.get(MetaConnection, shop.id)
        assert conn is not None and conn.access_token is None


def test_callback_rejects_forged_expired_and_denied_logins(
    app_url: str, meta_ctx: Context, meta: MetaStand, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    tab = Tab(app_url)
    # A state Goldpan never issued, with or without a cookie of Goldpan's.
    tab.open_login(api.post("/meta/connect").json()["url"])
    for query in ("code=x&state=garbage", "code=x", "code=x&state="):
        assert tab.get(f"{app_url}/meta/callback?{query}").status_code == 400
        assert requests.get(f"{app_url}/meta/callback?{query}", timeout=10).status_code == 400
    assert tab.get(f"{app_url}/meta/login?state=garbage").status_code == 400
    # An expired one.
    dialog = tab.open_login(api.post("/meta/connect").json()["url"])
    back = tab.consent(dialog)
    with meta_ctx.sessions.begin() as s:
        s.execute(
            update(MetaLogin)
            .where(MetaLogin.shop_id == shop.id)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert tab.come_back(back).status_code == 400
    # A start link opened too late.
    late = api.post("/meta/connect").json()["url"]
    with meta_ctx.sessions.begin() as s:
        s.execute(
            update(MetaLogin)
            .where(MetaLogin.shop_id == shop.id)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert tab.get(_on_loopback(app_url, late, "/meta/login")).status_code == 400
    # The merchant refused in the dialog.
    meta.sandbox.login_outcome = "deny"
    page = _login(app_url, api)
    assert page.status_code == 400 and "cancelled" in page.text
    with meta_ctx.sessions() as s:
        assert s.get(MetaConnection, shop.id) is None
        # Expired logins were cleared as new ones started; the last one was used up.
        left = select(func.count()).where(MetaLogin.shop_id == shop.id)
        assert s.scalar(left) == 0


def test_a_login_completes_once(app_url: str, meta: MetaStand, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    tab = Tab(app_url)
    login_url = ApiClient(app_url, shop.domain).post("/meta/connect").json()["url"]
    back = tab.consent(tab.open_login(login_url))
    assert tab.come_back(back).status_code == 200
    again = tab.come_back(back)
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


def test_meta_down_at_the_callback_is_a_gateway_error_and_stores_nothing(
    app_url: str, meta_ctx: Context, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """The login went through Meta's dialog, then Meta stops answering the code exchange."""
    shop = make_shop()
    api = ApiClient(app_url, shop.domain)
    tab = Tab(app_url)
    back = tab.consent(tab.open_login(api.post("/meta/connect").json()["url"]))
    closed = meta_ctx.settings.with_overrides(meta_graph_url=f"http://127.0.0.1:{free_port()}")
    with serving(dataclasses.replace(meta_ctx, settings=closed)) as down_url:
        page = Tab(down_url, cookies=tab.cookies).come_back(back)
    assert page.status_code == 502 and "could not be reached" in page.text
    with meta_ctx.sessions() as s:
        assert s.get(MetaConnection, shop.id) is None


def test_every_meta_state_status_and_reason_has_a_message_in_every_language() -> None:
    # The page words each value the server sends; a missing key would show the raw key
    # (the settings card once showed "meta.conn.pending").
    wanted = (
        {f"meta_state.{s}" for s in MetaState}
        | {f"meta.conn.{s}" for s in MetaConnectionStatus}
        | {f"lookalike.reason.{r}" for r in LOOKALIKE_REASONS}
    )
    for lang in ("en", "ar", "el", "ko"):
        messages = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        assert sorted(wanted - set(messages)) == [], lang
        assert all(messages[key].strip() for key in wanted), lang
