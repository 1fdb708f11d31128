"""The embedded page (``/``) and the session-token bounce page (``/auth/session-token``).

The page load carries ``?id_token=``: verified, and when the shop is not installed yet (or holds
a legacy token) exchanged for an expiring offline token and installed (Shopify's managed
installation). Without a valid token the browser goes to the bounce page
``/auth/session-token?shopify-reload=...``, which only loads App Bridge (which fetches a fresh
token and reloads). In the demo, a small shim fetches the token from the sandbox instead.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
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


def _bounce(request: Request, shop: str | None) -> Response:
    """Send the browser to the bounce page, which reloads this URL with a fresh ``id_token``."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "id_token"]
    reload_to = request.url.path + ("?" + urlencode(query) if query else "")
    params = {"shopify-reload": reload_to}
    if shop:
        params["shop"] = shop
    return RedirectResponse(f"/auth/session-token?{urlencode(params)}", status_code=302)


def message_page(title: str, message: str, status_code: int, shop: str | None = None) -> Response:
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
        if request.query_params.get("embedded") == "1" or settings.demo:
            return _bounce(request, query_shop)
        if _load_shop(ctx, query_shop) is None:
            return RedirectResponse(f"/auth?{urlencode({'shop': query_shop})}", status_code=302)
        return RedirectResponse(
            embedded_app_url(settings, query_shop, request.query_params.get("host")), 302
        )
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
    return HTMLResponse(
        render_index(settings, session.shop, request.query_params.get("host") or "")
    )


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


def sandbox_url(settings: Settings, shop: str) -> str:
    """In the demo, the sandbox's base URL (what precedes ``/shops/{shop}``); else empty."""
    base, suffix = settings.shop_url(shop), f"/shops/{shop}"
    return base.removesuffix(suffix) if settings.demo and base.endswith(suffix) else ""


def render_index(settings: Settings, shop: str, host: str = "") -> str:
    """``web/index.html`` with ``{{API_KEY}}``, ``{{SHOP}}``, ``{{HOST}}`` and (demo only)
    ``{{SANDBOX_URL}}`` filled in."""
    path = WEB_DIR / "index.html"
    template = path.read_text(encoding="utf-8") if path.is_file() else _FALLBACK_INDEX
    values = (
        ("API_KEY", settings.api_key),
        ("SHOP", shop),
        ("HOST", host),
        ("SANDBOX_URL", sandbox_url(settings, shop)),
    )
    for name, value in values:
        template = template.replace("{{" + name + "}}", html.escape(value, quote=True))
    return template


def bounce_page(request: Request) -> Response:
    """A page that only loads App Bridge; App Bridge reloads ``shopify-reload`` with a token.

    In the demo (``GOLDPAN_DEMO``) there is no Shopify admin around the page, so a shim asks the
    sandbox for a session token and performs the reload itself.
    """
    settings = context(request).settings
    reload_to = request.query_params.get("shopify-reload", "/")
    if not reload_to.startswith("/") or reload_to.startswith("//"):
        reload_to = "/"  # only ever reload our own pages
    shop = auth.sanitize_shop(request.query_params.get("shop"))
    api_key = html.escape(settings.api_key, quote=True)
    if settings.demo and shop is not None:
        token_url = f"{settings.shop_url(shop)}/admin/session-token"
        script = (
            "<script>fetch(" + json.dumps(token_url) + ").then(r => r.json()).then(b => {"
            "const u = new URL(" + json.dumps(reload_to) + ", location.origin);"
            "u.searchParams.set('id_token', b.token);"
            "u.searchParams.set('embedded', '1');"
            "location.replace(u.toString());});</script>"
        )
    else:
        script = f'<script src="{APP_BRIDGE}"></script>'
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name="shopify-api-key" content="{api_key}">{script}'
        "<title>Goldpan</title></head><body></body></html>"
    )
    return HTMLResponse(body)


def embedded_app_url(settings: Settings, shop: str, host: str | None) -> str:
    """The app's URL inside the Shopify admin (from the ``host`` parameter when it is sane)."""
    if settings.demo:
        return "/?" + urlencode({"shop": shop, **({"host": host} if host else {})})
    if host:
        try:
            decoded = base64.b64decode(host + "=" * (-len(host) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if decoded.startswith("admin.shopify.com/store/") or decoded == f"{shop}/admin":
            return f"https://{decoded}/apps/{settings.api_key}"
    return f"https://admin.shopify.com/store/{shop.removesuffix('.myshopify.com')}/apps/{settings.api_key}"
