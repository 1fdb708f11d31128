"""The web app: ``create_app`` with the one routes table, the middleware and the error map.

Requests, by path:

* ``/`` and ``/auth/session-token`` — the embedded page and its bounce page (:mod:`.pages`);
* ``/auth``, ``/auth/callback`` — the authorization-code grant (:mod:`.oauth`);
* ``/api/...`` — JSON for the page (:mod:`.api`), behind
  :class:`~shopify_app.server.middleware.SessionTokenAuth`; handlers read
  ``request.state.shop_id`` and never take a shop from the request, so one shop's token can never
  reach another shop's data; bodies over 256 KB are refused with 413
  (:class:`~shopify_app.server.middleware.BodyLimit`);
* ``/meta/login``, ``/meta/callback`` — where Facebook Login starts and returns (:mod:`.api.meta`);
* ``/webhooks``, ``/webhooks/compliance`` — see :mod:`shopify_app.shopify.webhooks`;
* ``/flow/lifecycle`` — Shopify Flow's trigger lifecycle callback (:mod:`.flow`);
* ``/healthz``, ``/readyz``, ``/metrics`` — for operations (:mod:`.health`);
* ``/static/...`` — the page's files (``web/``).

Every HTML response carries ``Content-Security-Policy: frame-ancestors https://<shop>
https://admin.shopify.com`` (:class:`~shopify_app.server.middleware.FrameAncestors`), so only the
shop's admin may frame it; every response carries ``nosniff``, a referrer policy and, behind
https, HSTS (:class:`~shopify_app.server.middleware.SecurityHeaders`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from shopify_app import db
from shopify_app.crypto import TokenCipher
from shopify_app.jobs import Context, Runtime, make_huey
from shopify_app.server import errors, flow, health, oauth, pages
from shopify_app.server.api import (
    actions,
    analytics,
    audit,
    customers,
    home,
    live,
    meta,
    segments,
    settings,
)
from shopify_app.server.assets import WEB_DIR
from shopify_app.server.middleware import (
    BodyLimit,
    FrameAncestors,
    SecurityHeaders,
    SessionTokenAuth,
)
from shopify_app.settings import Settings
from shopify_app.shopify import webhooks


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


def build_routes() -> list[BaseRoute]:
    """The routes table: every URL of the app and the function that answers it."""
    routes: list[BaseRoute] = [
        Route("/", pages.index, methods=["GET"]),
        *(Route(path, pages.index, methods=["GET"]) for path in pages.SECTIONS),
        Route("/auth/session-token", pages.bounce_page, methods=["GET"]),
        Route("/auth", oauth.begin_auth, methods=["GET"]),
        Route("/auth/callback", oauth.auth_callback, methods=["GET"]),
        Route("/meta/login", meta.login, methods=["GET"]),
        Route("/meta/callback", meta.callback, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *webhooks.routes,
        *flow.routes,
        Mount(
            "/api",
            routes=[
                Route("/session", home.session, methods=["GET"]),
                Route("/home", home.home, methods=["GET"]),
                Route("/version", live.version, methods=["GET"]),
                Route("/segments", segments.segment_list, methods=["GET"]),
                Route("/segments/preview", segments.segment_preview, methods=["POST"]),
                Route("/segments/{segment_id}", segments.segment_detail, methods=["GET"]),
                Route("/segments/{segment_id}/members", segments.segment_members, methods=["GET"]),
                Route(
                    "/segments/{segment_id}/members.csv",
                    segments.segment_members_csv,
                    methods=["GET"],
                ),
                Route(
                    "/segments/{segment_id}/tag-sync", segments.segment_tag_sync, methods=["POST"]
                ),
                Route(
                    "/segments/{segment_id}/native-segment",
                    segments.segment_native,
                    methods=["POST"],
                ),
                Route("/segments/{segment_id}/meta-preview", meta.preview, methods=["GET"]),
                Route("/customers/{customer_id}", customers.customer_detail, methods=["GET"]),
                Route("/analytics", analytics.analytics, methods=["GET"]),
                Route("/settings", settings.settings_get, methods=["GET"]),
                Route("/settings", settings.settings_put, methods=["PUT"]),
                Route("/tags/remove-all", settings.tags_remove_all, methods=["POST"]),
                Route("/actions", actions.actions_get, methods=["GET"]),
                Route("/actions/discounts/{tier}", actions.discount_put, methods=["PUT"]),
                Route("/actions/scores", actions.scores_put, methods=["PUT"]),
                Route("/products", audit.products, methods=["GET"]),
                Route("/audit", audit.audit, methods=["GET"]),
                Route("/data-requests", audit.data_requests, methods=["GET"]),
                Route("/data-requests/{request_id}", audit.data_request_export, methods=["GET"]),
                Route("/meta/status", meta.status, methods=["GET"]),
                Route("/meta/connect", meta.connect, methods=["POST"]),
                Route("/meta/confirm", meta.confirm, methods=["POST"]),
                Route("/meta/token", meta.paste_token, methods=["POST"]),
                Route("/meta/disconnect", meta.disconnect, methods=["POST"]),
                Route("/meta/adaccounts", meta.ad_accounts, methods=["GET"]),
                Route("/meta/account", meta.choose_account, methods=["POST"]),
                Route("/meta/segments/{segment_id}/sync", meta.segment_sync, methods=["POST"]),
                Route(
                    "/meta/segments/{segment_id}/lookalike",
                    meta.segment_lookalike,
                    methods=["POST"],
                ),
                Route("/meta/segments/{segment_id}/file", meta.segment_file, methods=["GET"]),
                Route("/meta/segments/{segment_id}", meta.segment_panel, methods=["GET"]),
                Route(
                    "/meta/segments/{segment_id}/value-audience",
                    meta.segment_value_audience,
                    methods=["POST"],
                ),
            ],
        ),
    ]
    if WEB_DIR.is_dir():
        routes.append(Mount("/static", app=StaticFiles(directory=WEB_DIR), name="static"))
    return routes


def create_app(
    ctx: Context,
    *,
    start_worker: bool = False,
    admin: pages.ShopifyAdmin | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app for ``ctx``.

    ``start_worker`` runs a huey consumer inside this process for as long as the app runs (the
    single-machine default). ``admin`` is what surrounds the page: Shopify's admin unless a
    program showing the page elsewhere (the demo) passes its own. ``extra_routes`` are matched
    before the app's own, behind the same middleware and error map: how such a program (or a
    test) adds URLs.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
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
        routes=[*extra_routes, *build_routes()],
        exception_handlers=dict(errors.EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.admin = admin or pages.ShopifyAdmin()
    app.state.metrics_registry = None  # made on the first scrape, then reused
    # Each add_middleware wraps what was added before it; ours are pure ASGI.
    app.add_middleware(BodyLimit)  # inside the token check: anonymous bodies are never read
    app.add_middleware(SessionTokenAuth, ctx=ctx)
    app.add_middleware(FrameAncestors)
    app.add_middleware(SecurityHeaders, hsts=ctx.settings.app_url.startswith("https://"))
    return app


def _start_consumer(runtime: Runtime, workers: int = 2, *, scheduler: bool = True) -> Any:
    consumer = runtime.consumer(workers=workers, scheduler=scheduler)
    # The web server owns the signals; the consumer must not replace its handlers.
    consumer._set_signal_handlers = lambda: None
    consumer.start()
    return consumer
