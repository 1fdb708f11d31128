"""Webhook delivery: what Shopify sends an app when store data changes.

The deliverer listens to :class:`Store` changes, renders the REST-shaped snake_case payload
(with ``admin_graphql_api_id``) at the moment of the change, signs the raw body with the app's
secret (``X-Shopify-Hmac-Sha256``, base64 HMAC-SHA256) and POSTs it to ``app_url + uri`` for
every subscribed topic, from a background thread. Delivery is at least once, as Shopify's is:
a configurable share of events is delivered twice (same ``X-Shopify-Event-Id``), and a non-2xx
answer or a connection error is retried with exponential backoff. Every attempt is logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from goldpan_sandbox.store import (
    Address,
    Change,
    Customer,
    LineItem,
    Order,
    Refund,
    Store,
    gid,
)

log = logging.getLogger(__name__)

API_VERSION = "2026-10"
DEFAULT_TOML = Path(__file__).resolve().parents[1] / "shopify.app.toml"


FALLBACK_TOPICS: dict[str, str] = {
    **dict.fromkeys(
        (
            "app/uninstalled",
            "app/scopes_update",
            "orders/create",
            "orders/updated",
            "orders/cancelled",
            "refunds/create",
            "customers/create",
            "customers/update",
            "customers/delete",
            "bulk_operations/finish",
        ),
        "/webhooks",
    ),
    **dict.fromkeys(
        ("customers/data_request", "customers/redact", "shop/redact"), "/webhooks/compliance"
    ),
}
"""Goldpan's subscriptions, for an installed package that has no ``shopify.app.toml`` beside it."""


def default_topics() -> dict[str, str]:
    """Subscriptions from the repository's (or the working folder's) ``shopify.app.toml``."""
    for path in (DEFAULT_TOML, Path.cwd() / "shopify.app.toml"):
        topics = topics_from_toml(path)
        if topics:
            return topics
    return dict(FALLBACK_TOPICS)


def topics_from_toml(path: Path = DEFAULT_TOML) -> dict[str, str]:
    """``{topic: uri}`` from a ``shopify.app.toml`` (empty when the file is missing)."""
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    topics: dict[str, str] = {}
    for subscription in config.get("webhooks", {}).get("subscriptions", []):
        uri = subscription.get("uri", "/webhooks")
        for topic in [*subscription.get("topics", []), *subscription.get("compliance_topics", [])]:
            topics[topic] = uri
    return topics


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256 of the raw body with the app secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------------------------
# Payloads (REST resources, snake_case)
# --------------------------------------------------------------------------------------------


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _price(value: Decimal) -> str:
    return f"{value:.2f}"


def _price_set(value: Decimal, currency: str) -> dict[str, Any]:
    money = {"amount": _price(value), "currency_code": currency}
    return {"shop_money": money, "presentment_money": dict(money)}


def _address(address: Address | None, customer_id: int | None = None) -> dict[str, Any] | None:
    if address is None:
        return None
    body: dict[str, Any] = {
        "first_name": address.first_name,
        "last_name": address.last_name,
        "company": address.company,
        "address1": address.address1,
        "address2": None,
        "city": address.city,
        "province": address.province_code,
        "province_code": address.province_code,
        "country": address.country_code,
        "country_code": address.country_code,
        "zip": address.zip,
        "phone": address.phone,
    }
    if customer_id is not None:
        body.update({"id": customer_id, "customer_id": customer_id, "default": True})
    return body


def customer_payload(store: Store, customer: Customer) -> dict[str, Any]:
    """The REST ``customer`` resource as ``customers/*`` webhooks carry it."""
    consent = customer.email_marketing_state.lower()
    return {
        "id": customer.id,
        "admin_graphql_api_id": gid("Customer", customer.id),
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "phone": customer.phone,
        "state": "enabled",
        "note": customer.note,
        "verified_email": customer.email is not None,
        "tax_exempt": False,
        "tags": ", ".join(customer.tags),
        "currency": store.currency,
        "created_at": _ts(customer.created_at),
        "updated_at": _ts(customer.updated_at),
        "email_marketing_consent": None
        if customer.email is None
        else {
            "state": consent,
            "opt_in_level": "single_opt_in" if consent == "subscribed" else None,
            "consent_updated_at": _ts(customer.updated_at),
        },
        "sms_marketing_consent": None
        if customer.phone is None
        else {
            "state": customer.sms_marketing_state.lower(),
            "opt_in_level": None,
            "consent_updated_at": None,
            "consent_collected_from": "OTHER",
        },
        "default_address": _address(customer.default_address, customer.id),
        "addresses": [a] if (a := _address(customer.default_address, customer.id)) else [],
    }


def line_item_payload(line: LineItem, currency: str) -> dict[str, Any]:
    """A REST ``line_item`` (in orders and in a refund's ``refund_line_items``)."""
    return {
        "id": line.id,
        "admin_graphql_api_id": gid("LineItem", line.id),
        "product_id": line.product_id,
        "variant_id": line.variant_id,
        "sku": line.sku,
        "title": line.title,
        "name": line.title,
        "quantity": line.quantity,
        "current_quantity": line.effective_quantity,
        "price": _price(line.unit_price),
        "price_set": _price_set(line.unit_price, currency),
    }


