"""Tag sync cost and speed against the Shopify sandbox on loopback.

Prints, for the small-diff path (aliased tagsAdd/tagsRemove) and the bulk path (staged JSONL +
bulkOperationRunMutation):

* points spent per 10,000 changed customers (``actualQueryCost`` summed by the Admin client),
* requests sent, wall time, and the restore-rate bound: the least time Shopify's leaky bucket
  allows for those points, ``max(0, points - bucket) / restore_rate``;

and for single-customer writes arriving at a steady rate (the webhook path's last step):
p50/p95 latency from "recompute done" to "tags written", spread over ``--shops`` shops (each
shop has its own cost bucket; ``--shops 1`` shows one shop's restore-rate bound).

Usage::

    .venv/bin/python benchmarks/tagging.py [--changes 2000] [--bulk-changes 10000]
        [--plan standard|advanced|plus] [--rate 50 --seconds 10 --shops 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from goldpan_sandbox.cost import PLANS
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Customer as SandboxCustomer
from goldpan_sandbox.store import Store
from shopify_app import db
from shopify_app.crypto import TokenCipher, generate_key
from shopify_app.db.models import Customer, Membership, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.settings import Settings
from shopify_app.shopify.client import AdminClient
from shopify_app.tagging.bulk import poll_bulk
from shopify_app.tagging.writes import sync_tags

API_KEY, API_SECRET = "bench-key", "bench-secret"


def _sandbox_process(conn: Connection, workdir: str, plan: str) -> None:
    """The sandbox in its own process (own GIL), driven by commands over a pipe."""
    sandbox = ShopifySandbox(API_KEY, API_SECRET, workdir=Path(workdir) / "sandbox")
    sandbox.start()
    chosen = PLANS[plan]
    sandbox.set_plan(chosen.maximum, chosen.restore_rate)
    conn.send(sandbox.shop_base("{shop}"))
    now = dt.datetime.now(dt.UTC)
    while True:
        command, *args = conn.recv()
        if command == "stop":
            sandbox.close()
            conn.send(None)
            return
        if command == "add_shop":
            domain, customers = args
            store = Store(domain)
            sandbox.add_shop(domain, store)
            for i in range(1, customers + 1):
                store.add_customer(
                    SandboxCustomer(i, None, None, None, None, now, now, tags=["vip"]),
                    notify=False,
                )
            conn.send(str(sandbox.install(domain)["access_token"]))
        elif command == "tagged":
            store = sandbox.store(args[0])
            conn.send(sum(1 for c in store.customers.values() if "goldpan-fans" in c.tags))


class Bench:
    """One SQLite database here; the sandbox in a child process so the two don't share a GIL."""

    def __init__(self, workdir: Path, plan: str) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(
            target=_sandbox_process, args=(child, str(workdir), plan), daemon=True
        )
        self.process.start()
        if not self.conn.poll(60):
            raise RuntimeError("the sandbox process did not start")
        base = self.conn.recv()
        self.plan = PLANS[plan]
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        db.upgrade(url)
        key = generate_key()
        settings = Settings.from_env(
            {
                "SHOPIFY_API_KEY": API_KEY,
                "SHOPIFY_API_SECRET": API_SECRET,
                "TOKEN_ENCRYPTION_KEY": key,
                "DATABASE_URL": url,
                "HUEY_PATH": str(workdir / "huey.sqlite3"),
                "SHOPIFY_BASE_URL": base,
                "LOG_JSON": "false",
            }
        )
        engine = db.make_engine(url)
        self.ctx = Context(settings, engine, db.make_sessionmaker(engine), TokenCipher((key,)))
        self._shops = 0

    def close(self) -> None:
        self.conn.send(("stop",))
        self.conn.recv()
        self.process.join(10)

    def tagged(self, shop_id: int) -> int:
        """Customers carrying the tag in the sandbox (checks the writes really happened)."""
        self.conn.send(("tagged", f"bench-{shop_id}.myshopify.com"))
        return int(self.conn.recv())

    def shop(self, customers: int, *, threshold: int | None = None) -> tuple[int, int]:
        """A shop whose ``customers`` each need one tag added; returns (shop id, segment id)."""
        self._shops += 1
        now = dt.datetime.now(dt.UTC)
        with self.ctx.sessions.begin() as session:
            shop = Shop(
                domain=f"pending-{self._shops}.myshopify.com",
                refresh_token=self.ctx.cipher.encrypt("unused"),
                refresh_token_expires_at=now + dt.timedelta(days=90),
                installed_at=now,
                settings={"tag_bulk_threshold": threshold} if threshold else {},
            )
            session.add(shop)
            session.flush()
            shop.domain = f"bench-{shop.id}.myshopify.com"
            segment = Segment(shop_id=shop.id, handle="fans", name="Fans", tag_sync=True)
            session.add(segment)
            session.flush()
            shop_id, segment_id, domain = shop.id, segment.id, shop.domain
            ids = range(1, customers + 1)
            session.execute(
                insert(Customer), [{"shop_id": shop_id, "id": i, "tags": ["vip"]} for i in ids]
            )
            session.execute(
                insert(Membership),
                [{"shop_id": shop_id, "segment_id": segment_id, "customer_id": i} for i in ids],
            )
        self.conn.send(("add_shop", domain, customers))
        token = self.conn.recv()
        with self.ctx.sessions.begin() as session:
            row = session.get(Shop, shop_id)
            assert row is not None
            row.access_token = self.ctx.cipher.encrypt(token)
            row.access_token_expires_at = now + dt.timedelta(hours=1)
        return shop_id, segment_id

    def bound(self, points: float) -> float:
        return max(0.0, points - self.plan.maximum) / self.plan.restore_rate


