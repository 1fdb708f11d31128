"""The sandbox's store data: what a Shopify shop holds, in memory, with change notifications.

This is the stand-in's own copy of "Shopify's database". The GraphQL executor reads it, the
generator fills it, and every change (an order placed, a customer edited, tags added) is
announced to listeners so the webhook deliverer can send the matching topics. It knows nothing
about Goldpan's tables.

Money follows Shopify's order arithmetic. An order keeps what was bought (``quantity``,
``unit_price``, one order-level ``discount_total`` and ``shipping_total``); refunds give units
back (each line item's ``current_quantity`` drops) and, for a full refund, the shipping. The
order-level discount is spread over the lines in proportion to their value, as Shopify allocates
it, so a refunded unit returns its price less its share of the discount, and the ``current*``
totals shrink with what is left. ``Refund.amount`` is the money given back: how much the
order's current total dropped.

Ids are Shopify-style numbers; ``gid()`` turns them into ``gid://shopify/Type/123``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ID_BASE = 7_000_000_000_000
"""Shopify ids are large integers; starting here makes them look (and overflow) like real ones."""

CENT = Decimal("0.01")
ZERO = Decimal("0")

RESTOCK_TYPES = ("RETURN", "CANCEL", "NO_RESTOCK")
"""``RefundLineItemRestockType`` values a new refund may use (``LEGACY_RESTOCK`` is read-only)."""


def gid(kind: str, number: int) -> str:
    """``gid("Customer", 7) == "gid://shopify/Customer/7"``."""
    return f"gid://shopify/{kind}/{number}"


def shop_number(domain: str) -> int:
    """A stable numeric shop id for ``domain`` (``gid://shopify/Shop/<n>``, webhook ``shop_id``)."""
    return 60_000_000_000 + zlib.crc32(domain.encode())


def parse_gid(value: str) -> tuple[str, int]:
    """``parse_gid("gid://shopify/Customer/7") == ("Customer", 7)``; raises ValueError."""
    prefix = "gid://shopify/"
    if not value.startswith(prefix):
        raise ValueError(f"not a Shopify GID: {value!r}")
    kind, _, number = value[len(prefix) :].partition("/")
    return kind, int(number.split("?")[0])


@dataclass(slots=True)
class Address:
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address1: str | None = None
    city: str | None = None
    province_code: str | None = None
    country_code: str | None = None
    zip: str | None = None
    phone: str | None = None


@dataclass(slots=True)
class Customer:
    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    # SUBSCRIBED, NOT_SUBSCRIBED, PENDING, UNSUBSCRIBED, INVALID, REDACTED
    email_marketing_state: str = "NOT_SUBSCRIBED"
    sms_marketing_state: str = "NOT_SUBSCRIBED"
    default_address: Address | None = None
    tags: list[str] = field(default_factory=list)
    locale: str = "en"
    note: str | None = None
    # Shopify's own scoring (CustomerStatistics); the sandbox sets plausible values.
    rfm_group: str | None = None
    predicted_spend_tier: str | None = None
    # Metafields by "namespace.key" (metafieldsSet).
    metafields: dict[str, Metafield] = field(default_factory=dict)


@dataclass(slots=True)
class LineItem:
    id: int
    product_id: int | None
    variant_id: int | None
    sku: str | None
    title: str
    quantity: int
    unit_price: Decimal
    current_quantity: int | None = None  # after edits/refunds; None means == quantity

    @property
    def effective_quantity(self) -> int:
        """Units still on the order (``currentQuantity``, ``refundableQuantity``)."""
        return self.quantity if self.current_quantity is None else self.current_quantity


@dataclass(slots=True)
class RefundLineItem:
    """Units of one line item given back. ``subtotal`` is their price less their share of the
    order discount (Shopify's ``subtotalSet``)."""

    id: int
    line_item: LineItem
    quantity: int
    subtotal: Decimal
    restock_type: str = "RETURN"

    @property
    def restocked(self) -> bool:
        return self.restock_type != "NO_RESTOCK"


@dataclass(slots=True)
class Refund:
    """One refund of an order: units given back, maybe the shipping, and the money returned
    (one successful refund transaction of ``amount``)."""

    id: int
    order_id: int
    created_at: dt.datetime
    line_items: list[RefundLineItem]
    amount: Decimal
    transaction_id: int
    shipping: Decimal = ZERO
    shipping_line_id: int | None = None
    note: str | None = None


@dataclass(slots=True)
class Order:
    id: int
    name: str
    customer_id: int | None
    email: str | None
    created_at: dt.datetime
    processed_at: dt.datetime
    updated_at: dt.datetime
    currency: str
    line_items: list[LineItem]
    cancelled_at: dt.datetime | None = None
    cancel_reason: str | None = None
    test: bool = False
    discount_codes: list[str] = field(default_factory=list)
    discount_total: Decimal = ZERO
    shipping_total: Decimal = ZERO
    billing_address: Address | None = None
    refunds: list[Refund] = field(default_factory=list)

    @property
    def original_gross(self) -> Decimal:
        """Line prices times quantities as ordered, before any discount."""
        return sum((li.unit_price * li.quantity for li in self.line_items), ZERO)

    @property
    def current_gross(self) -> Decimal:
        """Line prices times the units still on the order, before any discount."""
        return sum((li.unit_price * li.effective_quantity for li in self.line_items), ZERO)

    def discount_share(self, gross: Decimal) -> Decimal:
        """The part of the order discount that lines worth ``gross`` carry (to the cent)."""
        if not self.discount_total:
            return ZERO
        original = self.original_gross
        if gross == original:
            return self.discount_total
        if not original:
            return ZERO
        return (self.discount_total * gross / original).quantize(CENT, ROUND_HALF_UP)

    @property
    def current_discount(self) -> Decimal:
        """``currentTotalDiscountsSet``: the discount still carried by the remaining units."""
        return self.discount_share(self.current_gross)

    @property
    def refunded_shipping(self) -> Decimal:
        """``totalRefundedShippingSet``."""
        return sum((r.shipping for r in self.refunds), ZERO) if self.refunds else ZERO

    @property
    def current_shipping(self) -> Decimal:
        """``currentShippingPriceSet``: shipping less what was refunded."""
        return self.shipping_total - self.refunded_shipping

    @property
    def subtotal_price(self) -> Decimal:
        """``subtotalPriceSet``: lines after discounts, before returns."""
        return self.original_gross - self.discount_total

    @property
    def current_subtotal_price(self) -> Decimal:
        """``currentSubtotalPriceSet``: lines after discounts and returns."""
        gross = self.current_gross
        return gross - self.discount_share(gross)

    @property
    def total_price(self) -> Decimal:
        """``totalPriceSet`` / ``totalReceivedSet``: what the customer paid, before returns."""
        return max(self.subtotal_price + self.shipping_total, ZERO).quantize(CENT)

    @property
    def current_total(self) -> Decimal:
        """``currentTotalPriceSet``: net of edits, discounts and refunds."""
        return max(self.current_subtotal_price + self.current_shipping, ZERO).quantize(CENT)

    @property
    def refunded_total(self) -> Decimal:
        """``totalRefundedSet``: money given back by every refund."""
        return sum((r.amount for r in self.refunds), ZERO)

    @property
    def financial_status(self) -> str:
        """``displayFinancialStatus``: PAID, PARTIALLY_REFUNDED or REFUNDED."""
        refunded = self.refunded_total
        if refunded <= 0:
            return "PAID"
        return "REFUNDED" if refunded >= self.total_price else "PARTIALLY_REFUNDED"


@dataclass(slots=True)
class Variant:
    id: int
    product_id: int
    title: str
    sku: str | None
    price: Decimal


@dataclass(slots=True)
class Product:
    id: int
    title: str
    handle: str
    product_type: str
    vendor: str
    created_at: dt.datetime
    updated_at: dt.datetime
    status: str = "ACTIVE"
    variants: list[Variant] = field(default_factory=list)


_TAG_CLAUSE = re.compile(r"customer_tags\s+(NOT\s+)?CONTAINS\s+'((?:[^'\\]|\\.)*)'")


@dataclass(slots=True)
class Segment:
    """A native Shopify customer segment (``segmentCreate``): a name and a ShopifyQL query."""

    id: int
    name: str
    query: str
    creation_date: dt.datetime
    last_edit_date: dt.datetime


@dataclass(slots=True)
class Discount:
    """A basic code discount (``discountCodeBasicCreate``): a percentage off for a segment."""

    id: int
    title: str
    code: str
    percentage: float
    segment_ids: list[int]
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    applies_once_per_customer: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def status(self, now: dt.datetime) -> str:
        """Shopify's DiscountStatus: a deactivated discount has ended, so it is EXPIRED."""
        if self.starts_at > now:
            return "SCHEDULED"
        if self.ends_at is not None and self.ends_at <= now:
            return "EXPIRED"
        return "ACTIVE"


@dataclass(slots=True)
class MetafieldDefinition:
    """``metafieldDefinitionCreate``: a typed namespace.key for one owner type."""

    id: int
    owner_type: str
    namespace: str
    key: str
    name: str
    type: str
    description: str | None
    admin_filterable: bool


@dataclass(slots=True)
class Metafield:
    """One value on an owner; ``digest`` is what ``compareDigest`` is checked against."""

    id: int
    namespace: str
    key: str
    type: str
    value: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.type}:{self.value}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Change:
    """Something changed in the store. ``topic`` is the webhook topic it maps to."""

    topic: str  # orders/create, orders/updated, orders/cancelled, customers/create, ...
    kind: str  # Customer | Order | Product | Refund
    id: int


