"""Install and auth: HMAC checks, session tokens, token exchange and refresh, the code grant.

One operation per function, in the manner of shopify-app-js:

* :func:`verify_oauth_hmac` / :func:`verify_webhook_hmac` — constant-time HMAC checks.
* :func:`sanitize_shop` — the only accepted shop domain shape.
* :func:`verify_session_token` — App Bridge ID tokens, decoded by ShopifyAPI
  (``shopify.session_token``) with the checks it leaves out added here.
* :func:`exchange_token`, :func:`migrate_token`, :func:`refresh_token`, :func:`exchange_code` —
  the calls to ``/admin/oauth/access_token``; each returns a :class:`TokenSet`.
* :func:`install` — persist a :class:`TokenSet` for a shop (encrypted).
* :func:`access_token` / :func:`force_refresh` — a usable offline token for background work,
  refreshed at least five minutes before it expires. The refresh token rotates on every use, so
  the new pair is written with a compare-and-swap on ``Shop.token_version``: of two workers
  refreshing at once exactly one write lands, and the other adopts the stored pair instead of
  overwriting it with a pair whose refresh token may never be used.
* :func:`rotate_keys` — re-encrypt every stored secret under the current key.

Verification never raises for bad input; it returns ``False`` or raises :class:`AuthError` with a
reason, and the web edge maps that to 401.

Only session-token decoding is ShopifyAPI's. Its HMAC, ``validate_params`` and permission-URL
helpers read the key and secret from process-global class state (``shopify.Session.secret``), which
threads holding different secrets (the test suite does) would race on; its HMAC takes a dict, so a
repeated parameter is collapsed instead of refused; ``validate_params`` allows a day of replay where
the callback allows 90 s; its domain check completes bare names and strips schemes; its permission
URL ignores ``SHOPIFY_BASE_URL``. It has no webhook verifier.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.fernet import InvalidToken
from shopify import session_token as shopify_session_token
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from shopify_app import jobs
from shopify_app.crypto import TokenCipher
from shopify_app.db import make_engine, make_sessionmaker, transaction
from shopify_app.db.models import MetaConnection, Shop
from shopify_app.db.types import utcnow
from shopify_app.errors import AuthError, ConfigError, TokenError, TransientError
from shopify_app.settings import Settings

log = logging.getLogger(__name__)

SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"

SESSION_TOKEN_LEEWAY: int = shopify_session_token.LEEWAY_SECONDS
"""Seconds of clock skew tolerated on ``exp``/``nbf``: ShopifyAPI's, which is Shopify's (10 s)."""

REFRESH_MARGIN = dt.timedelta(minutes=5)
"""Refresh an access token when it has less than this left."""

HTTP_TIMEOUT = 20.0


# --- HMAC -------------------------------------------------------------------------------------


def _escape(value: str, *, key: bool = False) -> str:
    # Shopify escapes the separators before signing so a value cannot forge another pair.
    value = value.replace("%", "%25").replace("&", "%26")
    return value.replace("=", "%3D") if key else value


def oauth_hmac(secret: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Hex HMAC-SHA256 Shopify puts in OAuth redirects: params except ``hmac``/``signature``,
    sorted by key, joined ``k=v&k=v``."""
    pairs = params.items() if isinstance(params, Mapping) else params
    message = "&".join(
        f"{_escape(k, key=True)}={_escape(v)}"
        for k, v in sorted(pairs)
        if k not in ("hmac", "signature")
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_oauth_hmac(secret: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> bool:
    """Whether ``params["hmac"]`` is Shopify's signature of the other params (constant time)."""
    items = list(params.items() if isinstance(params, Mapping) else params)
    given = next((v for k, v in items if k == "hmac"), None)
    if not given:
        return False
    return hmac.compare_digest(oauth_hmac(secret, items).encode(), given.lower().encode())


def webhook_hmac(secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of a webhook's raw body (``X-Shopify-Hmac-Sha256``)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_webhook_hmac(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the HMAC of the raw ``body`` (constant time; missing → False)."""
    if not header:
        return False
    return hmac.compare_digest(webhook_hmac(secret, body).encode(), header.strip().encode())


# --- shop domains and session tokens ----------------------------------------------------------


def sanitize_shop(value: str | None) -> str | None:
    """The shop domain if ``value`` is a ``*.myshopify.com`` domain, lower-cased; else None."""
    if not value:
        return None
    shop = value.strip().lower()
    return shop if SHOP_DOMAIN_RE.fullmatch(shop) else None


def require_shop(value: str | None) -> str:
    """Like :func:`sanitize_shop` but raises :class:`AuthError` for a bad domain."""
    shop = sanitize_shop(value)
    if shop is None:
        raise AuthError("invalid shop domain")
    return shop


@dataclass(frozen=True)
class SessionToken:
    """A verified App Bridge session token."""

    shop: str
    user_id: int | None
    session_id: str | None
    issued_at: dt.datetime | None
    expires_at: dt.datetime
    jti: str | None
    raw: str


def verify_session_token(settings: Settings, token: str | None) -> SessionToken:
    """Verify a session token with ShopifyAPI, then what it leaves out; the shop is ``dest``.

    ``shopify.session_token.decode_from_header`` checks the HS256 signature, ``aud`` = API key,
    ``exp``/``nbf`` with a 10 s leeway, that ``iss`` is a myshopify domain naming the same shop as
    ``dest``, and requires ``iss``, ``dest``, ``sub``, ``jti`` and ``sid``. PyJWT checks ``exp``
    and ``nbf`` only when present, and ShopifyAPI accepts any scheme, so a token without them or a
    ``dest`` that is not ``https://`` on a shop domain is refused here.

    Raises :class:`AuthError` with the reason when anything is off.
    """
    if not token:
        raise AuthError("missing session token")
    try:
        claims = shopify_session_token.decode_from_header(
            f"Bearer {token}", settings.api_key, settings.api_secret
        )
    except shopify_session_token.SessionTokenError as exc:
        raise AuthError(_session_token_reason(exc)) from None
    except TypeError:
        # ShopifyAPI joins ``iss``/``dest`` as URLs: a signed token with non-string ones.
        raise AuthError("invalid session token: iss and dest must be URLs") from None
    missing = [claim for claim in ("exp", "nbf") if claims.get(claim) is None]
    if missing:
        raise AuthError(f"invalid session token: missing {', '.join(missing)}")
    dest = urlsplit(claims["dest"])
    shop = sanitize_shop(dest.hostname)
    if shop is None or dest.scheme != "https":
        raise AuthError("session token dest is not a shop")
    sub = claims.get("sub")
    return SessionToken(
        shop=shop,
        user_id=int(sub) if isinstance(sub, str | int) and str(sub).isdigit() else None,
        session_id=claims.get("sid"),
        issued_at=_ts(claims.get("iat")),
        expires_at=_ts(claims["exp"]) or utcnow(),
        jti=claims.get("jti"),
        raw=token,
    )


def _session_token_reason(exc: Exception) -> str:
    """The 401 reason for a ShopifyAPI refusal; PyJWT's own error is its ``__cause__``."""
    cause = exc.__cause__
    if isinstance(cause, jwt.ExpiredSignatureError):
        return "session token expired"
    if isinstance(cause, jwt.ImmatureSignatureError):
        return "session token not yet valid"
    if isinstance(cause, jwt.InvalidAudienceError):
        return "session token audience mismatch"
    if isinstance(exc, shopify_session_token.MismatchedHostsError):
        return "session token issuer does not match its dest"
    if isinstance(exc, shopify_session_token.InvalidIssuerError):
        return "session token issuer is not a shop"
    return f"invalid session token: {exc}"


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), dt.UTC) if value is not None else None


# --- talking to /admin/oauth/access_token -----------------------------------------------------


@dataclass(frozen=True)
class TokenSet:
    """What ``/admin/oauth/access_token`` answered. Expiry fields are None for legacy tokens."""

    access_token: str
    scope: str
    expires_at: dt.datetime | None = None
    refresh_token: str | None = None
    refresh_token_expires_at: dt.datetime | None = None

    @classmethod
    def from_response(cls, data: Mapping[str, Any], now: dt.datetime | None = None) -> TokenSet:
        """Parse Shopify's JSON answer (``expires_in`` etc. are seconds from ``now``)."""
        now = now or utcnow()

        def later(key: str) -> dt.datetime | None:
            seconds = data.get(key)
            return now + dt.timedelta(seconds=int(seconds)) if seconds is not None else None

        return cls(
            access_token=str(data["access_token"]),
            scope=str(data.get("scope", "")),
            expires_at=later("expires_in"),
            refresh_token=data.get("refresh_token"),
            refresh_token_expires_at=later("refresh_token_expires_in"),
        )


def _post_token(
    settings: Settings, shop: str, body: dict[str, Any], http: requests.Session | None
) -> TokenSet:
    url = f"{settings.shop_url(shop)}/admin/oauth/access_token"
    payload = {"client_id": settings.api_key, "client_secret": settings.api_secret, **body}
    sender = http or requests
    started = utcnow()
    try:
        response = sender.post(
            url, json=payload, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT
        )
    except requests.RequestException as exc:
        raise TransientError(f"token request to {shop} failed: {exc}", shop=shop) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"token request to {shop} answered {response.status_code}", shop=shop)
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200 or "access_token" not in data:
        code = str(data.get("error") or f"http_{response.status_code}")
        detail = data.get("error_description") or code
        raise TokenError(
            f"Shopify refused the token request for {shop}: {detail}", code=code, shop=shop
        )
    return TokenSet.from_response(data, started)


