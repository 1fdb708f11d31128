"""Goldpan's scores on every customer as metafields, for Shopify's segment editor, Flow and Liquid.

Definitions (owner CUSTOMER, filterable in the admin) are created on first use. Values are the
same engine's predictions (:func:`shopify_app.segments.library.evaluate` with the yardsticks
cached by the last full recompute), rounded coarsely so that a day older or a refitted model
does not change them, and written diff-only: the digest of each customer's rounded scores is
stored, and only customers whose digest changed are written — ``metafieldsSet`` with 25
metafields a call, or a bulk mutation above :data:`BULK_THRESHOLD` customers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, ScoreDigest, ScoreSettings, Shop, utcnow
from shopify_app.errors import ShopifyError, stored_error
from shopify_app.segments import cadence, library, loader, rfm
from shopify_app.segments.dataset import day_date
from shopify_app.segments.recompute import cached_stats, shop_config
from shopify_app.states import AuditTarget
from shopify_app.tagging.writes import AdminAPI, admin_client

log = logging.getLogger(__name__)

NAMESPACE = "$app:goldpan"
MAX_PER_CALL = 25
"""Shopify's limit on metafields in one ``metafieldsSet``."""
BULK_THRESHOLD = 500
"""Changed customers above which the values go out as one bulk mutation."""
BULK_WAIT_SECONDS = 600.0
BULK_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Score:
    """One metafield: its key, type, the merchant-facing name and what it means."""

    key: str
    type: str
    name: str
    description: str


SCORES: tuple[Score, ...] = (
    Score("p_alive", "number_decimal", "Chance still active", "Goldpan: 0–1, in steps of 0.05"),
    Score(
        "expected_orders_90d",
        "number_decimal",
        "Expected orders in 90 days",
        "Goldpan: in steps of 0.5",
    ),
    Score(
        "predicted_value_12m",
        "number_decimal",
        "Predicted 12-month value",
        "Goldpan: in the shop's currency, two significant digits",
    ),
    Score(
        "next_order_date",
        "date",
        "Expected next order",
        "Goldpan: last order plus the customer's usual interval (the shop's for one order)",
    ),
    Score(
        "rfm_score",
        "single_line_text_field",
        "RFM score",
        "Goldpan: recency, frequency, monetary, 1–5 each",
    ),
    Score("rfm_group", "single_line_text_field", "RFM group", "Goldpan: e.g. champions, at-risk"),
    Score("business_buyer", "boolean", "Business buyer", "Goldpan: in the business buyers segment"),
)


def _significant(value: float, digits: int = 2) -> str:
    """``1234.5`` → ``"1200"``: coarse enough that daily drift does not change it."""
    if value <= 0 or not np.isfinite(value):
        return "0"
    rounded = float(f"{value:.{digits}g}")
    return str(int(rounded)) if rounded >= 1 else f"{rounded:g}"


def score_values(ev: library.Evaluation) -> Iterator[tuple[int, dict[str, str]]]:
    """Per customer with orders: ``(customer id, {key: value})``, rounded (pure)."""
    f, preds, stats = ev.features, ev.predictions, ev.stats
    r, fq, m = ev.rfm_scores
    # The same usual interval the segments judge each customer's rhythm by.
    interval = cadence.usual_interval(f.occasions, f.first_day, f.last_day, stats.typical_interval)
    business = np.zeros(ev.dataset.n_customers, dtype=bool)
    found = ev.segments.get("business-buyers")
    if found is not None:
        business[found.members] = True
    ids = ev.dataset.customer_ids.tolist()
    for i in np.nonzero(f.has_orders)[0].tolist():
        group = int(ev.rfm_group[i])
        next_day = int(f.last_day[i]) + round(float(interval[i]))
        yield (
            ids[i],
            {
                # Without a purchase model the shop has no predictions (NaN): no metafield
                # rather than a made-up number.
                "p_alive": (
                    f"{round(float(preds.p_alive[i]) * 20) / 20:.2f}" if preds.available else ""
                ),
                "expected_orders_90d": (
                    f"{round(float(preds.purchases_90d[i]) * 2) / 2:.1f}" if preds.available else ""
                ),
                "predicted_value_12m": (
                    _significant(float(preds.clv_12m[i])) if preds.available else ""
                ),
                "next_order_date": day_date(next_day).isoformat(),
                "rfm_score": f"{int(r[i])}{int(fq[i])}{int(m[i])}",
                "rfm_group": rfm.GROUP_KEYS[group] if group >= 0 else "",
                "business_buyer": "true" if business[i] else "false",
            },
        )


