"""Benchmark: prepare Meta Custom Audience rows (consent + normalise + SHA-256) and re-sync.

Prints:

1. rows/s preparing ``--members`` people (default 1,000,000) with ``meta.audiences.prepare``
   (best wall time and best CPU time of ``--repeat`` runs, each with cold memo caches: the
   host may be shared, and on a busy one the CPU-time figure is the steadier),
   which is what a sync runs: consent filter, Meta's normalisation, hashing, matchable check.
   Two data shapes: Shopify-shaped (customer phones in E.164, as Shopify stores them; names,
   cities and countries from a multilingual mix) and worst-case (every phone a distinct
   national-format number — US, Greek, Korean, Saudi in Arabic-Indic digits, UK — so no memo
   helps and each takes the national-number path).
2. the diff of an unchanged audience of that size (rows to send: 0) and its time;
3. end to end against the Meta stand-in on loopback with SQLite: the first sync of
   ``--e2e-members`` (default 20,000) customers, then an unchanged re-sync, with the rows each
   sent over HTTP.

    .venv/bin/python benchmarks/meta_prepare.py
    .venv/bin/python benchmarks/meta_prepare.py --members 200000 --e2e-members 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shopify_app.meta.identifiers import Person  # noqa: E402

FIRST = ["John", "Mary", "Emily", "Γιώργος", "Μαρία", "김민준", "이서연", "محمد", "فاطمة", "José"]
CITIES = ["San Francisco", "New York", "Αθήνα", "Θεσσαλονίκη", "서울", "부산", "الرياض", "London"]
COUNTRIES = [("US", "CA", "94107-1234"), ("GR", "I", "105 57"), ("KR", "KR-11", "04538")]
COUNTRIES += [("SA", "SA-01", "12211"), ("GB", "ENG", "SW1A 1AA")]


def people(n: int, *, national_phones: bool, seed: int = 7) -> list[Person]:
    """``n`` customers; 90 % subscribed to email marketing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        country, state, zip_code = COUNTRIES[i % len(COUNTRIES)]
        if national_phones:
            phone = {
                "US": f"(415) {i // 10000 % 1000:03d}-{i % 10000:04d}",
                "GR": f"69{i:08d}",
                "KR": f"010-{i // 10000 % 10000:04d}-{i % 10000:04d}",
                "SA": f"05{i:08d}".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
                "GB": f"07700 {i % 1000000:06d}",
            }[country]
        else:
            code = {"US": "1415", "GR": "3069", "KR": "8210", "SA": "9665", "GB": "447700"}
            phone = f"+{code[country]}{i:08d}"[:16]
        out.append(
            Person(
                email=f"Customer.{i}@Example.com ",
                phone=phone,
                first_name=rng.choice(FIRST),
                last_name=f"Lastname{rng.randrange(200_000)}",
                city=rng.choice(CITIES),
                province_code=state,
                zip=zip_code,
                country_code=country,
                email_marketing_state="SUBSCRIBED" if rng.random() < 0.9 else "NOT_SUBSCRIBED",
            )
        )
    return out


def _cold() -> None:
    """Forget every memo, so each run pays for first sightings like a fresh worker."""
    from shopify_app.meta import identifiers

    identifiers.clear_caches()


def bench_prepare(n: int, repeat: int) -> None:
    from shopify_app.meta import audiences

    for label, national in (("Shopify-shaped (E.164 phones)", False), ("national phones", True)):
        data = list(enumerate(people(n, national_phones=national)))
        runs = []
        for _ in range(repeat):
            _cold()
            start, cpu = time.perf_counter(), time.process_time()
            wanted = audiences.prepare(data, "subscribed")
            runs.append((time.perf_counter() - start, time.process_time() - cpu))
        seconds, cpu = min(wall for wall, _ in runs), min(cpu for _, cpu in runs)
        print(
            f"prepare {n:,} members, {label}, best of {len(runs)} cold runs: "
            f"{seconds:.2f} s wall, {n / seconds:,.0f} rows/s; "
            f"{cpu:.2f} s CPU, {n / cpu:,.0f} rows per CPU-second "
            f"({len(wanted):,} rows allowed by consent)"
        )
        if not national:
            previous = {cid: (audiences.row_hash(row), row) for cid, row in wanted.items()}
            start = time.perf_counter()
            diff = audiences.plan(previous, wanted)
            seconds = time.perf_counter() - start
            print(
                f"diff of an unchanged audience of {len(wanted):,}: {seconds:.2f} s, "
                f"rows to send: {len(diff.add) + len(diff.remove)}"
            )


