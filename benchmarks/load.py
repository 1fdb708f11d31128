"""Load test on loopback: a real cluster (web processes + workers) against the Shopify sandbox.

1. Webhooks: ``--rate`` signed deliveries per second for ``--seconds`` across ``--shops``
   installed shops (round-robin over shops and over the web processes), ``--duplicates`` of
   them delivered twice (Shopify delivers at least once). The traffic is a store's: orders,
   ``--new-share`` of them from first-time customers (a ``customers/create`` delivery, then the
   ``orders/create``; both count towards the rate), the rest repeat purchases by existing
   customers (a customer orders again only after ``--cooldown`` seconds, so each tag change is
   attributed to the webhook that caused it). Every segment has tag sync on; most orders change
   no tag, a first or a milestone order does.

   Measured on the sandbox itself (every ``tagsAdd``/``tagsRemove`` it executes is observed):
   webhook→tags-written latency (send → the customer's tags changed on the sandbox; p50/p95/max),
   tag mutations executed, duplicated writes (a mutation that changed nothing: Goldpan writes
   only differences, so each is a write made twice) and customers whose Goldpan tags differ
   from their memberships once everything drained. "Lost" counts deliveries without an inbox
   row or not processed and orders missing from the database; "duplicated" counts second inbox
   rows, second order rows and duplicated tag writes. Also webhook→processed (send → the
   inbox row's ``processed_at``) and the CPU milliseconds each process used per webhook
   (with ``--database-url``/``--redis-url`` also the whole PostgreSQL and Redis servers', when
   they run on this machine: other work on them meanwhile counts too).
2. Page API: ``--requests`` GETs at ``--concurrency`` against ``/api/home``, ``/api/segments`` and
   ``/api/session`` with session tokens signed with the app secret; p50/p95/max and errors.

Bounded and loopback only. The reference run (issues #6 and #9) is the default: 50 webhooks/s for
60 s across 20 shops, 10,000 page-API requests at 50 concurrent::

    .venv/bin/python benchmarks/load.py \\
        --database-url postgresql+psycopg://goldpan@127.0.0.1:55432/goldpan_test \\
        --redis-url redis://127.0.0.1:56379/0
    .venv/bin/python benchmarks/load.py                       # SQLite + huey's SQLite queue
    .venv/bin/python benchmarks/load.py --seconds 15 --requests 1000   # a quick look

``--database-url`` names an existing PostgreSQL database; a throwaway one is created next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
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


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5)),
        "p95": round(percentile(values, 0.95)),
        "max": round(max(values)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50, help="webhooks per second")
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--customers", type=int, default=100, help="per generated shop")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share sent twice")
    parser.add_argument(
        "--new-share", type=float, default=0.1, help="share of orders from first-time customers"
    )
    parser.add_argument(
        "--cooldown", type=float, default=20, help="seconds before a customer orders again"
    )
    parser.add_argument("--seed", type=int, default=7, help="traffic's random seed")
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
    parser.add_argument(
        "--gather-ms",
        type=int,
        default=None,
        help="the workers' WEBHOOK_GATHER_MS (default: the app's default, or the environment's)",
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

    if args.gather_ms is not None:
        os.environ["WEBHOOK_GATHER_MS"] = str(args.gather_ms)

    from shopify_app import db
    from shopify_app.crypto import generate_key
    from shopify_app.settings import Settings
    from tests.conftest import fresh_database

    figures: dict[str, Any] = {
        "database": "postgresql" if args.database_url else "sqlite",
        "queue": "redis" if args.redis_url else "sqlite",
        "webs": args.webs,
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "webhook_gather_ms": int(os.environ.get("WEBHOOK_GATHER_MS") or Settings.webhook_gather_ms),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "traffic": (
            f"{args.rate:g} webhooks/s for {args.seconds:g} s across {args.shops} shops of "
            f"{args.customers} customers; {args.new_share:.0%} of orders from new customers "
            f"(customers/create + orders/create), the rest repeat orders; "
            f"{args.duplicates:.0%} delivered twice; tag sync on for every segment"
        ),
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
    ok = figures.get("lost") == 0 and figures.get("duplicated") == 0
    return 0 if ok and figures.get("tags_not_converged") == 0 else 1


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


SERVERS = {"postgresql (server)": "postgres", "redis (server)": "redis-server"}
"""Servers whose CPU the meter also reads (when the run uses them), by the start of their
processes' command line (0 when they run on another machine)."""


