"""auth.py: Shopify's published HMAC vectors, session tokens signed with the test secret, and
token exchange / refresh / migration against the sandbox OAuth server over loopback HTTP."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import requests
from shopify import session_token as shopify_session_token
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.crypto import TokenCipher, generate_key
from shopify_app.db.models import Shop
from shopify_app.db.types import utcnow
from shopify_app.errors import AuthError, ConfigError, TokenError
from shopify_app.jobs import Context
from shopify_app.settings import Settings
from shopify_app.shopify import auth
from tests.fixtures_auth import OAuthSandbox, pending_tasks, session_token

SHOP = "linen.myshopify.com"
"""The shop of a test (each test starts with an empty database)."""

# --- HMAC vectors -----------------------------------------------------------------------------

OAUTH_VECTOR = {
    "code": "0907a61c0c8d55e99db179b68161bc00",
    "shop": "some-shop.myshopify.com",
    "state": "0.6784241404160823",
    "timestamp": "1337178173",
}
OAUTH_VECTOR_HMAC = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"


def test_oauth_hmac_matches_shopify_vector() -> None:
    assert auth.oauth_hmac("hush", OAUTH_VECTOR) == OAUTH_VECTOR_HMAC
    assert auth.verify_oauth_hmac("hush", {**OAUTH_VECTOR, "hmac": OAUTH_VECTOR_HMAC})
    # Order of the incoming pairs does not matter; hmac itself is excluded from the message.
    pairs = [("hmac", OAUTH_VECTOR_HMAC), *reversed(list(OAUTH_VECTOR.items()))]
    assert auth.verify_oauth_hmac("hush", pairs)


def test_oauth_hmac_rejects_tampering_and_absence() -> None:
    assert not auth.verify_oauth_hmac("hush", {**OAUTH_VECTOR, "hmac": "0" * 64})
    assert not auth.verify_oauth_hmac(
        "hush", {**OAUTH_VECTOR, "shop": "evil.myshopify.com", "hmac": OAUTH_VECTOR_HMAC}
    )
    assert not auth.verify_oauth_hmac("other", {**OAUTH_VECTOR, "hmac": OAUTH_VECTOR_HMAC})
    assert not auth.verify_oauth_hmac("hush", OAUTH_VECTOR)
    # A value cannot smuggle in another pair: separators are escaped before signing.
    forged = {"code": "x&shop=evil.myshopify.com", "timestamp": "1"}
    assert auth.oauth_hmac("hush", forged) != auth.oauth_hmac(
        "hush", {"code": "x", "shop": "evil.myshopify.com", "timestamp": "1"}
    )


def test_oauth_hmac_refuses_a_repeated_parameter() -> None:
    # Every pair is signed, so a second ``shop`` cannot ride along on a valid signature.
    signed = [*OAUTH_VECTOR.items(), ("hmac", OAUTH_VECTOR_HMAC)]
    assert auth.verify_oauth_hmac("hush", signed)
    assert not auth.verify_oauth_hmac("hush", [*signed, ("shop", "evil.myshopify.com")])
    assert not auth.verify_oauth_hmac("hush", [("shop", "evil.myshopify.com"), *signed])


def test_webhook_hmac_matches_shopify_vector() -> None:
    body = b'{"foo": "bar"}'
    expected = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
    assert auth.webhook_hmac("test_secret_key", body) == expected
    assert auth.verify_webhook_hmac("test_secret_key", body, expected)
    assert not auth.verify_webhook_hmac("test_secret_key", body + b" ", expected)
    assert not auth.verify_webhook_hmac("wrong", body, expected)
    assert not auth.verify_webhook_hmac("test_secret_key", body, None)
    assert not auth.verify_webhook_hmac("test_secret_key", body, "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("my-shop.myshopify.com", "my-shop.myshopify.com"),
        (" My-Shop.MyShopify.com ", "my-shop.myshopify.com"),
        ("0shop.myshopify.com", "0shop.myshopify.com"),
        ("-shop.myshopify.com", None),
        ("shop.myshopify.com.evil.com", None),
        ("evil.com/shop.myshopify.com", None),
        ("shop_1.myshopify.com", None),
        ("https://shop.myshopify.com", None),
        ("", None),
        (None, None),
    ],
)
def test_sanitize_shop(raw: str | None, expected: str | None) -> None:
    assert auth.sanitize_shop(raw) == expected


# --- session tokens ---------------------------------------------------------------------------


def test_session_token_valid(settings: Settings) -> None:
    token = session_token("good-shop.myshopify.com")
    verified = auth.verify_session_token(settings, token)
    assert verified.shop == "good-shop.myshopify.com"
    assert verified.user_id == 42
    assert verified.session_id == "sid-1"
    assert verified.raw == token


def test_session_token_leeway_is_ten_seconds(settings: Settings) -> None:
    now = int(time.time())
    shop = "leeway.myshopify.com"
    assert auth.verify_session_token(settings, session_token(shop, exp=now - 5)).shop == shop
    assert auth.verify_session_token(settings, session_token(shop, nbf=now + 5)).shop == shop
    with pytest.raises(AuthError, match="expired"):
        auth.verify_session_token(settings, session_token(shop, exp=now - 30))
    with pytest.raises(AuthError, match="not yet valid"):
        auth.verify_session_token(settings, session_token(shop, nbf=now + 30))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"secret": "not-the-secret"}, "invalid"),
        ({"dest": "https://evil.example.com"}, "dest"),
        ({"dest": "http://plain.myshopify.com", "iss": "http://plain.myshopify.com/admin"}, "dest"),
        ({"dest": None}, "invalid"),
        ({"exp": None}, "invalid"),
        ({"nbf": None}, "invalid"),
        ({"iss": "https://other.myshopify.com/admin"}, "issuer"),
    ],
)
def test_session_token_rejections(
    settings: Settings, overrides: dict[str, Any], reason: str
) -> None:
    token = session_token("victim.myshopify.com", **overrides)
    with pytest.raises(AuthError, match=reason):
        auth.verify_session_token(settings, token)


def test_session_token_refuses_other_algorithms(settings: Settings) -> None:
    unsigned = jwt.encode(
        {"dest": "https://a.myshopify.com", "aud": settings.api_key, "exp": time.time() + 60},
        None,
        algorithm="none",
    )
    with pytest.raises(AuthError):
        auth.verify_session_token(settings, unsigned)
    with pytest.raises(AuthError, match="missing"):
        auth.verify_session_token(settings, None)


OTHER_SECRET = "another-apps-secret-long-enough-for-hs256"


def _shopify_api_refusal(settings: Settings, token: str) -> BaseException:
    """What ShopifyAPI's own decoder raises for ``token`` (it must refuse it)."""
    with pytest.raises(shopify_session_token.SessionTokenError) as refused:
        shopify_session_token.decode_from_header(
            f"Bearer {token}", settings.api_key, settings.api_secret
        )
    return refused.value


