"""The store generator: deterministic, and every kind of customer the playbook talks about."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from decimal import Decimal

import pytest

from goldpan_sandbox.generator import (
    ARCHETYPES,
    CATALOG,
    PLANTED,
    generate_labelled,
    generate_store,
)
from goldpan_sandbox.store import ID_BASE, Store

AS_OF = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def store() -> Store:
    return generate_store("linen-lane.myshopify.com", customers=600, seed=11, as_of=AS_OF)


def _fingerprint(store: Store) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for c in store.customers.values():
        rows.append((c.id, c.first_name, c.last_name, c.email, c.phone, c.created_at, c.tags))
    for o in store.orders.values():
        lines = tuple(
            (li.id, li.sku, li.quantity, li.effective_quantity, li.unit_price)
            for li in o.line_items
        )
        refunds = tuple((r.id, r.created_at, r.amount) for r in o.refunds)
        rows.append(
            (o.id, o.name, o.customer_id, o.created_at, o.cancelled_at, o.test, lines, refunds)
        )
    return rows


def test_same_seed_same_store_other_seed_other_store() -> None:
    a = generate_store("a.myshopify.com", customers=150, seed=3, as_of=AS_OF)
    b = generate_store("a.myshopify.com", customers=150, seed=3, as_of=AS_OF)
    c = generate_store("a.myshopify.com", customers=150, seed=4, as_of=AS_OF)
    assert _fingerprint(a) == _fingerprint(b)
    assert _fingerprint(a) != _fingerprint(c)


def test_sizes_and_averages(store: Store) -> None:
    assert len(store.customers) == 600
    per_customer = len(store.orders) / len(store.customers)
    lines = sum(len(o.line_items) for o in store.orders.values()) / len(store.orders)
    assert 2.8 <= per_customer <= 3.9
    assert 2.1 <= lines <= 2.9
    assert generate_store("tiny.myshopify.com", customers=0, seed=1, as_of=AS_OF).orders == {}


def test_everything_happens_before_as_of(store: Store) -> None:
    cutoff = dt.datetime.combine(AS_OF, dt.time(), dt.UTC)
    for order in store.orders.values():
        assert order.created_at < cutoff
        assert order.created_at.tzinfo is not None
        assert order.updated_at < cutoff
        assert order.cancelled_at is None or order.created_at <= order.cancelled_at < cutoff
        for refund in order.refunds:
            assert order.created_at <= refund.created_at <= order.updated_at
    for customer in store.customers.values():
        assert customer.created_at < cutoff
        orders = store.customer_orders(customer.id)
        if orders:
            assert customer.created_at <= min(o.created_at for o in orders)


def test_ids_and_order_numbers_follow_time(store: Store) -> None:
    orders = sorted(store.orders.values(), key=lambda o: o.id)
    assert [o.created_at for o in orders] == sorted(o.created_at for o in orders)
    assert orders[0].name == "#1001"
    assert [int(o.name[1:]) for o in orders] == list(range(1001, 1001 + len(orders)))
    assert min(store.customers) >= ID_BASE
    line_ids = [li.id for o in orders for li in o.line_items]
    assert len(set(line_ids)) == len(line_ids)
    # Refunds take their ids from the same stream, when they happened.
    events = sorted(
        [(o.id, o.created_at) for o in orders]
        + [(r.id, r.created_at) for o in orders for r in o.refunds]
    )
    assert [at for _, at in events] == sorted(at for _, at in events)


def test_catalog_products_and_variants(store: Store) -> None:
    handles = {p.handle for p in store.products.values()}
    for handle in (
        "linen-dinner-napkins",
        "cocktail-napkins",
        "tea-napkins",
        "linen-placemats",
        "linen-tablecloth",
        "wedding-handkerchief",
        "handkerchief-gift-box",
        "table-runner",
    ):
        assert handle in handles
    assert len(store.products) == len(CATALOG)
    skus = [v.sku for p in store.products.values() for v in p.variants]
    assert len(skus) == len(set(skus)) and "WH-MOTB" in skus and "TC-60X90" in skus
    variants = {v.id: v for p in store.products.values() for v in p.variants}
    for order in store.orders.values():
        for line in order.line_items:
            assert line.variant_id in variants
            assert variants[line.variant_id].product_id == line.product_id
            assert line.unit_price == variants[line.variant_id].price


def test_business_buyers_order_by_the_case_from_shared_company_domains(store: Store) -> None:
    # By the case net of refunds: the planted returned case and refunded order are no cases.
    buyers = {
        o.customer_id
        for o in store.orders.values()
        if any(li.effective_quantity >= 36 for li in o.line_items)
    }
    assert len(buyers) >= 10
    domains = Counter(
        store.customers[c].email.split("@")[1]  # type: ignore[union-attr]
        for c in buyers
        if store.customers[c].email
    )
    assert any(count >= 2 for count in domains.values()), "colleagues share a company domain"
    companies = {
        store.customers[c].default_address.company  # type: ignore[union-attr]
        for c in buyers
    }
    assert len(companies - {None}) >= 5
    # Billing addresses name the company too.
    billed = [
        o.billing_address.company
        for o in store.orders.values()
        if o.customer_id in buyers and o.billing_address
    ]
    assert billed and all(billed)


def test_repeat_fans_one_off_weddings_and_customers_going_cold(store: Store) -> None:
    as_of = AS_OF
    counts = Counter[str]()
    for customer in store.customers.values():
        orders = [o for o in store.customer_orders(customer.id) if not o.test]
        if not orders:
            counts["prospect"] += 1
            continue
        last = (as_of - max(o.created_at for o in orders).date()).days
        if len(orders) >= 5 and last <= 45:
            counts["fan"] += 1
        if len(orders) == 1 and any(
            li.sku and li.sku.startswith("WH-") for li in orders[0].line_items
        ):
            counts["wedding"] += 1
        if len(orders) >= 3 and 60 <= last <= 89:
            counts["cooling"] += 1
        if len(orders) >= 3 and last >= 90:
            counts["cold"] += 1
    for kind in ("prospect", "fan", "wedding", "cooling", "cold"):
        assert counts[kind] >= 10, (kind, counts)


def test_holidays_discounts_cancellations_tests_refunds(store: Store) -> None:
    orders = list(store.orders.values())
    by_month = Counter(o.created_at.month for o in orders)
    average = len(orders) / 12
    assert by_month[11] + by_month[12] > 2.5 * average  # the holiday peak
    assert min(by_month[11], by_month[12]) > max(by_month[m] for m in (1, 2, 3))
    codes = Counter(code for o in orders for code in o.discount_codes)
    for code in ("WELCOME10", "WEDDING15", "HOLIDAY20"):
        assert codes[code] > 0
    for order in orders:
        if "HOLIDAY20" in order.discount_codes:
            assert order.created_at.month in (11, 12)
        if order.discount_codes:
            assert Decimal("0") < order.discount_total < order.original_gross
    assert any(o.cancelled_at and o.cancel_reason for o in orders)
    assert any(o.test for o in orders)
    assert {o.financial_status for o in orders} == {"PAID", "PARTIALLY_REFUNDED", "REFUNDED"}


def test_consent_is_mixed(store: Store) -> None:
    states = Counter(c.email_marketing_state for c in store.customers.values())
    assert set(states) >= {"SUBSCRIBED", "NOT_SUBSCRIBED", "UNSUBSCRIBED", "PENDING"}
    groups = {c.rfm_group for c in store.customers.values()}
    assert {"CHAMPIONS", "DORMANT", "PROSPECTS"} <= groups


def test_multilingual_names_places_and_phone_formats(store: Store) -> None:
    customers = list(store.customers.values())
    names = " ".join(f"{c.first_name or ''} {c.last_name or ''}" for c in customers)
    assert re.search(r"[\u0370-\u03ff]", names), "Greek names"
    assert re.search(r"[\uac00-\ud7af]", names), "Korean names"
    assert re.search(r"[\u0600-\u06ff]", names), "Arabic names"
    assert re.search(r"\b(Smith|Johnson|Garcia|Miller)\b", names), "US names"
    assert {c.locale for c in customers} >= {"en", "el", "ko", "ar"}
    countries = {c.default_address.country_code for c in customers if c.default_address}
    assert {"US", "GR", "KR"} <= countries and countries & {"AE", "SA", "EG", "JO"}
    provinces = {c.default_address.province_code for c in customers if c.default_address}
    assert {"NY", "KR-11"} & provinces
    phones = [c.phone for c in customers if c.phone]
    assert any(p.startswith("010-") for p in phones), "Korean mobiles with the trunk zero"
    assert any(re.search(r"[٠-٩۰-۹]", p) for p in phones), "Arabic-Indic digits"
    assert any(p.startswith("+") for p in phones)
    digits = [re.sub(r"\D", "", p) for p in phones]
    assert len(phones) == len(set(phones)) and len(digits) > 50
    emails = [c.email.lower() for c in customers if c.email]
    assert len(emails) == len(set(emails)), "emails are unique"


def test_labels_name_every_customer_with_its_kind() -> None:
    store, labels = generate_labelled("labels.myshopify.com", customers=300, seed=2, as_of=AS_OF)
    assert set(labels) == set(store.customers)
    kinds = Counter(labels.values())
    assert set(kinds) == {*ARCHETYPES, *PLANTED}
    assert all(kinds[kind] == 1 for kind in PLANTED)
    for customer_id, kind in labels.items():
        orders = [o for o in store.customer_orders(customer_id) if not o.test]
        if kind == "business":
            assert any(li.effective_quantity >= 36 for o in orders for li in o.line_items)
        elif kind == "prospect":
            assert orders == []
        elif kind in ("cooling", "cold"):
            last = (AS_OF - max(o.created_at for o in orders).date()).days
            assert (60 <= last <= 89) if kind == "cooling" else last >= 90
        elif kind == "staff":
            assert all(o.test for o in store.customer_orders(customer_id))
    assert (
        generate_store("labels.myshopify.com", customers=300, seed=2, as_of=AS_OF).orders.keys()
        == store.orders.keys()
    )
