"""``shopify-app analyze ORDERS_CSV``: segments, models and retention metrics from an export.

The same engine as the app (:mod:`shopify_app.segments`) over a Shopify orders-export CSV, with
default settings. Prints readable tables, or one JSON object with ``--json``; ``--meta-dir DIR``
writes ``DIR/<handle>.csv`` per segment in Meta's hashed customer-list format (only customers
who accepted marketing, the default consent policy).

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
from pathlib import Path
from typing import Any, TextIO

from shopify_app.errors import InputError
from shopify_app.segments import crosssell, library, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.states import ModelStatus
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
    bg = stats.bgnbd
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
            "bgnbd": {
                "r": bg.r if bg else None,
                "alpha": bg.alpha if bg else None,
                "a": bg.a if bg else None,
                "b": bg.b if bg else None,
                "log_likelihood": bg.log_likelihood if bg else None,
                "time_unit": bg.time_unit if bg else "week",
            },
            "gamma_gamma": {
                "p": gg.p if gg else None,
                "q": gg.q if gg else None,
                "gamma": gg.gamma if gg else None,
            },
        },
        "segments": segments,
        "cross_sell_suggestions": [s.to_dict() for s in crosssell.mine(ev.dataset)],
    }
    return report, ev


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


def print_report(report: dict[str, Any], out: TextIO) -> None:
    """The readable summary."""
    src = report["source"]
    m = report["metrics"]
    model = report["model"]
    out.write(
        f"Goldpan analysis as of {report['as_of']}: {m['orders']} orders from "
        f"{m['customers']} customers counted ({src['orders']} orders in the file, "
        f"{src['first_order']} to {src['last_order']})\n"
    )
    skipped = src["skipped_cancelled"] + src["skipped_test"] + src["skipped_without_email"]
    if skipped:
        out.write(
            f"left out: {src['skipped_cancelled']} cancelled, {src['skipped_test']} test, "
            f"{src['skipped_without_email']} without an email\n"
        )
    clv = m["clv"]
    _table(
        out,
        "Retention",
        ["metric", "value"],
        [
            ["customers", m["customers"]],
            ["orders", m["orders"]],
            ["revenue", f"{m['revenue']:,.2f}"],
            ["average order value", f"{m['average_order_value']:,.2f}"],
            ["orders per customer", m["orders_per_customer"]],
            ["repeat purchase rate", _pct(m["repeat_purchase_rate"])],
            ["average days between orders", m["average_days_between_orders"] or "-"],
            ["CLV (AOV x frequency x lifespan)", f"{clv['simple']:,.2f}"],
            [
                "predicted 12-month CLV",
                "-" if clv["predicted_12m"] is None else f"{clv['predicted_12m']:,.2f}",
            ],
        ],
    )
    bg = model["bgnbd"]
    gg = model["gamma_gamma"]
    if model["status"] == ModelStatus.FITTED:
        out.write(
            f"\nModel: BG/NBD r={bg['r']:.3f} alpha={bg['alpha']:.3f} "
            f"a={bg['a']:.3f} b={bg['b']:.3f} (per {bg['time_unit']})"
        )
        if gg["p"] is not None:
            out.write(f"; Gamma-Gamma p={gg['p']:.2f} q={gg['q']:.2f} gamma={gg['gamma']:.2f}")
        out.write("\n")
    else:
        out.write(f"\nModel: fallback — {model['note']}\n")
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
    _table(
        out,
        f"Last {periods['days']} days vs the {periods['days']} before",
        ["", "current", "previous", "change"],
        [
            [k, periods["current"][k], periods["previous"][k], _pct(periods["change"][k])]
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
                [r["key"], r["customers"], _pct(r["repeat_purchase_rate"])]
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
        "Days between orders",
        ["days", "orders"],
        [[b["days"], b["count"]] for b in m["days_between_orders_histogram"]],
    )


def run_analyze(
    path: Path,
    as_of: dt.date | None = None,
    as_json: bool = False,
    meta_dir: Path | None = None,
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
        if meta_dir is not None:
            out.write(f"\nMeta customer lists written to {meta_dir} (subscribed customers only)\n")
    return 0