@pytest.mark.parametrize(
    ("overrides", "refusal", "reason"),
    [
        (lambda now: {"secret": OTHER_SECRET}, jwt.InvalidSignatureError, "invalid session token"),
        (lambda now: {"aud": "another-app"}, jwt.InvalidAudienceError, "audience mismatch"),
        (
            lambda now: {"dest": "https://other-shop.myshopify.com"},
            shopify_session_token.MismatchedHostsError,
            "issuer does not match its dest",
        ),
        (
            lambda now: {"exp": now - auth.SESSION_TOKEN_LEEWAY - 5},
            jwt.ExpiredSignatureError,
            "expired",
        ),
        (
            lambda now: {"nbf": now + auth.SESSION_TOKEN_LEEWAY + 5},
            jwt.ImmatureSignatureError,
            "not yet valid",
        ),
        (lambda now: {"sid": None}, jwt.MissingRequiredClaimError, "sid"),
        (lambda now: {"iss": None}, jwt.MissingRequiredClaimError, "iss"),
        (
            lambda now: {
                "iss": "https://evil.example.com/admin",
                "dest": "https://evil.example.com",
            },
            shopify_session_token.InvalidIssuerError,
            "issuer is not a shop",
        ),
    ],
)
def test_session_token_refused_by_shopify_api_with_our_reason(
    settings: Settings,
    overrides: Callable[[int], dict[str, Any]],
    refusal: type[BaseException],
    reason: str,
) -> None:
    token = session_token("victim.myshopify.com", **overrides(int(time.time())))
    refused = _shopify_api_refusal(settings, token)
    assert isinstance(refused, refusal) or isinstance(refused.__cause__, refusal)
    with pytest.raises(AuthError, match=reason):
        auth.verify_session_token(settings, token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": None},
        {"nbf": None},
        {"dest": "http://plain.myshopify.com", "iss": "http://plain.myshopify.com/admin"},
    ],
)
def test_session_token_checks_shopify_api_leaves_out(
    settings: Settings, overrides: dict[str, Any]
) -> None:
    token = session_token("lenient.myshopify.com", **overrides)
    # ShopifyAPI alone accepts these; the checks added around it refuse them.
    decoded = shopify_session_token.decode_from_header(
        f"Bearer {token}", settings.api_key, settings.api_secret
    )
    assert decoded["aud"] == settings.api_key
    with pytest.raises(AuthError):
        auth.verify_session_token(settings, token)


