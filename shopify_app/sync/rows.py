"""Pure mapping from what Shopify sends to row tuples: bulk JSONL and GraphQL nodes, REST
webhook payloads.

One tuple per row, columns in the order of :data:`COLUMNS`: the bulk path maps millions of
objects and ORM objects would dominate its cost. Line items and variants carry their parent's
id from ``__parentId`` and need no parent row, so the JSONL's lack of ordering does not matter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

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


def _shop_money(value: dict[str, Any] | None) -> dict[str, Any]:
    return (value or {}).get("shopMoney") or {}


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
        "billing_company",
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


def customer_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Customer`` node as a ``customers`` row."""
    email = node.get("defaultEmailAddress") or {}
    phone = node.get("defaultPhoneNumber") or {}
    address = node.get("defaultAddress") or {}
    stats = node.get("statistics") or {}
    return (
        shop_id,
        gid_number(node["id"]),
        node.get("firstName"),
        node.get("lastName"),
        email.get("emailAddress"),
        email.get("marketingState"),
        phone.get("phoneNumber"),
        (phone.get("smsMarketingConsent") or {}).get("state"),
        address.get("countryCodeV2"),
        address.get("provinceCode"),
        address.get("city"),
        address.get("zip"),
        address.get("company"),
        json.dumps(node.get("tags") or []),
        int(node.get("numberOfOrders") or 0),
        _money(node.get("amountSpent")),
        stats.get("rfmGroup"),
        stats.get("predictedSpendTier"),
        utc_text(node.get("createdAt")),
        utc_text(node.get("updatedAt")),
    )


def order_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Order`` node as an ``orders`` row; ``total`` is net of refunds."""
    total = _shop_money(node.get("totalPriceSet"))
    refunded = _money(_shop_money(node.get("totalRefundedSet")))
    current = node.get("currentTotalPriceSet")
    net = net_value(_money(total), refunded, _money(_shop_money(current)) if current else None)
    customer = node.get("customer")
    return (
        shop_id,
        gid_number(node["id"]),
        gid_number(customer["id"]) if customer else None,
        node.get("name"),
        node.get("email"),
        utc_text(node.get("createdAt")),
        utc_text(node.get("processedAt") or node.get("createdAt")),
        utc_text(node.get("updatedAt")),
        utc_text(node.get("cancelledAt")),
        bool(node.get("test")),
        net,
        total.get("currencyCode"),
        json.dumps(node.get("discountCodes") or []),
        (node.get("billingAddress") or {}).get("company"),
    )


def line_item_row(shop_id: int, node: dict[str, Any], order_id: int) -> Row:
    """A GraphQL ``LineItem`` node as a ``line_items`` row (quantity is the current one)."""
    # The hot path of a bulk import (2.5 line items per order): lookups are inlined.
    product = node.get("product")
    variant = node.get("variant")
    quantity = node.get("currentQuantity")
    if quantity is None:
        quantity = node.get("quantity") or 0
    total = node.get("discountedTotalSet")
    amount = (total.get("shopMoney") or {}).get("amount") if total else None
    return (
        shop_id,
        gid_number(node["id"]),
        order_id,
        gid_number(product["id"]) if product else None,
        gid_number(variant["id"]) if variant else None,
        node.get("sku"),
        node.get("title") or "",
        int(quantity),
        float(amount) if amount else 0.0,
    )


def product_row(shop_id: int, node: dict[str, Any]) -> Row:
    """A GraphQL ``Product`` node as a ``products`` row."""
    return (
        shop_id,
        gid_number(node["id"]),
        node.get("title") or "",
        node.get("handle"),
        node.get("productType"),
        node.get("vendor"),
        node.get("status"),
        utc_text(node.get("updatedAt")),
    )


def variant_row(shop_id: int, node: dict[str, Any], product_id: int) -> Row:
    """A GraphQL ``ProductVariant`` node as a ``variants`` row."""
    price = node.get("price")
    return (
        shop_id,
        gid_number(node["id"]),
        product_id,
        node.get("title") or "",
        node.get("sku"),
        float(price) if price not in (None, "") else None,
    )


@dataclass
class Batch:
    """Rows parsed from some JSONL lines, grouped by table."""

    rows: dict[str, list[Row]]
    lines: int = 0

    @classmethod
    def empty(cls) -> Batch:
        return cls({name: [] for name in COLUMNS})


_GID_PREFIX = len("gid://shopify/")


def parse_line(shop_id: int, obj: dict[str, Any], batch: Batch) -> None:
    """Route one bulk JSONL object to its table (by the type in its GID)."""
    gid = obj.get("id") or ""
    end = gid.find("/", _GID_PREFIX)
    kind = gid[_GID_PREFIX:end] if end > 0 else ""
    if kind == "LineItem":
        batch.rows["line_items"].append(
            line_item_row(shop_id, obj, gid_number(obj.get("__parentId")) or 0)
        )
    elif kind == "Order":
        batch.rows["orders"].append(order_row(shop_id, obj))
    elif kind == "Customer":
        batch.rows["customers"].append(customer_row(shop_id, obj))
    elif kind == "Product":
        batch.rows["products"].append(product_row(shop_id, obj))
    elif kind == "ProductVariant":
        batch.rows["variants"].append(
            variant_row(shop_id, obj, gid_number(obj.get("__parentId")) or 0)
        )
    else:
        log.warning("unexpected bulk object %r skipped", gid[:80])


_DECODER = json.JSONDecoder()


def load_line(line: bytes | str) -> Any:
    """Parse one JSONL line. Decoding to ``str`` first and calling the decoder directly skips
    ``json.loads``'s encoding sniffing, which is a third of its cost on short lines."""
    text = line.decode() if isinstance(line, bytes) else line
    return _DECODER.raw_decode(text)[0]


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
            _rest_refunded(p),
            _money(p["current_total_price"]) if p.get("current_total_price") else None,
        ),
        p.get("currency"),
        json.dumps([d.get("code") for d in p.get("discount_codes") or [] if d.get("code")]),
        (p.get("billing_address") or {}).get("company"),
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
