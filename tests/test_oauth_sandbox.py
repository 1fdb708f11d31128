"""The sandbox's OAuth server, standalone over loopback HTTP: it must answer as Shopify does."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl, urlsplit

import requests

from shopify_app.shopify.auth import (
    ID_TOKEN_TYPE,
    OFFLINE_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    verify_oauth_hmac,
)
from tests.conftest import TEST_API_KEY, TEST_API_SECRET
from tests.fixtures_auth import OAuthSandbox, session_token

SHOP = "linen.myshopify.com"
"""The shop of a test (each test has an OAuth stand-in of its own)."""

CLIENT = {"client_id": TEST_API_KEY, "client_secret": TEST_API_SECRET}


def _token(sandbox: OAuthSandbox, shop: str, body: dict[str, str]) -> requests.Response:
    url = f"{sandbox.running.url}/shops/{shop}/admin/oauth/access_token"
    return requests.post(url, json={**CLIENT, **body}, timeout=5)


def _exchange(
    sandbox: OAuthSandbox, shop: str, subject: str, kind: str = ID_TOKEN_TYPE
) -> requests.Response:
    return _token(
        sandbox,
        shop,
        {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject,
            "subject_token_type": kind,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        },
    )


def test_authorize_redirects_with_a_signed_callback(oauth_sandbox: OAuthSandbox) -> None:
    shop = SHOP
    response = requests.get(
        f"{oauth_sandbox.running.url}/shops/{shop}/admin/oauth/authorize",
        params={
            "client_id": TEST_API_KEY,
            "scope": "read_orders",
            "redirect_uri": "https://app.example/auth/callback",
            "state": "nonce-1",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "https://app.example/auth/callback"
    )
    params = dict(parse_qsl(location.query))
    assert set(params) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert params["shop"] == shop and params["state"] == "nonce-1"
    assert abs(int(params["timestamp"]) - time.time()) < 5
    assert verify_oauth_hmac(TEST_API_SECRET, params)
    host = base64.b64decode(params["host"] + "==").decode()
    assert host == f"admin.shopify.com/store/{shop.removesuffix('.myshopify.com')}"

    # The code is good once.
    first = _token(oauth_sandbox, shop, {"code": params["code"], "expiring": "1"})
    assert first.status_code == 200 and first.json()["refresh_token"].startswith("shprt_")
    again = _token(oauth_sandbox, shop, {"code": params["code"], "expiring": "1"})
    assert again.status_code == 400 and again.json()["error"] == "invalid_request"


def test_authorize_refuses_unknown_client(oauth_sandbox: OAuthSandbox) -> None:
    response = requests.get(
        f"{oauth_sandbox.running.url}/shops/a.myshopify.com/admin/oauth/authorize",
        params={"client_id": "nope", "redirect_uri": "https://x/cb"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 400


def test_token_exchange_and_errors(oauth_sandbox: OAuthSandbox) -> None:
    shop = SHOP
    server = oauth_sandbox.server
    assert not server.is_installed(shop)
    ok = _exchange(oauth_sandbox, shop, server.mint_session_token(shop))
    assert ok.status_code == 200
    body = ok.json()
    assert body["expires_in"] == 3600 and body["refresh_token_expires_in"] == 90 * 86400
    assert server.is_installed(shop) and server.authenticate(shop, body["access_token"])

    wrong_shop = _exchange(oauth_sandbox, shop, session_token("elsewhere.myshopify.com"))
    assert (wrong_shop.status_code, wrong_shop.json()["error"]) == (400, "invalid_subject_token")
    garbage = _exchange(oauth_sandbox, shop, "not-a-jwt")
    assert (garbage.status_code, garbage.json()["error"]) == (400, "invalid_subject_token")
    bad_client = requests.post(
        f"{oauth_sandbox.running.url}/shops/{shop}/admin/oauth/access_token",
        json={"client_id": TEST_API_KEY, "client_secret": "wrong", "grant_type": "refresh_token"},
        timeout=5,
    )
    assert (bad_client.status_code, bad_client.json()["error"]) == (401, "invalid_client")
    unsupported = _token(oauth_sandbox, shop, {"grant_type": "password"})
    assert (unsupported.status_code, unsupported.json()["error"]) == (400, "invalid_request")


def test_refresh_rotation_keeps_previous_until_new_is_used(oauth_sandbox: OAuthSandbox) -> None:
    shop = SHOP
    server = oauth_sandbox.server
    rt0 = server.install(shop)["refresh_token"]
    r1 = _token(oauth_sandbox, shop, {"grant_type": "refresh_token", "refresh_token": rt0})
    assert r1.status_code == 200
    rt1 = r1.json()["refresh_token"]
    assert rt1 != rt0
    # rt0 still works (a racing worker may still hold it) until rt1 is used.
    r1b = _token(oauth_sandbox, shop, {"grant_type": "refresh_token", "refresh_token": rt0})
    assert r1b.status_code == 200
    r2 = _token(oauth_sandbox, shop, {"grant_type": "refresh_token", "refresh_token": rt1})
    assert r2.status_code == 200
    dead = _token(oauth_sandbox, shop, {"grant_type": "refresh_token", "refresh_token": rt0})
    assert (dead.status_code, dead.json()["error"]) == (400, "invalid_grant")


def test_expire_uninstall_and_legacy_migration(oauth_sandbox: OAuthSandbox) -> None:
    shop = SHOP
    server = oauth_sandbox.server
    legacy = server.issue_offline_token(shop)["access_token"]
    server.expire_tokens(shop)
    assert server.authenticate(shop, legacy)  # legacy tokens do not expire
    migrated = _exchange(oauth_sandbox, shop, legacy, OFFLINE_TOKEN_TYPE)
    assert migrated.status_code == 200
    token = migrated.json()["access_token"]
    assert server.authenticate(shop, token) and not server.authenticate(shop, legacy)
    server.expire_tokens(shop)
    assert not server.authenticate(shop, token)

    server.uninstall(shop)
    assert not server.is_installed(shop)
    refresh = migrated.json()["refresh_token"]
    refused = _token(oauth_sandbox, shop, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert refused.status_code == 400


def test_session_token_route_for_the_demo_shim(oauth_sandbox: OAuthSandbox) -> None:
    import jwt

    shop = SHOP
    response = requests.get(
        f"{oauth_sandbox.running.url}/shops/{shop}/admin/session-token", timeout=5
    )
    claims = jwt.decode(
        response.json()["token"], TEST_API_SECRET, algorithms=["HS256"], audience=TEST_API_KEY
    )
    assert claims["dest"] == f"https://{shop}" and claims["iss"] == f"https://{shop}/admin"
    assert claims["exp"] - claims["nbf"] == 60