def test_session_token_with_non_url_dest_is_refused(settings: Settings) -> None:
    # ShopifyAPI raises TypeError joining a non-string dest; that must stay a 401, not a 500.
    token = session_token("victim.myshopify.com", dest=123)
    with pytest.raises(AuthError, match="must be URLs"):
        auth.verify_session_token(settings, token)


# --- token exchange, install, refresh ----------------------------------------------------------


def test_exchange_token_against_sandbox(
    sandbox_settings: Settings, oauth_sandbox: OAuthSandbox
) -> None:
    shop = SHOP
    before = utcnow()
    tokens = auth.exchange_token(sandbox_settings, shop, session_token(shop))
    assert tokens.access_token.startswith("shpat_")
    assert tokens.refresh_token and tokens.refresh_token.startswith("shprt_")
    assert tokens.expires_at is not None and tokens.refresh_token_expires_at is not None
    assert dt.timedelta(minutes=59) < tokens.expires_at - before <= dt.timedelta(hours=1, seconds=5)
    assert tokens.refresh_token_expires_at - before > dt.timedelta(days=89)
    assert tokens.scope == "read_customers,write_customers,read_orders,read_products"
    assert oauth_sandbox.server.authenticate(shop, tokens.access_token)


def test_exchange_token_errors(sandbox_settings: Settings) -> None:
    shop = SHOP
    with pytest.raises(TokenError) as bad_subject:
        auth.exchange_token(sandbox_settings, shop, session_token("other.myshopify.com"))
    assert bad_subject.value.code == "invalid_subject_token"
    with pytest.raises(TokenError) as expired:
        auth.exchange_token(sandbox_settings, shop, session_token(shop, exp=int(time.time()) - 60))
    assert expired.value.code == "invalid_subject_token"
    wrong_secret = sandbox_settings.with_overrides(api_secret="not-the-secret")
    with pytest.raises(TokenError) as bad_client:
        auth.exchange_token(wrong_secret, shop, session_token(shop))
    assert bad_client.value.code == "invalid_client"


def test_install_stores_encrypted_tokens_and_reinstall_updates(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop = SHOP
    tokens = auth.exchange_token(queued_ctx.settings, shop, session_token(shop))
    shop_id = auth.install(queued_ctx, shop, tokens)
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop_id)
        assert row is not None
        assert row.access_token and tokens.access_token not in row.access_token
        assert row.refresh_token and tokens.refresh_token not in row.refresh_token
        assert queued_ctx.cipher.decrypt(row.access_token) == tokens.access_token
        assert row.scopes == tokens.scope
        assert row.installed_at is not None and row.uninstalled_at is None
        first_installed_at = row.installed_at
    syncs = [kw for name, kw in pending_tasks(queued_ctx) if name == "sync.initial"]
    assert syncs == [{"shop_id": shop_id}]

    # Opening the app again with a new exchange updates the same row; no second initial sync.
    again = auth.exchange_token(queued_ctx.settings, shop, session_token(shop))
    assert auth.install(queued_ctx, shop, again) == shop_id
    syncs = [kw for name, kw in pending_tasks(queued_ctx) if name == "sync.initial"]
    assert len(syncs) == 1

    # After an uninstall, installing again is fresh: uninstalled_at cleared, sync queued again.
    auth.drop_tokens(queued_ctx, shop_id)
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop_id)
        assert row is not None and row.uninstalled_at is not None and row.access_token is None
    auth.install(
        queued_ctx, shop, auth.exchange_token(queued_ctx.settings, shop, session_token(shop))
    )
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop_id)
        assert row is not None and row.uninstalled_at is None and row.is_installed
        assert row.installed_at is not None and row.installed_at >= first_installed_at
    syncs = [kw for name, kw in pending_tasks(queued_ctx) if name == "sync.initial"]
    assert len(syncs) == 2


