"""Fault knobs and the sandbox's JSON control API (``/_sandbox/...``).

:class:`Faults` holds what should go wrong next: HTTP 429/500/503 for the next N Admin API
requests, slow answers (a delay longer than the client's timeout is a timeout), bulk operations
that end ``FAILED`` or ``EXPIRED``, truncated downloads and the rate-limit plan. The control API
lets the CLI (``shopify-app sandbox ...``), the demo and tests place orders, edit customers, set
faults and read the webhook delivery log over plain HTTP.

Refunds (``POST /_sandbox/shops/{shop}/orders/{id}/refunds``) go through
:meth:`Store.refund_order`, so they fire ``refunds/create`` and ``orders/updated`` as a refund in
the Shopify admin does. ``POST /_sandbox/shops/{shop}/flow-workflows`` enables or disables a
Shopify Flow workflow on one of the app's triggers (the app hears it through the signed lifecycle
callback) and ``GET /_sandbox/shops/{shop}/flow-events`` lists the Flow events received
(:mod:`goldpan_sandbox.flow`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from goldpan_sandbox import flow
from goldpan_sandbox.admin_api import RequestContext
from goldpan_sandbox.discounts import checkout_discount, discount_json
from goldpan_sandbox.metafields import metafields_json
from goldpan_sandbox.store import Address, Customer, LineItem, Order, Refund

if TYPE_CHECKING:
    from goldpan_sandbox.shopify import ShopifySandbox

ERROR_BODIES = {
    429: "Exceeded 2 calls per second for api client. Reduce request rates to resume "
    "uninterrupted service.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class HttpFault:
    status: int
    retry_after: float | None = None


@dataclass
class Faults:
    """What the sandbox should get wrong next. Thread-safe; every knob has a setter."""

    bulk_outcome: str | None = None
    """``FAILED`` or ``EXPIRED``: how the next bulk operations end (None: they complete)."""
    bulk_error_code: str = "INTERNAL_SERVER_ERROR"
    bulk_outcome_count: int | None = None
    """How many bulk operations the outcome applies to (None: every one until cleared)."""
    bulk_outcome_root: str | None = None
    """Only bulk operations whose top-level field is this (``orders``) end that way (None: any)."""
    bulk_delay: float = 0.0
    """Seconds a bulk operation stays RUNNING before it finishes (to observe it running). Read
    while operations wait: lowering it (to 0) lets the ones already waiting finish."""
    truncate_downloads: int = 0
    """How many of the next result downloads are cut off halfway through."""
    delay: float = 0.0
    """Seconds every Admin API request waits before answering (with ``delay_count``)."""
    delay_count: int | None = None
    _http: deque[HttpFault] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` Admin API requests with HTTP ``status``."""
        if status == 429 and retry_after is None:
            retry_after = 2.0
        with self._lock:
            self._http.extend(HttpFault(status, retry_after) for _ in range(count))

    def slow_next(self, seconds: float, count: int | None = 1) -> None:
        """Delay the next ``count`` Admin API requests (None: all of them) by ``seconds``."""
        with self._lock:
            self.delay, self.delay_count = seconds, count

    def end_bulk(
        self,
        outcome: str | None,
        count: int | None = None,
        *,
        root: str | None = None,
        **extra: Any,
    ) -> None:
        """Make the next bulk operations end ``FAILED``/``EXPIRED`` (None: complete normally);
        with ``root``, only those whose top-level field it names (``orders``, ``customers``)."""
        if outcome not in (None, "FAILED", "EXPIRED"):
            raise ValueError(f"bulk outcome must be FAILED or EXPIRED, not {outcome!r}")
        with self._lock:
            self.bulk_outcome, self.bulk_outcome_count = outcome, count
            self.bulk_outcome_root = root
            if "error_code" in extra:
                self.bulk_error_code = extra["error_code"]

    def clear(self) -> None:
        with self._lock:
            self._http.clear()
            self.delay, self.delay_count = 0.0, None
            self.bulk_outcome, self.bulk_outcome_count = None, None
            self.bulk_outcome_root = None
            self.bulk_delay = 0.0
            self.truncate_downloads = 0

    # -- consumed by the servers -----------------------------------------------------------
    def take_http(self) -> HttpFault | None:
        with self._lock:
            return self._http.popleft() if self._http else None

    def take_delay(self) -> float:
        with self._lock:
            if self.delay <= 0:
                return 0.0
            if self.delay_count is not None:
                if self.delay_count <= 0:
                    return 0.0
                self.delay_count -= 1
            return self.delay

    def take_bulk_outcome(self, root: str | None = None) -> str | None:
        """The outcome for an operation ending now whose top-level field is ``root``."""
        with self._lock:
            if self.bulk_outcome is None:
                return None
            if self.bulk_outcome_root is not None and root != self.bulk_outcome_root:
                return None
            outcome = self.bulk_outcome
            if self.bulk_outcome_count is not None:
                self.bulk_outcome_count -= 1
                if self.bulk_outcome_count <= 0:
                    self.bulk_outcome, self.bulk_outcome_count = None, None
                    self.bulk_outcome_root = None
            return outcome

    def take_truncation(self) -> bool:
        with self._lock:
            if self.truncate_downloads > 0:
                self.truncate_downloads -= 1
                return True
            return False

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pending_http": [asdict(f) for f in self._http],
                "delay": self.delay,
                "delay_count": self.delay_count,
                "bulk_outcome": self.bulk_outcome,
                "bulk_outcome_count": self.bulk_outcome_count,
                "bulk_outcome_root": self.bulk_outcome_root,
                "bulk_error_code": self.bulk_error_code,
                "bulk_delay": self.bulk_delay,
                "truncate_downloads": self.truncate_downloads,
            }


