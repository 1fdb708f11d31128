"""Backtest table: which ranking finds the customers who order next, on real and generated stores.

For each store and as-of day it prints two tables:

* **backtest** — what the shop-level backtest (:mod:`shopify_app.segments.backtest`) saw in
  the library's full evaluation as of that day: customers ranked as they stood one horizon
  before, then who ordered in the horizon. Each candidate's share of its top 10% that ordered
  and its AUC, the chosen one, the store average, and the plain-words sentence the merchant
  reads.
* **next 90 days** — the issue's done-when, on days the backtest never saw: the
  ``likely-to-buy`` segment the library produced (the chosen ranking, sized by the backtest,
  nobody silent for more than three of their usual intervals) against the same number of
  customers picked by the one-line rule ("orders in the last 365 days, then most recent
  first"), by BG/NBD's own expected purchases, and by each candidate; ``at-risk``; the store
  average; and how many members are silent for more than three of their usual intervals
  (must be 0).

Run::

    .venv/bin/python benchmarks/backtest.py [--cdnow ../shared/data/CDNOW_master.txt]
        [--as-of 1997-10-01 --as-of 1997-07-01 --as-of 1998-01-01] [--customers 3000]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np

from shopify_app.segments import backtest, cadence, clv, library
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import (
    Dataset,
    DatasetBuilder,
    day_date,
    day_number,
    product_key_for_title,
)

HORIZON = 90
CDNOW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "CDNOW_master.txt"
STORE_AS_OF = dt.date(2026, 11, 1)


def read_cdnow(path: Path) -> Dataset:
    """CDNOW's transaction file (customer id, [id,] YYYYMMDD, units, dollars per line)."""
    builder = DatasetBuilder()
    for n, line in enumerate(path.read_text().splitlines()):
        fields = line.split()
        if not fields or not fields[0].isdigit():
            continue
        ymd = fields[-3]
        day = day_number(dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])))
        index = builder.add_customer(int(fields[0]))
        order = builder.add_order(index, n + 1, day, float(fields[-1]))
        # The units too: a $0 order of CDs is a purchase (Dataset.purchases).
        builder.add_line(order, product_key_for_title("CD"), "CD", int(fields[-2]))
    return builder.build()


def generated_store(customers: int, seed: int) -> Dataset:
    """A sandbox store (the demo's generator), its countable orders as a dataset."""
    from goldpan_sandbox.generator import generate_store

    store = generate_store("bench.myshopify.com", customers=customers, seed=seed, as_of=STORE_AS_OF)
    builder = DatasetBuilder()
    for order in sorted(store.orders.values(), key=lambda o: o.id):
        if order.test or order.cancelled_at is not None or order.customer_id is None:
            continue
        index = builder.add_customer(order.customer_id)
        day = day_number(order.processed_at.date())
        at = builder.add_order(index, order.id, day, float(order.current_total))
        for line in order.line_items:
            # Units kept: a fully refunded order (nothing kept) is no purchase.
            builder.add_line(at, line.product_id or 0, line.title, line.effective_quantity)
    return builder.build()


def one_line_rule(rhythm: cadence.Rhythm) -> np.ndarray:
    """Orders in the last 365 days, then most recent first (customers with orders, index order)."""
    has = rhythm.has_orders
    since = rhythm.days_since_last[has]
    return np.asarray(rhythm.recent_orders[has] * 10**7 - since, dtype=np.float64)


def top_ordered(scores: np.ndarray, since: np.ndarray, ordered: np.ndarray, size: int) -> int:
    """How many of the ``size`` highest-ranked customers ordered."""
    return int(ordered[cadence.ranked(scores, since)[:size]].sum())


def show_backtest(bt: backtest.Backtest) -> None:
    print(
        f"  backtest: ranked on {day_date(bt.calibration_day)}, judged on the next "
        f"{bt.horizon} days; {bt.customers:,} customers, store average {bt.store_average:.1%}"
    )
    print(
        f"    {'candidate':<22}{'top ' + format(bt.compared_at, ','):>12}{'top 1-10%':>11}"
        f"{'AUC':>8}"
    )
    for c in bt.candidates:
        mark = "  <- chosen" if c.name == bt.chosen else ""
        if c.refused:
            print(f"    {c.label:<22}{'refused: ' + c.refused}")
        else:
            print(f"    {c.label:<22}{c.top_share:>12.1%}{c.top_average:>11.1%}{c.auc:>8.3f}{mark}")
    print(f"    likely-to-buy size {bt.likely_size:,} ({bt.likely_share:.1%} of customers)")
    print(f'    "{bt.text}"')
    at_risk = " ".join(backtest.english(key, params) for key, params in bt.messages("at-risk"))
    print(f'    "{at_risk}"')


