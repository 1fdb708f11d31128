"""The Prometheus collector reads the cluster's figures from the database."""

from __future__ import annotations

import datetime as dt

from prometheus_client.parser import text_string_to_metric_families

from shopify_app.db.models import SyncRun, WebhookEvent
from shopify_app.db.types import utcnow
from shopify_app.jobs import Context
from shopify_app.server import health
from shopify_app.states import SyncRunKind, SyncRunStatus, WebhookStatus


def _samples(ctx: Context) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = health.render(health.make_registry(ctx)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_reflect_queue_lag_cost_and_sync_progress(ctx: Context, make_shop) -> None:  # type: ignore[no-untyped-def]
    queued, installed = ("goldpan_webhooks_queued", ()), ("goldpan_shops_installed", ())
    empty = _samples(ctx)
    assert (empty[queued], empty[installed]) == (0, 0)
    shop = make_shop(api_cost_spent=1234)
    with ctx.sessions.begin() as session:
        session.add(
            WebhookEvent(
                shop_domain=shop.domain,
                event_id="1",
                topic="orders/create",
                payload="{}",
                status=WebhookStatus.QUEUED,
                received_at=utcnow() - dt.timedelta(seconds=30),
            )
        )
        session.add(
            SyncRun(
                shop_id=shop.id,
                kind=SyncRunKind.INITIAL,
                resource="orders",
                status=SyncRunStatus.RUNNING,
                object_count=1000,
                objects_done=250,
            )
        )
    metrics = _samples(ctx)

    assert (metrics[queued], metrics[installed]) == (1, 1)
    assert metrics[("goldpan_webhook_lag_seconds", ())] >= 30
    assert metrics[("goldpan_shopify_api_cost_points", ())] == 1234
    assert metrics[("goldpan_sync_objects_done", (("resource", "orders"),))] == 250
    assert metrics[("goldpan_sync_objects_total", (("resource", "orders"),))] == 1000
