"""The Prometheus collector reads the cluster's figures from the database."""

from __future__ import annotations

import datetime as dt
import uuid

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
    before = _samples(ctx)
    shop = make_shop(api_cost_spent=1234)
    with ctx.sessions.begin() as session:
        session.add(
            WebhookEvent(
                shop_domain=shop.domain,
                event_id=uuid.uuid4().hex,
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
    after = _samples(ctx)

    assert after[("goldpan_webhooks_queued", ())] == before[("goldpan_webhooks_queued", ())] + 1
    assert after[("goldpan_webhook_lag_seconds", ())] >= 30
    cost = ("goldpan_shopify_api_cost_points", ())
    assert after[cost] == before[cost] + 1234
    done = ("goldpan_sync_objects_done", (("resource", "orders"),))
    total = ("goldpan_sync_objects_total", (("resource", "orders"),))
    assert after[done] - before.get(done, 0) == 250
    assert after[total] - before.get(total, 0) == 1000
    assert after[("goldpan_shops_installed", ())] == before[("goldpan_shops_installed", ())] + 1
