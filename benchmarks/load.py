"""Load test on loopback: a real cluster (web processes + workers) against the Shopify sandbox.

1. Webhooks: ``--rate`` signed ``orders/create`` deliveries per second for ``--seconds`` across
   ``--shops`` installed shops, round-robin over the web processes, with ``--duplicates`` of them
   delivered twice (Shopify delivers at least once). Checks nothing is lost (every order of every
   store is in the database), nothing has a duplicated effect (one inbox row per event, one order
   row per order), and reports webhook→processed latency (send → ``processed_at``) and, when the
   shops' segments are tagged, webhook→tags-written latency (send → the customer's tags changed
   on the sandbox).
2. Page API: ``--requests`` GETs at ``--concurrency`` against ``/api/home``, ``/api/segments`` and
   ``/api/session`` with session tokens signed with the app secret; p50/p95/max and errors.

Bounded and loopback only. Examples::

    .venv/bin/python benchmarks/load.py                       # SQLite + huey's SQLite queue
    .venv/bin/python benchmarks/load.py --seconds 10 --requests 1000
    .venv/bin/python benchmarks/load.py \\
        --database-url postgresql+psycopg://goldpan@127.0.0.1:55432/goldpan_test \\
        --redis-url redis://127.0.0.1:56379/0

``--database-url`` names an existing PostgreSQL database; a throwaway one is created next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values)} p50={percentile(values, 0.5):.0f} ms "
        f"p95={percentile(values, 0.95):.0f} ms max={max(values):.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50, help="webhooks per second")
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--customers", type=int, default=40, help="per generated shop")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share sent twice")
    parser.add_argument("--requests", type=int, default=10_000, help="page-API requests")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument(
        "--no-tag-sync",
        action="store_true",
        help="leave the segments' tag sync off (it is turned on for every segment by default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the processes' logs into this folder"
    )
    args = parser.parse_args(argv)

    # The cluster helpers read the test-suite variables: point them at what was asked for.
    for name, value in (
        ("GOLDPAN_TEST_DATABASE_URL", args.database_url),
        ("GOLDPAN_TEST_REDIS_URL", args.redis_url),
    ):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)

    from shopify_app import db
    from shopify_app.crypto import generate_key
    from tests.conftest import fresh_database

    figures: dict[str, Any] = {
        "database": "postgresql" if args.database_url else "sqlite",
        "queue": "redis" if args.redis_url else "sqlite",
        "webs": args.webs,
        "workers": args.workers,
    }
    with (
        tempfile.TemporaryDirectory(prefix="goldpan-load-") as tmp,
        fresh_database(Path(tmp)) as url,
    ):
        db.upgrade(url)
        from tests.fixtures_scaleout import Cluster

        cluster = Cluster(Path(tmp), url, generate_key(), redis_db=15)
        try:
            run(cluster, args, figures)
        finally:
            cluster.stop()
            if args.keep:
                import shutil

                args.keep.mkdir(parents=True, exist_ok=True)
                for log_file in Path(tmp).glob("*.log"):
                    shutil.copy(log_file, args.keep / log_file.name)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if figures.get("lost") == 0 and figures.get("duplicated") == 0 else 1


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cluster: Any, args: argparse.Namespace, figures: dict[str, Any]) -> None:
    from sqlalchemy import func, select

    from shopify_app import auth
    from shopify_app.models import Order, WebhookEvent
    from shopify_app.sandbox import control
    from tests.fixtures_api import session_token
    from tests.fixtures_scaleout import wait_until

    webs = [cluster.start_web() for _ in range(args.webs)]
    for i in range(args.workers):
        cluster.start_worker(scheduler=i == 0, threads=args.threads)
    # The sandbox delivers its own webhooks (bulk finishes, customer changes) to the first web.
    cluster.sandbox.app_url = webs[0]
    say(f"cluster up: {len(webs)} web, {args.workers} workers; installing {args.shops} shops")
    stores = [cluster.add_store(customers=args.customers, seed=100 + i) for i in range(args.shops)]
    started = time.monotonic()
    for i, store in enumerate(stores):
        cluster.install(store.domain, webs[i % len(webs)])
    for store in stores:
        cluster.wait_converged(store.domain, timeout=args.drain_timeout)
    figures["install_and_initial_sync_s"] = round(time.monotonic() - started, 1)
    say(f"{args.shops} shops installed and synced in {figures['install_and_initial_sync_s']} s")

    if not args.no_tag_sync:
        # As a merchant would in the page: tag customers with every segment they are in.
        from sqlalchemy import update

        from shopify_app.models import Segment

        with cluster.ctx.sessions.begin() as s:
            s.execute(update(Segment).values(tag_sync=True))

    # --- webhooks ---------------------------------------------------------------------------
    cluster.sandbox.app_url = None  # we deliver the orders/create webhooks ourselves
    total = int(args.rate * args.seconds)
    sent: dict[str, float] = {}  # event id -> wall-clock send time
    customer_of: dict[str, tuple[str, int]] = {}
    tags_before: dict[str, tuple[str, ...]] = {}
    errors: list[str] = []
    retried: list[str] = []
    lock = threading.Lock()
    web_cycle = itertools.cycle(webs)
    http = threading.local()

    sends_of: dict[str, list[float]] = {}  # "domain:customer" -> send times
    tag_changes: list[tuple[str, float]] = []  # ("domain:customer", when the tags changed)
    watching = threading.Event()

    def watch_tags() -> None:
        # The sandbox is Shopify: a customer's tags changing there is the tag write landing.
        last: dict[str, tuple[str, ...]] = {}
        while not watching.is_set():
            with lock:
                keys = list(sends_of)
            now = time.time()
            for key in keys:
                domain, number = key.rsplit(":", 1)
                customer = cluster.sandbox.store(domain).customers.get(int(number))
                tags = tuple(sorted(customer.tags)) if customer is not None else ()
                if key in last and last[key] != tags:
                    tag_changes.append((key, now))
                last[key] = tags
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_tags, daemon=True)
    watcher.start()

    def session() -> requests.Session:
        if not hasattr(http, "s"):
            http.s = requests.Session()
        s: requests.Session = http.s
        return s

    def deliver(n: int) -> None:
        store = stores[n % len(stores)]
        customers = sorted(store.customers)
        customer_id = customers[(n // len(stores)) % len(customers)]
        try:
            order = control.place_order(cluster.sandbox, store.domain, {"customer_id": customer_id})
            body = json.dumps(cluster.sandbox.delivery.order_payload(store, order)).encode()
            event_id = str(uuid.uuid4())
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": store.domain,
                "X-Shopify-Hmac-Sha256": auth.webhook_hmac(cluster.settings.api_secret, body),
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-API-Version": "2026-10",
                "X-Shopify-Triggered-At": dt.datetime.now(dt.UTC).isoformat(),
            }
            copies = 2 if (n * 7919 % 1000) < args.duplicates * 1000 else 1
            with lock:
                sent[event_id] = time.time()
                customer_of[event_id] = (store.domain, customer_id)
                key = f"{store.domain}:{customer_id}"
                if key not in tags_before:
                    tags_before[key] = tuple(sorted(store.customers[customer_id].tags))
                sends_of.setdefault(key, []).append(sent[event_id])
            for _ in range(copies):
                with lock:
                    web = next(web_cycle)
                for attempt in range(5):
                    # Like Shopify, retry a delivery that got no answer (a kept-alive connection
                    # the server closed meanwhile, an overloaded accept queue).
                    try:
                        response = session().post(
                            f"{web}/webhooks", data=body, headers=headers, timeout=30
                        )
                        break
                    except requests.ConnectionError:
                        with lock:
                            retried.append(event_id)
                        time.sleep(0.2 * (attempt + 1))
                else:
                    raise RuntimeError("no answer after 5 attempts")
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:100]}")
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")

    say(f"sending {total} webhooks at {args.rate}/s for {args.seconds:.0f} s")
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for n in range(total):
            due = begin + n / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(deliver, n)
    send_seconds = time.monotonic() - begin
    figures["webhooks_sent"] = len(sent)
    figures["webhook_send_errors"] = len(errors)
    figures["webhook_send_retries"] = len(retried)
    figures["webhook_rate_achieved_per_s"] = round(len(sent) / send_seconds, 1)
    if errors:
        say(f"send errors, first: {errors[0]}")

    say("waiting for every webhook to be processed")
    drain_begin = time.monotonic()

    def drained() -> bool:
        with cluster.ctx.sessions() as s:
            waiting = s.scalar(
                select(func.count()).where(WebhookEvent.status.in_(("queued", "processing")))
            )
        return not waiting

    wait_until(drained, args.drain_timeout, "the webhook inbox to drain", step=0.5)
    figures["drain_after_last_send_s"] = round(time.monotonic() - drain_begin, 1)
    for store in stores:
        cluster.wait_converged(store.domain, timeout=args.drain_timeout)

    with cluster.ctx.sessions() as s:
        rows = s.execute(
            select(
                WebhookEvent.event_id,
                WebhookEvent.status,
                WebhookEvent.received_at,
                WebhookEvent.processed_at,
            ).where(WebhookEvent.event_id.in_(list(sent)))
        ).all()
        order_rows = s.scalar(select(func.count()).select_from(Order))
    by_event: dict[str, list[Any]] = {}
    for row in rows:
        by_event.setdefault(row.event_id, []).append(row)
    store_orders = sum(len(store.orders) for store in stores)
    figures["lost"] = len(set(sent) - set(by_event)) + abs(store_orders - int(order_rows or 0))
    figures["duplicated"] = sum(len(v) - 1 for v in by_event.values())
    figures["orders_in_stores"] = store_orders
    figures["orders_in_db"] = int(order_rows or 0)
    figures["failed"] = sum(1 for v in by_event.values() if v[0].status == "failed")
    latencies = []
    for event_id, (row, *_) in by_event.items():
        if row.processed_at is not None:
            processed = row.processed_at
            if processed.tzinfo is None:
                processed = processed.replace(tzinfo=dt.UTC)
            latencies.append((processed.timestamp() - sent[event_id]) * 1000)
    figures["webhook_to_processed_ms"] = {
        "p50": round(percentile(latencies, 0.5)),
        "p95": round(percentile(latencies, 0.95)),
        "max": round(max(latencies)) if latencies else None,
    }
    say(f"webhook→processed: {summary(latencies)}")

    time.sleep(5)  # tag writes trail the webhooks' processing
    watching.set()
    watcher.join()
    # webhook → tags written: from the customer's latest webhook sent before the change (a
    # lower bound should two webhooks of one customer overlap; they are seconds apart here).
    tag_latencies = []
    for key, when in tag_changes:
        before = [t for t in sends_of.get(key, []) if t <= when]
        if before:
            tag_latencies.append((when - max(before)) * 1000)
    figures["tag_writes_observed"] = len(tag_latencies)
    figures["webhook_to_tags_ms"] = {
        "p50": round(percentile(tag_latencies, 0.5)) if tag_latencies else None,
        "p95": round(percentile(tag_latencies, 0.95)) if tag_latencies else None,
        "max": round(max(tag_latencies)) if tag_latencies else None,
    }
    say(f"webhook→tags written: {summary(tag_latencies)}")

    # Tags on the sandbox: how many customers whose tags changed since their first webhook.
    changed = sum(
        1
        for key, before in tags_before.items()
        if tuple(
            sorted(cluster.sandbox.store(key.split(":")[0]).customers[int(key.split(":")[1])].tags)
        )
        != before
    )
    figures["customers_with_tags_changed"] = changed

    # --- page API ---------------------------------------------------------------------------
    paths = ["/api/home", "/api/segments", "/api/session"]
    say(f"page API: {args.requests} requests at concurrency {args.concurrency}")
    api_times: list[float] = []
    api_errors: list[str] = []
    counter = itertools.count()

    def one(_: int) -> None:
        n = next(counter)
        store = stores[n % len(stores)]
        token = session_token(store.domain)
        url = f"{webs[n % len(webs)]}{paths[n % len(paths)]}"
        start = time.perf_counter()
        try:
            response = session().get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            ok = response.status_code == 200
        except requests.RequestException as exc:
            ok, response = False, None
            api_errors.append(str(exc))
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            api_times.append(elapsed)
            if not ok and response is not None:
                api_errors.append(f"{response.status_code} {url} {response.text[:80]}")

    api_begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(one, range(args.requests)))
    api_seconds = time.monotonic() - api_begin
    figures["api_requests"] = len(api_times)
    figures["api_errors"] = len(api_errors)
    figures["api_throughput_per_s"] = round(len(api_times) / api_seconds, 1)
    figures["api_ms"] = {
        "p50": round(percentile(api_times, 0.5)),
        "p95": round(percentile(api_times, 0.95)),
        "max": round(max(api_times)),
    }
    if api_errors:
        say(f"API errors, first: {api_errors[0]}")
    say(f"page API: {summary(api_times)}, {len(api_errors)} errors")


if __name__ == "__main__":
    raise SystemExit(main())
