"""Scale-out: per-shop locks, periodic tasks once per cluster, /metrics, and a real cluster of two
web processes and two workers against one sandbox ending in exactly the store's state."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from goldpan_sandbox import control
from goldpan_sandbox.server import start_server
from shopify_app import jobs
from shopify_app.jobs import Context, LeaseLock, Runtime, TaskLockedException
from shopify_app.server.app import create_app
from shopify_app.settings import Settings
from tests.fixtures_scaleout import CLUSTER_METRICS_TOKEN, Cluster, _redis_url, wait_until

CALLS: list[dict[str, Any]] = []


@jobs.task("test.scaleout_locked", lock="test:{shop_id}")
def _locked_task(ctx: Context, shop_id: int, note: str = "") -> None:
    CALLS.append({"shop_id": shop_id, "note": note})


def _queue_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Redis (database 9) when the suite has one, else huey's SQLite file."""
    redis = _redis_url(9)
    if redis:
        from redis import Redis

        Redis.from_url(redis).flushdb()
    return settings.with_overrides(
        redis_url=redis, huey_path=str(tmp_path / "q.sqlite3"), job_lock_ttl=2.0
    )


def _runtime(ctx: Context, settings: Settings) -> Runtime:
    process = Context(settings, ctx.engine, ctx.sessions, ctx.cipher)
    return Runtime(process, jobs.make_huey(settings))


def test_lease_lock_excludes_and_expires_when_its_holder_dies(ctx: Context, tmp_path: Path) -> None:
    settings = _queue_settings(ctx.settings, tmp_path)
    one, two = _runtime(ctx, settings), _runtime(ctx, settings)
    key = f"sync:{uuid.uuid4().hex}"
    with one.lock(key), pytest.raises(TaskLockedException), two.lock(key):
        pass
    with two.lock(key):  # released on exit
        pass
    # A holder that dies renews nothing: its lease expires and the next taker gets it.
    dead = LeaseLock(one.huey, key, ttl=0.3)
    dead.acquire()
    dead._stop.set()  # the heartbeat dies with the process
    with pytest.raises(TaskLockedException), two.lock(key):
        pass
    wait_until(lambda: _try_lock(two, key), 3, "the dead holder's lease to expire")


def _try_lock(runtime: Runtime, key: str) -> bool:
    try:
        with runtime.lock(key):
            return True
    except TaskLockedException:
        return False


def test_a_locked_task_runs_later_once_not_never(ctx: Context, tmp_path: Path) -> None:
    settings = _queue_settings(ctx.settings, tmp_path)
    worker_a, worker_b = _runtime(ctx, settings), _runtime(ctx, settings)
    huey = worker_b.huey
    shop_id = int(uuid.uuid4().int % 10**9)
    CALLS.clear()
    with worker_a.lock(f"test:{shop_id}"):
        for _ in range(3):
            worker_b.enqueue("test.scaleout_locked", shop_id=shop_id)
        while (queued := huey.dequeue()) is not None:
            huey.execute(queued)  # a copy due later goes to the schedule
        # Three requests while busy: none ran, one copy waits to run after the holder.
        assert CALLS == []
        assert len(huey.scheduled()) == 1
    (later,) = huey.read_schedule(_far_future())
    huey.execute(later, timestamp=_far_future())  # its time has come
    assert [{"shop_id": shop_id, "note": ""}] == CALLS


def _far_future() -> Any:
    import datetime as dt

    return dt.datetime.now() + dt.timedelta(days=1)


