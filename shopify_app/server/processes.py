"""The long-running processes: ``shopify-app serve`` (web) and ``shopify-app worker`` (jobs)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from shopify_app import db, logs
from shopify_app.jobs import Context
from shopify_app.server.app import build_context, create_app
from shopify_app.settings import Settings

log = logging.getLogger(__name__)


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
    from shopify_app.states import SyncRunKind
    from shopify_app.sync.runs import ACTIVE, RESOURCES

    with ctx.sessions() as session:
        active = set(session.scalars(select(SyncRun.shop_id).where(SyncRun.status.in_(ACTIVE))))
        installed = set(session.scalars(select(Shop.id).where(Shop.is_installed)))
        started: dict[int, set[str]] = {}
        for shop_id, resource in session.execute(
            select(SyncRun.shop_id, SyncRun.resource).where(SyncRun.kind == SyncRunKind.INITIAL)
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
