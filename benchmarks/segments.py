"""Benchmark: full segment recompute on 300,000 customers / 1,000,000 orders, and one customer.

Run: ``.venv/bin/python benchmarks/segments.py [--customers N] [--orders M]`` (in memory), or
with ``--db [--db-url URL]`` through a database: load, evaluate and write timed separately.
Prints figures; asserts nothing. The dataset is synthetic (seeded): a mix of one-time buyers,
regulars and bulk buyers over three years, with line items over 200 products.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import numpy as np

from shopify_app.segments import library, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import CUSTOMER_FIELDS, Dataset, day_number
from shopify_app.segments.library.context import ShopStats
from shopify_app.segments.library.stats import compute_stats

BENCH_DOMAIN = "bench.myshopify.com"


def synthetic(
    customers: int, orders: int, seed: int = 1, as_of: dt.date = dt.date(2026, 11, 1)
) -> Dataset:
    """A seeded synthetic store."""
    rng = np.random.default_rng(seed)
    end = day_number(as_of)
    start = end - 3 * 365
    # Orders per customer: geometric-ish, scaled to the wanted total.
    weights = rng.gamma(0.6, 1.0, customers)
    counts = 1 + rng.poisson(weights * max(orders - customers, 0) / weights.sum())
    counts = counts[:customers]
    total = int(counts.sum())
    cust = np.repeat(np.arange(customers, dtype=np.int64), counts)
    first = rng.integers(start, end, customers)
    span = np.maximum(end - first, 1)
    day = first[cust] + (rng.random(total) * span[cust]).astype(np.int64)
    day[np.r_[0, np.cumsum(counts)[:-1]]] = first
    perm = np.lexsort((day, cust))
    cust, day = cust[perm], day[perm]
    amount = np.round(rng.gamma(2.0, 30.0, total), 2)
    lines_per = 1 + rng.poisson(1.0, total)
    n_lines = int(lines_per.sum())
    line_order = np.repeat(np.arange(total, dtype=np.int64), lines_per)
    product = rng.zipf(1.5, n_lines) % 200 + 1
    qty = np.where(
        rng.random(n_lines) < 0.01, rng.integers(36, 120, n_lines), rng.integers(1, 4, n_lines)
    )
    countries = np.array(["US", "CA", "GB", "DE", "FR"])
    provinces = np.array(["CA", "NY", "TX", "ON", "", "WA"])
    info: dict[str, list[str | None]] = {name: [None] * customers for name in CUSTOMER_FIELDS}
    info["email"] = [
        f"c{i}@{'gmail.com' if i % 7 else f'firm{i % 500}.com'}" for i in range(customers)
    ]
    info["country_code"] = list(countries[rng.integers(0, 5, customers)])
    info["province_code"] = list(provinces[rng.integers(0, 6, customers)])
    info["email_marketing_state"] = [
        "SUBSCRIBED" if i % 3 else "NOT_SUBSCRIBED" for i in range(customers)
    ]
    return Dataset(
        customer_ids=np.arange(1, customers + 1, dtype=np.int64),
        info=info,
        order_customer=cust,
        order_day=day,
        order_total=amount,
        order_ids=np.arange(1, total + 1, dtype=np.int64),
        order_discount=["WELCOME10" if i % 11 == 0 else "" for i in range(total)],
        order_company=[None] * total,
        line_order=line_order,
        line_product=product.astype(np.int64),
        line_quantity=qty.astype(np.int64),
        product_titles={p: f"Product {p}" for p in range(1, 201)}
        | {1: "Dinner Napkins", 2: "Cocktail Napkins"},
    )


def load_into_database(url: str, ds: Dataset) -> tuple[Any, int]:
    """Migrate a fresh database at ``url`` and bulk-insert ``ds`` as one shop's rows."""
    from sqlalchemy import insert, select

    from shopify_app import db
    from shopify_app.crypto import TokenCipher, generate_key
    from shopify_app.db.models import Customer, LineItem, Order, Shop
    from shopify_app.jobs import Context
    from shopify_app.settings import Settings

    db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    key = generate_key()
    settings = Settings.from_env(
        {
            "SHOPIFY_API_KEY": "k",
            "SHOPIFY_API_SECRET": "s",
            "TOKEN_ENCRYPTION_KEY": key,
            "SHOPIFY_APP_URL": "https://bench.test",
            "DATABASE_URL": url,
        }
    )
    ctx = Context(settings=settings, engine=engine, sessions=sessions, cipher=TokenCipher((key,)))
    epoch = dt.datetime(1970, 1, 1, 12, tzinfo=dt.UTC)
    with sessions.begin() as session:
        # A database filled by an earlier run is reused: generating 1M orders takes minutes.
        existing = session.scalar(select(Shop.id).where(Shop.domain == BENCH_DOMAIN))
        if existing is not None:
            return ctx, int(existing)
        shop = Shop(domain=BENCH_DOMAIN, access_token="x", settings={})
        session.add(shop)
        session.flush()
        shop_id = shop.id
    chunk = 50_000
    with sessions.begin() as session:
        rows = [
            {
                "shop_id": shop_id,
                "id": int(cid),
                "email": ds.info["email"][i],
                "email_marketing_state": ds.info["email_marketing_state"][i],
                "country_code": ds.info["country_code"][i],
                "province_code": ds.info["province_code"][i],
            }
            for i, cid in enumerate(ds.customer_ids)
        ]
        for start in range(0, len(rows), chunk):
            session.execute(insert(Customer), rows[start : start + chunk])
        when = [epoch + dt.timedelta(days=int(d)) for d in ds.order_day]
        orders = [
            {
                "shop_id": shop_id,
                "id": int(ds.order_ids[i]),
                "customer_id": int(ds.customer_ids[ds.order_customer[i]]),
                "created_at": when[i],
                "processed_at": when[i],
                "total": float(ds.order_total[i]),
                "discount_codes": [ds.order_discount[i]] if ds.order_discount[i] else [],
            }
            for i in range(ds.n_orders)
        ]
        for start in range(0, len(orders), chunk):
            session.execute(insert(Order), orders[start : start + chunk])
        lines = [
            {
                "shop_id": shop_id,
                "id": i + 1,
                "order_id": int(ds.order_ids[ds.line_order[i]]),
                "product_id": int(ds.line_product[i]),
                "title": ds.product_titles[int(ds.line_product[i])],
                "quantity": int(ds.line_quantity[i]),
            }
            for i in range(len(ds.line_order))
        ]
        for start in range(0, len(lines), chunk):
            session.execute(insert(LineItem), lines[start : start + chunk])
    return ctx, shop_id


