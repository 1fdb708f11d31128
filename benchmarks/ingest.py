"""Benchmark: ingest a bulk JSONL export (orders + line items + customers) into the database.

Prints wall seconds, CPU seconds, rows/s and peak RSS for each pass, and each pass's ratio to
the baseline, all measured in the same run:

- ``stdlib parse-only: read + json.loads`` — the baseline;
- ``msgspec parse-only: read + typed decode`` — the same lines decoded into
  :class:`~shopify_app.sync.rows.Node` as the ingest does: the floor for any ingest here;
- ``parse + map rows`` — decode and map to row tuples, no database;
- the real ingest (``shopify_app.sync.ingest.ingest_lines``) into SQLite — and PostgreSQL with
  ``--database-url`` — split into the reader thread's CPU and the writer's (plus, for
  PostgreSQL, the server's work, which no client figure shows). On two idle cores the wall
  time of an ingest approaches its busiest thread's CPU; on a loaded machine compare the CPU
  columns.

Each pass runs in its own process so peak RSS is that pass's own.

    .venv/bin/python benchmarks/ingest.py                     # 1,000,000 orders, 300,000 customers
    .venv/bin/python benchmarks/ingest.py --orders 100000 --customers 30000
    .venv/bin/python benchmarks/ingest.py --database-url postgresql+psycopg://goldpan@127.0.0.1:55432/goldpan_test

The export is written by a fast generator of the exact line shapes the bulk_orders and
bulk_customers documents produce (children with ``__parentId``, some before their parent), or,
with ``--sandbox``, by the sandbox's store generator and bulk runner (slower; small sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- the export -------------------------------------------------------------------------------


def _ts(rng: random.Random) -> str:
    return (
        f"20{rng.randint(19, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    )


def generate(path_customers: Path, path_orders: Path, orders: int, customers: int) -> None:
    """Write the two JSONL files: ~2.5 line items per order, 10% of children before parents."""
    rng = random.Random(42)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with path_customers.open("w") as out:
        for n in range(1, customers + 1):
            out.write(
                dumps(
                    {
                        "id": f"gid://shopify/Customer/{7000000000 + n}",
                        "firstName": f"Name{n}",
                        "lastName": "Doe",
                        "defaultEmailAddress": {
                            "emailAddress": f"customer{n}@example.com",
                            "marketingState": rng.choice(["SUBSCRIBED", "NOT_SUBSCRIBED"]),
                        },
                        "defaultPhoneNumber": {
                            "phoneNumber": f"+1555{n:07d}",
                            "smsMarketingConsent": {"state": "NOT_SUBSCRIBED"},
                        }
                        if n % 3 == 0
                        else None,
                        "defaultAddress": {
                            "countryCodeV2": "US",
                            "provinceCode": "NY",
                            "city": "New York",
                            "zip": "10001",
                            "company": None,
                        },
                        "tags": ["wholesale"] if n % 20 == 0 else [],
                        "numberOfOrders": str(rng.randint(0, 9)),
                        "amountSpent": {
                            "amount": f"{rng.uniform(0, 900):.2f}",
                            "currencyCode": "USD",
                        },
                        "statistics": {"rfmGroup": "ACTIVE", "predictedSpendTier": "MEDIUM"},
                        "createdAt": _ts(rng),
                        "updatedAt": _ts(rng),
                    }
                )
                + "\n"
            )
    item = 1
    with path_orders.open("w") as out:
        for n in range(1, orders + 1):
            order_gid = f"gid://shopify/Order/{5000000000 + n}"
            parent = dumps(
                {
                    "id": order_gid,
                    "name": f"#{1000 + n}",
                    "email": None,
                    "customer": {
                        "id": f"gid://shopify/Customer/{7000000000 + rng.randint(1, customers)}"
                    },
                    "createdAt": (created := _ts(rng)),
                    "processedAt": created,
                    "updatedAt": created,
                    "cancelledAt": None,
                    "test": False,
                    "currentTotalPriceSet": {
                        "shopMoney": {"amount": f"{rng.uniform(5, 400):.2f}", "currencyCode": "USD"}
                    },
                    "discountCodes": ["WELCOME10"] if n % 10 == 0 else [],
                    "billingAddress": {"company": None},
                }
            )
            children = []
            for _ in range(2 if n % 2 else 3):  # 2.5 on average
                product = rng.randint(1, 500)
                children.append(
                    dumps(
                        {
                            "id": f"gid://shopify/LineItem/{9000000000 + item}",
                            "title": f"Linen napkin set {product}",
                            "sku": f"LN-{product:04d}",
                            "quantity": 1,
                            "currentQuantity": 1,
                            "product": {"id": f"gid://shopify/Product/{8000000000 + product}"},
                            "variant": {
                                "id": f"gid://shopify/ProductVariant/{8100000000 + product}"
                            },
                            "discountedTotalSet": {"shopMoney": {"amount": "24.90"}},
                            "__parentId": order_gid,
                        }
                    )
                )
                item += 1
            lines = [*children, parent] if n % 10 == 0 else [parent, *children]
            out.write("\n".join(lines) + "\n")


def generate_with_sandbox(path_customers: Path, path_orders: Path, customers: int) -> None:
    """The same files from the sandbox store generator + bulk runner (shape fidelity)."""
    from goldpan_sandbox.bulk import iter_bulk_jsonl
    from goldpan_sandbox.generator import generate_store
    from shopify_app.shopify.client import load_document

    store = generate_store("bench.myshopify.com", customers=customers, seed=7)
    for path, doc in ((path_customers, "bulk_customers"), (path_orders, "bulk_orders")):
        with path.open("w") as out:
            for line in iter_bulk_jsonl(store, load_document(doc), seed=1):
                out.write(line + "\n")


# --- passes (each in a child process) ---------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    # On a busy machine wall time overstates the work; CPU time (all threads) does not.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pass_parse(files: list[str], kind: str) -> dict[str, Any]:
    """``kind``: ``json`` (read + json.loads), ``decode`` (typed decode), ``map`` (+ row tuples)."""
    from shopify_app.sync.rows import NODE_DECODER, Batch, parse_line

    cpu = _cpu_seconds()
    started = time.perf_counter()
    lines = 0
    batch = Batch.empty()
    decode = json.loads if kind == "json" else NODE_DECODER.decode
    for name in files:
        with open(name, "rb") as fh:
            for line in fh:
                lines += 1
                if kind == "map":
                    parse_line(1, line, batch)
                    if lines % 5000 == 0:
                        batch = Batch.empty()
                else:
                    decode(line)
    return {
        "seconds": time.perf_counter() - started,
        "cpu": _cpu_seconds() - cpu,
        "lines": lines,
        "rss_mb": _peak_rss_mb(),
    }


def pass_ingest(files: list[str], database_url: str, batch_lines: int) -> dict[str, Any]:
    from shopify_app import db
    from shopify_app.crypto import TokenCipher, generate_key
    from shopify_app.db.models import Shop, SyncRun
    from shopify_app.jobs import Context
    from shopify_app.settings import Settings
    from shopify_app.states import SyncRunKind, SyncRunStatus
    from shopify_app.sync.ingest import ingest_lines

    key = generate_key()
    settings = Settings(
        api_key="bench", api_secret="bench", token_encryption_keys=(key,), database_url=database_url
    )
    engine = db.make_engine(database_url)
    sessions = db.make_sessionmaker(engine)
    ctx = Context(settings=settings, engine=engine, sessions=sessions, cipher=TokenCipher((key,)))
    with sessions.begin() as session:
        shop = Shop(domain=f"bench-{uuid.uuid4().hex[:6]}.myshopify.com", settings={})
        session.add(shop)
        session.flush()
        shop_id = shop.id
        run_ids = []
        for name in files:
            run = SyncRun(
                shop_id=shop_id,
                kind=SyncRunKind.INITIAL,
                resource=Path(name).stem.split("-")[0],
                status=SyncRunStatus.INGESTING,
            )
            session.add(run)
            session.flush()
            run_ids.append(run.id)
    cpu = _cpu_seconds()
    reader = time.thread_time()
    started = time.perf_counter()
    lines = 0
    for name, run_id in zip(files, run_ids, strict=True):
        with open(name, "rb") as fh:
            lines += ingest_lines(ctx, run_id, shop_id, fh, batch_lines=batch_lines)
    seconds = time.perf_counter() - started
    reader = time.thread_time() - reader
    cpu = _cpu_seconds() - cpu
    engine.dispose()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "reader_cpu": reader,
        "writer_cpu": cpu - reader,
        "lines": lines,
        "rss_mb": _peak_rss_mb(),
    }


def _child(args: list[str]) -> dict[str, Any]:
    """Run one pass in a fresh process; prints its figures as soon as it ends."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"pass {args[:2]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {args[0]} {args[1][:40]}: {result}", flush=True)
    return result


def _fresh_postgres(url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text

    name = f"goldpan_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=20_000, help="lines per transaction")
    parser.add_argument("--database-url", help="also ingest into this PostgreSQL server")
    parser.add_argument("--workdir", type=Path, help="keep the export here (reused if present)")
    parser.add_argument("--sandbox", action="store_true", help="use the sandbox generator")
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "parse":
            result = pass_parse(rest[1:], rest[0])
        else:
            result = pass_ingest(rest[2:], rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    from shopify_app import db

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="goldpan-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{'sandbox' if args.sandbox else 'fast'}-{args.orders}-{args.customers}"
    customers_file = workdir / f"customers-{tag}.jsonl"
    orders_file = workdir / f"orders-{tag}.jsonl"
    if not (customers_file.exists() and orders_file.exists()):
        started = time.perf_counter()
        if args.sandbox:
            generate_with_sandbox(customers_file, orders_file, args.customers)
        else:
            generate(customers_file, orders_file, args.orders, args.customers)
        print(f"generated the export in {time.perf_counter() - started:.1f}s")
    files = [str(customers_file), str(orders_file)]
    size_mb = sum(os.path.getsize(f) for f in files) / 1e6
    print(f"export: {files} ({size_mb:.0f} MB)")

    results: dict[str, dict[str, Any]] = {}
    baseline = "stdlib parse-only: read + json.loads"
    results[baseline] = _child(["parse", "json", *files])
    results["msgspec parse-only: read + typed decode"] = _child(["parse", "decode", *files])
    results["parse + map rows (no database)"] = _child(["parse", "map", *files])
    sqlite_path = workdir / f"bench-{uuid.uuid4().hex[:6]}.sqlite3"
    sqlite_url = f"sqlite:///{sqlite_path}"
    db.upgrade(sqlite_url)
    try:
        results["ingest SQLite"] = _child(["ingest", sqlite_url, str(args.batch), *files])
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
    if args.database_url:
        url, drop = _fresh_postgres(args.database_url)
        try:
            db.upgrade(url)
            results["ingest PostgreSQL"] = _child(["ingest", url, str(args.batch), *files])
        finally:
            drop()

    base = results[baseline]
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"ratios are to the baseline, {baseline!r}, measured in this run")
    print(
        f"{'pass':40} {'wall s':>7} {'ratio':>6} {'CPU s':>6} {'ratio':>6} "
        f"{'reader/writer CPU s':>20} {'lines/s':>10} {'peak RSS MB':>12}"
    )
    for name, r in results.items():
        threads = f"{r['reader_cpu']:.1f} / {r['writer_cpu']:.1f}" if "reader_cpu" in r else ""
        print(
            f"{name:40} {r['seconds']:7.1f} {r['seconds'] / base['seconds']:6.2f} "
            f"{r['cpu']:6.1f} {r['cpu'] / base['cpu']:6.2f} {threads:>20} "
            f"{r['lines'] / r['seconds']:10,.0f} {r['rss_mb']:12.0f}"
        )


if __name__ == "__main__":
    main()
