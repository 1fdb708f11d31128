"""API cost of writing Goldpan's scores to customer metafields, against the sandbox on loopback.

Prints, per 10,000 customers with orders, the points (``actualQueryCost`` summed by the Admin
client) and requests of:

* the first run through ``metafieldsSet`` calls (25 metafields, i.e. 3 customers, a call),
* the first run as one bulk mutation (above the bulk threshold),
* the same day again (nothing changed, so nothing is sent), and a quiet day: the next day
  with no new orders, where only customers whose rounded scores moved (a day older) are sent,

with the restore-rate bound on the Standard plan: ``max(0, points - 2000) / 100`` seconds.
The call path runs on ``--call-customers`` (default 1,000) and is scaled to 10,000; the bulk
path runs on ``--customers`` (default 10,000). The shop is synthetic (1–4 orders per customer
over two years); the quiet day depends on how many customers cross a rounding step per day.

Usage::

    .venv/bin/python benchmarks/actions.py [--customers 10000] [--call-customers 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from goldpan_sandbox.cost import PLANS
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Customer as SandboxCustomer
from goldpan_sandbox.store import Store
from shopify_app import db
from shopify_app.actions import scores
from shopify_app.crypto import TokenCipher, generate_key
from shopify_app.db.models import Customer, Order, ScoreSettings, Shop
from shopify_app.jobs import Context
from shopify_app.segments.recompute import recompute_shop_now
from shopify_app.settings import Settings
from shopify_app.shopify.client import AdminClient

API_KEY, API_SECRET = "bench-key", "bench-secret"
STANDARD = PLANS["standard"]


class Bench:
    """A SQLite database and the sandbox (on the Plus plan, so the run is not throttled)."""

    def __init__(self, workdir: Path) -> None:
        self.sandbox = ShopifySandbox(API_KEY, API_SECRET, workdir=workdir / "sandbox")
        self.sandbox.start()
        plus = PLANS["plus"]
        self.sandbox.set_plan(plus.maximum, plus.restore_rate)
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
                "SHOPIFY_BASE_URL": self.sandbox.shop_base("{shop}"),
                "LOG_JSON": "false",
            }
        )
        engine = db.make_engine(url)
        self.ctx = Context(settings, engine, db.make_sessionmaker(engine), TokenCipher((key,)))
        self._shops = 0

    def shop(self, customers: int, seed: int) -> int:
        """A shop of ``customers`` customers with 1–4 orders each over two years, recomputed."""
        self._shops += 1
        rng = random.Random(seed)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        domain = f"bench-actions-{self._shops}.myshopify.com"
        store = Store(domain)
        self.sandbox.add_shop(domain, store)
        for i in range(1, customers + 1):
            store.add_customer(SandboxCustomer(i, None, None, None, None, now, now), notify=False)
        token = str(self.sandbox.install(domain)["access_token"])
        orders: list[dict[str, Any]] = []
        for i in range(1, customers + 1):
            for _ in range(rng.randint(1, 4)):
                placed = now - dt.timedelta(days=rng.randint(1, 730))
                orders.append(
                    {
                        "id": len(orders) + 1,
                        "customer_id": i,
                        "created_at": placed,
                        "processed_at": placed,
                        "updated_at": placed,
                        "total": round(rng.uniform(15, 250), 2),
                        "currency": "USD",
                    }
                )
        with self.ctx.sessions.begin() as session:
            shop = Shop(
                domain=domain,
                access_token=self.ctx.cipher.encrypt(token),
                access_token_expires_at=now + dt.timedelta(hours=1),
                refresh_token=self.ctx.cipher.encrypt("unused"),
                refresh_token_expires_at=now + dt.timedelta(days=90),
                installed_at=now,
            )
            session.add(shop)
            session.flush()
            shop_id = shop.id
            session.execute(
                insert(Customer),
                [{"shop_id": shop_id, "id": i} for i in range(1, customers + 1)],
            )
            session.execute(insert(Order), [{"shop_id": shop_id, **o} for o in orders])
            session.add(ScoreSettings(shop_id=shop_id, enabled=True))
        recompute_shop_now(self.ctx, shop_id)
        # Definitions are created once per shop: not part of the per-customer figures.
        scores.ensure_definitions(self.ctx, shop_id, AdminClient(self.ctx, shop_id))
        return shop_id

    def close(self) -> None:
        self.sandbox.close()


def _run(bench: Bench, shop_id: int, days_later: int = 0) -> dict[str, Any]:
    client = AdminClient(bench.ctx, shop_id)
    started = time.monotonic()
    as_of = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days_later)
    report = scores.write_scores_now(bench.ctx, shop_id, client=client, as_of=as_of)
    return {
        "customers": report.customers,
        "unchanged": report.unchanged,
        "requests": report.requests,
        "bulk": len(report.bulk_operations),
        "points": client.cost_spent,
        "errors": len(report.errors),
        "wall_s": time.monotonic() - started,
    }


def _per_10k(run: dict[str, Any], customers: int) -> str:
    scale = 10_000 / customers
    points = run["points"] * scale
    bound = max(0.0, points - STANDARD.maximum) / STANDARD.restore_rate
    return (
        f"{points:>9,.0f} points {run['requests'] * scale:>7,.0f} requests "
        f"(Standard-plan bound {bound:,.0f} s; measured on {customers:,}: "
        f"{run['customers']:,} written, {run['unchanged']:,} unchanged, "
        f"{run['bulk']} bulk, {run['errors']} errors, {run['wall_s']:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--call-customers", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            threshold = scores.BULK_THRESHOLD
            scores.BULK_THRESHOLD = 10**9
            calls_shop = bench.shop(args.call_customers, seed=1)
            first_calls = _run(bench, calls_shop)
            quiet_calls = _run(bench, calls_shop)
            next_calls = _run(bench, calls_shop, days_later=1)
            scores.BULK_THRESHOLD = threshold
            bulk_shop = bench.shop(args.customers, seed=2)
            first_bulk = _run(bench, bulk_shop)
            quiet_bulk = _run(bench, bulk_shop)
            next_bulk = _run(bench, bulk_shop, days_later=1)
        finally:
            bench.close()
    print("Score metafields (7 per customer), per 10,000 customers with orders:")
    print(f"  first run, metafieldsSet calls: {_per_10k(first_calls, args.call_customers)}")
    print(f"  same day again (no change):     {_per_10k(quiet_calls, args.call_customers)}")
    print(f"  next day, no new orders:        {_per_10k(next_calls, args.call_customers)}")
    print(f"  first run, bulk mutation:       {_per_10k(first_bulk, args.customers)}")
    print(f"  same day again (no change):     {_per_10k(quiet_bulk, args.customers)}")
    print(f"  next day, no new orders:        {_per_10k(next_bulk, args.customers)}")


if __name__ == "__main__":
    main()