def test_install_refuses_bad_domain(queued_ctx: Context) -> None:
    with pytest.raises(AuthError):
        auth.install(queued_ctx, "evil.example.com", auth.TokenSet("shpat_x", ""))


def _installed(ctx: Context, sandbox: OAuthSandbox) -> tuple[int, str, auth.TokenSet]:
    shop = SHOP
    tokens = auth.exchange_token(ctx.settings, shop, session_token(shop))
    return auth.install(ctx, shop, tokens), shop, tokens


def _set_expiry(ctx: Context, shop_id: int, in_seconds: float) -> None:
    with ctx.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.id == shop_id)
            .values(access_token_expires_at=utcnow() + dt.timedelta(seconds=in_seconds))
        )


def _row(ctx: Context, shop_id: int) -> Shop:
    with ctx.sessions() as session:
        row = session.get(Shop, shop_id)
    assert row is not None
    return row


def test_access_token_fresh_is_returned_without_refresh(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop_id, _shop, tokens = _installed(queued_ctx, oauth_sandbox)
    requests_before = len(oauth_sandbox.server.token_requests)
    assert auth.access_token(queued_ctx, shop_id) == tokens.access_token
    assert len(oauth_sandbox.server.token_requests) == requests_before


def test_access_token_refreshes_within_five_minutes_and_rotates(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop_id, shop, tokens = _installed(queued_ctx, oauth_sandbox)
    version = _row(queued_ctx, shop_id).token_version
    _set_expiry(queued_ctx, shop_id, 240)  # 4 minutes left: inside the 5-minute margin

    new = auth.access_token(queued_ctx, shop_id)
    assert new != tokens.access_token
    assert oauth_sandbox.server.authenticate(shop, new)
    row = _row(queued_ctx, shop_id)
    assert row.token_version == version + 1
    rt1 = queued_ctx.cipher.decrypt(row.refresh_token or "")
    assert rt1 != tokens.refresh_token
    # The previous refresh token stays valid until the new one is first used ...
    assert {tokens.refresh_token, rt1} <= oauth_sandbox.server.valid_refresh_tokens(shop)

    # ... and expires once it is: a second refresh uses rt1 and retires the first one.
    oauth_sandbox.server.expire_tokens(shop)
    assert not oauth_sandbox.server.authenticate(shop, new)
    _set_expiry(queued_ctx, shop_id, -1)
    newer = auth.access_token(queued_ctx, shop_id)
    assert oauth_sandbox.server.authenticate(shop, newer)
    valid = oauth_sandbox.server.valid_refresh_tokens(shop)
    assert tokens.refresh_token not in valid and rt1 in valid
    assert _row(queued_ctx, shop_id).token_version == version + 2


class _BarrierSession(requests.Session):
    """A transport that holds every token request until ``parties`` are waiting: both
    refreshers have read the same row before either writes."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.barrier.wait()
        return super().post(*args, **kwargs)


def test_concurrent_refresh_never_loses_the_refresh_token(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop_id, shop, _ = _installed(queued_ctx, oauth_sandbox)
    version = _row(queued_ctx, shop_id).token_version
    _set_expiry(queued_ctx, shop_id, 60)
    http = _BarrierSession(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def refresher() -> None:
        try:
            results.append(auth.access_token(queued_ctx, shop_id, http=http))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert [kind for s, kind in oauth_sandbox.server.token_requests if s == shop].count(
        "refresh_token"
    ) == 2
    # Exactly one write landed; both callers use the stored (winning) token.
    row = _row(queued_ctx, shop_id)
    assert row.token_version == version + 1
    stored = queued_ctx.cipher.decrypt(row.access_token or "")
    assert results == [stored, stored]
    assert oauth_sandbox.server.authenticate(shop, stored)
    # The stored refresh token still works: the next refresh succeeds.
    stored_rt = queued_ctx.cipher.decrypt(row.refresh_token or "")
    assert stored_rt in oauth_sandbox.server.valid_refresh_tokens(shop)
    after = auth.force_refresh(queued_ctx, shop_id)
    assert oauth_sandbox.server.authenticate(shop, after)


def test_legacy_token_is_migrated(queued_ctx: Context, oauth_sandbox: OAuthSandbox) -> None:
    shop = SHOP
    legacy = oauth_sandbox.server.issue_offline_token(shop)
    assert "refresh_token" not in legacy
    shop_id = auth.install(queued_ctx, shop, auth.TokenSet.from_response(legacy))
    row = _row(queued_ctx, shop_id)
    assert row.access_token_expires_at is None and row.refresh_token is None
    assert auth.needs_install(row)

    token = auth.access_token(queued_ctx, shop_id)
    assert token != legacy["access_token"]
    assert oauth_sandbox.server.authenticate(shop, token)
    assert not oauth_sandbox.server.authenticate(shop, legacy["access_token"])
    row = _row(queued_ctx, shop_id)
    assert row.access_token_expires_at is not None and row.refresh_token is not None
    assert not auth.needs_install(row)
    assert "migrate" in [kind for s, kind in oauth_sandbox.server.token_requests if s == shop]


def test_access_token_for_uninstalled_or_expired_refresh(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop_id, _shop, _ = _installed(queued_ctx, oauth_sandbox)
    with queued_ctx.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.id == shop_id)
            .values(
                access_token_expires_at=utcnow() - dt.timedelta(hours=1),
                refresh_token_expires_at=utcnow() - dt.timedelta(seconds=1),
            )
        )
    with pytest.raises(TokenError) as expired:
        auth.access_token(queued_ctx, shop_id)
    assert expired.value.code == "invalid_grant"

    auth.drop_tokens(queued_ctx, shop_id)
    auth.drop_tokens(queued_ctx, shop_id)  # idempotent
    with pytest.raises(TokenError) as gone:
        auth.access_token(queued_ctx, shop_id)
    assert gone.value.code == "uninstalled"


def test_refresh_refused_by_shopify_raises_token_error(
    queued_ctx: Context, oauth_sandbox: OAuthSandbox
) -> None:
    shop_id, shop, _ = _installed(queued_ctx, oauth_sandbox)
    oauth_sandbox.server.uninstall(shop)
    with pytest.raises(TokenError) as refused:
        auth.force_refresh(queued_ctx, shop_id)
    assert refused.value.code == "invalid_grant"


def test_rotate_keys_reencrypts_under_the_first_key(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    old_key, new_key = generate_key(), generate_key()
    with sessions.begin() as session:
        session.add(
            Shop(
                domain="rotating.myshopify.com",
                access_token=TokenCipher((old_key,)).encrypt("shpat_rotate_me"),
                refresh_token=TokenCipher((new_key,)).encrypt("shprt_test"),
                settings={},
            )
        )
    rotating = settings.with_overrides(token_encryption_keys=(new_key, old_key))
    assert auth.rotate_keys(rotating) == 2
    assert auth.rotate_keys(rotating) == 2  # safe to run twice
    with sessions() as session:
        row = session.scalars(select(Shop)).one()
        # Only the current key is needed now.
        only_new = TokenCipher((new_key,))
        assert only_new.decrypt(row.access_token or "") == "shpat_rotate_me"
        assert only_new.decrypt(row.refresh_token or "") == "shprt_test"
        before = (row.access_token, row.refresh_token)

    # A token under a key no longer listed: refused with the reason, nothing rewritten.
    with sessions.begin() as session:
        session.add(
            Shop(
                domain="lost-key.myshopify.com",
                access_token=TokenCipher((generate_key(),)).encrypt("shpat_lost"),
                settings={},
            )
        )
    with pytest.raises(ConfigError) as refused:
        auth.rotate_keys(rotating)
    assert refused.value.variable == "TOKEN_ENCRYPTION_KEY"
    assert "access_token of lost-key.myshopify.com" in str(refused.value)
    with sessions() as session:
        row = session.scalars(select(Shop).where(Shop.domain == "rotating.myshopify.com")).one()
        assert (row.access_token, row.refresh_token) == before