class CpuMeter:
    """CPU seconds (user + system) used by processes, read from ``/proc``, and the machine's."""

    def __init__(self, pids: dict[str, int], servers: dict[str, str] | None = None) -> None:
        self.pids = pids
        self.servers = servers or {}
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._read()

    def _proc(self, pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self.tick

    def _machine(self) -> tuple[float, float]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]
        return (sum(values) - idle) / self.tick, sum(values) / self.tick

    def _server(self, command: str) -> float:
        """CPU of every process whose command starts with ``command`` (a server and its
        children), plus what its ended children used (the parent's ``cutime``/``cstime``): a
        PostgreSQL backend that exits mid-run still counts. The whole server: other work on
        it meanwhile counts too."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                raw = stat.read_text()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            program = cmdline.split(b"\0")[0].decode(errors="replace")
            if not os.path.basename(program).startswith(command):
                continue
            fields = raw.rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / self.tick
        return total

    def _read(self) -> dict[str, Any]:
        return {
            "procs": {name: self._proc(pid) for name, pid in self.pids.items()},
            "servers": {name: self._server(cmd) for name, cmd in self.servers.items()},
            "machine": self._machine(),
        }

    def used(self) -> dict[str, Any]:
        end = self._read()
        procs = {n: end["procs"][n] - self.start["procs"][n] for n in self.pids}
        for name in self.servers:
            procs[name] = end["servers"][name] - self.start["servers"][name]
        busy = end["machine"][0] - self.start["machine"][0]
        total = end["machine"][1] - self.start["machine"][1]
        return {"procs": procs, "machine_busy_share": busy / total if total else 0.0}


class TagObserver:
    """Every ``tagsAdd``/``tagsRemove`` the sandbox executes, with the tags before and after.

    Wraps the two mutation fields' resolvers in the sandbox's schema (this process serves the
    sandbox): an observer only, the resolvers run unchanged.
    """

    def __init__(self) -> None:
        from goldpan_sandbox import admin_api
        from goldpan_sandbox.store import parse_gid

        self.lock = threading.Lock()
        self.writes: list[tuple[float, str, int, str, bool]] = []  # when, shop, customer, field
        mutation = admin_api.schema().mutation_type
        assert mutation is not None
        for name in ("tagsAdd", "tagsRemove"):
            field = mutation.fields[name]
            inner = field.resolve
            assert inner is not None

            def observed(
                obj: Any, info: Any, _inner: Any = inner, _name: str = name, **kw: Any
            ) -> Any:
                store = info.context.store
                try:
                    number = parse_gid(kw["id"])[1]
                except (KeyError, ValueError):
                    return _inner(obj, info, **kw)
                customer = store.customers.get(number)
                before = list(customer.tags) if customer is not None else None
                result = _inner(obj, info, **kw)
                customer = store.customers.get(number)
                after = list(customer.tags) if customer is not None else None
                with self.lock:
                    self.writes.append((time.time(), store.domain, number, _name, before != after))
                return result

            field.resolve = observed


def run(cluster: Any, args: argparse.Namespace, figures: dict[str, Any]) -> None:
    from sqlalchemy import func, select

    from goldpan_sandbox import control, delivery
    from shopify_app.db.models import Order, Shop, WebhookEvent
    from shopify_app.shopify import auth
    from shopify_app.states import WebhookStatus
    from shopify_app.tagging import ledger
    from shopify_app.tagging.state import ShopTags
    from shopify_app.tagging.tags import tag_key
    from shopify_app.tagging.writes import sync_tags
    from tests.fixtures_auth import session_token
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
        # As a merchant would in the page: tag customers with every segment they are in, and
        # let the initial tag sync finish before the measured traffic starts.
        from sqlalchemy import update

        from shopify_app.db.models import Segment

        with cluster.ctx.sessions.begin() as s:
            s.execute(update(Segment).values(tag_sync=True))
            shop_ids = list(s.scalars(select(Shop.id)))
        for shop_id in shop_ids:
            sync_tags(cluster.ctx, shop_id)
        # Shopify echoes every tag write as customers/update: let those arrive and be handled
        # before the measured traffic starts.
        cluster.sandbox.delivery.drain(args.drain_timeout)
        for store in stores:
            cluster.wait_converged(store.domain, timeout=args.drain_timeout)
        say("initial tag sync written and its customers/update echoes handled")

    # --- webhooks ---------------------------------------------------------------------------
    cluster.sandbox.app_url = None  # we deliver the webhooks ourselves
    observer = TagObserver()
    rng = random.Random(args.seed)
    total = int(args.rate * args.seconds)
    sent: dict[str, float] = {}  # event id -> wall-clock send time
    sends_of: dict[tuple[str, int], list[float]] = {}  # (shop, customer) -> order send times
    errors: list[str] = []
    retried: list[str] = []
    lock = threading.Lock()
    web_cycle = itertools.cycle(webs)
    http = threading.local()
    last_order: dict[tuple[str, int], float] = {}
    new_customers = itertools.count(1)

    def session() -> requests.Session:
        if not hasattr(http, "s"):
            http.s = requests.Session()
        s: requests.Session = http.s
        return s

    def post(topic: str, domain: str, payload: dict[str, Any], copies: int) -> float:
        body = json.dumps(payload).encode()
        event_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": domain,
            "X-Shopify-Hmac-Sha256": auth.webhook_hmac(cluster.settings.api_secret, body),
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Triggered-At": dt.datetime.now(dt.UTC).isoformat(),
        }
        when = time.time()
        with lock:
            sent[event_id] = when
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
        return when

    def pick(store: Any, now: float) -> tuple[dict[str, Any], bool]:
        """The next order's spec: a first-time customer, or one who may order again now."""
        with lock:
            if rng.random() < args.new_share:
                n = next(new_customers)
                return {"email": f"load-{n}-{uuid.uuid4().hex[:6]}@example.com"}, True
            ready = [
                c
                for c in store.customers
                if now - last_order.get((store.domain, c), -1e9) >= args.cooldown
            ]
            customer_id = rng.choice(ready or list(store.customers))
            last_order[(store.domain, customer_id)] = now
            return {"customer_id": customer_id}, False

    def deliver(n: int, copies: int) -> None:
        store = stores[n % len(stores)]
        try:
            spec, new = pick(store, time.time())
            if new:
                # Shopify creates the customer first, and says so, then the order.
                order = control.place_order(cluster.sandbox, store.domain, spec)
                customer = store.customers[order.customer_id]
                with lock:
                    last_order[(store.domain, customer.id)] = time.time()
                post(
                    "customers/create",
                    store.domain,
                    delivery.customer_payload(store, customer),
                    copies,
                )
            else:
                order = control.place_order(cluster.sandbox, store.domain, spec)
            when = post("orders/create", store.domain, delivery.order_payload(store, order), copies)
            with lock:
                sends_of.setdefault((store.domain, order.customer_id), []).append(when)
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")

    # A new customer's two deliveries count as two of the rate's webhooks.
    orders = int(total / (1 + args.new_share))
    pids = {name: proc.pid for name, proc in cluster.procs.items()}
    pids["load+sandbox"] = os.getpid()
    servers = {
        name: command
        for name, command in SERVERS.items()
        if (args.database_url if command == "postgres" else args.redis_url)
    }
    meter = CpuMeter(pids, servers)
    send_start = dt.datetime.now(dt.UTC)
    say(f"sending {total} webhooks ({orders} orders) at {args.rate}/s for {args.seconds:.0f} s")
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for n in range(orders):
            due = begin + n * (1 + args.new_share) / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            copies = 2 if (n * 7919 % 1000) < args.duplicates * 1000 else 1
            pool.submit(deliver, n, copies)
    send_seconds = time.monotonic() - begin
    # The CPU per webhook depends on the machine's load: a starved worker finds more of a shop's
    # deliveries queued and handles them as one group (one recompute, one tag request).
    figures["loadavg_1min_after_send"] = round(os.getloadavg()[0], 2)
    figures["webhooks_sent"] = len(sent)
    figures["orders_placed"] = orders
    figures["webhook_send_errors"] = len(errors)
    figures["webhook_send_retries"] = len(retried)
    figures["webhook_rate_achieved_per_s"] = round(len(sent) / send_seconds, 1)
    if errors:
        say(f"send errors, first: {errors[0]}")

    say("waiting for every webhook to be processed")
    drain_begin = time.monotonic()

    def drained() -> bool:
        with cluster.ctx.sessions() as s:
            busy = (WebhookStatus.QUEUED, WebhookStatus.PROCESSING)
            waiting = s.scalar(select(func.count()).where(WebhookEvent.status.in_(busy)))
        return not waiting

    wait_until(drained, args.drain_timeout, "the webhook inbox to drain", step=0.5)
    figures["drain_after_last_send_s"] = round(time.monotonic() - drain_begin, 1)
    cpu = meter.used()
    figures["cpu_ms_per_webhook"] = {
        name: round(seconds * 1000 / max(1, len(sent)), 1) for name, seconds in cpu["procs"].items()
    }
    figures["machine_cpu_busy_share"] = round(cpu["machine_busy_share"], 2)
    # The worker finishes a group of deliveries with one processed_at per outcome: CPU per group
    # compares code at different loads (a starved worker's groups are larger, see above).
    with cluster.ctx.sessions() as s:
        handled, groups = s.execute(
            select(func.count(), func.count(func.distinct(WebhookEvent.processed_at))).where(
                WebhookEvent.received_at >= send_start, WebhookEvent.processed_at.is_not(None)
            )
        ).one()
    workers = sum(seconds for name, seconds in cpu["procs"].items() if name.startswith("worker"))
    figures["deliveries_handled"] = int(handled)
    figures["delivery_groups"] = int(groups)
    figures["worker_cpu_ms_per_group"] = round(workers * 1000 / max(1, groups), 1)
    for store in stores:
        cluster.wait_converged(store.domain, timeout=args.drain_timeout)
    time.sleep(2)  # a tag write may trail its webhook's processed_at

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
    unprocessed = sum(1 for v in by_event.values() if v[0].processed_at is None)
    figures["lost"] = (
        len(set(sent) - set(by_event)) + unprocessed + abs(store_orders - int(order_rows or 0))
    )
    figures["orders_in_stores"] = store_orders
    figures["orders_in_db"] = int(order_rows or 0)
    figures["failed"] = sum(1 for v in by_event.values() if v[0].status == WebhookStatus.FAILED)
    latencies = []
    for event_id, (row, *_) in by_event.items():
        if row.processed_at is not None:
            processed = row.processed_at
            if processed.tzinfo is None:
                processed = processed.replace(tzinfo=dt.UTC)
            latencies.append((processed.timestamp() - sent[event_id]) * 1000)
    figures["webhook_to_processed_ms"] = spread(latencies)
    say(f"webhook→processed: {summary(latencies)}")

    # webhook → tags written, on the sandbox: an order's tag writes are those of its customer
    # after it was sent and before their next order (at least --cooldown s later); the latency
    # is to the last of them (the customer's tags are then as wanted).
    with observer.lock:
        writes = list(observer.writes)
    changed_at: dict[tuple[str, int], list[float]] = {}
    for when, domain, customer_id, _name, changed in writes:
        if changed:
            changed_at.setdefault((domain, customer_id), []).append(when)
    tag_latencies = []
    late = 0
    for key, sends in sends_of.items():
        sends = sorted(sends)
        for i, sent_at in enumerate(sends):
            until = sends[i + 1] if i + 1 < len(sends) else float("inf")
            hits = [t for t in changed_at.get(key, []) if sent_at <= t < until]
            if hits:
                tag_latencies.append((max(hits) - sent_at) * 1000)
        late += sum(1 for t in changed_at.get(key, []) if t < sends[0])
    figures["orders_that_changed_tags"] = len(tag_latencies)
    figures["webhook_to_tags_written_ms"] = spread(tag_latencies)
    say(f"webhook→tags written: {summary(tag_latencies)}")
    figures["tag_mutations"] = len(writes)
    duplicated_writes = sum(1 for w in writes if not w[4])
    figures["tag_mutations_duplicated"] = duplicated_writes
    figures["tag_writes_before_any_order"] = late

    # The end state: every customer's Goldpan tags on the sandbox are exactly their memberships'.
    off = 0
    with cluster.ctx.sessions() as s:
        for store in stores:
            shop_id = s.scalar(select(Shop.id).where(Shop.domain == store.domain))
            state = ShopTags.load(s, int(shop_id))
            wanted = state.wanted(s, None)
            written = ledger.owned(s, int(shop_id), None)
            for customer_id, customer in list(store.customers.items()):
                ours = written.get(customer_id, {})
                have = {tag_key(t) for t in customer.tags if tag_key(t) in ours}
                if have != {tag_key(t) for t in wanted.get(customer_id, set())}:
                    off += 1
    figures["tags_not_converged"] = off
    figures["duplicated"] = (
        sum(len(v) - 1 for v in by_event.values())
        + max(0, int(order_rows or 0) - store_orders)
        + duplicated_writes
    )
    say(
        f"lost {figures['lost']}, duplicated {figures['duplicated']} "
        f"({duplicated_writes} tag writes), tags not converged {off}; "
        f"CPU ms per webhook {figures['cpu_ms_per_webhook']} "
        f"(load average {figures['loadavg_1min_after_send']} after sending); "
        f"{handled} deliveries handled in {groups} groups, worker CPU "
        f"{figures['worker_cpu_ms_per_group']} ms per group"
    )

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
