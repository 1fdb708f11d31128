"""The authorization-code grant for non-embedded and legacy installs: ``/auth``, ``/auth/callback``.

Embedded installs go through token exchange on the page load (:mod:`.pages`); this is the path
for a merchant who opens the app URL directly before the app is installed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shopify_app.errors import TokenError
from shopify_app.server import context
from shopify_app.server.pages import admin, message_page
from shopify_app.shopify import auth

log = logging.getLogger(__name__)

STATE_COOKIE = "goldpan_oauth_state"
STATE_TTL = 300
CALLBACK_SKEW = 90


def _sign_state(secret: str, nonce: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"oauth-state.{nonce}.{expires}".encode(), hashlib.sha256)
    return f"{nonce}.{expires}.{mac.hexdigest()}"


def _check_state(secret: str, cookie: str | None, state: str | None, now: float) -> bool:
    if not cookie or not state:
        return False
    try:
        nonce, expires_raw, _mac = cookie.split(".")
        expires = int(expires_raw)
    except ValueError:
        return False
    expected = _sign_state(secret, nonce, expires)
    return (
        hmac.compare_digest(expected.encode(), cookie.encode())
        and expires >= now
        and hmac.compare_digest(nonce.encode(), state.encode())
    )


def begin_auth(request: Request) -> Response:
    """``/auth?shop=``: start the authorization-code grant with a signed state cookie."""
    settings = context(request).settings
    shop = auth.sanitize_shop(request.query_params.get("shop"))
    if shop is None:
        return message_page("Goldpan", "That is not a valid myshopify.com shop domain.", 400)
    nonce = secrets.token_urlsafe(24)
    url = auth.authorize_url(settings, shop, nonce, f"{settings.app_url}/auth/callback")
    if request.query_params.get("embedded") == "1":
        # Shopify's authorize page refuses to be framed: leave the iframe first.
        response: Response = HTMLResponse(
            f"<!doctype html><script>window.top.location.href = {json.dumps(url)};</script>"
        )
    else:
        response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE,
        _sign_state(settings.api_secret, nonce, int(time.time()) + STATE_TTL),
        max_age=STATE_TTL,
        path="/auth/callback",
        httponly=True,
        secure=settings.app_url.startswith("https://"),
        samesite="lax",
    )
    return response


def auth_callback(request: Request) -> Response:
    """``/auth/callback``: HMAC, timestamp, state and shop checks, then code → tokens → install."""
    ctx = context(request)
    settings = ctx.settings
    params = request.query_params
    shop = auth.sanitize_shop(params.get("shop"))
    now = time.time()
    try:
        timestamp = int(params.get("timestamp", ""))
    except ValueError:
        timestamp = 0
    problem = None
    if shop is None:
        problem = "invalid shop domain"
    elif not auth.verify_oauth_hmac(settings.api_secret, params.multi_items()):
        problem = "invalid HMAC"
    elif abs(now - timestamp) > CALLBACK_SKEW:
        problem = "stale request"
    elif not _check_state(
        settings.api_secret, request.cookies.get(STATE_COOKIE), params.get("state"), now
    ):
        problem = "invalid or expired state"
    elif not params.get("code"):
        problem = "missing code"
    if problem is not None or shop is None:
        log.warning("OAuth callback refused: %s", problem)
        return message_page("Goldpan", f"Installation could not be verified ({problem}).", 400)
    try:
        tokens = auth.exchange_code(settings, shop, params["code"])
    except TokenError as exc:
        return message_page("Goldpan", f"Shopify refused the installation: {exc}", 400)
    auth.install(ctx, shop, tokens)
    response = RedirectResponse(admin(request).app_url(settings, shop, params.get("host")), 302)
    response.delete_cookie(STATE_COOKIE, path="/auth/callback")
    return response
