"""The web app: one routes table, one app factory, one exception-handler map, pure-ASGI middleware.

Requests, by path:

* ``/`` — the embedded page. Its load carries ``?id_token=``: verified, and when the shop is not
  installed yet (or holds a legacy token) exchanged for an expiring offline token and installed
  (Shopify's managed installation). Without a valid token the browser goes to the bounce page
  ``/auth/session-token?shopify-reload=...``, which only loads App Bridge (which fetches a fresh
  token and reloads). In the demo, a small shim fetches the token from the sandbox instead.
* ``/auth``, ``/auth/callback`` — the authorization-code grant for non-embedded/legacy installs.
* ``/api/...`` — JSON for the page, behind :class:`SessionTokenAuth`; handlers read
  ``request.state.shop_id`` and never take a shop from the request, so one shop's token can never
  reach another shop's data. ``/api/meta/...`` is the Meta connection API.
* ``/webhooks``, ``/webhooks/compliance`` — see :mod:`shopify_app.shopify.webhooks`.
* ``/healthz`` (the process answers), ``/readyz`` (database reachable, schema at head).

Every HTML response carries ``Content-Security-Policy: frame-ancestors https://<shop>
https://admin.shopify.com`` (:class:`FrameAncestors`), so only the shop's admin may frame it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopify_app import db, logs
from shopify_app.crypto import TokenCipher
from shopify_app.db.models import Shop
from shopify_app.errors import (
    AuthError,
    GoldpanError,
    InputError,
    MetaError,
    ShopifyError,
    TokenError,
)
from shopify_app.jobs import Context, Runtime, make_huey
from shopify_app.server.assets import WEB_DIR
from shopify_app.settings import Settings
from shopify_app.shopify import auth

log = logging.getLogger(__name__)

RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"
STATE_COOKIE = "goldpan_oauth_state"
STATE_TTL = 300
CALLBACK_SKEW = 90
APP_BRIDGE = "https://cdn.shopify.com/shopifycloud/app-bridge.js"


# --- context ----------------------------------------------------------------------------------


def build_context(settings: Settings, *, queue: bool = True) -> Context:
    """Engine, sessions, cipher and (unless ``queue=False``) the huey runtime for ``settings``."""
    settings.ensure_local_dirs()
    engine = db.make_engine(settings.database_url)
    ctx = Context(
        settings=settings,
        engine=engine,
        sessions=db.make_sessionmaker(engine),
        cipher=TokenCipher(settings.token_encryption_keys),
    )
    if queue:
        Runtime(ctx, make_huey(settings))
    return ctx


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


# --- middleware -------------------------------------------------------------------------------


def _unauthorized(reason: str, *, retry: bool = True, reauthorize: str | None = None) -> Response:
    headers = {RETRY_HEADER: "1"} if retry else {}
    if reauthorize is not None:
        headers["X-Shopify-API-Request-Failure-Reauthorize"] = "1"
        headers["X-Shopify-API-Request-Failure-Reauthorize-Url"] = reauthorize
    return JSONResponse({"error": reason}, status_code=401, headers=headers)


class SessionTokenAuth:
    """Pure-ASGI guard of ``/api``: a valid session token of an installed shop, or 401.

    On success it sets ``request.state.shop_id``, ``shop_domain``, ``user_id`` and
    ``session_token`` and runs the request with the shop bound into the log context.
    """

    def __init__(self, app: ASGIApp, ctx: Context, prefix: str = "/api") -> None:
        self.app = app
        self.ctx = ctx
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        token = header[7:].strip() if header and header[:7].lower() == "bearer " else None
        try:
            session = auth.verify_session_token(self.ctx.settings, token)
        except AuthError as exc:
            await _unauthorized(exc.reason)(scope, receive, send)
            return
        shop = await run_in_threadpool(self._installed_shop, session.shop)
        if shop is None:
            response = _unauthorized(
                "the app is not installed on this shop",
                retry=False,
                reauthorize=f"/?{urlencode({'shop': session.shop})}",
            )
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state.update(
            shop_id=shop,
            shop_domain=session.shop,
            user_id=session.user_id,
            session_token=session,
        )
        with logs.bind(shop=session.shop):
            await self.app(scope, receive, send)

    def _installed_shop(self, domain: str) -> int | None:
        with self.ctx.sessions() as session:
            row = session.execute(
                select(Shop.id).where(
                    Shop.domain == domain,
                    Shop.uninstalled_at.is_(None),
                    Shop.access_token.is_not(None),
                )
            ).first()
        return int(row[0]) if row else None


class FrameAncestors:
    """Pure-ASGI: every HTML response may be framed only by the shop's admin.

    The shop comes from the page handler (``request.state.shop_domain``) or the sanitized
    ``shop`` query parameter; with neither, nobody may frame the page.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                has_csp = any(k.lower() == b"content-security-policy" for k, _ in headers)
                if content_type.startswith(b"text/html") and not has_csp:
                    shop = scope.get("state", {}).get("shop_domain") or _query_shop(scope)
                    headers.append((b"content-security-policy", csp_for(shop).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_csp)


def csp_for(shop: str | None) -> str:
    """The ``Content-Security-Policy`` of a page for ``shop`` (sanitized here again)."""
    shop = auth.sanitize_shop(shop)
    if shop is None:
        return "frame-ancestors 'none';"
    return f"frame-ancestors https://{shop} https://admin.shopify.com;"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _query_shop(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("shop")
    return auth.sanitize_shop(values[0]) if values else None


# --- pages ------------------------------------------------------------------------------------


def _bounce(request: Request, shop: str | None) -> Response:
    """Send the browser to the bounce page, which reloads this URL with a fresh ``id_token``."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "id_token"]
    reload_to = request.url.path + ("?" + urlencode(query) if query else "")
    params = {"shopify-reload": reload_to}
    if shop:
        params["shop"] = shop
    return RedirectResponse(f"/auth/session-token?{urlencode(params)}", status_code=302)


def _message_page(title: str, message: str, status_code: int, shop: str | None = None) -> Response:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status_code)


def index(request: Request) -> Response:
    """The embedded page: verify ``id_token``, install if needed, serve ``web/index.html``."""
    ctx = _ctx(request)
    settings = ctx.settings
    query_shop = auth.sanitize_shop(request.query_params.get("shop"))
    id_token = request.query_params.get("id_token")
    if not id_token:
        if query_shop is None:
            return _message_page(
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
            return _message_page("Goldpan", f"Shopify refused the installation: {exc}", 502)
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
    settings = _ctx(request).settings
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


# --- authorization-code grant -----------------------------------------------------------------


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
    settings = _ctx(request).settings
    shop = auth.sanitize_shop(request.query_params.get("shop"))
    if shop is None:
        return _message_page("Goldpan", "That is not a valid myshopify.com shop domain.", 400)
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
    ctx = _ctx(request)
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
        return _message_page("Goldpan", f"Installation could not be verified ({problem}).", 400)
    try:
        tokens = auth.exchange_code(settings, shop, params["code"])
    except TokenError as exc:
        return _message_page("Goldpan", f"Shopify refused the installation: {exc}", 400)
    auth.install(ctx, shop, tokens)
    response = RedirectResponse(embedded_app_url(settings, shop, params.get("host")), 302)
    response.delete_cookie(STATE_COOKIE, path="/auth/callback")
    return response


# --- health and a tiny API of our own ---------------------------------------------------------


def healthz(request: Request) -> Response:
    """The process is alive and serving."""
    return JSONResponse({"status": "ok"})


_heads_lock = threading.Lock()
_heads: set[str] | None = None


def _script_heads() -> set[str]:
    global _heads
    with _heads_lock:
        if _heads is None:
            from alembic.script import ScriptDirectory

            _heads = set(ScriptDirectory(str(db.MIGRATIONS_DIR)).get_heads())
        return _heads


def readyz(request: Request) -> Response:
    """The database answers and its schema is at the latest migration."""
    from alembic.runtime.migration import MigrationContext

    ctx = _ctx(request)
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    expected = _script_heads()
    if current != expected:
        return JSONResponse(
            {"status": "unavailable", "migrations": sorted(current), "head": sorted(expected)},
            503,
        )
    return JSONResponse({"status": "ok", "migrations": sorted(current)})


def metrics(request: Request) -> Response:
    """Prometheus text exposition of the cluster's gauges (see :mod:`shopify_app.server.telemetry`).

    With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>`` may read it.
    """
    from shopify_app.server import telemetry

    settings = _ctx(request).settings
    if settings.metrics_token:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
            return JSONResponse(
                {"error": "metrics need a bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = telemetry.make_registry(_ctx(request))
    return Response(telemetry.render(registry), media_type=telemetry.CONTENT_TYPE)


def api_session(request: Request) -> Response:
    """Who the session token says the caller is (the page uses it; tests probe isolation)."""
    state = request.state
    return JSONResponse(
        {"shop": state.shop_domain, "shop_id": state.shop_id, "user_id": state.user_id}
    )


# --- errors -----------------------------------------------------------------------------------


def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return _unauthorized(exc.reason)


def _input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)


def _token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokenError)
    if exc.code in ("uninstalled", "invalid_grant", "invalid_client", "unknown_shop"):
        shop = getattr(request.state, "shop_domain", None) or exc.shop or ""
        return _unauthorized(str(exc), retry=False, reauthorize=f"/?{urlencode({'shop': shop})}")
    return JSONResponse({"error": str(exc), "code": exc.code}, status_code=502)


def _upstream_error(request: Request, exc: Exception) -> Response:
    log.warning("upstream error: %s", exc)
    return JSONResponse({"error": str(exc)}, status_code=502)


def _goldpan_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled Goldpan error", exc_info=exc)
    return JSONResponse({"error": str(exc)}, status_code=500)


EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Response]] = {
    AuthError: _auth_error,
    InputError: _input_error,
    TokenError: _token_error,
    ShopifyError: _upstream_error,
    MetaError: _upstream_error,
    GoldpanError: _goldpan_error,
}


# --- the app ----------------------------------------------------------------------------------


def build_routes() -> list[BaseRoute]:
    """The routes table (the single place every URL of the app is declared)."""
    from shopify_app.server import api
    from shopify_app.server import meta_api as meta_web
    from shopify_app.shopify import webhooks

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/auth", begin_auth, methods=["GET"]),
        Route("/auth/callback", auth_callback, methods=["GET"]),
        Route("/auth/session-token", bounce_page, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *webhooks.routes,
        Mount("/api/meta", routes=meta_web.routes),
        Mount(
            "/api",
            routes=[
                Route("/session", api_session, methods=["GET"]),
                *api.routes,
            ],
        ),
        *meta_web.public_routes,
    ]
    if WEB_DIR.is_dir():
        routes.append(Mount("/static", app=StaticFiles(directory=WEB_DIR), name="static"))
    return routes


def create_app(ctx: Context, *, start_worker: bool = False) -> Starlette:
    """The ASGI app for ``ctx``. ``start_worker`` runs a huey consumer inside this process for
    as long as the app runs (the single-machine default)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from shopify_app.shopify import webhooks

        consumer = None
        if start_worker and ctx.runtime is not None:
            # Periodic tasks run once per cluster: the in-process consumer schedules them only
            # on the single-machine setup (no Redis); with Redis, `worker --scheduler` does.
            consumer = _start_consumer(ctx.runtime, scheduler=not ctx.settings.redis_url)
        if ctx.runtime is not None:
            await run_in_threadpool(webhooks.requeue_pending, ctx)
        try:
            yield
        finally:
            if consumer is not None:
                await run_in_threadpool(consumer.stop, True)

    app = Starlette(
        routes=build_routes(),
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.metrics_registry = None  # made on the first scrape, then reused
    # Starlette wraps the app with user middleware outermost-first; ours are pure ASGI.
    app.add_middleware(SessionTokenAuth, ctx=ctx)
    app.add_middleware(FrameAncestors)
    return app


def _start_consumer(runtime: Runtime, workers: int = 2, *, scheduler: bool = True) -> Any:
    consumer = runtime.consumer(workers=workers, scheduler=scheduler)
    # The web server owns the signals; the consumer must not replace its handlers.
    consumer._set_signal_handlers = lambda: None
    consumer.start()
    return consumer


# --- processes --------------------------------------------------------------------------------


def serve(settings: Settings, host: str = "127.0.0.1") -> None:
    """Run the web app with uvicorn (``shopify-app serve``).

    On the SQLite default the schema is migrated first (one machine, nobody else to do it); with
    no Redis, or ``INLINE_WORKER``, the background worker runs inside this process.
    """
    import uvicorn

    logs.configure_logging(settings)
    settings.ensure_local_dirs()
    if settings.database_url.startswith("sqlite"):
        db.upgrade(settings.database_url)
    ctx = build_context(settings)
    if settings.inline_worker:
        resume_syncs(ctx)  # this process is the worker: pick up what a crash left behind
    app = create_app(ctx, start_worker=settings.inline_worker)
    log.info("serving on http://%s:%s (app url %s)", host, settings.port, settings.app_url)
    uvicorn.run(app, host=host, port=settings.port, log_config=None, access_log=False)


def run_worker(settings: Settings, threads: int = 4, scheduler: bool = False) -> None:
    """Run a huey consumer (``shopify-app worker``) until interrupted; ``scheduler`` (exactly one
    worker per cluster) also enqueues the periodic tasks."""
    from shopify_app.shopify import webhooks

    logs.configure_logging(settings)
    ctx = build_context(settings)
    assert ctx.runtime is not None
    webhooks.requeue_pending(ctx)
    resume_syncs(ctx)
    ctx.runtime.consumer(workers=threads, scheduler=scheduler).run()


def resume_syncs(ctx: Context) -> int:
    """Queue what a worker killed mid-sync took with it; returns how many shops needed it.

    A dequeued task dies with its worker: a poll of running exports (resumed from their
    checkpoints once the dead worker's lock expires), or an initial sync that had started only
    some of its exports (it is started again for what is missing). Both are idempotent, so every
    worker start doing this is harmless.
    """
    from shopify_app.db.models import Shop, SyncRun
    from shopify_app.sync.runs import RESOURCES

    with ctx.sessions() as session:
        active = set(
            session.scalars(select(SyncRun.shop_id).where(SyncRun.status.in_(_ACTIVE_RUNS)))
        )
        installed = set(
            session.scalars(
                select(Shop.id).where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None))
            )
        )
        started: dict[int, set[str]] = {}
        for shop_id, resource in session.execute(
            select(SyncRun.shop_id, SyncRun.resource).where(SyncRun.kind == "initial")
        ):
            started.setdefault(int(shop_id), set()).add(str(resource))
    partial = {
        s for s, resources in started.items() if s in installed and set(RESOURCES) - resources
    }
    for shop_id in sorted(active - partial):
        ctx.enqueue("sync.poll", shop_id=int(shop_id))
    for shop_id in sorted(partial):
        ctx.enqueue("sync.initial", shop_id=int(shop_id))
    if active or partial:
        log.info("resumed the syncs of %d shops", len(active | partial))
    return len(active | partial)


_ACTIVE_RUNS = ("running", "ingesting")