def show_next(ds: Dataset, ev: library.Evaluation, as_of: int) -> None:
    """The segments the library produced as of ``as_of``, judged on the next 90 days."""
    history = backtest.OrderHistory.of(ds)
    rhythm = history.rhythm(as_of)
    has = rhythm.has_orders
    since = rhythm.days_since_last.astype(np.float64)
    usual = rhythm.usual_interval
    ordered = history.ordered_between(as_of, as_of + HORIZON)
    likely = np.zeros(ds.n_customers, dtype=bool)
    likely[ev.segments["likely-to-buy"].members] = True
    size = int(likely.sum())
    hits = int(ordered[likely].sum())
    print(
        f"  next {HORIZON} days from {day_date(as_of)}: {int(has.sum()):,} customers, store "
        f"average {ordered[has].mean():.1%}"
    )
    print(f"    {'':<46}{'size':>7}{'ordered':>9}{'share':>8}")

    def row(label: str, count: int, ordered_count: int) -> None:
        share = ordered_count / count if count else float("nan")
        print(f"    {label:<46}{count:>7,}{ordered_count:>9,}{share:>8.1%}")

    ranking = ev.stats.ranking
    row(f"likely-to-buy ({backtest.LABELS[ranking] if ranking else 'none'})", size, hits)
    baselines = {"one-line rule (365-day orders, recent first)": one_line_rule(rhythm)}
    for name in backtest.CANDIDATES:
        try:
            baselines[f"top by {backtest.LABELS[name]}"] = backtest.score(name, rhythm, HORIZON)
        except clv.DegenerateFit as refused:
            print(f"    {'top by ' + backtest.LABELS[name]:<46}refused: {refused.reason}")
    counts = {}
    for label, scores in baselines.items():
        full = np.full(ds.n_customers, -np.inf)
        full[has] = scores
        counts[label] = top_ordered(full, since, ordered, size)
        row(label, size, counts[label])
    risk = ev.segments["at-risk"].members
    row("at-risk", len(risk), int(ordered[risk].sum()))
    silent = int((likely & cadence.silent_too_long(since, usual)).sum())
    print(f"    members silent for more than {cadence.SILENCE_LIMIT:g} usual intervals: {silent}")
    line = counts["one-line rule (365-day orders, recent first)"]
    model = counts.get("top by the BG/NBD model")
    verdict = f"{hits - line:+,} customers vs the one-line rule"
    if model is not None:
        verdict += f", {hits - model:+,} vs the BG/NBD ranking"
    print(f"    done-when (likely-to-buy at least both, nobody silent): {verdict}")


def report(name: str, ds: Dataset, days: list[dt.date]) -> None:
    for day in days:
        started = time.perf_counter()
        ev = library.evaluate(ds, ShopConfig(), day)
        took = time.perf_counter() - started
        print(f"\n{name}, as of {day} ({took:.1f} s for the whole evaluation, backtest included)")
        bt = ev.stats.backtest
        print(f"  model: {ev.stats.model_note}")
        if not bt.enough:
            print(f"  {bt.text}")
            continue
        show_backtest(bt)
        show_next(ds, ev, day_number(day))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdnow", type=Path, default=CDNOW.resolve())
    parser.add_argument("--as-of", type=dt.date.fromisoformat, action="append")
    parser.add_argument("--customers", type=int, default=3000, help="generated store size")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    days = args.as_of or [dt.date(1997, 10, 1), dt.date(1997, 7, 1), dt.date(1998, 1, 1)]
    report(f"CDNOW master ({args.cdnow.name})", read_cdnow(args.cdnow), days)
    store_days = [STORE_AS_OF - dt.timedelta(days=HORIZON + k) for k in (0, 180)]
    report(
        f"generated store ({args.customers:,} customers, seed {args.seed})",
        generated_store(args.customers, args.seed),
        store_days,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
