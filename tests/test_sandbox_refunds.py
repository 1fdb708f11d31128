"""Contract tests: refunds in the sandbox, as Shopify reports them.

The same refunds must read the same through every door: an Admin GraphQL query, a bulk
export (refunds inline in the order's line, line items as child lines), the ``refunds/create``
and ``orders/updated`` webhooks, the control API and the CLI. The generator plants them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from goldpan_sandbox import cli
from goldpan_sandbox.generator import generate_labelled
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import LineItem, Order, Store
from tests.conftest import TEST_API_KEY, TEST_API_SECRET
from tests.fixtures_sandbox import *  # noqa: F403
from tests.fixtures_sandbox import SANDBOX_SHOP, WebhookSink, graphql, small_store

ORDER_FIELDS = """
  id displayFinancialStatus
  totalPriceSet { shopMoney { amount } }
  currentTotalPriceSet { shopMoney { amount } }
  totalRefundedSet { shopMoney { amount } }
  refunds { id createdAt totalRefundedSet { shopMoney { amount } } }
"""
LINE_FIELDS = "id quantity currentQuantity refundableQuantity"

ORDER_QUERY = f"""query($id: ID!) {{ order(id: $id) {{
  {ORDER_FIELDS}
  currentTotalDiscountsSet {{ shopMoney {{ amount }} }}
  totalRefundedShippingSet {{ shopMoney {{ amount }} }}
  refunds {{
    id
    refundLineItems(first: 10) {{ nodes {{
      quantity restockType restocked subtotalSet {{ shopMoney {{ amount }} }} lineItem {{ id }}
    }} }}
    transactions(first: 5) {{ nodes {{ kind status amountSet {{ shopMoney {{ amount }} }} }} }}
  }}
  lineItems(first: 10) {{ nodes {{ {LINE_FIELDS} }} }}
}} }}"""


def _amount(money: dict[str, Any]) -> Decimal:
    return Decimal(money["shopMoney"]["amount"])


def _hotel_order(store: Store) -> Order:
    """small_store's hotel order: 120 napkins at 8.50, no discount, no shipping."""
    return next(o for o in store.orders.values() if o.line_items[0].quantity == 120)


def _refund(sandbox: ShopifySandbox, order_id: int, spec: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/orders/{order_id}/refunds",
        json=spec,
        timeout=5,
    )


def _gid_order(order: Order) -> dict[str, str]:
    return {"id": f"gid://shopify/Order/{order.id}"}


def _discounted_order(store: Store) -> Order:
    """4 napkins at 8.50 and 2 runners at 42.00, 10% off (11.80), shipping 8.95."""
    napkin, runner = (p.variants[0] for p in store.products.values())
    when = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    lines = [
        LineItem(store.next_id(), v.product_id, v.id, v.sku, title, quantity, v.price)
        for v, title, quantity in ((napkin, "Napkin", 4), (runner, "Runner", 2))
    ]
    gross = sum((li.unit_price * li.quantity for li in lines), Decimal(0))
    order = Order(
        store.next_id(), store.next_order_name(), next(iter(store.customers)), None,
        when, when, when, "USD", lines,
        discount_codes=["TEN"], discount_total=gross / 10, shipping_total=Decimal("8.95"),
    )  # fmt: skip
    return store.add_order(order, notify=False)


# --- GraphQL ----------------------------------------------------------------------------------