def small_path(bench: Bench, changes: int) -> dict[str, Any]:
    shop_id, _ = bench.shop(changes, threshold=10**9)
    client = AdminClient(bench.ctx, shop_id)
    started = time.monotonic()
    report = sync_tags(bench.ctx, shop_id, client=client)
    wall = time.monotonic() - started
    assert report.changed == changes and bench.tagged(shop_id) == changes, report.summary()
    again = sync_tags(bench.ctx, shop_id, client=client)
    return {
        "changes": changes,
        "requests": report.requests,
        "points": client.cost_spent,
        "points_per_10k": client.cost_spent * 10_000 / changes,
        "wall_s": wall,
        "bound_s": bench.bound(client.cost_spent),
        "second_run_requests": again.requests,
    }


def bulk_path(bench: Bench, changes: int) -> dict[str, Any]:
    shop_id, _ = bench.shop(changes)
    client = AdminClient(bench.ctx, shop_id)
    started = time.monotonic()
    report = sync_tags(bench.ctx, shop_id, client=client)
    polls = 0
    while poll_bulk(bench.ctx, shop_id, client=client):
        polls += 1
        time.sleep(0.1)
    wall = time.monotonic() - started
    assert bench.tagged(shop_id) == changes
    again = sync_tags(bench.ctx, shop_id, client=client)
    return {
        "changes": changes,
        "bulk_operations": len(report.bulk_operations),
        "polls": polls,
        "points": client.cost_spent,
        "points_per_10k": client.cost_spent * 10_000 / changes,
        "wall_s": wall,
        "bound_s": bench.bound(client.cost_spent),
        "second_run_requests": again.requests,
    }


def steady_singles(bench: Bench, rate: float, seconds: float, shops: int) -> dict[str, Any]:
    """One changed customer every 1/rate s, round-robin over ``shops`` shops, each synced alone
    (as a webhook's recompute does). Each shop's bucket restores on its own: 50 writes/s across
    20 shops is 2.5/s (25 points/s) per shop, well inside Standard's 100/s, while 50/s into one
    Standard shop (500 points/s) is bounded by the restore rate once the bucket is empty."""
    total = int(rate * seconds)
    per_shop = -(-total // shops)
    shop_ids = [bench.shop(per_shop, threshold=10**9)[0] for _ in range(shops)]
    local = threading.local()
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int, due: float) -> None:
        shop_id, customer_id = shop_ids[i % shops], i // shops + 1
        clients = getattr(local, "clients", None)
        if clients is None:
            clients = local.clients = {}
        if shop_id not in clients:
            clients[shop_id] = AdminClient(bench.ctx, shop_id)
        sync_tags(bench.ctx, shop_id, [customer_id], client=clients[shop_id])
        with lock:
            latencies.append(time.monotonic() - due)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i, due)
    wall = time.monotonic() - start
    assert sum(bench.tagged(shop_id) for shop_id in shop_ids) == total
    latencies.sort()
    return {
        "writes": total,
        "shops": shops,
        "rate_per_s": rate,
        "wall_s": wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "max_s": latencies[-1],
        "points": total * 10,
        "bound_s_per_shop": bench.bound(per_shop * 10),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000, help="small-path changed customers")
    parser.add_argument("--bulk-changes", type=int, default=10_000)
    parser.add_argument("--plan", choices=sorted(PLANS), default="standard")
    parser.add_argument("--rate", type=float, default=50.0, help="single writes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--shops", type=int, default=20, help="shops the single writes are spread over"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), args.plan)
        try:
            plan = bench.plan
            print(
                f"sandbox, plan {args.plan}: bucket {plan.maximum:.0f}, "
                f"restore {plan.restore_rate:.0f}/s"
            )
            for name, result in (
                ("small-diff", small_path(bench, args.changes)),
                ("bulk", bulk_path(bench, args.bulk_changes)),
                ("steady singles", steady_singles(bench, args.rate, args.seconds, args.shops)),
            ):
                figures = ", ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in result.items()
                )
                print(f"{name}: {figures}")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
