"""``shopify-app sandbox ...`` runs the Shopify stand-in and drives a running one; and the demo.

``sandbox`` and ``demo`` reach ``shopify-app`` through the ``shopify_app.commands`` entry points
declared in ``pyproject.toml`` (:data:`SANDBOX`, :data:`DEMO`): the app lists and runs them
without importing this package.

``serve`` runs a standalone sandbox with a generated store. The other commands talk to a running
sandbox (the demo's, or ``serve``'s) over its JSON control API (``/_sandbox/...``) so anyone can
place an order (``products`` lists the handles it names), refund one or edit a customer and watch
the webhooks and Goldpan's tags follow::

    shopify-app sandbox order --shop linen-lane.myshopify.com --customer ana@example.com \\
        --product linen-dinner-napkins:Sage --quantity 48
    shopify-app sandbox customer --shop linen-lane.myshopify.com --id 7000000000123 \\
        --consent SUBSCRIBED --add-tag wholesale
    shopify-app sandbox refund 7000000000456 --shop linen-lane.myshopify.com \\
        --line 7000000000457:24
    shopify-app sandbox faults --http 503 --count 2

Exit codes: 0 done, 1 the sandbox could not be reached or failed, 2 bad input (ours or the
sandbox's 4xx answer).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import requests

from shopify_app.cli import Command, iso_date

DEFAULT_PORT = 8001
"""``serve``'s port, and where the commands look by default (the demo runs its sandbox here)."""

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_SHOP = "linen-lane.myshopify.com"
CONSENT_STATES = ("SUBSCRIBED", "NOT_SUBSCRIBED", "UNSUBSCRIBED", "PENDING")


class UsageError(Exception):
    """Bad input: exit code 2."""


class SandboxError(Exception):
    """The sandbox could not be reached or failed: exit code 1."""


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above zero, got {number}")
    return number


def _refund_line(value: str) -> tuple[str, int]:
    """``ID:QTY`` → (line item id or gid, quantity); a gid's own colon is kept."""
    line, sep, quantity = value.rpartition(":")
    if not sep or not line.strip() or not quantity.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected ID:QTY (e.g. 7000000000457:2), got {value!r}")
    return line.strip(), _positive(quantity)