def test_partial_refund_reads_net_in_graphql(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    order = _hotel_order(store)
    line = order.line_items[0]
    answer = _refund(
        shopify_sandbox,
        order.id,
        {"line_items": [{"line_item_id": f"gid://shopify/LineItem/{line.id}", "quantity": 100}]},
    )
    assert answer.status_code == 201, answer.text
    body = graphql(shopify_sandbox, sandbox_token, ORDER_QUERY, _gid_order(order)).json()
    assert "errors" not in body, body
    got = body["data"]["order"]
    returned = line.unit_price * 100
    assert got["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    assert _amount(got["totalPriceSet"]) == line.unit_price * 120
    assert _amount(got["totalRefundedSet"]) == returned
    assert _amount(got["currentTotalPriceSet"]) == line.unit_price * 20
    (node,) = got["lineItems"]["nodes"]
    assert (node["quantity"], node["currentQuantity"], node["refundableQuantity"]) == (120, 20, 20)
    (refund,) = got["refunds"]
    assert refund["id"] == f"gid://shopify/Refund/{answer.json()['refund']['id']}"
    assert _amount(refund["totalRefundedSet"]) == returned
    (item,) = refund["refundLineItems"]["nodes"]
    assert item["lineItem"]["id"] == node["id"] and item["quantity"] == 100
    assert (item["restockType"], item["restocked"]) == ("RETURN", True)
    assert _amount(item["subtotalSet"]) == returned
    (money,) = refund["transactions"]["nodes"]
    assert (money["kind"], money["status"]) == ("REFUND", "SUCCESS")
    assert _amount(money["amountSet"]) == returned
    # The refund is a node of its own, and orders can be searched by financial status.
    found = graphql(
        shopify_sandbox,
        sandbox_token,
        """query($id: ID!) { node(id: $id) { ... on Refund { order { id } } }
        orders(first: 10, query: "financial_status:partially_refunded") { nodes { id } } }""",
        {"id": refund["id"]},
    ).json()["data"]
    assert found["node"]["order"]["id"] == got["id"]
    assert [n["id"] for n in found["orders"]["nodes"]] == [got["id"]]


def test_discount_and_shipping_come_back_in_proportion(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    order = _discounted_order(store)
    napkins = order.line_items[0]
    paid = order.original_gross * Decimal("0.9") + Decimal("8.95")
    assert order.total_price == paid

    # Two napkins back: their price less their tenth of the discount.
    first = store.refund_order(order.id, {napkins.id: 2}, notify=False)
    assert first.line_items[0].subtotal == first.amount == 2 * napkins.unit_price * Decimal("0.9")
    assert order.current_total == paid - first.amount
    assert order.financial_status == "PARTIALLY_REFUNDED"

    # Then everything else, shipping included: the customer has all their money back.
    second = store.refund_order(order.id, None, restock_type="NO_RESTOCK", notify=False)
    assert first.amount + second.amount == paid
    assert second.shipping == Decimal("8.95")
    got = graphql(shopify_sandbox, sandbox_token, ORDER_QUERY, _gid_order(order)).json()
    order_data = got["data"]["order"]
    assert order_data["displayFinancialStatus"] == "REFUNDED"
    assert _amount(order_data["currentTotalPriceSet"]) == 0
    assert _amount(order_data["currentTotalDiscountsSet"]) == 0
    assert _amount(order_data["totalRefundedShippingSet"]) == Decimal("8.95")
    assert _amount(order_data["totalRefundedSet"]) == paid
    assert [n["currentQuantity"] for n in order_data["lineItems"]["nodes"]] == [0, 0]
    last = order_data["refunds"][1]["refundLineItems"]["nodes"]
    assert [(n["quantity"], n["restocked"]) for n in last] == [(2, False), (2, False)]


def test_refunds_shopify_would_refuse_are_refused(shopify_sandbox: ShopifySandbox) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    order = _hotel_order(store)
    line_id = order.line_items[0].id
    other_line = next(o for o in store.orders.values() if o is not order).line_items[0].id
    for spec, words in (
        ({"line_items": [{"line_item_id": line_id, "quantity": 121}]}, "refundable units"),
        ({"line_items": [{"line_item_id": other_line, "quantity": 1}]}, "not on order"),
        ({"line_items": [{"line_item_id": line_id, "quantity": 0}]}, "above zero"),
        ({"full": True, "line_items": [{"line_item_id": line_id}]}, "either"),
        ({}, "either"),
        ({"full": True, "restock_type": "LEGACY_RESTOCK"}, "restock type"),
    ):
        answer = _refund(shopify_sandbox, order.id, spec)
        assert answer.status_code == 422 and words in answer.json()["error"], (spec, answer.text)
    assert order.refunds == [] and order.line_items[0].effective_quantity == 120
    assert _refund(shopify_sandbox, order.id, {"full": True}).status_code == 201
    again = _refund(shopify_sandbox, order.id, {"full": True})
    assert again.status_code == 422 and "nothing left" in again.json()["error"]
    assert _refund(shopify_sandbox, 1, {"full": True}).status_code == 404


# --- bulk -------------------------------------------------------------------------------------

BULK_ORDERS = f"""{{ orders {{ edges {{ node {{
  {ORDER_FIELDS}
  lineItems {{ edges {{ node {{ {LINE_FIELDS} }} }} }}
}} }} }} }}"""

PAGED_ORDERS = f"""{{ orders(first: 10) {{ nodes {{
  {ORDER_FIELDS}
  lineItems(first: 5) {{ nodes {{ {LINE_FIELDS} }} }}
}} }} }}"""

RUN_QUERY = """mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) {
  bulkOperation { id } userErrors { field message code } } }"""


def _bulk(sandbox: ShopifySandbox, token: str, query: str) -> list[dict[str, Any]]:
    started = graphql(sandbox, token, RUN_QUERY, {"q": query}).json()["data"]
    assert started["bulkOperationRunQuery"]["userErrors"] == []
    gid = started["bulkOperationRunQuery"]["bulkOperation"]["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        op = graphql(
            sandbox, token, "query($id: ID!) { bulkOperation(id: $id) { status url } }", {"id": gid}
        ).json()["data"]["bulkOperation"]
        if op["status"] == "COMPLETED":
            text = requests.get(op["url"], timeout=10).text
            return [json.loads(line) for line in text.splitlines()]
        assert op["status"] in ("CREATED", "RUNNING"), op
        time.sleep(0.02)
    raise AssertionError("bulk operation did not finish")


def test_bulk_export_and_graphql_agree_on_refunds(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    hotel = _hotel_order(store)
    store.refund_order(hotel.id, {hotel.line_items[0].id: 84}, notify=False)
    store.refund_order(hotel.id, {hotel.line_items[0].id: 12}, restock_type="NO_RESTOCK")
    wedding = min(store.orders.values(), key=lambda o: o.id)
    store.refund_order(wedding.id, None, restock_type="CANCEL")
    _discounted_order(store)

    lines = _bulk(shopify_sandbox, sandbox_token, BULK_ORDERS)
    bulk_orders = {line["id"]: line for line in lines if "__parentId" not in line}
    bulk_items: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "__parentId" in line:
            bulk_items.setdefault(line.pop("__parentId"), []).append(line)
    paged = graphql(shopify_sandbox, sandbox_token, PAGED_ORDERS).json()["data"]["orders"]

    assert len(paged["nodes"]) == len(bulk_orders) == len(store.orders)
    for node in paged["nodes"]:
        items = node.pop("lineItems")["nodes"]
        assert bulk_orders[node["id"]] == node  # refunds inline, in the same order
        assert sorted(bulk_items[node["id"]], key=lambda i: i["id"]) == sorted(
            items, key=lambda i: i["id"]
        )
    statuses = Counter(n["displayFinancialStatus"] for n in paged["nodes"])
    assert statuses == {"PAID": 4, "PARTIALLY_REFUNDED": 1, "REFUNDED": 1}
    hotel_line = bulk_orders[f"gid://shopify/Order/{hotel.id}"]
    assert [r["createdAt"] for r in hotel_line["refunds"]] == sorted(
        r["createdAt"] for r in hotel_line["refunds"]
    )
    assert sum(_amount(r["totalRefundedSet"]) for r in hotel_line["refunds"]) == _amount(
        hotel_line["totalRefundedSet"]
    )


def test_bulk_refuses_a_connection_inside_the_refunds_list(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    query = (
        "{ orders { edges { node { id "
        "refunds { id refundLineItems { edges { node { id } } } } } } } }"
    )
    started = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": query}).json()["data"]
    assert started["bulkOperationRunQuery"]["bulkOperation"] is None
    assert started["bulkOperationRunQuery"]["userErrors"] == [
        {
            "field": ["query"],
            "message": "Queries that contain a connection field within a list field are not "
            "currently supported.",
            "code": "INVALID",
        }
    ]


# --- webhooks ---------------------------------------------------------------------------------


@pytest.fixture
def app_toml_sandbox(tmp_path: Path) -> Iterator[ShopifySandbox]:
    """A sandbox subscribed to what the repository's shopify.app.toml declares."""
    sandbox = ShopifySandbox(
        TEST_API_KEY, TEST_API_SECRET, retry_backoff=0.05, workdir=tmp_path / "bulk", seed=7
    )
    sandbox.add_shop(SANDBOX_SHOP, small_store())
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.close()


def test_refund_sends_signed_refunds_create_and_orders_updated(
    app_toml_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    sandbox = app_toml_sandbox
    sandbox.app_url = webhook_sink.url
    order = _hotel_order(sandbox.store(SANDBOX_SHOP))
    line = order.line_items[0]
    answer = _refund(
        sandbox,
        order.id,
        {"line_items": [{"line_item_id": line.id, "quantity": 90}], "note": "wrong colour"},
    )
    assert answer.status_code == 201
    assert sandbox.delivery.drain(5)
    assert sorted(webhook_sink.topics()) == ["orders/updated", "refunds/create"]
    bodies = {}
    for headers, body in webhook_sink.received:
        digest = hmac.new(TEST_API_SECRET.encode(), body, hashlib.sha256).digest()
        assert headers["x-shopify-hmac-sha256"] == base64.b64encode(digest).decode()
        assert headers["x-shopify-shop-domain"] == SANDBOX_SHOP
        bodies[headers["x-shopify-topic"]] = json.loads(body)

    refund = bodies["refunds/create"]
    assert refund == answer.json()["refund"]
    assert refund["admin_graphql_api_id"] == f"gid://shopify/Refund/{refund['id']}"
    assert (refund["order_id"], refund["note"], refund["restock"]) == (
        order.id,
        "wrong colour",
        True,
    )
    (item,) = refund["refund_line_items"]
    assert (item["line_item_id"], item["quantity"], item["restock_type"]) == (line.id, 90, "return")
    assert Decimal(item["subtotal_set"]["shop_money"]["amount"]) == line.unit_price * 90
    assert item["line_item"]["id"] == line.id and item["line_item"]["current_quantity"] == 30
    (money,) = refund["transactions"]
    assert (money["kind"], money["status"]) == ("refund", "success")
    assert Decimal(money["amount"]) == line.unit_price * 90

    updated = bodies["orders/updated"]
    assert updated["id"] == order.id and updated["financial_status"] == "partially_refunded"
    assert [r["id"] for r in updated["refunds"]] == [refund["id"]]
    assert updated["line_items"][0]["quantity"] == 120
    assert updated["line_items"][0]["current_quantity"] == 30
    assert Decimal(updated["current_total_price"]) == line.unit_price * 30
    assert Decimal(updated["total_price"]) == line.unit_price * 120


# --- CLI --------------------------------------------------------------------------------------


def test_cli_refunds_by_line_then_in_full(
    shopify_sandbox: ShopifySandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    order = _hotel_order(store)
    line = order.line_items[0]
    where = ("--sandbox", shopify_sandbox.base_url, "--shop", SANDBOX_SHOP)
    code = cli.main([
        "refund", f"gid://shopify/Order/{order.id}", *where,
        "--line", f"gid://shopify/LineItem/{line.id}:24", "--no-restock",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["order"] == order.name and summary["financial_status"] == "partially_refunded"
    assert Decimal(summary["amount"]) == line.unit_price * 24
    assert summary["line_items"] == [
        {"line_item_id": line.id, "quantity": 24, "restock_type": "no_restock"}
    ]
    assert line.effective_quantity == 96

    code = cli.main(["refund", str(order.id), *where, "--full"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["financial_status"] == "refunded" and Decimal(summary["current_total"]) == 0
    assert Decimal(summary["amount"]) == line.unit_price * 96
    assert len(order.refunds) == 2

    for args, words in (
        ((str(order.id), *where, "--full"), "nothing left"),
        ((str(order.id), *where, "--line", f"{line.id}:1"), "refundable units"),
        (("12345", *where, "--full"), "no order"),
        ((str(order.id), *where, "--line", "napkins"), "ID:QTY"),
        ((str(order.id), *where, "--full", "--line", f"{line.id}:1"), "not allowed"),
        ((str(order.id), *where), "required"),
    ):
        code = cli.main(["refund", *args])
        assert code == 2 and words in capsys.readouterr().err, args


# --- the generator ----------------------------------------------------------------------------

AS_OF = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def labelled() -> tuple[Store, dict[int, str]]:
    return generate_labelled("refunds.myshopify.com", customers=600, seed=11, as_of=AS_OF)


def test_generator_refunds_some_orders_in_full_and_some_in_part(
    labelled: tuple[Store, dict[int, str]],
) -> None:
    store, labels = labelled
    orders = [o for o in store.orders.values() if not o.test and o.cancelled_at is None]
    statuses = Counter(o.financial_status for o in orders)
    assert 0.03 <= statuses["REFUNDED"] / len(orders) <= 0.05
    assert 0.02 <= statuses["PARTIALLY_REFUNDED"] / len(orders) <= 0.04
    refunded = [o for o in orders if o.financial_status == "REFUNDED"]
    same_day = [o for o in refunded if o.refunds[0].created_at.date() == o.created_at.date()]
    assert 0.2 <= len(same_day) / len(refunded) <= 0.6
    for order in refunded:
        assert order.current_total == 0 and order.refunded_total == order.total_price
        assert all(li.effective_quantity == 0 for li in order.line_items)
    restocks = Counter(rli.restock_type for o in orders for r in o.refunds for rli in r.line_items)
    assert set(restocks) == {"RETURN", "CANCEL", "NO_RESTOCK"}
    # A business gives part of a case back, but keeps a case.
    business = {c for c, kind in labels.items() if kind == "business"}
    for order in orders:
        if order.customer_id in business and order.financial_status == "PARTIALLY_REFUNDED":
            cases = [li for li in order.line_items if li.quantity >= 36]
            assert not cases or max(li.effective_quantity for li in cases) >= 36


def test_generator_plants_customers_only_refunds_tell_apart(
    labelled: tuple[Store, dict[int, str]],
) -> None:
    store, labels = labelled

    def spent(customer_id: int, net: bool) -> Decimal:
        return sum(
            (o.current_total if net else o.total_price for o in store.customer_orders(customer_id)
             if not o.test and o.cancelled_at is None),
            Decimal(0),
        )  # fmt: skip

    (vip,) = [c for c, kind in labels.items() if kind == "refunded_vip"]
    ordinary, big = sorted(store.customer_orders(vip), key=lambda o: o.created_at)
    assert big.financial_status == "REFUNDED" and ordinary.financial_status == "PAID"
    assert big.refunds[0].created_at.date() == big.created_at.date()
    # Counting the refunded order, they would be the shop's biggest spender.
    by_gross = sorted(store.customers, key=lambda c: spent(c, net=False), reverse=True)
    assert by_gross[0] == vip
    assert spent(vip, net=True) == ordinary.total_price == store.amount_spent(vip)

    (case,) = [c for c, kind in labels.items() if kind == "returned_case"]
    (order,) = store.customer_orders(case)
    (line,) = order.line_items
    assert line.quantity >= 36 > line.effective_quantity
    assert order.financial_status == "PARTIALLY_REFUNDED"