def exchange_token(
    settings: Settings,
    shop: str,
    id_token: str,
    http: requests.Session | None = None,
) -> TokenSet:
    """Exchange a session (ID) token for an expiring offline token and refresh token.

    Raises :class:`TokenError` (``code="invalid_subject_token"`` → answer the browser 401 with
    the retry header; ``invalid_client`` → bad credentials or the app is uninstalled).
    """
    return _post_token(
        settings,
        shop,
        {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": id_token,
            "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        },
        http,
    )


def migrate_token(
    settings: Settings, shop: str, offline_token: str, http: requests.Session | None = None
) -> TokenSet:
    """Trade a legacy non-expiring offline token for an expiring one plus refresh token."""
    return _post_token(
        settings,
        shop,
        {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": offline_token,
            "subject_token_type": OFFLINE_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        },
        http,
    )


def refresh_token(
    settings: Settings, shop: str, token: str, http: requests.Session | None = None
) -> TokenSet:
    """Use a refresh token; the answer carries a new access token *and* a new refresh token."""
    return _post_token(
        settings, shop, {"grant_type": "refresh_token", "refresh_token": token}, http
    )


def exchange_code(
    settings: Settings, shop: str, code: str, http: requests.Session | None = None
) -> TokenSet:
    """The authorization-code grant's last step (``/auth/callback``), asking for expiring tokens."""
    return _post_token(settings, shop, {"code": code, "expiring": "1"}, http)


def authorize_url(settings: Settings, shop: str, state: str, redirect_uri: str) -> str:
    """Where ``/auth`` sends the merchant for the authorization-code grant (offline access)."""
    from urllib.parse import urlencode

    query = urlencode(
        {
            "client_id": settings.api_key,
            "scope": ",".join(settings.scopes),
            "redirect_uri": redirect_uri,
            "state": state,
            "grant_options[]": "",
        }
    )
    return f"{settings.shop_url(shop)}/admin/oauth/authorize?{query}"


# --- install and stored tokens ----------------------------------------------------------------


def _store_tokens(shop: Shop, tokens: TokenSet, cipher: TokenCipher) -> None:
    shop.access_token = cipher.encrypt(tokens.access_token)
    shop.access_token_expires_at = tokens.expires_at
    shop.refresh_token = cipher.encrypt(tokens.refresh_token) if tokens.refresh_token else None
    shop.refresh_token_expires_at = tokens.refresh_token_expires_at
    shop.token_version = (shop.token_version or 0) + 1
    if tokens.scope:
        shop.scopes = tokens.scope


def install(ctx: jobs.Context, shop_domain: str, tokens: TokenSet) -> int:
    """Create or update the shop with ``tokens`` (encrypted); returns the shop id.

    A first install, or a reinstall after ``app/uninstalled``, enqueues ``sync.initial``.
    """
    domain = require_shop(shop_domain)
    for attempt in (1, 2):
        try:
            with transaction(ctx.sessions) as session:
                shop = session.scalar(select(Shop).where(Shop.domain == domain))
                fresh = shop is None or not shop.is_installed
                if shop is None:
                    shop = Shop(domain=domain, settings={}, token_version=0)
                    session.add(shop)
                _store_tokens(shop, tokens, ctx.cipher)
                if fresh:
                    shop.installed_at = utcnow()
                shop.uninstalled_at = None
                session.flush()
                shop_id = shop.id
            break
        except IntegrityError:
            # Two page loads installed the same new shop at once: the other insert won; retry
            # as an update of its row.
            if attempt == 2:
                raise
    log.info("shop installed", extra={"shop": domain, "fresh": fresh})
    if fresh:
        ctx.enqueue("sync.initial", shop_id=shop_id)
    return shop_id


def needs_install(shop: Shop | None) -> bool:
    """Whether a page load must run token exchange: unknown, uninstalled, a legacy token, or a
    refresh token that has expired (nothing else can mint a new access token then)."""
    return (
        shop is None
        or not shop.is_installed
        or shop.access_token_expires_at is None
        or shop.refresh_token is None
        or (
            shop.refresh_token_expires_at is not None
            and shop.refresh_token_expires_at <= utcnow() + REFRESH_MARGIN
        )
    )


def access_token(ctx: jobs.Context, shop_id: int, http: requests.Session | None = None) -> str:
    """A usable offline access token for ``shop_id``, refreshing it if it expires within 5 min.

    A stored legacy (non-expiring) token is migrated to an expiring one first. Raises
    :class:`TokenError` (``code="uninstalled"``) when the shop holds no token.
    """
    shop = _load(ctx, shop_id)
    now = utcnow()
    if (
        shop.access_token_expires_at is not None
        and shop.access_token_expires_at - now > REFRESH_MARGIN
    ):
        return ctx.cipher.decrypt(shop.access_token or "")
    return _renew(ctx, shop, http)


def force_refresh(ctx: jobs.Context, shop_id: int, http: requests.Session | None = None) -> str:
    """Refresh now (Shopify answered 401 to a token we thought valid); returns the new token."""
    return _renew(ctx, _load(ctx, shop_id), http)


def _load(ctx: jobs.Context, shop_id: int) -> Shop:
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
    if shop is None:
        raise TokenError(f"shop {shop_id} does not exist", code="unknown_shop")
    if not shop.is_installed:
        raise TokenError(
            f"{shop.domain} has uninstalled the app", code="uninstalled", shop=shop.domain
        )
    return shop


def _renew(ctx: jobs.Context, shop: Shop, http: requests.Session | None) -> str:
    seen_version = shop.token_version
    if shop.access_token_expires_at is None:
        tokens = migrate_token(
            ctx.settings, shop.domain, ctx.cipher.decrypt(shop.access_token or ""), http
        )
        log.info("legacy offline token migrated to an expiring one", extra={"shop": shop.domain})
    else:
        if not shop.refresh_token or (
            shop.refresh_token_expires_at is not None and shop.refresh_token_expires_at <= utcnow()
        ):
            raise TokenError(
                f"the refresh token of {shop.domain} has expired; the merchant must open the app",
                code="invalid_grant",
                shop=shop.domain,
            )
        tokens = refresh_token(
            ctx.settings, shop.domain, ctx.cipher.decrypt(shop.refresh_token), http
        )
    values: dict[str, Any] = {
        "access_token": ctx.cipher.encrypt(tokens.access_token),
        "access_token_expires_at": tokens.expires_at,
        "refresh_token": ctx.cipher.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
        "refresh_token_expires_at": tokens.refresh_token_expires_at,
        "token_version": seen_version + 1,
        "updated_at": utcnow(),
    }
    if tokens.scope:
        values["scopes"] = tokens.scope
    with transaction(ctx.sessions) as session:
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Shop)
            .where(Shop.id == shop.id, Shop.token_version == seen_version)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        swapped = result.rowcount
    if swapped == 1:
        return tokens.access_token
    # Another worker refreshed first and stored its pair. Ours is discarded: its refresh token
    # has never been used, so the stored one stays valid, and the stored access token is fresh.
    log.info(
        "concurrent token refresh lost the race; using the stored pair", extra={"shop": shop.domain}
    )
    winner = _load(ctx, shop.id)
    return ctx.cipher.decrypt(winner.access_token or "")