def test_inline_runs_of_a_locked_task_wait_for_each_other(ctx: Context) -> None:
    CALLS.clear()
    threads = [
        threading.Thread(
            target=jobs.run_now, args=(ctx, "test.scaleout_locked"), kwargs={"shop_id": 7}
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(CALLS) == 4


def test_entry_tasks_take_the_per_shop_locks() -> None:
    jobs.load_task_modules()
    spec = jobs._REGISTRY
    assert spec["sync.initial"].lock == spec["sync.reconcile"].lock == "sync:{shop_id}"
    assert spec["segments.recompute_shop"].lock == "recompute:{shop_id}"


def test_periodic_tasks_run_once_per_cluster(ctx: Context, tmp_path: Path) -> None:
    settings = _queue_settings(ctx.settings, tmp_path)
    first, second = _runtime(ctx, settings), _runtime(ctx, settings)
    # Only the scheduler worker enqueues periodic tasks...
    assert first.consumer(scheduler=True).periodic is True
    assert second.consumer(scheduler=False).periodic is False
    # ...and should two schedulers run by mistake, one claim per minute wins.
    name = f"test.periodic.{uuid.uuid4().hex}"
    assert first._claim_periodic(name) is True
    assert second._claim_periodic(name) is False
    assert first._claim_periodic(name) is False


def test_metrics_are_served_only_with_a_token_and_only_to_its_bearer(ctx: Context) -> None:
    unset = start_server(create_app(ctx))
    guarded_ctx = Context(
        ctx.settings.with_overrides(metrics_token="s3cret-metrics"),
        ctx.engine,
        ctx.sessions,
        ctx.cipher,
    )
    guarded = start_server(create_app(guarded_ctx))
    try:
        # No token configured: there is no /metrics to scrape, with or without a header.
        assert requests.get(f"{unset.url}/metrics", timeout=10).status_code == 404
        anything = {"Authorization": "Bearer anything"}
        assert requests.get(f"{unset.url}/metrics", headers=anything, timeout=10).status_code == 404
        assert requests.get(f"{unset.url}/healthz", timeout=10).status_code == 200

        url = f"{guarded.url}/metrics"
        assert requests.get(url, timeout=10).status_code == 401
        wrong = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert wrong.status_code == 401
        ok = requests.get(url, headers={"Authorization": "Bearer s3cret-metrics"}, timeout=10)
        assert ok.status_code == 200 and "goldpan_shops_installed" in ok.text
        assert "goldpan_webhook_lag_seconds" in ok.text
        assert ok.headers["content-type"].startswith("text/plain")
        assert requests.get(f"{guarded.url}/healthz", timeout=10).status_code == 200
        assert requests.get(f"{guarded.url}/readyz", timeout=10).json()["status"] == "ok"
    finally:
        unset.stop()
        guarded.stop()


@pytest.mark.slow
def test_two_web_processes_and_two_workers_reach_the_stores_exact_state(
    cluster: Cluster,
) -> None:
    web1, web2 = cluster.start_web(), cluster.start_web()
    cluster.start_worker(scheduler=True)
    cluster.start_worker()
    cluster.sandbox.delivery.duplicate_rate = 0.25  # Shopify delivers at least once
    store = cluster.add_store(customers=120)
    cluster.sandbox.app_url = web2
    shop_id = cluster.install(store.domain, web1)

    # Orders arrive while the initial sync runs; their webhooks alternate between the two web
    # processes (two instances behind a load balancer).
    customer_ids = sorted(store.customers)
    for i in range(12):
        cluster.sandbox.app_url = (web1, web2)[i % 2]
        control.place_order(
            cluster.sandbox, store.domain, {"customer_id": customer_ids[i % len(customer_ids)]}
        )
    cluster.wait_converged(store.domain, timeout=50)

    urls = {d.url.rsplit("/webhooks", 1)[0] for d in cluster.sandbox.delivery.log(store.domain)}
    assert {web1, web2} <= urls
    # Structured logs: a worker's records of this shop's sync carry the shop and the job id.
    records = [
        json.loads(line)
        for name in ("worker1", "worker2")
        for line in cluster.log_of(name).splitlines()
        if line.startswith("{")
    ]
    jobs_seen = {r["job"].split("#")[0] for r in records if r.get("shop") == store.domain}
    assert jobs_seen & {"sync.initial", "sync.poll", "webhooks.process"}
    metrics = cluster_metrics(web2)
    assert "goldpan_job_queue_depth" in metrics
    assert shop_id > 0


def cluster_metrics(web: str) -> str:
    headers = {"Authorization": f"Bearer {CLUSTER_METRICS_TOKEN}"}
    return requests.get(f"{web}/metrics", headers=headers, timeout=5).text