def refund_payload(store: Store, refund: Refund) -> dict[str, Any]:
    """The REST ``refund`` resource as ``refunds/create`` carries it (and ``order.refunds``).

    Money given back is in ``transactions`` (one successful ``refund`` transaction); the units
    are in ``refund_line_items`` with their ``subtotal`` net of the line's discount share.
    """
    order = store.orders[refund.order_id]
    currency = order.currency
    created = _ts(refund.created_at)
    shipping = (
        [
            {
                "id": refund.shipping_line_id,
                "shipping_line_id": None,
                "subtotal_amount_set": _price_set(refund.shipping, currency),
                "tax_amount_set": _price_set(Decimal("0"), currency),
            }
        ]
        if refund.shipping
        else []
    )
    return {
        "id": refund.id,
        "admin_graphql_api_id": gid("Refund", refund.id),
        "order_id": refund.order_id,
        "created_at": created,
        "processed_at": created,
        "note": refund.note,
        "user_id": None,
        "restock": any(rli.restocked for rli in refund.line_items),
        "duties": [],
        "total_duties_set": _price_set(Decimal("0"), currency),
        "additional_fees": [],
        "total_additional_fees_set": _price_set(Decimal("0"), currency),
        "return": None,
        "refund_line_items": [
            {
                "id": rli.id,
                "quantity": rli.quantity,
                "line_item_id": rli.line_item.id,
                "location_id": None,
                "restock_type": rli.restock_type.lower(),
                "subtotal": float(rli.subtotal),
                "total_tax": 0.0,
                "subtotal_set": _price_set(rli.subtotal, currency),
                "total_tax_set": _price_set(Decimal("0"), currency),
                "line_item": line_item_payload(rli.line_item, currency),
            }
            for rli in refund.line_items
        ],
        "refund_shipping_lines": shipping,
        "order_adjustments": [],
        "transactions": [
            {
                "id": refund.transaction_id,
                "admin_graphql_api_id": gid("OrderTransaction", refund.transaction_id),
                "order_id": refund.order_id,
                "kind": "refund",
                "gateway": "manual",
                "status": "success",
                "message": "Refunded",
                "created_at": created,
                "processed_at": created,
                "test": order.test,
                "authorization": None,
                "location_id": None,
                "user_id": None,
                "parent_id": None,
                "device_id": None,
                "error_code": None,
                "source_name": "web",
                "receipt": {},
                "amount": _price(refund.amount),
                "currency": currency,
            }
        ]
        if refund.amount
        else [],
    }


def order_payload(store: Store, order: Order) -> dict[str, Any]:
    """The REST ``order`` resource as ``orders/*`` webhooks carry it."""
    customer = store.customers.get(order.customer_id) if order.customer_id else None
    per_code = order.discount_total / len(order.discount_codes) if order.discount_codes else 0
    currency = order.currency
    return {
        "id": order.id,
        "admin_graphql_api_id": gid("Order", order.id),
        "name": order.name,
        "order_number": int(order.name.lstrip("#")) if order.name.lstrip("#").isdigit() else None,
        "email": order.email,
        "contact_email": order.email,
        "created_at": _ts(order.created_at),
        "updated_at": _ts(order.updated_at),
        "processed_at": _ts(order.processed_at),
        "cancelled_at": _ts(order.cancelled_at),
        "cancel_reason": order.cancel_reason,
        "test": order.test,
        "currency": currency,
        "presentment_currency": currency,
        "current_total_price": _price(order.current_total),
        "current_total_price_set": _price_set(order.current_total, currency),
        "current_subtotal_price": _price(order.current_subtotal_price),
        "current_total_discounts": _price(order.current_discount),
        "total_price": _price(order.total_price),
        "subtotal_price": _price(order.subtotal_price),
        "total_discounts": _price(order.discount_total),
        "total_shipping_price_set": _price_set(order.shipping_total, currency),
        "financial_status": order.financial_status.lower(),
        "discount_codes": [
            {"code": code, "amount": _price(Decimal(per_code)), "type": "fixed_amount"}
            for code in order.discount_codes
        ],
        "billing_address": _address(order.billing_address),
        "customer": None
        if customer is None
        else {
            k: v
            for k, v in customer_payload(store, customer).items()
            if k
            in (
                "id",
                "admin_graphql_api_id",
                "email",
                "first_name",
                "last_name",
                "phone",
                "state",
                "tags",
                "currency",
                "created_at",
                "updated_at",
                "email_marketing_consent",
                "sms_marketing_consent",
                "default_address",
                "verified_email",
                "tax_exempt",
                "note",
            )
        },
        "line_items": [line_item_payload(li, currency) for li in order.line_items],
        "refunds": [refund_payload(store, r) for r in order.refunds],
    }


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    at: str
    status: int | None
    error: str | None = None