def digest(values: Mapping[str, str]) -> str:
    """A short, stable digest of one customer's rounded scores."""
    text = "\x1f".join(f"{k}={values[k]}" for k in sorted(values))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def metafield_inputs(customer_id: int, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """``MetafieldsSetInput`` objects for one customer (empty text values are left out)."""
    owner = f"gid://shopify/Customer/{customer_id}"
    return [
        {
            "ownerId": owner,
            "namespace": NAMESPACE,
            "key": s.key,
            "type": s.type,
            "value": values[s.key],
        }
        for s in SCORES
        if values.get(s.key) != ""
    ]


@dataclass
class ScoreReport:
    """What one run wrote: customers, requests, bulk operations and the API cost spent."""

    customers: int = 0
    unchanged: int = 0
    requests: int = 0
    bulk_operations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "unchanged": self.unchanged,
            "requests": self.requests,
            "bulk_operations": self.bulk_operations,
            "errors": self.errors[:20],
        }


def set_enabled(ctx: jobs.Context, shop_id: int, enabled: bool) -> None:
    """The merchant's switch; switching on queues the first write."""
    with transaction(ctx.sessions) as session:
        row = session.get(ScoreSettings, shop_id) or ScoreSettings(shop_id=shop_id)
        row.enabled = enabled
        session.add(row)
        session.add(
            AuditEntry.of(
                shop_id, "scores.enabled" if enabled else "scores.disabled", target=AuditTarget.APP
            )
        )
    if enabled:
        ctx.enqueue("actions.write_scores", shop_id=shop_id)


def ensure_definitions(ctx: jobs.Context, shop_id: int, client: AdminAPI) -> None:
    """Create the metafield definitions once; a definition already there (TAKEN) is fine."""
    with ctx.sessions() as session:
        row = session.get(ScoreSettings, shop_id)
        if row is not None and row.definitions_at is not None:
            return
    problems: list[str] = []
    for score in SCORES:
        data = client.execute(
            "metafield_definition_create",
            {
                "definition": {
                    "ownerType": "CUSTOMER",
                    "namespace": NAMESPACE,
                    "key": score.key,
                    "name": score.name,
                    "description": score.description,
                    "type": score.type,
                    "capabilities": {"adminFilterable": {"enabled": True}},
                }
            },
        )
        errors = (data.get("metafieldDefinitionCreate") or {}).get("userErrors") or []
        problems += [str(e.get("message")) for e in errors if e.get("code") != "TAKEN"]
    with transaction(ctx.sessions) as session:
        session.add(
            AuditEntry.of(
                shop_id,
                "scores.definitions",
                target=AuditTarget.SHOPIFY,
                count=len(SCORES),
                result="error" if problems else "ok",
                error="; ".join(problems) or None,
            )
        )
        if not problems:
            row = session.get(ScoreSettings, shop_id) or ScoreSettings(shop_id=shop_id)
            row.definitions_at = utcnow()
            session.add(row)
    if problems:
        raise ShopifyError(f"metafield definitions refused: {problems}")


def _changed(
    ctx: jobs.Context, shop_id: int, as_of: dt.date
) -> tuple[dict[int, dict[str, str]], int]:
    """Customers whose rounded scores differ from what was last written, and the unchanged count."""
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return {}, 0
        cfg, stats = shop_config(shop), cached_stats(shop)
        ds = loader.load(session, shop_id)
        stored = dict(
            session.execute(
                select(ScoreDigest.customer_id, ScoreDigest.digest).where(
                    ScoreDigest.shop_id == shop_id
                )
            ).all()
        )
    ev = library.evaluate(ds, cfg, as_of, stats=stats)
    changed: dict[int, dict[str, str]] = {}
    unchanged = 0
    for customer_id, values in score_values(ev):
        if stored.get(customer_id) == digest(values):
            unchanged += 1
        else:
            changed[customer_id] = values
    return changed, unchanged


def _remember(ctx: jobs.Context, shop_id: int, written: Mapping[int, Mapping[str, str]]) -> None:
    if not written:
        return
    with transaction(ctx.sessions) as session:
        for customer_id, values in written.items():
            session.merge(
                ScoreDigest(shop_id=shop_id, customer_id=customer_id, digest=digest(values))
            )