def server_cpu(ctx: Any) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends serving this database (local only).

    Read from /proc for every backend connected to the benchmark's database (only this
    process uses it); ``None`` on SQLite, or when the server is not on this machine.
    """
    import os

    if ctx.engine.dialect.name != "postgresql":
        return None
    with ctx.engine.connect() as conn:
        pids = list(
            conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ).scalars()
        )
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def forget_memberships(ctx: Any, shop_id: int) -> None:
    """Delete the shop's memberships (vacuumed away on PostgreSQL), as before a first run."""
    from sqlalchemy import delete
    from sqlalchemy.exc import DBAPIError

    from shopify_app.db.models import Membership

    with ctx.sessions.begin() as session:
        session.execute(delete(Membership).where(Membership.shop_id == shop_id))
    if ctx.engine.dialect.name == "postgresql":
        with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE memberships")
            # The delete (or the data just generated) left a gigabyte of WAL and dirty pages:
            # flush them now, not in the middle of run #1 (needs the right to checkpoint).
            try:
                conn.exec_driver_sql("CHECKPOINT")
            except DBAPIError as exc:  # a benchmark nicety, not a requirement
                print(f"(no CHECKPOINT before run #1: {exc.orig})")


def database_benchmark(customers: int, orders: int, url: str | None) -> None:
    """Full and incremental recompute through the database, phase by phase.

    Phases of a full recompute: load (dataset from the database), evaluate (features, model
    fits, every segment with reasons), write (membership diff, counts, history, commit), then
    metrics (the page's extras) and settings. CPU seconds are this process's (SQLite's work
    included, PostgreSQL's server not); on a busy machine they are the steadier figure.
    A database given with ``--db-url`` that already holds the benchmark shop is reused (its
    memberships deleted first, so run #1 is still a first run).
    """
    import tempfile

    from shopify_app.segments import recompute

    t0 = time.perf_counter()
    url = url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    ds = synthetic(customers, orders)
    ctx, shop_id = load_into_database(url, ds)
    print(
        f"database ({url.split(':')[0]}): {customers:,} customers, {ds.n_orders:,} orders, "
        f"{len(ds.line_order):,} lines ready in {time.perf_counter() - t0:.1f} s"
    )
    # Run #1 is a shop's first recompute: no memberships yet, even in a reused database.
    forget_memberships(ctx, shop_id)
    today = library.today()
    runs_full = (
        ("full recompute #1", today),
        ("full recompute #2 (nothing changed)", today),
        # The daily job: a day later reasons quoting day counts change for many members.
        ("full recompute #3 (next day)", today + dt.timedelta(days=1)),
    )
    for label, as_of in runs_full:
        times = recompute.PhaseTimes()
        server0 = server_cpu(ctx)
        cpu0 = time.process_time()
        t1 = time.perf_counter()
        recompute.recompute_shop_now(ctx, shop_id, as_of=as_of, times=times)
        total = time.perf_counter() - t1
        cpu = time.process_time() - cpu0
        server1 = server_cpu(ctx)
        core = sum(v for k, v in times.wall.items() if k in ("load", "evaluate", "write"))
        print(f"  {label}: {total:.2f} s in all, load + evaluate + write {core:.2f} s")
        if server0 is not None and server1 is not None:
            # On a busy machine wall time mostly measures the neighbours: CPU is steadier.
            print(
                f"    cpu: this process {cpu:.2f} s + PostgreSQL backends "
                f"{server1 - server0:.2f} s = {cpu + server1 - server0:.2f} s"
            )
        for name, wall in times.wall.items():
            print(f"    {name:9s} {wall:6.2f} s   (cpu {times.cpu[name]:6.2f} s)")
    rng = np.random.default_rng(3)
    runs = []
    for cid in rng.choice(ds.customer_ids, 50, replace=False):
        t3 = time.perf_counter()
        recompute.recompute_customer_now(ctx, shop_id, int(cid))
        runs.append(time.perf_counter() - t3)
    runs.sort()
    print(
        f"  incremental recompute_customer (load + evaluate + write): median "
        f"{1000 * runs[len(runs) // 2]:.1f} ms, p90 {1000 * runs[int(len(runs) * 0.9)]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--db",
        action="store_true",
        help="also run through a database (default SQLite in a temp dir)",
    )
    parser.add_argument("--db-url", default=None, help="an empty database to use with --db")
    args = parser.parse_args()
    if args.db:
        database_benchmark(args.customers, args.orders, args.db_url)
        return
    as_of = dt.date(2026, 11, 1)
    t0 = time.perf_counter()
    ds = synthetic(args.customers, args.orders, as_of=as_of)
    t1 = time.perf_counter()
    print(
        f"dataset: {ds.n_customers:,} customers, {ds.n_orders:,} orders, "
        f"{len(ds.line_order):,} lines ({t1 - t0:.1f} s to generate)"
    )
    cfg = ShopConfig()
    t1 = time.perf_counter()
    ev = library.evaluate(ds, cfg, as_of)
    t2 = time.perf_counter()
    print(f"full recompute (features, models, every segment with reasons): {t2 - t1:.2f} s")
    print(f"  model: {ev.stats.model_status} ({ev.stats.model_note})")
    for handle, seg in ev.segments.items():
        print(f"  {handle:32s} {seg.count:>8,}")
    # Where the time goes: features, shop statistics (models), then segments with reasons.
    from shopify_app.segments.dataset import compute_features

    ta = time.perf_counter()
    feats = compute_features(ds, as_of)
    tb = time.perf_counter()
    stats0 = compute_stats(ds, feats, cfg, as_of)
    tc = time.perf_counter()
    library.evaluate(ds, cfg, as_of, stats=stats0)
    td = time.perf_counter()
    print(
        f"  breakdown: features {tb - ta:.2f} s, statistics + model fits {tc - tb:.2f} s, "
        f"predictions + segments + reasons (features again) {td - tc:.2f} s"
    )
    t3 = time.perf_counter()
    metrics.compute(ds, as_of, evaluation=ev)
    t4 = time.perf_counter()
    print(f"metrics: {t4 - t3:.2f} s")
    # Incremental: one customer's slice evaluated against the cached shop statistics.
    from shopify_app.segments.recompute import single_customer_dataset

    idx = int(np.argmax(ev.features.n_orders))
    stats = ShopStats.from_dict(ev.stats.to_dict())
    runs = []
    for _ in range(20):
        t5 = time.perf_counter()
        one = single_customer_dataset(ds, idx)
        library.evaluate(one, cfg, as_of, stats=stats)
        runs.append(time.perf_counter() - t5)
    print(
        f"incremental one-customer evaluation: median {1000 * sorted(runs)[len(runs) // 2]:.1f} ms"
    )


if __name__ == "__main__":
    main()
