"""``shopify-app analyze ORDERS_CSV``: segments, models and retention metrics from an export.

The same engine as the app (:mod:`shopify_app.segments`) over a Shopify orders-export CSV, with
default settings. Prints readable tables, or one JSON object with ``--json``; ``--meta-dir DIR``
writes ``DIR/<handle>.csv`` per segment in Meta's hashed customer-list format (only customers
who accepted marketing, the default consent policy). ``--codes CODE,...`` adds the win-back
results (:mod:`shopify_app.actions.results`, the page's engine): per lapsed tier the orders
carrying its codes and the customers who came back, and per month of lapsing the repurchase
rate and revenue per customer with their 95% intervals.

Bad input exits with status 2 and a message naming the row and column; files are written to a
temporary directory next to ``DIR`` and moved into place only when all of them are complete.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from shopify_app.actions import results
from shopify_app.errors import InputError
from shopify_app.segments import backtest, clv, crosssell, library, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import day_number
from shopify_app.segments.library.reasons import counted, money
from shopify_app.sync.orders_csv import CsvImport, read_orders


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_report(
    imported: CsvImport, as_of: dt.date, cfg: ShopConfig
) -> tuple[dict[str, Any], library.Evaluation]:
    """The ``--json`` object (as_of, source, metrics, model, segments, cross-sell suggestions)
    and the evaluation behind it."""
    ds = imported.dataset
    ev = library.evaluate(ds, cfg, as_of)
    stats = ev.stats
    gg = stats.gamma_gamma
    emails = [e or "" for e in ds.info["email"]]
    segments = {
        handle: {
            "name": result.definition.name,
            "count": result.count,
            "customers": [emails[i] for i in result.members],
        }
        for handle, result in ev.segments.items()
    }
    report: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "source": {
            "rows": imported.rows,
            "orders": imported.orders,
            "customers": ds.n_customers,
            "skipped_cancelled": imported.skipped_cancelled,
            "skipped_test": imported.skipped_test,
            "skipped_without_email": imported.skipped_no_email,
            "currency": imported.currency,
            "first_order": imported.first_day.isoformat() if imported.first_day else None,
            "last_order": imported.last_day.isoformat() if imported.last_day else None,
        },
        "metrics": metrics.compute(ds, as_of, evaluation=ev),
        "model": {
            "status": stats.model_status,
            "note": stats.model_note,
            "ranking": stats.ranking,
            "purchase_model": stats.purchase_model,
            **{name: _count_params(stats.models.get(name)) for name in backtest.MODELS},
            "gamma_gamma": {
                "p": gg.p if gg else None,
                "q": gg.q if gg else None,
                "gamma": gg.gamma if gg else None,
            },
        },
        "backtest": {
            **stats.backtest.to_dict(),
            "likely_to_buy": stats.backtest.text,
            "at_risk": _say(stats.backtest, "at-risk"),
        },
        "segments": segments,
        "cross_sell_suggestions": [s.to_dict() for s in crosssell.mine(ev.dataset)],
    }
    return report, ev


def _count_params(params: clv.CountParams | None) -> dict[str, Any]:
    """A purchase model's parameters (all None when it was not fitted)."""
    names = ("r", "alpha", "a", "b", "log_likelihood")
    values = {n: getattr(params, n) if params else None for n in names}
    return {**values, "time_unit": params.time_unit if params else "week"}


def _say(bt: backtest.Backtest, segment: str) -> str:
    """What the backtest says about one segment, in English."""
    return " ".join(backtest.english(key, params) for key, params in bt.messages(segment))