def _write_calls(
    client: AdminAPI, changed: Mapping[int, Mapping[str, str]], report: ScoreReport
) -> dict[int, Mapping[str, str]]:
    """``metafieldsSet`` with whole customers, up to 25 metafields a call."""
    written: dict[int, Mapping[str, str]] = {}
    batch: list[dict[str, Any]] = []
    owners: list[int] = []

    def send() -> None:
        data = client.execute("metafields_set", {"metafields": list(batch)})
        report.requests += 1
        errors = (data.get("metafieldsSet") or {}).get("userErrors") or []
        if errors:  # atomic: nothing in this call was written
            report.errors += [str(e.get("message")) for e in errors]
        else:
            written.update((cid, changed[cid]) for cid in owners)
        batch.clear()
        owners.clear()

    for customer_id, values in changed.items():
        inputs = metafield_inputs(customer_id, values)
        if len(batch) + len(inputs) > MAX_PER_CALL:
            send()
        batch.extend(inputs)
        owners.append(customer_id)
    if batch:
        send()
    return written


def _write_bulk(
    client: AdminAPI, changed: Mapping[int, Mapping[str, str]], report: ScoreReport
) -> dict[int, Mapping[str, str]]:
    """One bulk ``metafieldsSet`` (a line per customer); waits for it and reads its results."""
    order = list(changed)
    gid = client.run_bulk_mutation(
        "metafields_set", ({"metafields": metafield_inputs(c, changed[c])} for c in order)
    )
    report.requests += 3  # staged upload, upload, run
    report.bulk_operations.append(gid)
    deadline = time.monotonic() + BULK_WAIT_SECONDS
    while True:
        op = client.bulk_operation(gid)
        report.requests += 1
        if op.get("status") in ("COMPLETED", "FAILED", "CANCELED", "EXPIRED"):
            break
        if time.monotonic() > deadline:
            raise ShopifyError(f"bulk metafieldsSet {gid} still {op.get('status')}")
        time.sleep(BULK_POLL_SECONDS)
    url = op.get("url") or op.get("partialDataUrl")
    written: dict[int, Mapping[str, str]] = {}
    if not url:
        report.errors.append(f"bulk operation {gid} ended {op.get('status')} without results")
        return written
    for line in client.stream_jsonl(url):
        number = line.get("__lineNumber")
        payload = (line.get("data") or {}).get("metafieldsSet") or {}
        errors = payload.get("userErrors") or line.get("errors") or []
        if errors:
            report.errors += [str(e.get("message")) for e in errors]
        elif isinstance(number, int) and 0 <= number < len(order):
            written[order[number]] = changed[order[number]]
    return written


def write_scores_now(
    ctx: jobs.Context,
    shop_id: int,
    *,
    client: AdminAPI | None = None,
    as_of: dt.date | None = None,
) -> ScoreReport:
    """Write the scores that changed since the last run (definitions first, once)."""
    report = ScoreReport()
    with ctx.sessions() as session:
        row = session.get(ScoreSettings, shop_id)
        if row is None or not row.enabled:
            return report
    client = client or admin_client(ctx, shop_id)
    ensure_definitions(ctx, shop_id, client)
    changed, report.unchanged = _changed(ctx, shop_id, as_of or library.today())
    try:
        if len(changed) > BULK_THRESHOLD:
            written = _write_bulk(client, changed, report)
        else:
            written = _write_calls(client, changed, report)
    except ShopifyError as exc:
        with transaction(ctx.sessions) as session:
            session.add(
                AuditEntry.of(
                    shop_id,
                    "scores.write",
                    target=AuditTarget.SHOPIFY,
                    count=len(changed),
                    result="error",
                    error=stored_error(exc),
                )
            )
        raise
    _remember(ctx, shop_id, written)
    report.customers = len(written)
    with transaction(ctx.sessions) as session:
        if written or report.errors:
            session.add(
                AuditEntry.of(
                    shop_id,
                    "scores.write",
                    target=AuditTarget.SHOPIFY,
                    count=len(written),
                    result="partial" if report.errors else "ok",
                    detail=report.summary(),
                    error="; ".join(report.errors[:5]) or None,
                )
            )
        settings = session.get(ScoreSettings, shop_id)
        if settings is not None:
            settings.written_at = utcnow()
    return report


@jobs.task("actions.write_scores", lock="scores:{shop_id}")
def write_scores(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """Task: write the shop's changed scores to customer metafields."""
    return write_scores_now(ctx, shop_id).summary()


@jobs.periodic("actions.daily_scores", hour="4", minute="10")
def daily_scores(ctx: jobs.Context) -> int:
    """Once a day, after the daily recompute: every shop with scores switched on."""
    with ctx.sessions() as session:
        shop_ids = session.scalars(
            select(ScoreSettings.shop_id)
            .join(Shop, Shop.id == ScoreSettings.shop_id)
            .where(ScoreSettings.enabled.is_(True), Shop.is_installed)
        ).all()
    for shop_id in shop_ids:
        ctx.enqueue("actions.write_scores", shop_id=int(shop_id))
    return len(shop_ids)