Listener = Callable[[Change], None]


class Store:
    """One shop's data. Thread-safe for the sandbox server's threads via one lock."""

    def __init__(
        self,
        domain: str,
        *,
        name: str | None = None,
        currency: str = "USD",
        timezone: str = "America/New_York",
        plan: str = "Basic",
    ) -> None:
        self.domain = domain
        self.name = name or domain.split(".")[0].replace("-", " ").title()
        self.currency = currency
        self.timezone = timezone
        self.plan = plan
        self.customers: dict[int, Customer] = {}
        self.orders: dict[int, Order] = {}
        self.products: dict[int, Product] = {}
        self.segments: dict[int, Segment] = {}
        self.refunds: dict[int, Refund] = {}
        self.discounts: dict[int, Discount] = {}
        self.metafield_definitions: dict[int, MetafieldDefinition] = {}
        self.lock = threading.RLock()
        self._ids = itertools.count(ID_BASE)
        self._order_numbers = itertools.count(1001)
        self._listeners: list[Listener] = []
        # Orders per customer, kept in step with ``orders`` for numberOfOrders/amountSpent.
        self.orders_by_customer: dict[int, list[int]] = {}

    # -- ids --------------------------------------------------------------------------------
    def next_id(self) -> int:
        return next(self._ids)

    def next_order_name(self) -> str:
        return f"#{next(self._order_numbers)}"

    # -- listeners --------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every :class:`Change` from now on."""
        self._listeners.append(listener)

    def _emit(self, change: Change, notify: bool) -> None:
        if notify:
            for listener in list(self._listeners):
                listener(change)

    # -- writes -----------------------------------------------------------------------------
    def add_product(self, product: Product) -> Product:
        with self.lock:
            self.products[product.id] = product
        return product

    def add_customer(self, customer: Customer, *, notify: bool = True) -> Customer:
        with self.lock:
            self.customers[customer.id] = customer
            self.orders_by_customer.setdefault(customer.id, [])
        self._emit(Change("customers/create", "Customer", customer.id), notify)
        return customer

    def add_order(self, order: Order, *, notify: bool = True) -> Order:
        """Record an order; a customer's order also touches the customer (as Shopify does)."""
        with self.lock:
            self.orders[order.id] = order
            if order.customer_id is not None:
                self.orders_by_customer.setdefault(order.customer_id, []).append(order.id)
                customer = self.customers.get(order.customer_id)
                if customer is not None:
                    customer.updated_at = max(customer.updated_at, order.updated_at)
        self._emit(Change("orders/create", "Order", order.id), notify)
        if order.customer_id is not None:
            self._emit(Change("customers/update", "Customer", order.customer_id), notify)
        return order

    def update_customer(self, customer_id: int, *, notify: bool = True, **changes: Any) -> Customer:
        """Change fields of a customer and bump ``updated_at``."""
        with self.lock:
            customer = self.customers[customer_id]
            for key, value in changes.items():
                if not hasattr(customer, key):
                    raise AttributeError(f"Customer has no field {key!r}")
                setattr(customer, key, value)
            customer.updated_at = _now()
        self._emit(Change("customers/update", "Customer", customer_id), notify)
        return customer

    def delete_customer(self, customer_id: int, *, notify: bool = True) -> None:
        with self.lock:
            self.customers.pop(customer_id, None)
        self._emit(Change("customers/delete", "Customer", customer_id), notify)

    def cancel_order(
        self, order_id: int, *, reason: str = "customer", notify: bool = True
    ) -> Order:
        with self.lock:
            order = self.orders[order_id]
            order.cancelled_at = order.updated_at = _now()
            order.cancel_reason = reason
        self._emit(Change("orders/cancelled", "Order", order_id), notify)
        self._emit(Change("orders/updated", "Order", order_id), notify)
        return order

    def refund_order(
        self,
        order_id: int,
        lines: Mapping[int, int] | None = None,
        *,
        restock_type: str = "RETURN",
        note: str | None = None,
        at: dt.datetime | None = None,
        notify: bool = True,
    ) -> Refund:
        """Refund units of an order (``lines``: line item id → quantity), or everything still
        on it and the shipping when ``lines`` is None. Fires ``refunds/create`` then
        ``orders/updated``, as Shopify does.

        Raises LookupError for an unknown order and ValueError for a refund Shopify would
        refuse (an unknown line, more units than are refundable, nothing to refund).
        """
        if restock_type not in RESTOCK_TYPES:
            raise ValueError(f"restock type must be one of {', '.join(RESTOCK_TYPES)}")
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise LookupError(f"no order {order_id}")
            when = at or _now()
            if when < order.created_at:
                raise ValueError("a refund cannot predate its order")
            by_id = {li.id: li for li in order.line_items}
            if lines is None:
                wanted = {li.id: li.effective_quantity for li in order.line_items}
                shipping = order.current_shipping
            else:
                wanted = dict(lines)
                shipping = ZERO
            for line_id, quantity in wanted.items():
                line = by_id.get(line_id)
                if line is None:
                    raise ValueError(f"line item {line_id} is not on order {order_id}")
                if quantity < 0 or quantity > line.effective_quantity:
                    raise ValueError(
                        f"line item {line_id} has {line.effective_quantity} refundable units, "
                        f"not {quantity}"
                    )
            wanted = {k: v for k, v in wanted.items() if v}
            if not wanted and not shipping:
                raise ValueError(f"order {order_id} has nothing left to refund")
            before = order.current_total
            refund_id = self.next_id()
            refund_lines = []
            for line_id, quantity in wanted.items():
                line = by_id[line_id]
                gross = line.unit_price * quantity
                refund_lines.append(
                    RefundLineItem(
                        self.next_id(),
                        line,
                        quantity,
                        (gross - order.discount_share(gross)).quantize(CENT),
                        restock_type,
                    )
                )
                line.current_quantity = line.effective_quantity - quantity
            refund = Refund(
                id=refund_id,
                order_id=order_id,
                created_at=when,
                line_items=refund_lines,
                amount=ZERO,
                transaction_id=self.next_id(),
                shipping=shipping,
                shipping_line_id=self.next_id() if shipping else None,
                note=note,
            )
            order.refunds.append(refund)
            refund.amount = before - order.current_total
            order.updated_at = max(order.updated_at, when)
            self.refunds[refund.id] = refund
        self._emit(Change("refunds/create", "Refund", refund.id), notify)
        self._emit(Change("orders/updated", "Order", order_id), notify)
        return refund

    def set_tags(self, customer_id: int, tags: list[str], *, notify: bool = True) -> Customer:
        """Replace a customer's tags (tagsAdd/tagsRemove compute the list)."""
        return self.update_customer(customer_id, tags=tags, notify=notify)

    def add_segment(self, name: str, query: str) -> Segment:
        """Create a native segment (no webhook: Shopify sends none for segments)."""
        now = _now()
        with self.lock:
            segment = Segment(self.next_id(), name, query, now, now)
            self.segments[segment.id] = segment
        return segment

    def update_segment(
        self, segment_id: int, *, name: str | None = None, query: str | None = None
    ) -> Segment:
        with self.lock:
            segment = self.segments[segment_id]
            if name is not None:
                segment.name = name
            if query is not None:
                segment.query = query
            segment.last_edit_date = _now()
        return segment

    def segment_members(self, segment_id: int) -> list[int]:
        """The ids of the customers a native segment holds now, as Shopify evaluates it.

        Only clauses on ``customer_tags`` joined by ``AND`` are evaluated (``CONTAINS`` and the
        multi-value attribute's ``NOT CONTAINS``, tags compared case-insensitively): the
        segments Goldpan writes. Any other query raises ``NotImplementedError``.
        """
        with self.lock:
            query = self.segments[segment_id].query
            customers = list(self.customers.values())
        wanted: list[tuple[bool, str]] = []
        for clause in re.split(r"\s+AND\s+", query.strip()):
            m = _TAG_CLAUSE.fullmatch(clause.strip())
            if m is None:
                raise NotImplementedError(
                    f"the sandbox evaluates customer_tags clauses only: {clause!r}"
                )
            tag = re.sub(r"\\(.)", r"\1", m.group(2)).strip().lower()
            wanted.append((m.group(1) is None, tag))
        return sorted(
            c.id
            for c in customers
            if all((tag in {t.strip().lower() for t in c.tags}) == has for has, tag in wanted)
        )

    # -- reads ------------------------------------------------------------------------------
    def customer_orders(self, customer_id: int) -> list[Order]:
        with self.lock:
            return [self.orders[i] for i in self.orders_by_customer.get(customer_id, [])]

    def number_of_orders(self, customer_id: int) -> int:
        """Shopify's ``numberOfOrders``: every order, cancelled ones included, tests excluded."""
        return sum(1 for o in self.customer_orders(customer_id) if not o.test)

    def amount_spent(self, customer_id: int) -> Decimal:
        """Shopify's ``amountSpent``: sum of current totals of non-test, non-cancelled orders."""
        return sum(
            (
                o.current_total
                for o in self.customer_orders(customer_id)
                if not o.test and o.cancelled_at is None
            ),
            Decimal("0"),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
