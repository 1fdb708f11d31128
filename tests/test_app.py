"""The app over real HTTP on loopback: session-token API auth, shop isolation, the error map,
page load with token exchange (managed install), the code grant, CSP, health; plus logs.py
redaction."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from sqlalchemy import select
from starlette.requests import Request
from starlette.routing import Route

from goldpan_sandbox.server import RunningServer, start_server
from shopify_app import logs
from shopify_app.db.models import Segment, Shop
from shopify_app.errors import (
    AuthError,
    ConfigError,
    CsvError,
    GoldpanError,
    GraphQLError,
    InputError,
    MetaError,
    MetaTermsError,
    MetaThrottledError,
    MetaTokenError,
    NotFound,
    SyncError,
    ThrottledError,
    TokenError,
    TransientError,
    UserErrorsError,
)
from shopify_app.jobs import Context
from shopify_app.server.app import create_app
from shopify_app.server.errors import RETRY_HEADER
from shopify_app.server.middleware import csp_for
from shopify_app.settings import Settings
from shopify_app.shopify import auth
from tests.conftest import TEST_API_KEY, TEST_API_SECRET
from tests.fixtures_auth import OAuthSandbox, pending_tasks, session_token

SHOP = "linen.myshopify.com"
"""The shop of a test (each test starts with an empty database)."""


@pytest.fixture
def app_server(queued_ctx: Context) -> Iterator[RunningServer]:
    running = start_server(create_app(queued_ctx))
    try:
        yield running
    finally:
        running.stop()


def _api(server: RunningServer, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.url}{path}", headers=headers, timeout=10)


def test_health_and_readiness(app_server: RunningServer) -> None:
    assert requests.get(f"{app_server.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{app_server.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["migrations"]


def test_api_requires_a_valid_session_token(app_server: RunningServer, make_shop: Any) -> None:
    shop = make_shop()
    now = int(time.time())
    ok = _api(app_server, "/api/session", session_token(shop.domain))
    assert ok.status_code == 200
    assert ok.json() == {"shop": shop.domain, "shop_id": shop.id, "user_id": 42}
    for bad in (
        None,
        "garbage",
        session_token(shop.domain, exp=now - 30),
        session_token(shop.domain, nbf=now + 30),
        session_token(shop.domain, aud="another-app"),
        session_token(shop.domain, secret="not-the-secret"),
    ):
        response = _api(app_server, "/api/session", bad)
        assert response.status_code == 401, bad
        assert response.headers[RETRY_HEADER] == "1"
        assert "error" in response.json()


def test_api_refuses_shops_without_the_app(app_server: RunningServer, make_shop: Any) -> None:
    shop = SHOP
    unknown = _api(app_server, "/api/session", session_token(shop))
    assert unknown.status_code == 401
    assert unknown.json() == {"error": "the app is not installed on this shop", "field": None}
    assert unknown.headers["X-Shopify-API-Request-Failure-Reauthorize"] == "1"
    assert unknown.headers["X-Shopify-API-Request-Failure-Reauthorize-Url"] == f"/?shop={shop}"
    assert RETRY_HEADER not in unknown.headers
    gone = make_shop(access_token=None)
    assert _api(app_server, "/api/session", session_token(gone.domain)).status_code == 401


def test_one_shops_token_never_reaches_another_shop(
    app_server: RunningServer, make_shop: Any, queued_ctx: Context
) -> None:
    shop_a, shop_b = make_shop(), make_shop()
    with queued_ctx.sessions.begin() as session:
        secret_segment = Segment(shop_id=shop_b.id, handle="b-only", name="Shop B secret segment")
        session.add(secret_segment)
        session.flush()
        segment_id = secret_segment.id
    token_a = session_token(shop_a.domain)
    # The shop comes from the token, never from the request.
    me = _api(app_server, f"/api/session?shop={shop_b.domain}", token_a)
    assert me.json()["shop"] == shop_a.domain
    cross = _api(app_server, f"/api/segments/{segment_id}", token_a)
    assert cross.status_code == 404
    assert "Shop B secret segment" not in cross.text
    own = _api(app_server, f"/api/segments/{segment_id}", session_token(shop_b.domain))
    assert own.status_code == 200 and own.json()["name"] == "Shop B secret segment"
    # A token signed for shop A but whose dest is rewritten to B fails verification.
    forged = session_token(shop_b.domain, secret="not-the-secret")
    assert _api(app_server, f"/api/segments/{segment_id}", forged).status_code == 401


# --- the error map: every Goldpan error an endpoint raises, as the page receives it -------------

ERRORS: dict[str, tuple[GoldpanError, int, dict[str, Any], dict[str, str]]] = {
    # name: (raised, status, body, headers; "{shop}" is the requesting shop's domain)
    "auth": (
        AuthError("session token expired"),
        401,
        {"error": "session token expired", "field": None},
        {RETRY_HEADER: "1"},
    ),
    "input": (
        InputError("ratio must be a whole percentage from 1 to 10", field="ratio"),
        400,
        {"error": "ratio must be a whole percentage from 1 to 10", "field": "ratio"},
        {},
    ),
    "csv": (
        CsvError("not a number", row=3, column="Total"),
        400,
        {"error": "row 3, column 'Total': not a number", "field": "Total"},
        {},
    ),
    "not-found": (
        NotFound("segment not found"),
        404,
        {"error": "segment not found", "field": None},
        {},
    ),
    "token-uninstalled": (
        TokenError("the shop uninstalled the app", code="uninstalled"),
        401,
        {"error": "the shop uninstalled the app", "field": None},
        # Install again; the shop is the requesting one, from its session token.
        {
            "X-Shopify-API-Request-Failure-Reauthorize": "1",
            "X-Shopify-API-Request-Failure-Reauthorize-Url": "/?shop={shop}",
        },
    ),
    "token-refused": (
        TokenError("Shopify answered 500", code="server_error"),
        502,
        {"error": "Shopify answered 500", "field": None, "code": "server_error"},
        {},
    ),
    "shopify-throttled": (
        ThrottledError("the cost bucket stayed empty"),
        502,
        {"error": "the cost bucket stayed empty", "field": None},
        {},
    ),
    "shopify-transient": (
        TransientError("HTTP 503 after 5 attempts"),
        502,
        {"error": "HTTP 503 after 5 attempts", "field": None},
        {},
    ),
    "graphql": (
        GraphQLError("Field 'x' doesn't exist", errors=[{"message": "Field 'x' doesn't exist"}]),
        502,
        {"error": "Field 'x' doesn't exist", "field": None},
        {},
    ),
    "user-errors": (
        UserErrorsError("Tag is invalid", user_errors=[{"field": ["tags"], "message": "invalid"}]),
        502,
        {"error": "Tag is invalid", "field": None},
        {},
    ),
    "meta-terms": (
        MetaTermsError("terms not accepted", code=200, subcode=1870090),
        409,
        {"error": "terms not accepted", "field": "terms", "code": 200, "subcode": 1870090},
        {},
    ),
    "meta-token": (
        MetaTokenError("token expired", code=190, subcode=463),
        409,
        {"error": "token expired", "field": "token", "code": 190, "subcode": 463},
        {},
    ),
    "meta-throttled": (
        MetaThrottledError("too many calls", code=80003, retry_after=600.0),
        429,
        {"error": "too many calls", "field": None, "retry_after": 600.0},
        {"Retry-After": "600"},
    ),
    "meta": (
        MetaError("invalid parameter", code=100, subcode=33),
        502,
        {"error": "invalid parameter", "field": None, "code": 100, "subcode": 33},
        {},
    ),
    "config": (
        ConfigError("TOKEN_ENCRYPTION_KEY is not a Fernet key", variable="TOKEN_ENCRYPTION_KEY"),
        500,
        {"error": "TOKEN_ENCRYPTION_KEY is not a Fernet key", "field": None},
        {},
    ),
    "sync": (
        SyncError("the bulk operation expired"),
        500,
        {"error": "the bulk operation expired", "field": None},
        {},
    ),
}


def _raise(request: Request) -> Any:
    """A sync endpoint (run in the threadpool, as every API endpoint) raising the named error."""
    raise ERRORS[request.path_params["name"]][0]


@pytest.fixture
def raising_server(queued_ctx: Context) -> Iterator[RunningServer]:
    """The app with one more API route, ``/api/test-errors/{name}``, raising ``ERRORS[name]``."""
    app = create_app(queued_ctx, extra_routes=[Route("/api/test-errors/{name}", _raise)])
    running = start_server(app)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_error_is_answered_from_the_one_map(
    raising_server: RunningServer, make_shop: Any, name: str
) -> None:
    _exc, status, body, headers = ERRORS[name]
    shop = make_shop()
    response = _api(raising_server, f"/api/test-errors/{name}", session_token(shop.domain))
    assert response.status_code == status
    assert response.json() == body
    for header, value in headers.items():
        assert response.headers[header] == value.format(shop=shop.domain)
    if RETRY_HEADER not in headers:
        assert RETRY_HEADER not in response.headers  # only a bad session token is worth a retry


def test_page_load_without_token_goes_to_the_bounce_page(app_server: RunningServer) -> None:
    shop = SHOP
    response = requests.get(
        f"{app_server.url}/",
        params={"embedded": "1", "shop": shop, "host": "abc"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/auth/session-token"
    reload_to = dict(parse_qsl(location.query))["shopify-reload"]
    assert reload_to.startswith("/?") and f"shop={shop}" in reload_to
    bounce = requests.get(f"{app_server.url}{response.headers['location']}", timeout=5)
    assert bounce.status_code == 200
    assert "https://cdn.shopify.com/shopifycloud/app-bridge.js" in bounce.text
    assert f'content="{TEST_API_KEY}"' in bounce.text
    assert bounce.headers["content-security-policy"] == csp_for(shop)

    invalid = requests.get(
        f"{app_server.url}/",
        params={"shop": shop, "id_token": session_token(shop, exp=int(time.time()) - 60)},
        allow_redirects=False,
        timeout=5,
    )
    assert invalid.status_code == 302
    assert invalid.headers["location"].startswith("/auth/session-token?")
    assert "id_token" not in invalid.headers["location"]


def test_page_load_installs_through_token_exchange(
    app_server: RunningServer, queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop = SHOP
    response = requests.get(
        f"{app_server.url}/",
        params={
            "embedded": "1",
            "shop": shop,
            "id_token": oauth_sandbox.server.mint_session_token(shop),
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == (
        f"frame-ancestors https://{shop} https://admin.shopify.com;"
    )
    assert TEST_API_KEY in response.text and "{{API_KEY}}" not in response.text
    with queued_ctx.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
    assert row is not None and row.is_installed and row.refresh_token
    assert oauth_sandbox.server.authenticate(
        shop, queued_ctx.cipher.decrypt(row.access_token or "")
    )
    assert ("sync.initial", {"shop_id": row.id}) in pending_tasks(queued_ctx)

    # Loading again exchanges nothing.
    exchanges = len(oauth_sandbox.server.token_requests)
    again = requests.get(f"{app_server.url}/", params={"id_token": session_token(shop)}, timeout=10)
    assert again.status_code == 200
    assert len(oauth_sandbox.server.token_requests) == exchanges


def test_page_load_migrates_a_legacy_token(
    app_server: RunningServer, queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop = SHOP
    legacy = oauth_sandbox.server.issue_offline_token(shop)
    auth.install(queued_ctx, shop, auth.TokenSet.from_response(legacy))
    response = requests.get(
        f"{app_server.url}/", params={"id_token": session_token(shop)}, timeout=10
    )
    assert response.status_code == 200
    with queued_ctx.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
    assert row is not None and row.access_token_expires_at is not None and row.refresh_token


def _cookie_from(response: requests.Response) -> str:
    header = response.headers["set-cookie"]
    return header.split(";", 1)[0]


def test_authorization_code_grant(
    app_server: RunningServer, queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop = SHOP
    start = requests.get(
        f"{app_server.url}/auth", params={"shop": shop}, allow_redirects=False, timeout=5
    )
    assert start.status_code == 302
    cookie = _cookie_from(start)
    assert "HttpOnly" in start.headers["set-cookie"]
    authorize = urlsplit(start.headers["location"])
    query = dict(parse_qsl(authorize.query))
    assert query["client_id"] == TEST_API_KEY
    assert query["redirect_uri"] == "https://goldpan.test/auth/callback"
    granted = requests.get(start.headers["location"], allow_redirects=False, timeout=5)
    callback_query = urlsplit(granted.headers["location"]).query
    callback = f"{app_server.url}/auth/callback?{callback_query}"

    refused = requests.get(callback, allow_redirects=False, timeout=5)  # no state cookie
    assert refused.status_code == 400

    done = requests.get(callback, headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
    assert done.status_code == 302
    store = shop.removesuffix(".myshopify.com")
    assert (
        done.headers["location"] == f"https://admin.shopify.com/store/{store}/apps/{TEST_API_KEY}"
    )
    with queued_ctx.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
    assert row is not None and row.is_installed and row.access_token_expires_at is not None


def _signed(params: dict[str, str]) -> dict[str, str]:
    return {**params, "hmac": auth.oauth_hmac(TEST_API_SECRET, params)}


def test_callback_refuses_forgeries(app_server: RunningServer) -> None:
    shop = SHOP
    start = requests.get(
        f"{app_server.url}/auth", params={"shop": shop}, allow_redirects=False, timeout=5
    )
    cookie = _cookie_from(start)
    state = dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"]
    base = {"code": "c0de", "shop": shop, "state": state, "timestamp": str(int(time.time()))}
    cases = {
        "bad hmac": {**base, "hmac": "0" * 64},
        "stale": _signed({**base, "timestamp": str(int(time.time()) - 600)}),
        "wrong state": _signed({**base, "state": "someone-elses"}),
        "bad shop": _signed({**base, "shop": "evil.example.com"}),
    }
    for name, params in cases.items():
        response = requests.get(
            f"{app_server.url}/auth/callback",
            params=params,
            headers={"Cookie": cookie},
            allow_redirects=False,
            timeout=5,
        )
        assert response.status_code == 400, name
    bad_start = requests.get(
        f"{app_server.url}/auth", params={"shop": "x.evil.com"}, allow_redirects=False, timeout=5
    )
    assert bad_start.status_code == 400


def test_csp_for() -> None:
    assert csp_for("a-shop.myshopify.com") == (
        "frame-ancestors https://a-shop.myshopify.com https://admin.shopify.com;"
    )
    assert csp_for("evil.com") == "frame-ancestors 'none';"
    assert csp_for(None) == "frame-ancestors 'none';"


# --- logs -------------------------------------------------------------------------------------


def test_redaction() -> None:
    text = (
        "token shpat_abc123 refresh shprt_def456 Authorization: Bearer eyJ.a.b "
        'body {"client_secret": "s3cr3t", "subject_token": "eyJxyz"} client_secret=hush&x=1'
    )
    redacted = logs.redact(text)
    for secret in ("shpat_abc123", "shprt_def456", "eyJ.a.b", "s3cr3t", "eyJxyz", "hush"):
        assert secret not in redacted
    assert "x=1" in redacted and "Bearer [redacted]" in redacted


def test_json_logs_carry_shop_and_job_and_hide_secrets(settings: Settings) -> None:
    stream = io.StringIO()
    handler = logs.make_handler(settings.with_overrides(log_json=True), stream)
    logger = logging.getLogger("goldpan.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.bind(shop="a.myshopify.com", job="sync:1"):
            logger.info("using %s", "shpat_0123456789", extra={"detail": "Bearer abc.def"})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["shop"] == "a.myshopify.com" and entry["job"] == "sync:1"
    assert entry["msg"] == "using [redacted]"
    assert entry["detail"] == "Bearer [redacted]"


def test_the_admin_around_the_page_is_replaceable(queued_ctx: Context, make_shop: Any) -> None:
    """The demo shows the page without Shopify's admin: its SandboxAdmin, handed to create_app,
    mints session tokens from the sandbox and opens the app as the page itself."""
    from goldpan_sandbox.demo import SandboxAdmin

    sandbox = "http://127.0.0.1:9/sandbox"
    server = start_server(create_app(queued_ctx, admin=SandboxAdmin(sandbox)))
    try:
        shop = make_shop()
        bounce = requests.get(
            f"{server.url}/auth/session-token",
            params={"shop": shop.domain, "shopify-reload": "/?x=</script><b>"},
            timeout=5,
        )
        assert f"{sandbox}/shops/{shop.domain}/admin/session-token" in bounce.text
        assert "app-bridge.js" not in bounce.text
        assert "</script><b>" not in bounce.text  # the reload target cannot break out
        # Only our own pages are reloaded: browsers read "/\\host" and "/\thost" like "//host".
        for offsite_target in (
            "//evil.example.com/x",
            "/\\evil.example.com/x",
            "/\t/evil.example.com",
        ):
            offsite = requests.get(
                f"{server.url}/auth/session-token",
                params={"shop": shop.domain, "shopify-reload": offsite_target},
                timeout=5,
            )
            assert "evil.example.com" not in offsite.text, offsite_target
        # Opened outside an admin, an installed shop goes to the page, shim on (not to Shopify).
        opened = requests.get(
            f"{server.url}/", params={"shop": shop.domain}, allow_redirects=False, timeout=5
        )
        assert opened.status_code == 302
        location = urlsplit(opened.headers["location"])
        assert location.netloc == "" and location.path == "/"
        assert dict(parse_qsl(location.query)) == {
            "shop": shop.domain,
            "embedded": "1",
            "demo": "1",
        }
        page = requests.get(
            f"{server.url}/", params={"id_token": session_token(shop.domain)}, timeout=5
        )
        assert f'<meta name="goldpan-sandbox-url" content="{sandbox}">' in page.text
    finally:
        server.stop()


def test_the_page_leaves_no_placeholder_unfilled(app_server: RunningServer, make_shop: Any) -> None:
    shop = make_shop()
    page = requests.get(
        f"{app_server.url}/", params={"id_token": session_token(shop.domain)}, timeout=5
    )
    assert page.status_code == 200
    assert f'<meta name="shopify-api-key" content="{TEST_API_KEY}">' in page.text
    assert "{{" not in page.text


def test_page_load_reinstalls_when_the_refresh_token_expired(
    app_server: RunningServer, queued_ctx: Context, oauth_sandbox: OAuthSandbox, make_shop: Any
) -> None:
    import datetime as dt

    from shopify_app.db.types import utcnow

    shop = make_shop(refresh_token_expires_at=utcnow() - dt.timedelta(days=1))
    response = requests.get(
        f"{app_server.url}/", params={"id_token": session_token(shop.domain)}, timeout=10
    )
    assert response.status_code == 200
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop.id)
    assert row is not None and row.refresh_token_expires_at is not None
    assert row.refresh_token_expires_at > utcnow() + dt.timedelta(days=80)
