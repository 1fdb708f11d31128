"""One set of numbers everywhere: the page's API shows exactly what ``shopify-app analyze``
prints for the same store; amounts carry the shop's currency; counts take the right plural."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.cli import main
from shopify_app.db.models import Customer, LineItem, Membership, Order, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.segments import metrics, recompute
from shopify_app.segments.library import reasons
from shopify_app.sync import bulk, reconcile
from tests.fixtures_api import ApiClient, seed_shop, serving
from tests.fixtures_auth import session_token
from tests.fixtures_sync import SyncEnv

AS_OF = dt.date(2026, 6, 30)

EXPORT_COLUMNS = [
    "Name",
    "Email",
    "Financial Status",
    "Currency",
    "Total",
    "Discount Code",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Billing Name",
    "Billing Company",
    "Cancelled at",
    "Payment Method",
    "Refunded Amount",
    "Id",
]


def export_orders(session: Session, shop_id: int, path: Path) -> int:
    """The shop's orders as Shopify's "Export orders" CSV writes them: one row per line item,
    the order's own fields on its first row, newest order first. Returns the orders written."""
    emails = {
        cid: email
        for cid, email in session.execute(
            select(Customer.id, Customer.email).where(Customer.shop_id == shop_id)
        )
    }
    lines: dict[int, list[LineItem]] = {}
    for item in session.scalars(
        select(LineItem).where(LineItem.shop_id == shop_id).order_by(LineItem.id)
    ):
        lines.setdefault(item.order_id, []).append(item)
    orders = session.scalars(
        select(Order).where(Order.shop_id == shop_id).order_by(Order.created_at.desc())
    ).all()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        for order in orders:
            head = {
                "Name": order.name,
                "Email": emails.get(order.customer_id, order.email) or "",
                "Financial Status": "paid",
                "Currency": order.currency or "",
                "Total": f"{order.total:.2f}",
                "Discount Code": ", ".join(str(c) for c in order.discount_codes or []),
                # The day the app counts an order on is its processing day (UTC).
                "Created at": f"{order.processed_at:%Y-%m-%d %H:%M:%S} +0000",
                "Billing Company": order.billing_company or "",
                "Cancelled at": f"{order.cancelled_at:%Y-%m-%d %H:%M:%S} +0000"
                if order.cancelled_at
                else "",
                "Payment Method": "bogus" if order.test else "shopify_payments",
                "Refunded Amount": "0.00",
                "Id": str(order.id),
            }
            for n, item in enumerate(lines.get(order.id, [])):
                row = head if n == 0 else {"Name": order.name}
                row = {
                    **row,
                    "Lineitem quantity": str(item.quantity),
                    "Lineitem name": item.title,
                    "Lineitem price": f"{item.amount / max(item.quantity, 1):.2f}",
                }
                writer.writerow([row.get(c, "") for c in EXPORT_COLUMNS])
    return len(orders)