def _progress(stream: TextIO) -> Any:
    def show(done: int, total: int) -> None:
        pct = 100 * done / total if total else 100
        bar = "#" * int(pct / 4)
        stream.write(f"\rreading orders [{bar:<25}] {pct:5.1f}%")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def write_meta_lists(
    meta_dir: Path, ev: library.Evaluation, policy: str = "subscribed"
) -> dict[str, int]:
    """Write ``meta_dir/<handle>.csv`` for every segment, all or nothing; rows by handle."""
    from shopify_app.meta import identifiers

    ds = ev.dataset
    info = ds.info
    people = [
        identifiers.Person(
            email=info["email"][i],
            phone=info["phone"][i],
            first_name=info["first_name"][i],
            last_name=info["last_name"][i],
            city=info["city"][i],
            province_code=info["province_code"][i],
            zip=info["zip"][i],
            country_code=info["country_code"][i],
            email_marketing_state=info["email_marketing_state"][i],
        )
        for i in range(ds.n_customers)
    ]
    allowed = [identifiers.consent_allows(policy, p) for p in people]
    meta_dir = meta_dir.resolve()
    parent = meta_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{meta_dir.name}-", dir=parent))
    written: dict[str, int] = {}
    try:
        for handle, result in ev.segments.items():
            members = [people[i] for i in result.members if allowed[i]]
            written[handle] = identifiers.write_csv(staging / f"{handle}.csv", members)
        if not meta_dir.exists():
            os.replace(staging, meta_dir)
        else:
            for name in sorted(os.listdir(staging)):
                os.replace(staging / name, meta_dir / name)
            staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _table(out: TextIO, title: str, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write(f"\n{title}\n")
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        line = "  ".join(
            (c.rjust(w) if i else c.ljust(w))
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        out.write(line.rstrip() + "\n")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _figure(key: str, value: Any, currency: str | None) -> str:
    """A headline figure as the report shows it (as the page does: amounts in the currency,
    rates as percentages, days with their unit)."""
    if value is None:
        return "-"
    if key in ("revenue", "average_order_value", "clv_simple", "clv_predicted_12m"):
        return money(value, currency)
    if key == "repeat_purchase_rate":
        return _pct(value)
    if key.endswith("_days_between_orders"):
        return counted("days", value)
    return f"{value:,}"


def print_report(report: dict[str, Any], out: TextIO) -> None:
    """The readable summary."""
    src = report["source"]
    m = report["metrics"]
    figures = m["headline"]
    currency = src["currency"]
    model = report["model"]
    out.write(
        f"Goldpan analysis as of {report['as_of']}: {counted('orders', figures['orders'])} from "
        f"{counted('customers', figures['customers'])} counted "
        f"({counted('orders', src['orders'])} in the file, "
        f"{src['first_order']} to {src['last_order']})\n"
    )
    skipped = src["skipped_cancelled"] + src["skipped_test"] + src["skipped_without_email"]
    if skipped:
        out.write(
            f"left out: {src['skipped_cancelled']} cancelled, {src['skipped_test']} test, "
            f"{src['skipped_without_email']} without an email\n"
        )
    before = m["year_before"]
    _table(
        out,
        "Retention",
        ["figure", "value", f"as of {before['as_of']}"],
        [
            [name, _figure(key, figures[key], currency), _figure(key, before[key], currency)]
            for key, name in metrics.NAMES.items()
        ],
    )
    out.write("\nDefinitions\n")
    for key, name in metrics.NAMES.items():
        out.write(textwrap.fill(f"{name}: {metrics.DEFINITIONS[key]}", 100, subsequent_indent="  "))
        out.write("\n")
    checked = report["backtest"]
    out.write("\n")
    if checked["enough"]:
        out.write(f"Likely to buy, checked on this store's history: {checked['likely_to_buy']}\n")
        out.write(f"At risk, checked the same way: {checked['at_risk']}\n")
    out.write(f"Model: {model['status']} — {model['note']}\n")
    for name, label in (("bgnbd", "BG/NBD"), ("mbgnbd", "MBG/NBD")):
        p = model[name]
        if p["r"] is not None:
            used = " (in use)" if name == model["purchase_model"] else ""
            out.write(
                f"  {label}{used}: r={p['r']:.3f} alpha={p['alpha']:.3f} a={p['a']:.3f} "
                f"b={p['b']:.3f} (per {p['time_unit']})\n"
            )
    gg = model["gamma_gamma"]
    if gg["p"] is not None:
        out.write(f"  Gamma-Gamma: p={gg['p']:.2f} q={gg['q']:.2f} gamma={gg['gamma']:.2f}\n")
    _table(
        out,
        "Segments",
        ["segment", "customers", "example"],
        [
            [handle, seg["count"], seg["customers"][0] if seg["customers"] else ""]
            for handle, seg in report["segments"].items()
        ],
    )
    periods = m["previous_period"]

    def period_value(key: str, value: float) -> str:
        return money(value, currency) if key == "revenue" else f"{value:,}"

    _table(
        out,
        f"Last {counted('days', periods['days'])} vs the {periods['days']} before",
        ["", "current", "previous", "change"],
        [
            [
                k.replace("_", " "),
                period_value(k, periods["current"][k]),
                period_value(k, periods["previous"][k]),
                _pct(periods["change"][k]),
            ]
            for k in ("orders", "revenue", "customers", "returning_customers")
        ],
    )
    if m["first_product"]:
        _table(
            out,
            "Products that bring customers back (repeat rate by first product)",
            ["product", "customers", "repeat rate"],
            [
                [r["key"], r["customers"], _pct(r["repeat_purchase_rate"])]
                for r in m["first_product"][:10]
            ],
        )
    if m["discount_codes"]:
        _table(
            out,
            "Discount-code quality (repeat rate of customers acquired with each code)",
            ["code", "customers", "repeat rate"],
            [
                [r["key"] or "(no code)", r["customers"], _pct(r["repeat_purchase_rate"])]
                for r in m["discount_codes"][:10]
            ],
        )
    if report["cross_sell_suggestions"]:
        _table(
            out,
            "Suggested cross-sell rules",
            ["bought", "suggest", "lift", "confidence", "customers"],
            [
                [
                    s["bought_title"],
                    s["suggest_title"],
                    s["lift"],
                    _pct(s["confidence"]),
                    s["customers"],
                ]
                for s in report["cross_sell_suggestions"][:10]
            ],
        )
    _table(
        out,
        "Days between consecutive order days",
        ["days", "gaps"],
        [
            [f"{b['from']}-{b['to']}" if b["to"] is not None else f"{b['from']}+", b["count"]]
            for b in m["days_between_orders_histogram"]
        ],
    )


def win_back_results(
    ev: library.Evaluation, cfg: ShopConfig, as_of: dt.date, codes: Sequence[str]
) -> dict[str, Any]:
    """The results panel's report for an export: lapses rebuilt from its order history."""
    ds, today = ev.dataset, day_number(as_of)
    by_tier = results.codes_by_tier(cfg, codes)
    return results.report(ds, results.lapse_entries(ds, cfg, today), by_tier, today)


def _interval(group: dict[str, Any], key: str, currency: str | None) -> str:
    """A group's figure with its 95% interval, as the page shows it."""
    if not group["customers"]:
        return "-"
    if not group["enough"]:
        return "not enough customers yet"
    if key == "rate":
        low, high = group["rate_ci"]
        return f"{_pct(group['rate'])} ({_pct(low)} to {_pct(high)})"
    low, high = group["revenue_ci"]
    return (
        f"{money(group['revenue_per_customer'], currency)} "
        f"({money(low, currency)} to {money(high, currency)})"
    )


def print_results(report: dict[str, Any], currency: str | None, out: TextIO) -> None:
    """The win-back results as readable tables."""
    _table(
        out,
        "Win-back codes (orders carrying each tier's codes; customers who ordered after lapsing)",
        ["tier", "codes", "orders", "revenue", "lapsed", "came back", "their revenue"],
        [
            [
                t["segment"],
                ", ".join(t["codes"]) or "-",
                t["redemptions"],
                money(t["redemption_revenue"], currency),
                t["entered"],
                t["recovered"],
                money(t["recovered_revenue"], currency),
            ]
            for t in report["tiers"]
        ],
    )
    _table(
        out,
        f"Repurchase within {counted('days', report['window_days'])} of lapsing, by month",
        ["tier", "month", "customers", "repurchased (95% interval)", "revenue per customer"],
        [
            [
                c["segment"],
                c["month"] + (" (still counting)" if c["open"] else ""),
                c["treated"]["customers"],
                _interval(c["treated"], "rate", currency),
                _interval(c["treated"], "revenue", currency),
            ]
            for c in report["cohorts"]
        ],
    )
    out.write(
        textwrap.fill(
            f"An export does not say who was held out, so every lapsed customer is counted "
            f"together; the app's results compare them with the hold-out. Figures show from "
            f"{report['min_group']} customers.",
            100,
        )
        + "\n"
    )


def run_analyze(
    path: Path,
    as_of: dt.date | None = None,
    as_json: bool = False,
    meta_dir: Path | None = None,
    codes: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``shopify-app analyze``; returns the exit code (2 on bad input)."""
    out = out or sys.stdout
    err = err or sys.stderr
    as_of = as_of or library.today()
    cfg = ShopConfig()
    try:
        progress = _progress(err) if (not as_json and err.isatty()) else None
        imported = read_orders(path, progress=progress)
        report, ev = build_report(imported, as_of, cfg)
        if codes is not None:
            report["results"] = win_back_results(ev, cfg, as_of, codes)
        if meta_dir is not None:
            written = write_meta_lists(Path(meta_dir), ev, cfg.consent_policy)
            report["meta_files"] = {
                handle: {"path": str(Path(meta_dir) / f"{handle}.csv"), "rows": rows}
                for handle, rows in written.items()
            }
    except InputError as exc:
        err.write(f"error: {exc}\n")
        return 2
    if as_json:
        json.dump(_clean(report), out, ensure_ascii=False)
        out.write("\n")
    else:
        print_report(report, out)
        if codes is not None:
            print_results(report["results"], imported.currency, out)
        if meta_dir is not None:
            out.write(f"\nMeta customer lists written to {meta_dir} (subscribed customers only)\n")
    return 0