# --------------------------------------------------------------------------------------------
# Control API
# --------------------------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _decimal(value: Any, default: str = "0") -> Decimal:
    try:
        return Decimal(str(value if value is not None else default))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _choose_variant(store: Any, item: dict[str, Any], variants: dict[int, Any]) -> Any:
    """The variant a line item spec names: ``variant_id``, or ``handle`` (+ ``variant`` title
    or SKU), or nothing (a custom item when ``title`` is given, else the first product)."""
    if item.get("variant_id") is not None:
        variant = variants.get(int(str(item["variant_id"]).rsplit("/", 1)[-1]))
        if variant is None:
            raise LookupError(f"no variant {item['variant_id']} on {store.domain}")
        return variant
    if item.get("handle"):
        product = next((p for p in store.products.values() if p.handle == item["handle"]), None)
        if product is None or not product.variants:
            raise LookupError(
                f"no product with handle {item['handle']!r} on {store.domain}"
                + _did_you_mean(item["handle"], [p.handle for p in store.products.values()])
            )
        wanted = str(item.get("variant") or "").strip().lower()
        if not wanted:
            return product.variants[0]
        for variant in product.variants:
            if wanted in (variant.title.lower(), (variant.sku or "").lower()):
                return variant
        raise LookupError(f"product {item['handle']!r} has no variant {item['variant']!r}")
    if not item.get("title") and variants:
        return next(iter(variants.values()))
    return None


