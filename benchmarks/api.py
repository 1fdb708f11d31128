"""Benchmark: the page's API on a 300,000-customer shop — the segments list and a 50-member page.

Seeds a shop straight into a fresh database (customers, ~2.2 orders each with line items,
seven segments with memberships and reasons, history), serves the app (``create_app``: the
production routes and session-token middleware) on loopback, and times real HTTP requests with
fresh session tokens. Prints p50/p95/max per endpoint; the target is p95 ≤ 150 ms for the
segments list and a 50-member page.

    .venv/bin/python benchmarks/api.py                       # SQLite, 300,000 customers
    .venv/bin/python benchmarks/api.py --customers 30000 --requests 100
    .venv/bin/python benchmarks/api.py --database-url postgresql+psycopg://goldpan@127.0.0.1:55432/goldpan_test

With ``--database-url`` a throwaway database is created next to the given one and dropped after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shopify_app import db  # noqa: E402
from shopify_app.crypto import TokenCipher, generate_key  # noqa: E402
from shopify_app.db.models import Shop  # noqa: E402
from shopify_app.jobs import Context  # noqa: E402
from shopify_app.settings import Settings  # noqa: E402
from tests.conftest import TEST_API_KEY, TEST_API_SECRET, fresh_database  # noqa: E402
from tests.fixtures_api import seed_shop, serving  # noqa: E402
from tests.fixtures_auth import session_token  # noqa: E402


class NoQueue:
    """Follow-up tasks are not part of what is measured."""

    def enqueue(self, name: str, **kwargs: object) -> None:
        pass


def timed(call: Callable[[], requests.Response], n: int) -> list[float]:
    call()  # warm-up (connection, caches)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return out


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{name:<44} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {ordered[-1]:7.1f} ms   (n={len(ordered)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (default: SQLite file)")
    args = parser.parse_args(argv)

    import os

    if args.database_url:
        os.environ["GOLDPAN_TEST_DATABASE_URL"] = args.database_url
    with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp)) as url:
        db.upgrade(url)
        key = generate_key()
        settings = Settings.from_env(
            {
                "SHOPIFY_API_KEY": TEST_API_KEY,
                "SHOPIFY_API_SECRET": TEST_API_SECRET,
                "TOKEN_ENCRYPTION_KEY": key,
                "DATABASE_URL": url,
                "LOG_JSON": "false",
            }
        )
        engine = db.make_engine(url)
        ctx = Context(
            settings=settings,
            engine=engine,
            sessions=db.make_sessionmaker(engine),
            cipher=TokenCipher((key,)),
            runtime=NoQueue(),  # type: ignore[arg-type]
        )
        domain = "bench-linen.myshopify.com"
        with ctx.sessions.begin() as session:
            shop = Shop(
                domain=domain,
                currency="USD",
                scopes="read_orders",
                settings={},
                access_token=ctx.cipher.encrypt("shpat_bench"),  # installed: the API answers it
            )
            session.add(shop)
            session.flush()
            shop_id = shop.id
        started = time.perf_counter()
        ids = seed_shop(ctx.sessions, shop_id, customers=args.customers, seed=1, batch=50_000)
        print(
            f"seeded {args.customers:,} customers on {url.split(':')[0]} "
            f"in {time.perf_counter() - started:.1f} s"
        )
        with ctx.sessions() as session:
            from sqlalchemy import func, select

            from shopify_app.db.models import Membership, Order

            orders = session.scalar(select(func.count()).select_from(Order))
            members = session.scalar(select(func.count()).select_from(Membership))
        print(f"  {orders:,} orders, {members:,} memberships, {len(ids)} segments")
        http = requests.Session()
        big = ids["one-time-buyers"]
        with serving(ctx) as base_url:

            def get(path: str) -> Callable[[], requests.Response]:
                return lambda: http.get(
                    f"{base_url}/api{path}",
                    headers={"Authorization": f"Bearer {session_token(domain)}"},
                    timeout=30,
                )

            n = args.requests
            report("GET /segments", timed(get("/segments"), n))
            report("GET /segments/{id}/members (page 1)", timed(get(f"/segments/{big}/members"), n))
            report(
                "GET /segments/{id}/members?page=200",
                timed(get(f"/segments/{big}/members?page=200"), max(20, n // 5)),
            )
            report(
                "GET /segments/{id}/members?after=<id>",
                timed(get(f"/segments/{big}/members?after={5000 + args.customers // 2}"), n),
            )
            report(
                "GET /segments/{id}/members?sort=-spent",
                timed(get(f"/segments/{big}/members?sort=-spent"), max(20, n // 5)),
            )
            report(
                "GET /segments/{id}/members?q=papadopoulos",
                timed(get(f"/segments/{big}/members?q=papadopoulos"), max(20, n // 5)),
            )
            report("GET /segments/{id}", timed(get(f"/segments/{big}"), max(20, n // 5)))
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
