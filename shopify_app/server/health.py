"""What operations look at: ``/healthz``, ``/readyz`` and the Prometheus ``/metrics``.

The figures that matter for operations live in the database (the webhook inbox, sync runs,
shops), which every web process and worker shares. So instead of counters kept in one process's
memory — wrong as soon as there are two processes — a collector reads them at scrape time from
the database and the job queue: webhook lag, queue depth, Shopify API cost used, sync progress.
Any web process answers ``/metrics`` with the cluster's view.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app import db
from shopify_app.db.models import Shop, SyncRun, WebhookEvent
from shopify_app.db.types import utcnow
from shopify_app.jobs import Context
from shopify_app.server import context
from shopify_app.server.errors import json_error
from shopify_app.states import WebhookStatus
from shopify_app.sync.runs import ACTIVE as ACTIVE_RUNS

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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

    ctx = context(request)
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
    """Prometheus text exposition of the cluster's gauges (:class:`GoldpanCollector`).

    Served only when ``METRICS_TOKEN`` is set, and only to ``Authorization: Bearer <token>``:
    the gauges tell how many shops are installed and how busy the app is, which is nobody
    else's business. Without a token the URL does not exist (404).
    """
    settings = context(request).settings
    if not settings.metrics_token:
        return json_error(404, "not found")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
        return json_error(
            401, "metrics need a bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = make_registry(context(request))
    return Response(render(registry), media_type=CONTENT_TYPE)


# --- the collector ---------------------------------------------------------------------------


class GoldpanCollector(Collector):
    """Reads the cluster-wide gauges from the database and huey on every scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.ctx.sessions() as session:
            queued, oldest = session.execute(
                select(func.count(), func.min(WebhookEvent.received_at)).where(
                    WebhookEvent.status == WebhookStatus.QUEUED
                )
            ).one()
            failed = session.scalar(
                select(func.count()).where(WebhookEvent.status == WebhookStatus.FAILED)
            )
            installed = session.scalar(select(func.count()).where(Shop.is_installed))
            cost = session.scalar(select(func.coalesce(func.sum(Shop.api_cost_spent), 0)))
            running = session.execute(
                select(
                    SyncRun.resource,
                    func.coalesce(func.sum(SyncRun.objects_done), 0),
                    func.coalesce(func.sum(SyncRun.object_count), 0),
                )
                .where(SyncRun.status.in_(ACTIVE_RUNS))
                .group_by(SyncRun.resource)
            ).all()

        yield _gauge(
            "goldpan_webhooks_queued", "Webhook deliveries received, not yet processed", queued
        )
        yield _gauge(
            "goldpan_webhooks_failed", "Webhook deliveries whose processing failed", failed
        )
        lag = 0.0 if oldest is None else max(0.0, (now - _aware(oldest)).total_seconds())
        yield _gauge(
            "goldpan_webhook_lag_seconds", "Age of the oldest unprocessed webhook delivery", lag
        )
        yield _gauge("goldpan_shops_installed", "Shops with the app installed", installed)
        yield _gauge(
            "goldpan_shopify_api_cost_points",
            "Admin API query cost spent, all shops (calculated points)",
            cost,
        )
        done = GaugeMetricFamily(
            "goldpan_sync_objects_done", "Objects ingested by running syncs", labels=["resource"]
        )
        total = GaugeMetricFamily(
            "goldpan_sync_objects_total", "Objects to ingest in running syncs", labels=["resource"]
        )
        for resource, objects_done, object_count in running:
            done.add_metric([resource], float(objects_done))
            total.add_metric([resource], float(object_count))
        yield done
        yield total
        runtime = self.ctx.runtime
        if runtime is not None:
            yield _gauge(
                "goldpan_job_queue_depth",
                "Tasks waiting in the job queue",
                runtime.huey.pending_count(),
            )


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value or 0))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def make_registry(ctx: Context) -> CollectorRegistry:
    """A registry holding only Goldpan's collector (no per-process default collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GoldpanCollector(ctx))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
