"""The embedded page (``/`` and each section's path, :data:`SECTIONS`) and the session-token
bounce page (``/auth/session-token``).

The page load carries ``?id_token=``: verified, and when the shop is not installed yet (or holds
a legacy token) exchanged for an expiring offline token and installed (Shopify's managed
installation). Without a valid token the browser goes to the bounce page
``/auth/session-token?shopify-reload=...``, which only loads App Bridge (which fetches a fresh
token and reloads).

What surrounds the page — Shopify's admin, with App Bridge — is a :class:`ShopifyAdmin`. A
program that shows the page without Shopify's admin (the demo) hands ``create_app`` its own.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shopify_app.db.models import Shop
from shopify_app.errors import AuthError, TokenError
from shopify_app.jobs import Context
from shopify_app.server import context
from shopify_app.server.assets import WEB_DIR
from shopify_app.settings import Settings
from shopify_app.shopify import auth

log = logging.getLogger(__name__)

APP_BRIDGE = "https://cdn.shopify.com/shopifycloud/app-bridge.js"

SECTIONS = ("/segments", "/analytics", "/settings")
"""Paths the page is also served at: App Bridge's ``s-app-nav`` links (web/index.html) load
them in the admin's frame, and the page shows that section."""


class ShopifyAdmin:
    """The Shopify admin around the embedded page: App Bridge gets its session tokens, and the
    merchant opens the app at its URL inside the admin.

    ``create_app`` uses this one unless given another (``create_app(ctx, admin=...)``); the
    demo's stand-in overrides the three methods.
    """

    def token_script(self, settings: Settings, shop: str | None, reload_to: str) -> str:
        """The bounce page's script: get a fresh session token and reload ``reload_to`` with it
        as ``id_token`` (App Bridge does both)."""
        return f'<script src="{APP_BRIDGE}"></script>'

    def app_url(self, settings: Settings, shop: str, host: str | None) -> str:
        """Where the merchant opens the app: inside the admin, from ``host`` when it is sane."""
        if host:
            try:
                decoded = base64.b64decode(host + "=" * (-len(host) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded.startswith("admin.shopify.com/store/") or decoded == f"{shop}/admin":
                return f"https://{decoded}/apps/{settings.api_key}"
        store = shop.removesuffix(".myshopify.com")
        return f"https://admin.shopify.com/store/{store}/apps/{settings.api_key}"

    def page_values(self, settings: Settings, shop: str) -> Mapping[str, str]:
        """``{{NAME}}`` values for ``web/index.html`` beyond the API key, shop and host."""
        return {}


def admin(request: Request) -> ShopifyAdmin:
    """The admin ``create_app`` was given."""
    found: ShopifyAdmin = request.app.state.admin
    return found


def _bounce(request: Request, shop: str | None) -> Response:
    """Send the browser to the bounce page, which reloads this URL with a fresh ``id_token``."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "id_token"]
    reload_to = request.url.path + ("?" + urlencode(query) if query else "")
    params = {"shopify-reload": reload_to}
    if shop:
        params["shop"] = shop
    return RedirectResponse(f"/auth/session-token?{urlencode(params)}", status_code=302)


def message_page(title: str, message: str, status_code: int) -> Response:
    """A plain HTML page saying ``message`` (install problems, a bad shop domain)."""
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status_code)


def index(request: Request) -> Response:
    """The embedded page: verify ``id_token``, install if needed, serve ``web/index.html``."""
    ctx = context(request)
    settings = ctx.settings
    query_shop = auth.sanitize_shop(request.query_params.get("shop"))
    id_token = request.query_params.get("id_token")
    if not id_token:
        if query_shop is None:
            return message_page(
                "Goldpan", "Open Goldpan from your Shopify admin (Apps → Goldpan).", 400
            )
        if request.query_params.get("embedded") == "1":
            return _bounce(request, query_shop)
        if _load_shop(ctx, query_shop) is None:
            return RedirectResponse(f"/auth?{urlencode({'shop': query_shop})}", status_code=302)
        host = request.query_params.get("host")
        return RedirectResponse(admin(request).app_url(settings, query_shop, host), 302)
    try:
        session = auth.verify_session_token(settings, id_token)
    except AuthError as exc:
        log.info("page load with an invalid id_token: %s", exc.reason)
        return _bounce(request, query_shop)
    if query_shop is not None and query_shop != session.shop:
        return _bounce(request, session.shop)
    request.state.shop_domain = session.shop
    shop = _load_shop(ctx, session.shop)
    if auth.needs_install(shop):
        try:
            tokens = auth.exchange_token(settings, session.shop, id_token)
        except TokenError as exc:
            if exc.code == "invalid_subject_token":
                return _bounce(request, session.shop)
            log.warning("token exchange refused: %s", exc, extra={"shop": session.shop})
            return message_page("Goldpan", f"Shopify refused the installation: {exc}", 502)
        auth.install(ctx, session.shop, tokens)
    host = request.query_params.get("host") or ""
    extra = admin(request).page_values(settings, session.shop)
    return HTMLResponse(render_index(settings, session.shop, host, extra))


def _load_shop(ctx: Context, domain: str) -> Shop | None:
    with ctx.sessions() as session:
        return session.scalar(select(Shop).where(Shop.domain == domain))


_FALLBACK_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="shopify-api-key" content="{{API_KEY}}">
<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>
<title>Goldpan</title></head>
<body><p>Goldpan is installed on {{SHOP}}.</p></body></html>
"""


_PLACEHOLDER = re.compile(r"\{\{[A-Z_]+\}\}")


def render_index(
    settings: Settings, shop: str, host: str = "", extra: Mapping[str, str] | None = None
) -> str:
    """``web/index.html`` with ``{{API_KEY}}``, ``{{SHOP}}``, ``{{HOST}}`` and the ``extra``
    values filled in; a placeholder nobody fills is emptied."""
    path = WEB_DIR / "index.html"
    template = path.read_text(encoding="utf-8") if path.is_file() else _FALLBACK_INDEX
    values = {"API_KEY": settings.api_key, "SHOP": shop, "HOST": host, **(extra or {})}
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", html.escape(value, quote=True))
    return _PLACEHOLDER.sub("", template)


def own_path(target: str) -> str:
    """``target`` when it is a path on this site, else ``/``. Browsers treat a backslash like a
    slash and drop tabs and newlines, so ``/\\evil.example`` would leave the site as
    ``//evil.example`` does."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    return target


def bounce_page(request: Request) -> Response:
    """A page that only gets a fresh session token and reloads ``shopify-reload`` with it
    (:meth:`ShopifyAdmin.token_script`: App Bridge, in the admin)."""
    settings = context(request).settings
    reload_to = own_path(request.query_params.get("shopify-reload", "/"))
    shop = auth.sanitize_shop(request.query_params.get("shop"))
    api_key = html.escape(settings.api_key, quote=True)
    script = admin(request).token_script(settings, shop, reload_to)
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name="shopify-api-key" content="{api_key}">{script}'
        "<title>Goldpan</title></head><body></body></html>"
    )
    return HTMLResponse(body)
