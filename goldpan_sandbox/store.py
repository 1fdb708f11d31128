"""The sandbox's store data: what a Shopify shop holds, in memory, with change notifications.

This is the stand-in's own copy of "Shopify's database". The GraphQL executor reads it, the
generator fills it, and every change (an order placed, a customer edited, tags added) is
announced to listeners so the webhook deliverer can send the matching topics. It knows nothing
about Goldpan's tables.

Ids are Shopify-style numbers; ``gid()`` turns them into ``gid://shopify/Type/123``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ID_BASE = 7_000_000_000_000
"""Shopify ids are large integers; starting here makes them look (and overflow) like real ones."""


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
        return self.quantity if self.current_quantity is None else self.current_quantity


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
    discount_total: Decimal = Decimal("0")
    shipping_total: Decimal = Decimal("0")
    refunded_total: Decimal = Decimal("0")
    billing_address: Address | None = None

    @property
    def subtotal(self) -> Decimal:
        return sum((li.unit_price * li.effective_quantity for li in self.line_items), Decimal("0"))

    @property
    def current_total(self) -> Decimal:
        """``currentTotalPriceSet``: net of edits, discounts and refunds."""
        total = self.subtotal - self.discount_total + self.shipping_total - self.refunded_total
        return max(total, Decimal("0")).quantize(Decimal("0.01"))


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
    kind: str  # Customer | Order | Product
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