def test_the_page_shows_exactly_what_analyze_prints(
    ctx: Context,
    make_shop: Any,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shop = make_shop()
    seed_shop(sessions, shop.id, customers=160, seed=21, as_of=AS_OF)
    recompute.recompute_shop_now(ctx, shop.id, as_of=AS_OF)
    export = tmp_path / "orders_export.csv"
    with sessions() as session:
        assert export_orders(session, shop.id, export) > 160
    assert main(["analyze", str(export), "--as-of", AS_OF.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    printed = report["metrics"]
    assert printed["headline"]["customers"] == 160

    with serving(ctx) as url:
        client = ApiClient(url, shop.domain)
        analytics = client.get("/analytics").json()
        home = client.get("/home").json()["metrics"]

    shown = analytics["metrics"]
    # Every headline figure and every table, as stored by the recompute and shown by the page.
    for key in printed:
        assert shown[key] == printed[key], key
    assert shown == printed
    assert home["headline"] == printed["headline"]
    assert home["year_before"] == printed["year_before"]
    assert home["as_of"] == printed["as_of"] == AS_OF.isoformat()
    # The store is big enough for every table to hold something worth comparing.
    assert printed["cohorts"]["product"] and printed["first_product"]
    assert printed["discount_codes"][0]["customers"] and printed["rfm"]["cells"]
    assert printed["year_before"]["customers"]
    # A predicted value exactly when a purchase model passed the shop's backtest and its fit.
    fitted = report["model"]["purchase_model"] is not None
    assert (printed["headline"]["clv_predicted_12m"] is not None) == fitted


def test_the_sync_reads_the_shops_currency_and_amounts_carry_it(
    sync_env: SyncEnv, sessions: sessionmaker[Session]
) -> None:
    env = sync_env
    bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    with sessions() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        assert (shop.currency, shop.name) == (env.store.currency, env.store.name)
        assert shop.timezone == env.store.timezone
    assert env.store.currency == "EUR"
    recompute.recompute_shop_now(env.ctx, env.shop.id)
    with serving(env.ctx) as url:
        client = ApiClient(url, env.shop.domain)
        assert client.get("/home").json()["shop"]["currency"] == "EUR"
        assert client.get("/analytics").json()["currency"] == "EUR"
        # The members export says reasons in English, amounts in the shop's currency.
        with sessions() as session:
            one_time = session.scalar(
                select(Segment.id).where(
                    Segment.shop_id == env.shop.id, Segment.handle == "one-time-buyers"
                )
            )
            stored = session.scalars(
                select(Membership.reason).where(Membership.segment_id == one_time)
            ).all()
        assert stored
        spend = reasons.Reason.parse(stored[0]).params["spend_money"]  # type: ignore[union-attr]
        exported = requests.get(
            f"{url}/api/segments/{one_time}/members.csv",
            headers={"Authorization": f"Bearer {session_token(env.shop.domain)}"},
            timeout=30,
        )
    assert exported.status_code == 200
    texts = [
        row["reason"] for row in csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig")))
    ]
    assert f"(EUR {spend:,.2f})" in "\n".join(texts)
    # A shop that changes its currency is seen at the next reconciliation.
    env.store.currency = "KRW"
    reconcile.reconcile(env.ctx, env.shop.id, http=env.http)
    with sessions() as session:
        assert session.get(Shop, env.shop.id).currency == "KRW"  # type: ignore[union-attr]


def test_english_reasons_take_the_plural_the_count_needs_and_the_currency() -> None:
    render = reasons.render
    assert render(reasons.Reason("repeat", {"orders": 1, "last_date": "2026-03-03"})) == (
        "1 order, the last on 3 March 2026"
    )
    assert render(reasons.Reason("repeat", {"orders": 2, "last_date": "2026-03-03"})) == (
        "2 orders, the last on 3 March 2026"
    )
    fan = reasons.Reason("true_fan", {"orders": 4, "days": 1, "last_date": "2026-03-03"})
    assert render(fan) == "4 orders, about every 1 day; the last on 3 March 2026"
    # A fraction shown as "1" takes the singular, as it reads.
    assert reasons.counted("orders", 0.96) == "1 order"
    assert reasons.counted("orders", 0.4) == "0.4 orders"
    vip = reasons.Reason("vip", {"spend_money": 1234.5, "share": 10, "cutoff_money": 900})
    assert render(vip, "EUR") == "net spend EUR 1,234.50 (top 10% start at EUR 900.00)"
    assert render(vip, "KRW") == "net spend KRW 1,234 (top 10% start at KRW 900)"
    assert render(vip) == "net spend 1,234.50 (top 10% start at 900.00)"  # currency unknown
    region = reasons.Reason("region", {"place": "Athens, GR", "customers": 1})
    assert render(region) == "lives in Athens, GR, home to 1 customer"


def test_a_same_day_repeat_is_no_rhythm_and_never_about_every_0_days(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    when = dt.datetime.combine(AS_OF, dt.time(9), tzinfo=dt.UTC) - dt.timedelta(days=20)
    with sessions.begin() as session:
        session.add(Customer(shop_id=shop.id, id=1, email="same@example.com"))
        for n in range(3):  # three orders within one morning
            at = when + dt.timedelta(minutes=10 * n)
            session.add(
                Order(
                    shop_id=shop.id,
                    id=100 + n,
                    customer_id=1,
                    name=f"#{100 + n}",
                    created_at=at,
                    processed_at=at,
                    total=20.0,
                    currency="USD",
                    discount_codes=[],
                )
            )
    recompute.recompute_shop_now(ctx, shop.id, as_of=AS_OF)
    with sessions() as session:
        said = dict(
            session.execute(
                select(Segment.handle, Membership.reason)
                .join(Segment, Segment.id == Membership.segment_id)
                .where(Segment.shop_id == shop.id, Membership.customer_id == 1)
            ).all()
        )
    # Three orders in one morning are one order day: a repeat customer, but no rhythm to call
    # them a fan by, and no reason claims one.
    assert reasons.render(said["repeat-customers"]) == "3 orders, the last on 10 June 2026"
    assert "true-fans" not in said
    assert not any("every 0" in reasons.render(r) for r in said.values())


def test_every_count_has_its_plural_forms_in_every_language() -> None:
    web = Path(__file__).resolve().parents[1] / "web" / "i18n"
    english = json.loads((web / "en.json").read_text(encoding="utf-8"))
    for name, (one, other) in reasons.COUNTED.items():
        assert english[f"count.{name}"] == {"one": one, "other": other}
    for template in reasons.REASON_TEMPLATES.values():
        # The noun comes with the count: no template writes it after a counted placeholder.
        for name in reasons.COUNTED:
            assert f"{{{name}}} {name}" not in template, template
    arabic = json.loads((web / "ar.json").read_text(encoding="utf-8"))
    for name in reasons.COUNTED:
        # Arabic has six plural forms; each count spells all of them.
        assert set(arabic[f"count.{name}"]) == {"zero", "one", "two", "few", "many", "other"}
    assert set(metrics.NAMES) == set(metrics.DEFINITIONS)