def _did_you_mean(handle: str, handles: list[str]) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the handles nearest a mistyped one (or ``""``)."""
    near = difflib.get_close_matches(str(handle), handles, n=3, cutoff=0.6)
    if not near:
        return "; `shopify-app sandbox products` lists the handles"
    return "; did you mean " + " or ".join(repr(h) for h in near) + "?"


def place_order(sandbox: ShopifySandbox, domain: str, spec: dict[str, Any]) -> Order:
    """Place an order on ``domain`` from a small JSON spec; fires the webhooks.

    ``spec``: ``customer_id`` (number or gid) or ``email`` (a new customer is created when no
    customer has it), ``line_items`` ``[{"variant_id"?, "handle"?, "variant"?, "title"?, "sku"?,
    "quantity", "price"?}]`` (``handle`` + ``variant`` title/SKU pick a catalog variant)
    (default: one unit of the first product), optional ``discount_codes``, ``discount``,
    ``test``, ``company``. A code of a discount made in the sandbox is checked as checkout
    does (:func:`~goldpan_sandbox.discounts.checkout_discount`) and, without ``discount``,
    takes its percentage off the items.
    """
    store = sandbox.store(domain)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    customer = None
    raw_customer = spec.get("customer_id")
    if raw_customer is not None:
        number = int(str(raw_customer).rsplit("/", 1)[-1])
        customer = store.customers.get(number)
        if customer is None:
            raise LookupError(f"no customer {raw_customer} on {domain}")
    elif spec.get("email"):
        # Shopify matches customer emails case-insensitively.
        wanted = str(spec["email"]).strip().lower()
        customer = next(
            (c for c in store.customers.values() if (c.email or "").lower() == wanted), None
        )
        if customer is None:
            customer = store.add_customer(
                Customer(
                    id=store.next_id(),
                    first_name=spec.get("first_name"),
                    last_name=spec.get("last_name"),
                    email=spec["email"],
                    phone=spec.get("phone"),
                    created_at=now,
                    updated_at=now,
                    email_marketing_state=spec.get("email_marketing_state", "NOT_SUBSCRIBED"),
                )
            )
    lines = []
    variants = {v.id: v for p in store.products.values() for v in p.variants}
    items = spec.get("line_items") or [{}]
    for item in items:
        variant = _choose_variant(store, item, variants)
        price = _decimal(item.get("price"), str(variant.price) if variant else "10.00")
        product = store.products.get(variant.product_id) if variant else None
        lines.append(
            LineItem(
                id=store.next_id(),
                product_id=variant.product_id if variant else None,
                variant_id=variant.id if variant else None,
                sku=item.get("sku") or (variant.sku if variant else None),
                title=item.get("title") or (product.title if product else "Custom item"),
                quantity=int(item.get("quantity", 1)),
                unit_price=price,
            )
        )
    codes = list(spec.get("discount_codes") or [])
    # Checkout takes a code only from a customer it is for, and takes its percentage off.
    taken = checkout_discount(store, codes, customer.id if customer else None, now)
    discount = _decimal(spec.get("discount"))
    if taken is not None and "discount" not in spec:
        gross = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
        discount = (gross * Decimal(str(taken.percentage))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    billing = None
    if spec.get("company"):
        billing = Address(company=spec["company"])
    elif customer is not None and customer.default_address is not None:
        billing = customer.default_address
    order = Order(
        id=store.next_id(),
        name=store.next_order_name(),
        customer_id=customer.id if customer else None,
        email=customer.email if customer else spec.get("email"),
        created_at=now,
        processed_at=now,
        updated_at=now,
        currency=store.currency,
        line_items=lines,
        test=bool(spec.get("test", False)),
        discount_codes=codes,
        discount_total=discount,
        billing_address=billing,
    )
    return store.add_order(order)


def refund_order(
    sandbox: ShopifySandbox, domain: str, order_id: int, spec: dict[str, Any]
) -> Refund:
    """Refund an order on ``domain`` from a small JSON spec; fires the webhooks.

    ``spec``: ``{"full": true}`` (every unit still on the order, and the shipping) or
    ``{"line_items": [{"line_item_id": id or gid, "quantity": n}]}``; optional ``restock``
    (default true: the units are returned to stock, ``RETURN``; false: ``NO_RESTOCK``) or
    ``restock_type`` (``RETURN``, ``CANCEL``, ``NO_RESTOCK``), and ``note``.
    """
    full = spec.get("full", False)
    items = spec.get("line_items")
    if not isinstance(full, bool):
        raise ValueError("full must be true or false")
    if full == bool(items):
        raise ValueError("give either full: true or line_items, not both or neither")
    lines: dict[int, int] | None = None
    if items:
        if not isinstance(items, list):
            raise ValueError("line_items must be a list")
        lines = {}
        for item in items:
            if not isinstance(item, dict) or item.get("line_item_id") is None:
                raise ValueError("every line item needs a line_item_id")
            line_id = int(str(item["line_item_id"]).rsplit("/", 1)[-1])
            quantity = int(item.get("quantity", 1))
            if quantity <= 0:
                raise ValueError(f"quantity for line item {line_id} must be above zero")
            lines[line_id] = lines.get(line_id, 0) + quantity
    restock, restock_type = spec.get("restock", True), spec.get("restock_type")
    if not isinstance(restock, bool):
        raise ValueError("restock must be true or false")
    if restock_type is None:
        restock_type = "RETURN" if restock else "NO_RESTOCK"
    note = spec.get("note")
    return sandbox.store(domain).refund_order(
        order_id,
        lines,
        restock_type=str(restock_type).upper(),
        note=None if note is None else str(note),
    )


_CUSTOMER_FIELDS = {
    "first_name",
    "last_name",
    "email",
    "phone",
    "email_marketing_state",
    "sms_marketing_state",
    "tags",
    "note",
    "locale",
}


def edit_customer(
    sandbox: ShopifySandbox, domain: str, customer_id: int, changes: dict[str, Any]
) -> Customer:
    """Change a customer's fields (the admin's edit form); fires ``customers/update``."""
    unknown = set(changes) - _CUSTOMER_FIELDS - {"address"}
    if unknown:
        raise ValueError(f"cannot edit {sorted(unknown)}; editable: {sorted(_CUSTOMER_FIELDS)}")
    store = sandbox.store(domain)
    if customer_id not in store.customers:
        raise LookupError(f"no customer {customer_id} on {domain}")
    values = {k: v for k, v in changes.items() if k in _CUSTOMER_FIELDS}
    if isinstance(values.get("tags"), str):
        values["tags"] = [t.strip() for t in values["tags"].split(",") if t.strip()]
    if "address" in changes:
        values["default_address"] = Address(**changes["address"])
    return store.update_customer(customer_id, **values)


def routes(sandbox: ShopifySandbox) -> list[BaseRoute]:
    """The ``/_sandbox`` control routes of ``sandbox``."""

    def shops(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "shops": [
                    {
                        "domain": domain,
                        "shop_base": sandbox.shop_base(domain),
                        "customers": len(sandbox.store(domain).customers),
                        "orders": len(sandbox.store(domain).orders),
                    }
                    for domain in sandbox.domains()
                ]
            }
        )

    async def orders(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        try:
            spec = await request.json()
            order = place_order(sandbox, domain, spec if isinstance(spec, dict) else {})
        except (ValueError, LookupError, TypeError) as exc:
            return _error(422, str(exc))
        return JSONResponse(sandbox.delivery.order_payload(sandbox.store(domain), order), 201)

    def cancel(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        number = int(request.path_params["order_id"])
        if number not in store.orders:
            return _error(404, f"no order {number}")
        order = store.cancel_order(number)
        return JSONResponse(sandbox.delivery.order_payload(store, order))

    async def refunds(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        number = int(request.path_params["order_id"])
        if number not in store.orders:
            return _error(404, f"no order {number}")
        try:
            spec = await request.json()
            refund = refund_order(sandbox, domain, number, spec if isinstance(spec, dict) else {})
        except (ValueError, LookupError, TypeError) as exc:
            return _error(422, str(exc))
        return JSONResponse(
            {
                "refund": sandbox.delivery.refund_payload(store, refund),
                "order": sandbox.delivery.order_payload(store, store.orders[number]),
            },
            201,
        )

    async def customer(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        number = int(request.path_params["customer_id"])
        if request.method == "GET":
            found = store.customers.get(number)
            if found is None:
                return _error(404, f"no customer {number}")
            payload = sandbox.delivery.customer_payload(store, found)
            return JSONResponse({**payload, "metafields": metafields_json(found)})
        try:
            changes = await request.json()
            updated = edit_customer(sandbox, domain, number, changes)
        except LookupError as exc:
            return _error(404, str(exc))
        except (ValueError, TypeError) as exc:
            return _error(422, str(exc))
        return JSONResponse(sandbox.delivery.customer_payload(store, updated))

    def customers(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit():
            return _error(422, f"limit must be a whole number, got {raw_limit!r}")
        limit = int(raw_limit)
        with store.lock:
            chosen = list(store.customers.values())[:limit]
        return JSONResponse(
            {"customers": [sandbox.delivery.customer_payload(store, c) for c in chosen]}
        )

    def products(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        with store.lock:
            found = sorted(store.products.values(), key=lambda p: p.handle)
            listed = [
                {
                    "handle": p.handle,
                    "title": p.title,
                    "variants": [v.title for v in p.variants],
                }
                for p in found
            ]
        return JSONResponse({"products": listed})

    def compliance(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        action = request.path_params["action"]
        number = request.path_params.get("customer_id")
        if action == "redact" and number is not None:
            sandbox.redact_customer(domain, number)
        elif action == "data_request" and number is not None:
            sandbox.request_customer_data(domain, number)
        elif action == "uninstall":
            sandbox.uninstall(domain)
        elif action == "redact" and number is None:
            sandbox.redact_shop(domain)
        else:
            return _error(404, f"unknown action {action}")
        return JSONResponse({"ok": True}, 202)

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                apply_faults(sandbox, await request.json())
            except (ValueError, TypeError, KeyError) as exc:
                return _error(422, str(exc))
        return JSONResponse(sandbox.faults.describe())

    def discounts(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        ctx = RequestContext(domain, sandbox.store(domain))
        with ctx.store.lock:
            found = list(ctx.store.discounts.values())
        return JSONResponse({"discounts": [discount_json(ctx, d) for d in found]})

    def flow_events(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        return JSONResponse({"events": flow.events_json(sandbox.store(domain))})

    async def flow_workflows(request: Request) -> JSONResponse:
        """Enable or disable a workflow on a trigger (``{"trigger": handle, "enabled": true}``);
        the sandbox POSTs the signed lifecycle callback to the app first."""
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        spec = await request.json()
        handle = spec.get("trigger") if isinstance(spec, dict) else None
        if handle not in flow.extensions().triggers:
            return _error(422, f"no Flow trigger {handle!r}")
        result = await run_in_threadpool(
            flow.set_workflow,
            sandbox.store(domain),
            str(handle),
            bool(spec.get("enabled", True)),
            app_url=sandbox.delivery.app_url,
            api_secret=sandbox.api_secret,
        )
        return JSONResponse(result)

    def segment_members(request: Request) -> JSONResponse:
        domain = request.path_params["shop"]
        if domain not in sandbox.domains():
            return _error(404, f"no shop {domain}")
        store = sandbox.store(domain)
        number = request.path_params["segment_id"]
        if number not in store.segments:
            return _error(404, f"no segment {number}")
        try:
            members = store.segment_members(number)
        except NotImplementedError as exc:
            return _error(501, str(exc))
        return JSONResponse({"customers": members})

    def webhooks(request: Request) -> JSONResponse:
        shop = request.query_params.get("shop")
        topic = request.query_params.get("topic")
        return JSONResponse(
            {"deliveries": [d.as_dict() for d in sandbox.delivery.log(shop=shop, topic=topic)]}
        )

    return [
        Route("/_sandbox/shops", shops, methods=["GET"]),
        Route("/_sandbox/shops/{shop}/orders", orders, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/orders/{order_id:int}/cancel", cancel, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/orders/{order_id:int}/refunds", refunds, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/customers", customers, methods=["GET"]),
        Route("/_sandbox/shops/{shop}/discounts", discounts, methods=["GET"]),
        Route("/_sandbox/shops/{shop}/flow-events", flow_events, methods=["GET"]),
        Route("/_sandbox/shops/{shop}/flow-workflows", flow_workflows, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/products", products, methods=["GET"]),
        Route(
            "/_sandbox/shops/{shop}/segments/{segment_id:int}/members",
            segment_members,
            methods=["GET"],
        ),
        Route(
            "/_sandbox/shops/{shop}/customers/{customer_id:int}",
            customer,
            methods=["GET", "PATCH", "POST"],
        ),
        Route(
            "/_sandbox/shops/{shop}/customers/{customer_id:int}/{action}",
            compliance,
            methods=["POST"],
        ),
        Route("/_sandbox/shops/{shop}/{action}", compliance, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET"]),
    ]


def apply_faults(sandbox: ShopifySandbox, spec: dict[str, Any]) -> None:
    """Set faults from JSON: ``{"http": {"status": 503, "count": 2, "retry_after": 1},
    "delay": {"seconds": 3, "count": 1}, "bulk": {"outcome": "FAILED", "count": 1,
    "root": "orders", "error_code": "TIMEOUT", "delay": 0.5}, "truncate_downloads": 1,
    "throttle": {"maximum": 100, "restore_rate": 10}, "drain_bucket": true,
    "webhooks": {"duplicate_rate": 0.1, "app_url": "http://..."}, "clear": true}``."""
    faults = sandbox.faults
    if spec.get("clear"):
        faults.clear()
    if "http" in spec:
        http = spec["http"]
        faults.fail_next(int(http["status"]), int(http.get("count", 1)), http.get("retry_after"))
    if "delay" in spec:
        delay = spec["delay"]
        faults.slow_next(float(delay["seconds"]), delay.get("count", 1))
    if "bulk" in spec:
        bulk = spec["bulk"]
        extra = {"error_code": bulk["error_code"]} if "error_code" in bulk else {}
        if "outcome" in bulk:
            faults.end_bulk(bulk["outcome"], bulk.get("count"), root=bulk.get("root"), **extra)
        if "delay" in bulk:
            faults.bulk_delay = float(bulk["delay"])
    if "truncate_downloads" in spec:
        faults.truncate_downloads = int(spec["truncate_downloads"])
    if "throttle" in spec:
        throttle = spec["throttle"]
        sandbox.set_plan(float(throttle["maximum"]), float(throttle["restore_rate"]))
    if "webhooks" in spec:
        hooks = spec["webhooks"]
        if "duplicate_rate" in hooks:
            rate = float(hooks["duplicate_rate"])
            if not 0 <= rate <= 1:
                raise ValueError("duplicate_rate must be between 0 and 1")
            sandbox.delivery.duplicate_rate = rate
        if "app_url" in hooks:
            sandbox.app_url = hooks["app_url"]
    if spec.get("drain_bucket"):
        for domain in sandbox.domains():
            sandbox.bucket(domain).drain()