class _OneLineHelp(argparse.HelpFormatter):
    """Help as wide as the longest line needs, whatever the terminal: ``--help`` lists every
    command on one line with what it does."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=110)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        # argparse measures commands at their parent's indent but prints them one step further
        # in, so the longest name ("customers") would push its help onto a line of its own.
        if action.help is not argparse.SUPPRESS:
            for sub in self._iter_indented_subactions(action):
                length = len(self._format_action_invocation(sub)) + self._current_indent
                self._action_max_length = max(self._action_max_length, length)


def build_parser() -> argparse.ArgumentParser:
    """The ``shopify-app sandbox`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="shopify-app sandbox",
        description="Run the local Shopify stand-in, or change a running one's store data.",
        formatter_class=_OneLineHelp,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--sandbox", default=DEFAULT_URL, help=f"the running sandbox (default {DEFAULT_URL})"
        )

    serve = sub.add_parser("serve", help="run a standalone Shopify sandbox with a generated store")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--shop", default=DEFAULT_SHOP, help="the generated shop's domain")
    serve.add_argument("--customers", type=int, default=300)
    serve.add_argument("--seed", type=int, default=7)
    serve.add_argument("--as-of", type=iso_date, default=None, help="YYYY-MM-DD (default: today)")
    serve.add_argument("--api-key", default="sandbox-api-key", help="the app's client id")
    serve.add_argument("--api-secret", default="sandbox-api-secret", help="the app's secret")
    serve.add_argument(
        "--app-url", default=None, help="where webhooks go (the app's SHOPIFY_APP_URL)"
    )

    order = sub.add_parser("order", help="place an order (fires orders/create, customers/update)")
    remote(order)
    order.add_argument("--shop", required=True)
    order.add_argument("--customer", required=True, help="customer id, gid, or email")
    order.add_argument(
        "--product",
        action="append",
        required=True,
        help="product handle, optionally :variant title or SKU; repeatable "
        "(e.g. linen-dinner-napkins:Sage)",
    )
    order.add_argument(
        "--variant", default=None, help="variant for products without one (default: the first)"
    )
    order.add_argument(
        "--quantity", type=_positive, action="append", help="per --product (default 1)"
    )
    order.add_argument("--discount-code", action="append", default=[])
    order.add_argument("--test", action="store_true", help="a test order")
    order.add_argument("--first-name", default=None, help="for a new customer (by email)")
    order.add_argument("--last-name", default=None)

    cancel = sub.add_parser("cancel", help="cancel an order (fires orders/cancelled)")
    remote(cancel)
    cancel.add_argument("--shop", required=True)
    cancel.add_argument("--order", required=True, help="order id or gid")

    refund = sub.add_parser(
        "refund", help="refund an order in full or by line items (fires refunds/create)"
    )
    remote(refund)
    refund.add_argument("order", help="order id or gid")
    refund.add_argument("--shop", required=True)
    what = refund.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--line",
        action="append",
        type=_refund_line,
        metavar="ID:QTY",
        help="line item id (or gid) and units to refund; repeatable",
    )
    what.add_argument(
        "--full", action="store_true", help="every unit still on the order, and the shipping"
    )
    refund.add_argument(
        "--no-restock", action="store_true", help="the units are not returned to stock"
    )
    refund.add_argument("--note", default=None)

    customer = sub.add_parser("customer", help="show or edit a customer (customers/update)")
    remote(customer)
    customer.add_argument("--shop", required=True)
    customer.add_argument("--id", required=True, help="customer id or gid")
    customer.add_argument("--email", default=None)
    customer.add_argument("--phone", default=None)
    customer.add_argument("--first-name", default=None)
    customer.add_argument("--last-name", default=None)
    customer.add_argument("--tags", default=None, help="replace all tags (comma-separated)")
    customer.add_argument("--add-tag", action="append", default=[])
    customer.add_argument("--remove-tag", action="append", default=[])
    customer.add_argument(
        "--consent", choices=CONSENT_STATES, default=None, help="email marketing state"
    )
    customer.add_argument("--note", default=None)

    customers = sub.add_parser("customers", help="list a shop's customers")
    remote(customers)
    customers.add_argument("--shop", required=True)
    customers.add_argument("--limit", type=_positive, default=20)

    products = sub.add_parser("products", help="list a shop's product handles, titles, variants")
    remote(products)
    products.add_argument("--shop", required=True)

    shops = sub.add_parser("shops", help="list the sandbox's shops")
    remote(shops)

    faults = sub.add_parser("faults", help="show or set fault knobs (no options: show)")
    remote(faults)
    faults.add_argument("--http", type=int, choices=(429, 500, 502, 503), default=None)
    faults.add_argument("--count", type=_positive, default=1, help="how many requests to affect")
    faults.add_argument("--retry-after", type=float, default=None)
    faults.add_argument("--delay", type=float, default=None, help="slow answers, seconds")
    faults.add_argument("--bulk", choices=("FAILED", "EXPIRED"), default=None)
    faults.add_argument("--bulk-error-code", default=None, help="e.g. TIMEOUT")
    faults.add_argument("--truncate", type=int, default=None, help="cut off N next downloads")
    faults.add_argument(
        "--throttle",
        nargs=2,
        type=float,
        metavar=("MAXIMUM", "RESTORE_RATE"),
        default=None,
        help="leaky bucket size and points restored per second",
    )
    faults.add_argument("--drain", action="store_true", help="empty the cost buckets now")
    faults.add_argument("--clear", action="store_true", help="remove every fault")

    webhooks = sub.add_parser("webhooks", help="show the webhook delivery log")
    remote(webhooks)
    webhooks.add_argument("--shop", default=None)
    webhooks.add_argument("--topic", default=None)
    webhooks.add_argument("--last", type=_positive, default=20)
    return parser


def demo(args: Sequence[str]) -> int:
    """Run ``shopify-app demo <args>``: the whole app against the sandbox; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="shopify-app demo", description="Run the whole app against the local sandbox."
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    try:
        ns = parser.parse_args(list(args))
    except SystemExit as exc:  # argparse already printed the usage error (or --help)
        return int(exc.code or 0)
    try:
        from goldpan_sandbox.demo import run_demo
    except ModuleNotFoundError as exc:
        print(f"error: {_missing_extra(exc)}", file=sys.stderr)
        return 1
    return run_demo(port=ns.port, customers=ns.customers, seed=ns.seed)


def _missing_extra(exc: ModuleNotFoundError) -> str:
    """The message for a dependency of the ``sandbox`` extra missing from a plain app install."""
    if not exc.name or exc.name.split(".")[0] in {"goldpan_sandbox", "shopify_app"}:
        raise exc  # our own module: a bug, not an install choice
    return (
        f"the sandbox needs {exc.name!r}, which is not installed: "
        "pip install 'goldpan[sandbox]' (./dev setup does)"
    )


def main(args: Sequence[str]) -> int:
    """Run ``shopify-app sandbox <args>``; returns the exit code."""
    parser = build_parser()
    try:
        ns = parser.parse_args(list(args))
    except SystemExit as exc:  # argparse already printed the usage error (or --help)
        return int(exc.code or 0)
    try:
        if ns.command == "serve":
            return _serve(ns)
        with requests.Session() as http:
            client = ControlClient(ns.sandbox, http)
            result = _COMMANDS[ns.command](client, ns)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str), flush=True)
    except BrokenPipeError:  # piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class ControlClient:
    """The sandbox's ``/_sandbox`` JSON API over ``requests``."""

    def __init__(self, base_url: str, http: requests.Session | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--sandbox must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.http = http or requests.Session()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One request; 4xx answers raise :class:`UsageError`, the rest :class:`SandboxError`."""
        url = f"{self.base_url}/_sandbox{path}"
        try:
            response = self.http.request(
                method,
                url,
                json=body,
                params={k: v for k, v in params.items() if v is not None} or None,
                timeout=30,
            )
        except requests.RequestException as exc:
            raise SandboxError(
                f"no sandbox answering at {self.base_url} ({exc.__class__.__name__}); "
                "start one with `shopify-app sandbox serve` or `shopify-app demo`"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if 400 <= response.status_code < 500:
            message = data.get("error") if isinstance(data, dict) else None
            raise UsageError(message or f"sandbox answered HTTP {response.status_code}")
        if response.status_code >= 500:
            raise SandboxError(f"sandbox failed with HTTP {response.status_code}: {data}")
        return data


def _number(value: str, what: str) -> int:
    """``123`` or ``gid://shopify/Customer/123`` → 123."""
    tail = value.strip().rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise UsageError(f"{what} must be a number or a Shopify gid, got {value!r}")
    return int(tail)


def _order(client: ControlClient, ns: argparse.Namespace) -> Any:
    quantities = ns.quantity or []
    if len(quantities) > len(ns.product):
        raise UsageError("more --quantity than --product options")
    items = []
    for i, product in enumerate(ns.product):
        handle, _, variant = product.partition(":")
        if not handle.strip():
            raise UsageError(f"--product needs a product handle, got {product!r}")
        item: dict[str, Any] = {
            "handle": handle.strip(),
            "quantity": quantities[i] if i < len(quantities) else 1,
        }
        if variant.strip() or ns.variant:
            item["variant"] = variant.strip() or ns.variant
        items.append(item)
    spec: dict[str, Any] = {"line_items": items, "test": ns.test}
    if ns.discount_code:
        spec["discount_codes"] = ns.discount_code
    if "@" in ns.customer:
        spec["email"] = ns.customer.strip()
        if ns.first_name:
            spec["first_name"] = ns.first_name
        if ns.last_name:
            spec["last_name"] = ns.last_name
    else:
        spec["customer_id"] = _number(ns.customer, "--customer")
    payload = client.call("POST", f"/shops/{ns.shop}/orders", spec)
    return _order_summary(payload)


def _order_summary(payload: Any) -> Any:
    if not isinstance(payload, dict):
        return payload
    customer = payload.get("customer") or {}
    return {
        "order": payload.get("name"),
        "id": payload.get("id"),
        "customer": customer.get("id"),
        "email": payload.get("email"),
        "line_items": [
            {"title": li.get("title"), "sku": li.get("sku"), "quantity": li.get("quantity")}
            for li in payload.get("line_items") or []
        ],
        "total": payload.get("current_total_price") or payload.get("total_price"),
        "cancelled_at": payload.get("cancelled_at"),
    }


def _cancel(client: ControlClient, ns: argparse.Namespace) -> Any:
    number = _number(ns.order, "--order")
    return _order_summary(client.call("POST", f"/shops/{ns.shop}/orders/{number}/cancel"))


def _refund(client: ControlClient, ns: argparse.Namespace) -> Any:
    number = _number(ns.order, "ORDER")
    spec: dict[str, Any] = {"restock": not ns.no_restock}
    if ns.full:
        spec["full"] = True
    else:
        spec["line_items"] = [
            {"line_item_id": _number(line, "--line ID"), "quantity": quantity}
            for line, quantity in ns.line
        ]
    if ns.note is not None:
        spec["note"] = ns.note
    answer = client.call("POST", f"/shops/{ns.shop}/orders/{number}/refunds", spec)
    if not isinstance(answer, dict):
        return answer
    refund = answer.get("refund") or {}
    order = answer.get("order") or {}
    given_back = sum((Decimal(t["amount"]) for t in refund.get("transactions") or []), Decimal(0))
    return {
        "refund": refund.get("id"),
        "order": order.get("name"),
        "amount": f"{given_back:.2f}",
        "line_items": [
            {
                "line_item_id": rli.get("line_item_id"),
                "quantity": rli.get("quantity"),
                "restock_type": rli.get("restock_type"),
            }
            for rli in refund.get("refund_line_items") or []
        ],
        "financial_status": order.get("financial_status"),
        "current_total": order.get("current_total_price"),
    }


def _customer(client: ControlClient, ns: argparse.Namespace) -> Any:
    number = _number(ns.id, "--id")
    path = f"/shops/{ns.shop}/customers/{number}"
    changes: dict[str, Any] = {}
    for field in ("email", "phone", "first_name", "last_name", "note"):
        value = getattr(ns, field)
        if value is not None:
            changes[field] = value
    if ns.consent:
        changes["email_marketing_state"] = ns.consent
    if ns.tags is not None:
        changes["tags"] = _split_tags(ns.tags)
    if ns.add_tag or ns.remove_tag:
        current = changes.get("tags")
        if current is None:
            current = _split_tags(client.call("GET", path).get("tags") or "")
        wanted = [t for t in current if t not in ns.remove_tag]
        wanted += [t for t in ns.add_tag if t not in wanted]
        changes["tags"] = wanted
    if not changes:
        return client.call("GET", path)
    return client.call("PATCH", path, changes)


def _split_tags(value: str | list[str]) -> list[str]:
    if isinstance(value, list):
        return [str(t).strip() for t in value if str(t).strip()]
    return [t.strip() for t in value.split(",") if t.strip()]


def _customers(client: ControlClient, ns: argparse.Namespace) -> Any:
    return client.call("GET", f"/shops/{ns.shop}/customers", limit=ns.limit)


def _products(client: ControlClient, ns: argparse.Namespace) -> Any:
    return client.call("GET", f"/shops/{ns.shop}/products")


def _shops(client: ControlClient, ns: argparse.Namespace) -> Any:
    return client.call("GET", "/shops")


def _faults(client: ControlClient, ns: argparse.Namespace) -> Any:
    spec: dict[str, Any] = {}
    if ns.clear:
        spec["clear"] = True
    if ns.http is not None:
        spec["http"] = {"status": ns.http, "count": ns.count}
        if ns.retry_after is not None:
            spec["http"]["retry_after"] = ns.retry_after
    if ns.delay is not None:
        if ns.delay < 0:
            raise UsageError("--delay must not be negative")
        spec["delay"] = {"seconds": ns.delay, "count": ns.count}
    if ns.bulk is not None:
        spec["bulk"] = {"outcome": ns.bulk, "count": ns.count}
        if ns.bulk_error_code:
            spec["bulk"]["error_code"] = ns.bulk_error_code
    if ns.truncate is not None:
        spec["truncate_downloads"] = ns.truncate
    if ns.throttle is not None:
        maximum, rate = ns.throttle
        if maximum <= 0 or rate <= 0:
            raise UsageError("--throttle needs a positive bucket size and restore rate")
        spec["throttle"] = {"maximum": maximum, "restore_rate": rate}
    if ns.drain:
        spec["drain_bucket"] = True
    if not spec:
        return client.call("GET", "/faults")
    return client.call("POST", "/faults", spec)


def _webhooks(client: ControlClient, ns: argparse.Namespace) -> Any:
    data = client.call("GET", "/webhooks", shop=ns.shop, topic=ns.topic)
    deliveries = data.get("deliveries", []) if isinstance(data, dict) else []
    return {"deliveries": deliveries[-ns.last :]}


SANDBOX = Command(help="run or drive the Shopify/Meta stand-ins", run=main)
DEMO = Command(help="run the whole app against the local sandbox", run=demo)

_COMMANDS = {
    "order": _order,
    "cancel": _cancel,
    "refund": _refund,
    "customer": _customer,
    "customers": _customers,
    "products": _products,
    "shops": _shops,
    "faults": _faults,
    "webhooks": _webhooks,
}


def _serve(ns: argparse.Namespace) -> int:
    """Run a standalone Shopify sandbox until Ctrl-C."""
    try:
        from goldpan_sandbox.generator import generate_store
        from goldpan_sandbox.shopify import ShopifySandbox
    except ModuleNotFoundError as exc:
        raise SandboxError(_missing_extra(exc)) from None

    if ns.customers < 0:
        raise UsageError("--customers must not be negative")
    started = time.monotonic()
    store = generate_store(ns.shop, customers=ns.customers, seed=ns.seed, as_of=ns.as_of)
    generated = time.monotonic() - started
    sandbox = ShopifySandbox(ns.api_key, ns.api_secret, app_url=ns.app_url)
    sandbox.add_shop(ns.shop, store)
    try:
        server = sandbox.start(port=ns.port)
    except (OSError, RuntimeError) as exc:
        raise SandboxError(f"could not listen on 127.0.0.1:{ns.port}: {exc}") from None
    print(
        f"Shopify sandbox at {server.url} — shop {ns.shop}: {len(store.customers)} customers, "
        f"{len(store.orders)} orders (generated in {generated:.1f}s)\n"
        f"Admin GraphQL: {sandbox.graphql_url(ns.shop)}\n"
        "Point the app at it with:\n"
        f"    SHOPIFY_BASE_URL={sandbox.shop_base()} SHOPIFY_API_KEY={ns.api_key} "
        f"SHOPIFY_API_SECRET={ns.api_secret}\n"
        f"Webhooks go to {ns.app_url or '(nowhere: pass --app-url)'}. Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        wait_until_interrupted()
    finally:
        sandbox.close()
    return 0


def wait_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM (call from the main thread)."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