def bench_end_to_end(n: int) -> None:
    from sqlalchemy import insert

    from goldpan_sandbox.meta import MetaSandbox
    from goldpan_sandbox.server import start_server
    from shopify_app import db, jobs
    from shopify_app.crypto import TokenCipher, generate_key
    from shopify_app.db.models import Customer, Membership, MetaConnection, Segment, Shop
    from shopify_app.settings import Settings
    from shopify_app.states import MetaConnectionStatus

    sandbox = MetaSandbox("bench-app", "bench-secret")
    sandbox.add_ad_account("act_42")
    server = start_server(sandbox.app())
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    db.upgrade(url)
    key = generate_key()
    settings = Settings(
        api_key="k",
        api_secret="s",
        token_encryption_keys=(key,),
        database_url=url,
        meta_app_id="bench-app",
        meta_app_secret="bench-secret",
        meta_graph_url=server.url,
        meta_dialog_url=server.url,
    )
    engine = db.make_engine(url)
    ctx = jobs.Context(settings, engine, db.make_sessionmaker(engine), TokenCipher((key,)))
    crowd = people(n, national_phones=False)
    sandbox.seed_people(crowd, match_rate=0.7)
    now = dt.datetime.now(dt.UTC)
    with ctx.sessions.begin() as session:
        shop = Shop(domain="bench.myshopify.com", name="Bench", settings={})
        session.add(shop)
        session.flush()
        segment = Segment(shop_id=shop.id, handle="fans", name="Fans", meta_sync=True)
        session.add(segment)
        session.flush()
        session.execute(
            insert(Customer),
            [
                {
                    "shop_id": shop.id,
                    "id": i + 1,
                    "email": p.email,
                    "phone": p.phone,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "city": p.city,
                    "province_code": p.province_code,
                    "zip": p.zip,
                    "country_code": p.country_code,
                    "email_marketing_state": p.email_marketing_state,
                    "created_at": now,
                }
                for i, p in enumerate(crowd)
            ],
        )
        session.execute(
            insert(Membership),
            [
                {"segment_id": segment.id, "customer_id": i + 1, "shop_id": shop.id}
                for i in range(n)
            ],
        )
        session.add(
            MetaConnection(
                shop_id=shop.id,
                access_token=ctx.cipher.encrypt(sandbox.issue_system_user_token()),
                ad_account_id="act_42",
                tos_accepted=True,
                status=MetaConnectionStatus.CONNECTED,
            )
        )
        shop_id, segment_id = shop.id, segment.id

    def rows_sent() -> int:
        return sum(r.rows for r in sandbox.log if r.path.endswith("/users"))

    for label in ("first sync", "unchanged re-sync"):
        before = rows_sent()
        start = time.perf_counter()
        jobs.run_now(ctx, "meta.sync_segment", shop_id=shop_id, segment_id=segment_id)
        seconds = time.perf_counter() - start
        print(
            f"end to end, {label} of {n:,} members (SQLite + loopback stand-in): "
            f"{seconds:.2f} s, rows sent: {rows_sent() - before:,}"
        )
    aud = sandbox.audiences[next(iter(sandbox.audiences))]
    print(f"stand-in audience: {len(aud.members):,} matched of {aud.received:,} received")
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--e2e-members", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="cold runs; the best is printed")
    args = parser.parse_args()
    # Wall-clock rates on a shared machine depend on its load: print it with the figures.
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    bench_prepare(args.members, args.repeat)
    if args.e2e_members:
        bench_end_to_end(args.e2e_members)


if __name__ == "__main__":
    main()