@dataclass(eq=False)
class Delivery:
    """One webhook (one ``X-Shopify-Webhook-Id``) and every attempt to deliver it."""

    shop: str
    topic: str
    url: str | None
    body: bytes
    webhook_id: str
    event_id: str
    triggered_at: str
    duplicate: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    delivered: bool = False
    gave_up: bool = False

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def headers(self, secret: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": self.topic,
            "X-Shopify-Hmac-Sha256": sign(secret, self.body),
            "X-Shopify-Shop-Domain": self.shop,
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": self.webhook_id,
            "X-Shopify-Event-Id": self.event_id,
            "X-Shopify-Triggered-At": self.triggered_at,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "shop": self.shop,
            "topic": self.topic,
            "url": self.url,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "triggered_at": self.triggered_at,
            "duplicate": self.duplicate,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
            "attempts": [a.__dict__ for a in self.attempts],
            "payload": self.payload,
        }


class WebhookDelivery:
    """Sends webhooks for store changes to the app, at least once, from a background thread."""

    def __init__(
        self,
        api_secret: str,
        app_url: str | None = None,
        topics: dict[str, str] | None = None,
        *,
        duplicate_rate: float = 0.0,
        max_attempts: int = 8,
        backoff: float = 1.0,
        timeout: float = 5.0,
        seed: int | None = None,
        http: requests.Session | None = None,
    ) -> None:
        self.api_secret = api_secret
        self.app_url = app_url.rstrip("/") if app_url else None
        self.topics = dict(topics if topics is not None else default_topics())
        self.duplicate_rate = duplicate_rate
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self._random = random.Random(seed)
        self._http = http or requests.Session()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._log: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- producing --------------------------------------------------------------------------
    def watch(self, store: Store) -> None:
        """Deliver webhooks for every future change of ``store``."""
        store.subscribe(lambda change: self.on_change(store, change))

    def on_change(self, store: Store, change: Change) -> None:
        if change.topic not in self.topics:
            return
        with store.lock:
            if change.kind == "Customer":
                customer = store.customers.get(change.id)
                payload = (
                    customer_payload(store, customer)
                    if customer is not None
                    else {"id": change.id, "admin_graphql_api_id": gid("Customer", change.id)}
                )
            elif change.kind == "Order":
                payload = order_payload(store, store.orders[change.id])
            elif change.kind == "Refund":
                payload = refund_payload(store, store.refunds[change.id])
            else:
                payload = {"id": change.id, "admin_graphql_api_id": gid(change.kind, change.id)}
        self.send(store.domain, change.topic, payload)

    def send(self, shop: str, topic: str, payload: dict[str, Any]) -> list[Delivery]:
        """Queue ``topic`` for ``shop`` if subscribed (maybe twice: at least once)."""
        uri = self.topics.get(topic)
        if uri is None:
            return []
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        event_id = str(uuid.uuid4())
        triggered = (
            dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        )
        url = f"{self.app_url}{uri}" if self.app_url else None
        copies = [Delivery(shop, topic, url, body, str(uuid.uuid4()), event_id, triggered)]
        if self.duplicate_rate and self._random.random() < self.duplicate_rate:
            copies.append(
                Delivery(shop, topic, url, body, str(uuid.uuid4()), event_id, triggered, True)
            )
        with self._cond:
            for delivery in copies:
                self._log.append(delivery)
                if url is not None:
                    heapq.heappush(self._queue, (time.monotonic(), next(self._seq), delivery))
            self._cond.notify_all()
        return copies

    # -- the worker -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._queue)
                self._in_flight += 1
            try:
                self._attempt(delivery)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        assert delivery.url is not None
        try:
            response = self._http.post(
                delivery.url,
                data=delivery.body,
                headers=delivery.headers(self.api_secret),
                timeout=self.timeout,
            )
            delivery.attempts.append(Attempt(now, response.status_code))
            ok = 200 <= response.status_code < 300
        except requests.RequestException as exc:
            delivery.attempts.append(Attempt(now, None, type(exc).__name__))
            ok = False
        if ok:
            delivery.delivered = True
            return
        if len(delivery.attempts) >= self.max_attempts:
            delivery.gave_up = True
            log.warning("webhook %s %s gave up", delivery.topic, delivery.webhook_id)
            return
        delay = self.backoff * 2 ** (len(delivery.attempts) - 1)
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), delivery))
            self._cond.notify_all()

    # -- observing --------------------------------------------------------------------------
    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def log(self, shop: str | None = None, topic: str | None = None) -> list[Delivery]:
        """Every webhook sent so far (oldest first), optionally for one shop/topic."""
        with self._cond:
            return [
                d
                for d in self._log
                if (shop is None or d.shop == shop) and (topic is None or d.topic == topic)
            ]

    order_payload = staticmethod(order_payload)
    refund_payload = staticmethod(refund_payload)
    customer_payload = staticmethod(customer_payload)