def drop_tokens(ctx: jobs.Context, shop_id: int) -> None:
    """Forget a shop's credentials (``app/uninstalled``); keeps its data and marks the time."""
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return
        shop.access_token = None
        shop.access_token_expires_at = None
        shop.refresh_token = None
        shop.refresh_token_expires_at = None
        shop.token_version = (shop.token_version or 0) + 1
        if shop.uninstalled_at is None:
            shop.uninstalled_at = utcnow()


def rotate_keys(settings: Settings) -> int:
    """Re-encrypt every stored secret (shop tokens, Meta tokens) under the first key.

    Returns how many secrets were rewritten. Safe to run twice.
    """
    cipher = TokenCipher(settings.token_encryption_keys)
    engine = make_engine(settings.database_url)
    count = 0

    def rotated(value: str, where: str) -> str:
        try:
            return cipher.rotate(value)
        except InvalidToken:
            # All or nothing: the transaction rolls back, no secret is left half-rotated.
            raise ConfigError(
                f"{where} was encrypted with a key TOKEN_ENCRYPTION_KEY no longer lists; "
                "add that key back (after the new one) and run rotate-keys again",
                variable="TOKEN_ENCRYPTION_KEY",
            ) from None

    try:
        with transaction(make_sessionmaker(engine)) as session:
            for shop in session.scalars(select(Shop)):
                for attr in ("access_token", "refresh_token"):
                    value = getattr(shop, attr)
                    if value:
                        setattr(shop, attr, rotated(value, f"{attr} of {shop.domain}"))
                        count += 1
            for conn in session.scalars(select(MetaConnection)):
                if conn.access_token:
                    conn.access_token = rotated(
                        conn.access_token, f"Meta token of shop {conn.shop_id}"
                    )
                    count += 1
    finally:
        engine.dispose()
    return count
