"""Pure mapping from what Shopify sends to row tuples: bulk JSONL and GraphQL nodes, REST
webhook payloads.

One tuple per row, columns in the order of :data:`COLUMNS`: the bulk path maps millions of
objects and ORM objects would dominate its cost. Line items and variants carry their parent's
id from ``__parentId`` and need no parent row, so the JSONL's lack of ordering does not matter.

Bulk lines and GraphQL nodes are decoded into :class:`Node` (msgspec) rather than dicts: the
decode is typed, so a line that is not what the bulk documents select (an id that is not a
string, a quantity that is not a number) is refused before anything is written, and it is
several times cheaper than ``json.loads`` because only the selected fields become objects.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from shopify_app.segments.dataset import net_value
from shopify_app.shopify.client import gid_number

log = logging.getLogger(__name__)


# --- values ---------------------------------------------------------------------------------


def utc_text(value: str | None) -> str | None:
    """An ISO-8601 timestamp as the naive-UTC text the DateTime columns hold.

    Admin GraphQL always answers ``2026-01-02T03:04:05Z``; that common case is sliced rather
    than parsed (the bulk path does it millions of times). Webhook payloads carry the shop's
    offset (``-05:00``) and are converted.
    """
    if not value:
        return None
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":
        return f"{value[:10]} {value[11:19]}.000000"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _money(value: Any) -> float:
    if isinstance(value, dict):
        value = value.get("amount")
    return float(value) if value not in (None, "") else 0.0


def _upper(value: str | None) -> str | None:
    return value.upper() if value else None


# --- row shapes: one tuple per row, columns in the order of COLUMNS --------------------------

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "shop_id", "id", "first_name", "last_name", "email", "email_marketing_state", "phone",
        "phone_marketing_state", "country_code", "province_code", "city", "zip", "company",
        "tags", "number_of_orders", "amount_spent", "rfm_group", "predicted_spend_tier",
        "created_at", "updated_at",
    ),
    "orders": (
        "shop_id", "id", "customer_id", "name", "email", "created_at", "processed_at",
        "updated_at", "cancelled_at", "test", "total", "currency", "discount_codes",
        "billing_company", "refunded",
    ),
    "line_items": (
        "shop_id", "id", "order_id", "product_id", "variant_id", "sku", "title", "quantity",
        "amount",
    ),
    "products": (
        "shop_id", "id", "title", "handle", "product_type", "vendor", "status", "updated_at",
    ),
    "variants": ("shop_id", "id", "product_id", "title", "sku", "price"),
}  # fmt: skip


Row = tuple[Any, ...]


# --- GraphQL nodes: what the bulk and page documents select, typed --------------------------


class _Ref(msgspec.Struct, gc=False):
    id: str


class _Money(msgspec.Struct, gc=False, rename="camel"):
    amount: float | None = None  # Shopify's Decimal is a string: decoded leniently (below)
    currency_code: str | None = None


class _MoneyBag(msgspec.Struct, gc=False, rename="camel"):
    shop_money: _Money | None = None


class _Email(msgspec.Struct, gc=False, rename="camel"):
    email_address: str | None = None
    marketing_state: str | None = None


class _Consent(msgspec.Struct, gc=False):
    state: str | None = None


class _Phone(msgspec.Struct, gc=False, rename="camel"):
    phone_number: str | None = None
    sms_marketing_consent: _Consent | None = None


class _Address(msgspec.Struct, gc=False, rename="camel"):
    country_code_v2: str | None = None
    province_code: str | None = None
    city: str | None = None
    zip: str | None = None
    company: str | None = None


class _Statistics(msgspec.Struct, gc=False, rename="camel"):
    rfm_group: str | None = None
    predicted_spend_tier: str | None = None


class Node(msgspec.Struct, gc=False, rename="camel"):
    """A customer, order, line item, product or variant as the GraphQL documents select it.

    One shape for every kind (a bulk JSONL file mixes orders and their line items, told apart
    only by the type in the GID); the fields another kind selects stay ``None``. Fields not
    listed here (connections on a page node) are ignored. ``gc=False``: millions are made and
    none holds a cycle.
    """

    id: str
    parent_id: str | None = msgspec.field(default=None, name="__parentId")
    # Customer
    first_name: str | None = None
    last_name: str | None = None
    default_email_address: _Email | None = None
    default_phone_number: _Phone | None = None
    default_address: _Address | None = None
    tags: list[str] | None = None
    number_of_orders: int | None = None  # UnsignedInt64: a string on the wire
    amount_spent: _Money | None = None
    statistics: _Statistics | None = None
    # Order
    name: str | None = None
    email: str | None = None
    customer: _Ref | None = None
    created_at: str | None = None
    processed_at: str | None = None
    updated_at: str | None = None
    cancelled_at: str | None = None
    test: bool | None = None
    total_price_set: _MoneyBag | None = None
    total_refunded_set: _MoneyBag | None = None
    current_total_price_set: _MoneyBag | None = None
    discount_codes: list[str] | None = None
    billing_address: _Address | None = None
    # LineItem (and Product / ProductVariant: title, sku)
    title: str | None = None
    sku: str | None = None
    quantity: int | None = None
    current_quantity: int | None = None
    product: _Ref | None = None
    variant: _Ref | None = None
    discounted_total_set: _MoneyBag | None = None
    # Product, ProductVariant
    handle: str | None = None
    product_type: str | None = None
    vendor: str | None = None
    status: str | None = None
    price: float | None = None


NODE_DECODER = msgspec.json.Decoder(Node, strict=False)
"""Decodes one bulk JSONL line into a :class:`Node`; raises ``msgspec.ValidationError`` (a
``ValueError``) when the line does not have the selected shape. ``strict=False``: Shopify sends
Decimal and UnsignedInt64 as strings ("24.90", "3"); they are converted, and anything that is
not a number still fails the decode."""


def as_node(node: Node | Mapping[str, Any]) -> Node:
    """A GraphQL node from a page response (a dict) as a :class:`Node`, validated the same way."""
    if isinstance(node, Node):
        return node
    return msgspec.convert(node, Node, strict=False)


def _amount(bag: _MoneyBag | None) -> tuple[float, str | None]:
    money = bag.shop_money if bag is not None else None
    if money is None:
        return 0.0, None
    return money.amount or 0.0, money.currency_code


def _codes(codes: list[str] | None) -> str:
    return json.dumps(codes) if codes else "[]"


def customer_row(shop_id: int, node: Node | Mapping[str, Any]) -> Row:
    """A GraphQL ``Customer`` node as a ``customers`` row."""
    n = as_node(node)
    email = n.default_email_address or _Email()
    phone = n.default_phone_number or _Phone()
    address = n.default_address or _Address()
    stats = n.statistics or _Statistics()
    spent = n.amount_spent
    return (
        shop_id,
        gid_number(n.id),
        n.first_name,
        n.last_name,
        email.email_address,
        email.marketing_state,
        phone.phone_number,
        phone.sms_marketing_consent.state if phone.sms_marketing_consent else None,
        address.country_code_v2,
        address.province_code,
        address.city,
        address.zip,
        address.company,
        json.dumps(n.tags or []),
        n.number_of_orders or 0,
        (spent.amount or 0.0) if spent is not None else 0.0,
        stats.rfm_group,
        stats.predicted_spend_tier,
        utc_text(n.created_at),
        utc_text(n.updated_at),
    )


def order_row(shop_id: int, node: Node | Mapping[str, Any]) -> Row:
    """A GraphQL ``Order`` node as an ``orders`` row; ``total`` is net of refunds."""
    n = as_node(node)
    total, currency = _amount(n.total_price_set)
    refunded = _amount(n.total_refunded_set)[0]
    current = n.current_total_price_set
    net = net_value(total, refunded, _amount(current)[0] if current is not None else None)
    customer = n.customer
    return (
        shop_id,
        gid_number(n.id),
        gid_number(customer.id) if customer is not None else None,
        n.name,
        n.email,
        utc_text(n.created_at),
        utc_text(n.processed_at or n.created_at),
        utc_text(n.updated_at),
        utc_text(n.cancelled_at),
        bool(n.test),
        net,
        currency,
        _codes(n.discount_codes),
        n.billing_address.company if n.billing_address is not None else None,
        refunded,
    )


def line_item_row(shop_id: int, node: Node | Mapping[str, Any], order_id: int) -> Row:
    """A GraphQL ``LineItem`` node as a ``line_items`` row (quantity is the current one)."""
    n = as_node(node)
    quantity = n.current_quantity
    if quantity is None:
        quantity = n.quantity or 0
    product = n.product
    variant = n.variant
    return (
        shop_id,
        gid_number(n.id),
        order_id,
        gid_number(product.id) if product is not None else None,
        gid_number(variant.id) if variant is not None else None,
        n.sku,
        n.title or "",
        quantity,
        _amount(n.discounted_total_set)[0],
    )


def product_row(shop_id: int, node: Node | Mapping[str, Any]) -> Row:
    """A GraphQL ``Product`` node as a ``products`` row."""
    n = as_node(node)
    return (
        shop_id,
        gid_number(n.id),
        n.title or "",
        n.handle,
        n.product_type,
        n.vendor,
        n.status,
        utc_text(n.updated_at),
    )


def variant_row(shop_id: int, node: Node | Mapping[str, Any], product_id: int) -> Row:
    """A GraphQL ``ProductVariant`` node as a ``variants`` row."""
    n = as_node(node)
    return (shop_id, gid_number(n.id), product_id, n.title or "", n.sku, n.price)


@dataclass
class Batch:
    """Rows parsed from some JSONL lines, grouped by table."""

    rows: dict[str, list[Row]]
    lines: int = 0

    @classmethod
    def empty(cls) -> Batch:
        return cls({name: [] for name in COLUMNS})


_GID_PREFIX = len("gid://shopify/")


def parse_line(shop_id: int, line: bytes | str, batch: Batch) -> None:
    """Decode one bulk JSONL line and route it to its table (by the type in its GID)."""
    node = NODE_DECODER.decode(line)
    gid = node.id
    end = gid.find("/", _GID_PREFIX)
    kind = gid[_GID_PREFIX:end] if end > 0 else ""
    if kind == "LineItem":
        batch.rows["line_items"].append(line_item_row(shop_id, node, _parent(node)))
    elif kind == "Order":
        batch.rows["orders"].append(order_row(shop_id, node))
    elif kind == "Customer":
        batch.rows["customers"].append(customer_row(shop_id, node))
    elif kind == "Product":
        batch.rows["products"].append(product_row(shop_id, node))
    elif kind == "ProductVariant":
        batch.rows["variants"].append(variant_row(shop_id, node, _parent(node)))
    else:
        log.warning("unexpected bulk object %r skipped", gid[:80])


def _parent(node: Node) -> int:
    return gid_number(node.parent_id) or 0


# --- REST webhook payloads --------------------------------------------------------------------


def rest_customer_row(shop_id: int, p: dict[str, Any], stored: Any) -> Row:
    """A REST ``customers/*`` payload as a row; ``stored`` (the current row, or None) fills in
    what the payload leaves out."""
    address = p.get("default_address") or {}
    email_consent = p.get("email_marketing_consent") or {}
    sms_consent = p.get("sms_marketing_consent") or {}
    raw_tags = p.get("tags")
    if isinstance(raw_tags, str):
        tags = [t.strip() for t in raw_tags.split(",") if t.strip()]
    elif isinstance(raw_tags, list):
        tags = [str(t) for t in raw_tags]
    else:
        tags = list(stored.tags) if stored else []

    def keep(key: str, current: Any, default: Any) -> Any:
        # Newer API versions leave some counters out of the payload: keep what we know.
        if key in p and p[key] is not None:
            return p[key]
        return current if stored is not None else default

    return (
        shop_id,
        int(p["id"]),
        p.get("first_name"),
        p.get("last_name"),
        p.get("email"),
        _upper(email_consent.get("state")),
        p.get("phone"),
        _upper(sms_consent.get("state")),
        address.get("country_code"),
        address.get("province_code"),
        address.get("city"),
        address.get("zip"),
        address.get("company"),
        json.dumps(tags),
        int(keep("orders_count", stored.number_of_orders if stored else 0, 0)),
        _money(keep("total_spent", stored.amount_spent if stored else 0, 0)),
        stored.rfm_group if stored else None,
        stored.predicted_spend_tier if stored else None,
        utc_text(p.get("created_at")),
        utc_text(p.get("updated_at")),
    )


def _rest_refunded(p: dict[str, Any]) -> float:
    """Money a REST order payload's refunds gave back: their successful refund transactions."""
    return sum(
        _money(t.get("amount"))
        for refund in p.get("refunds") or []
        for t in refund.get("transactions") or []
        if t.get("kind") == "refund" and t.get("status") == "success"
    )


def rest_order_rows(shop_id: int, p: dict[str, Any]) -> tuple[Row, list[Row]]:
    """A REST ``orders/*`` payload as an order row (net of refunds) and its line item rows."""
    order_id = int(p["id"])
    customer = p.get("customer") or {}
    refunded = _rest_refunded(p)
    order = (
        shop_id,
        order_id,
        int(customer["id"]) if customer.get("id") else None,
        p.get("name"),
        p.get("email") or p.get("contact_email"),
        utc_text(p.get("created_at")),
        utc_text(p.get("processed_at") or p.get("created_at")),
        utc_text(p.get("updated_at")),
        utc_text(p.get("cancelled_at")),
        bool(p.get("test")),
        net_value(
            _money(p.get("total_price")),
            refunded,
            _money(p["current_total_price"]) if p.get("current_total_price") else None,
        ),
        p.get("currency"),
        json.dumps([d.get("code") for d in p.get("discount_codes") or [] if d.get("code")]),
        (p.get("billing_address") or {}).get("company"),
        refunded,
    )
    items = []
    for li in p.get("line_items") or []:
        quantity = li.get("current_quantity", li.get("quantity")) or 0
        amount = _money(li.get("price")) * int(li.get("quantity") or 0) - _money(
            li.get("total_discount")
        )
        items.append(
            (
                shop_id,
                int(li["id"]),
                order_id,
                li.get("product_id"),
                li.get("variant_id"),
                li.get("sku"),
                li.get("title") or "",
                int(quantity),
                round(amount, 2),
            )
        )
    return order, items
