"""The sandbox's Admin GraphQL API: Shopify's real 2026-10 schema executed over a :class:`Store`.

Every document is parsed and validated against the vendored schema (so a field the app asks for
that Shopify does not have fails here exactly as it would in production), priced with
:mod:`cost`, then executed by graphql-core with resolvers attached to the client schema. Fields
the sandbox does not model resolve to null, which graphql-core reports for non-null fields: the
stand-in never invents data.

Resolvers are plain functions ``fn(obj, args, ctx)`` in :data:`RESOLVERS`, shared by graphql-core
execution and the bulk walker in :mod:`bulk` (which needs no per-row graphql execution).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import gzip
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_client_schema,
    execute_sync,
    is_abstract_type,
    parse,
    print_ast,
    validate,
)

from goldpan_sandbox import cost
from goldpan_sandbox.store import (
    Address,
    Customer,
    LineItem,
    Order,
    Product,
    Refund,
    RefundLineItem,
    Segment,
    Store,
    Variant,
    gid,
    parse_gid,
    shop_number,
)

if TYPE_CHECKING:
    from goldpan_sandbox.bulk import BulkManager

API_VERSION = "2026-10"
SCHEMA_FILE = Path(__file__).parent / "data" / "admin-2026-10.introspection.json.gz"
"""Shopify's published Admin schema (npm ``@shopify/dev-mcp`` 1.16.0, admin_2026-10.json.gz)."""

MAX_PAGE_SIZE = 250
MAX_TAG_LENGTH = 255
MAX_TAGS = 250


@dataclass
class RequestContext:
    """What resolvers see: the shop's store and the sandbox services they may call."""

    domain: str
    store: Store
    bulk: BulkManager | None = None
    base_url: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


Resolver = Callable[[Any, dict[str, Any], RequestContext], Any]
RESOLVERS: dict[str, dict[str, Resolver]] = {}
CONNECTION_SOURCES: dict[
    tuple[str, str], Callable[[Any, dict[str, Any], RequestContext], list[Any]]
] = {}
"""(type, field) -> a function listing every node of that connection (filtered and sorted)."""
UNORDERED_SOURCES: dict[
    tuple[str, str], Callable[[Any, dict[str, Any], RequestContext], list[Any]]
] = {}
"""The same, unsorted: bulk output has no order, so the bulk walker skips sorting."""


def resolver(type_name: str, field_name: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        RESOLVERS.setdefault(type_name, {})[field_name] = fn
        return fn

    return register


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def load_introspection(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return data.get("data", data)  # type: ignore[no-any-return,unused-ignore]


@functools.cache
def schema() -> GraphQLSchema:
    """The 2026-10 Admin schema with the sandbox's resolvers attached (built once)."""
    # assume_valid: Shopify deprecates some interface-field implementations, which
    # graphql-core's strict schema check would otherwise reject.
    built = build_client_schema(load_introspection(), assume_valid=True)  # type: ignore[arg-type]
    for type_name, fields in RESOLVERS.items():
        gql_type = built.get_type(type_name)
        if gql_type is None:
            raise RuntimeError(f"resolver for unknown type {type_name}")
        for field_name, fn in fields.items():
            gql_type.fields[field_name].resolve = _adapt(fn)  # type: ignore[attr-defined]
    for gql_type in built.type_map.values():
        if is_abstract_type(gql_type):
            gql_type.resolve_type = _resolve_type
    return built


def _adapt(fn: Resolver) -> Callable[..., Any]:
    def resolve(obj: Any, info: Any, **args: Any) -> Any:
        return fn(obj, args, info.context)

    return resolve


_TYPENAMES = {
    Customer: "Customer",
    Order: "Order",
    LineItem: "LineItem",
    Product: "Product",
    Variant: "ProductVariant",
    Segment: "Segment",
    Refund: "Refund",
    RefundLineItem: "RefundLineItem",
}


def typename(value: Any) -> str | None:
    """The GraphQL object type of a resolved value (dicts carry ``__typename``)."""
    if isinstance(value, dict):
        return value.get("__typename")
    name = _TYPENAMES.get(type(value))
    if name is None:
        name = getattr(value, "graphql_type", None) or type(value).__name__
    return name


def _resolve_type(value: Any, info: Any, abstract_type: Any) -> str | None:
    return typename(value)


# --------------------------------------------------------------------------------------------
# Value formats
# --------------------------------------------------------------------------------------------


def iso(value: dt.datetime | None) -> str | None:
    """Shopify's DateTime: UTC, seconds, ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None and value.tzinfo is not dt.UTC and value.utcoffset():
        value = value.astimezone(dt.UTC)
    # isoformat is several times faster than strftime; bulk exports call this millions of times.
    return value.isoformat(timespec="seconds")[:19] + "Z"


def decimal_str(value: Decimal) -> str:
    """Shopify's Decimal scalar: no trailing zeros beyond one decimal (``"12.5"``, ``"10.0"``)."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"amount": decimal_str(amount), "currencyCode": currency}


def money_bag(amount: Decimal, currency: str) -> dict[str, Any]:
    value = money(amount, currency)
    return {"shopMoney": value, "presentmentMoney": dict(value)}


def address_dict(address: Address | None, number: int | None = None) -> dict[str, Any] | None:
    if address is None:
        return None
    name = " ".join(p for p in (address.first_name, address.last_name) if p) or None
    return {
        "__typename": "MailingAddress",
        "id": gid("MailingAddress", number) if number is not None else None,
        "firstName": address.first_name,
        "lastName": address.last_name,
        "name": name,
        "company": address.company,
        "address1": address.address1,
        "address2": None,
        "city": address.city,
        "province": address.province_code,
        "provinceCode": address.province_code,
        "country": address.country_code,
        "countryCode": address.country_code,
        "countryCodeV2": address.country_code,
        "zip": address.zip,
        "phone": address.phone,
        "formatted": [p for p in (address.address1, address.city, address.zip) if p],
        "formattedArea": ", ".join(p for p in (address.city, address.country_code) if p) or None,
    }


# --------------------------------------------------------------------------------------------
# Connections: cursors, pages and Shopify's search syntax
# --------------------------------------------------------------------------------------------


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from None
    if not isinstance(value, list):
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}")
    return value


def paginate(
    items: Sequence[Any], args: dict[str, Any], key: Callable[[Any], list[Any]]
) -> dict[str, Any]:
    """One page of ``items`` (already filtered and ordered) as a Shopify connection.

    Cursors are keyset cursors (sort value + id), so pages stay stable while data changes.
    """
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    for name, size in (("first", first), ("last", last)):
        if size is not None and (size < 0 or size > MAX_PAGE_SIZE):
            raise GraphQLError(
                f"The '{name}' argument must be between 0 and {MAX_PAGE_SIZE}.",
                extensions={"code": "BAD_REQUEST"},
            )
    start, end = 0, len(items)
    # Find cursors by id first (cheap); only a row that has moved or gone needs the keys.
    if args.get("after"):
        after = decode_cursor(args["after"])
        found = _index_of(items, after, key)
        start = (
            found + 1
            if found is not None
            else _position([key(i) for i in items], after, bool(args.get("reverse")))
        )
    if args.get("before"):
        before = decode_cursor(args["before"])
        found = _index_of(items, before, key)
        end = found if found is not None else end
    window = list(range(start, max(start, end)))
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    edges = [{"cursor": encode_cursor(key(items[i])), "node": items[i]} for i in window]
    return {
        "edges": edges,
        "nodes": [e["node"] for e in edges],
        "pageInfo": {
            "hasNextPage": (window[-1] < end - 1) if window else False,
            "hasPreviousPage": (window[0] > 0) if window else start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _index_of(
    items: Sequence[Any], cursor: list[Any], key: Callable[[Any], list[Any]]
) -> int | None:
    wanted = cursor[-1] if cursor else None
    for index, item in enumerate(items):
        if getattr(item, "id", None) == wanted:
            return index if key(item) == cursor else None
    return None


def _position(keys: list[list[Any]], after: list[Any], reverse: bool) -> int:
    """Where a cursor whose row has moved or gone would sit: the first key past it."""
    for i, k in enumerate(keys):
        try:
            if (k < after) if reverse else (k > after):
                return i
        except TypeError:
            continue
    return len(keys)


_TERM = re.compile(
    r"""(?P<neg>-)?(?:(?P<field>[A-Za-z_]+):(?P<op>>=|<=|>|<|=)?)?"""
    r"""(?P<value>'[^']*'|"[^"]*"|\S+)"""
)


def parse_search(query: str | None) -> list[tuple[bool, str | None, str, str]]:
    """Shopify search syntax → ``[(negated, field, op, value)]``; terms are ANDed.

    ``OR`` groups are rare in what the app sends; the sandbox treats ``AND``/``OR`` words as
    separators (documented here so nobody relies on OR).
    """
    terms: list[tuple[bool, str | None, str, str]] = []
    if not query:
        return terms
    for match in _TERM.finditer(query):
        value = match.group("value")
        if match.group("field") is None and value.upper() in ("AND", "OR"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        terms.append(
            (bool(match.group("neg")), match.group("field"), match.group("op") or ":", value)
        )
    return terms


def _parse_time(value: str) -> dt.datetime | None:
    text = value.strip()
    if text.lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _compare(actual: Any, op: str, wanted: str) -> bool:
    if isinstance(actual, list):
        return any(_compare(a, op, wanted) for a in actual)
    if actual is None:
        return False
    if isinstance(actual, dt.datetime):
        when = _parse_time(wanted)
        if when is None:
            return False
        actual = actual if actual.tzinfo else actual.replace(tzinfo=dt.UTC)
        left, right = actual, when
    elif isinstance(actual, bool):
        return op in (":", "=") and str(actual).lower() == wanted.lower()
    elif isinstance(actual, int | Decimal | float):
        try:
            left, right = Decimal(actual), Decimal(wanted)  # type: ignore[assignment]
        except ArithmeticError:
            return False
    else:
        text = str(actual).lower()
        want = wanted.lower()
        if op in (":", "="):
            return text.startswith(want[:-1]) if want.endswith("*") else text == want
        left, right = text, want  # type: ignore[assignment]
    if op in (":", "="):
        return left == right
    if op == ">":
        return left > right
    if op == "<":
        return left < right
    if op == ">=":
        return left >= right
    return left <= right


UNKNOWN_FIELD = object()


def search(
    items: Iterable[Any],
    query: str | None,
    fields: Callable[[Any, str], Any],
    text: Callable[[Any], str],
) -> list[Any]:
    """Filter ``items`` by a Shopify search query (terms ANDed; unknown fields ignored)."""
    terms = parse_search(query)
    if not terms:
        return list(items)
    result = []
    for item in items:
        ok = True
        for negated, name, op, value in terms:
            if name is None:
                hit = value.lower() in text(item).lower()
            else:
                actual = fields(item, name.lower())
                # Shopify ignores search fields it does not know (with a warning).
                hit = True if actual is UNKNOWN_FIELD else _compare(actual, op, value)
            if hit == negated:
                ok = False
                break
        if ok:
            result.append(item)
    return result


def _sorted(items: list[Any], value: Callable[[Any], Any], reverse: bool) -> list[Any]:
    def key(item: Any) -> tuple[bool, Any, int]:
        v = value(item)
        return (v is None, 0 if v is None else v, item.id)

    items.sort(key=key, reverse=bool(reverse))
    return items


def _sortable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return float(value)
    return "" if value is None else value


def _key_fn(value: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    return lambda item: [_sortable(value(item)), item.id]


def connection_field(
    type_name: str,
    field_name: str,
    sort_values: dict[str, Callable[[Any], Any]],
    default_sort: str = "ID",
) -> Callable[[Callable[[Any, dict[str, Any], RequestContext], list[Any]]], None]:
    """Register a connection: ``source`` lists nodes (filtered); this adds sorting and paging."""

    def register(source: Callable[[Any, dict[str, Any], RequestContext], list[Any]]) -> None:
        def ordered(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
            value = sort_values.get(args.get("sortKey") or default_sort, sort_values[default_sort])
            return _sorted(list(source(obj, args, ctx)), value, bool(args.get("reverse")))

        def page(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
            value = sort_values.get(args.get("sortKey") or default_sort, sort_values[default_sort])
            return paginate(ordered(obj, args, ctx), args, _key_fn(value))

        CONNECTION_SOURCES[(type_name, field_name)] = ordered
        UNORDERED_SOURCES[(type_name, field_name)] = source
        RESOLVERS.setdefault(type_name, {})[field_name] = page

    return register


# --------------------------------------------------------------------------------------------
# Query root
# --------------------------------------------------------------------------------------------


def _customer_field(c: Customer, name: str) -> Any:
    address = c.default_address
    return {
        "id": c.id,
        "updated_at": c.updated_at,
        "created_at": c.created_at,
        "email": c.email,
        "phone": c.phone,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "tag": c.tags,
        "country": address.country_code if address else None,
        "state": "enabled",
        "accepts_marketing": c.email_marketing_state == "SUBSCRIBED",
    }.get(name, UNKNOWN_FIELD)


def _customer_text(c: Customer) -> str:
    return " ".join(p for p in (c.first_name, c.last_name, c.email, c.phone) if p)


@connection_field(
    "QueryRoot",
    "customers",
    {
        "ID": lambda c: c.id,
        "UPDATED_AT": lambda c: c.updated_at,
        "CREATED_AT": lambda c: c.created_at,
        "NAME": lambda c: f"{c.first_name or ''} {c.last_name or ''}".strip().lower(),
        "RELEVANCE": lambda c: c.id,
        "LOCATION": lambda c: c.default_address.country_code if c.default_address else None,
    },
)
def _customers(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    with ctx.store.lock:
        customers = list(ctx.store.customers.values())
    return search(customers, args.get("query"), _customer_field, _customer_text)


def _order_field(o: Order, name: str) -> Any:
    return {
        "id": o.id,
        "updated_at": o.updated_at,
        "created_at": o.created_at,
        "processed_at": o.processed_at,
        "name": o.name,
        "email": o.email,
        "customer_id": o.customer_id,
        "test": o.test,
        "status": ["any", "cancelled" if o.cancelled_at else "open"],
        "financial_status": o.financial_status.lower(),
        "discount_code": o.discount_codes,
        "sku": [li.sku for li in o.line_items],
    }.get(name, UNKNOWN_FIELD)


@connection_field(
    "QueryRoot",
    "orders",
    {
        "ID": lambda o: o.id,
        "UPDATED_AT": lambda o: o.updated_at,
        "CREATED_AT": lambda o: o.created_at,
        "PROCESSED_AT": lambda o: o.processed_at,
        "ORDER_NUMBER": lambda o: o.id,
        "TOTAL_PRICE": lambda o: o.current_total,
        "CURRENT_TOTAL_PRICE": lambda o: o.current_total,
        "RELEVANCE": lambda o: o.id,
    },
    default_sort="PROCESSED_AT",
)
def _orders(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    with ctx.store.lock:
        orders = list(ctx.store.orders.values())
    return search(orders, args.get("query"), _order_field, lambda o: f"{o.name} {o.email or ''}")


def _product_field(p: Product, name: str) -> Any:
    return {
        "id": p.id,
        "title": p.title,
        "handle": p.handle,
        "product_type": p.product_type,
        "vendor": p.vendor,
        "status": p.status,
        "updated_at": p.updated_at,
        "created_at": p.created_at,
        "sku": [v.sku for v in p.variants],
    }.get(name, UNKNOWN_FIELD)


@connection_field(
    "QueryRoot",
    "products",
    {
        "ID": lambda p: p.id,
        "TITLE": lambda p: p.title,
        "UPDATED_AT": lambda p: p.updated_at,
        "CREATED_AT": lambda p: p.created_at,
        "PRODUCT_TYPE": lambda p: p.product_type,
        "VENDOR": lambda p: p.vendor,
        "RELEVANCE": lambda p: p.id,
    },
)
def _products(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    with ctx.store.lock:
        products = list(ctx.store.products.values())
    return search(products, args.get("query"), _product_field, lambda p: p.title)


@connection_field(
    "QueryRoot",
    "segments",
    {
        "ID": lambda s: s.id,
        "CREATION_DATE": lambda s: s.creation_date,
        "LAST_EDIT_DATE": lambda s: s.last_edit_date,
        "RELEVANCE": lambda s: s.id,
    },
)
def _segments(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    with ctx.store.lock:
        segments = list(ctx.store.segments.values())
    return search(
        segments,
        args.get("query"),
        lambda s, n: {"id": s.id, "name": s.name}.get(n, UNKNOWN_FIELD),
        lambda s: s.name,
    )


@connection_field(
    "QueryRoot",
    "bulkOperations",
    {
        "CREATED_AT": lambda b: b.created_at,
        "COMPLETED_AT": lambda b: b.completed_at,
        "ID": lambda b: b.id,
    },
    default_sort="CREATED_AT",
)
def _bulk_operations(obj: Any, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    if ctx.bulk is None:
        return []
    return search(
        ctx.bulk.operations(ctx.domain),
        args.get("query"),
        lambda b, n: {
            "id": b.id,
            "status": b.status,
            "operation_type": b.type,
            "type": b.type,
            "created_at": b.created_at,
        }.get(n, UNKNOWN_FIELD),
        lambda b: b.query,
    )


@resolver("QueryRoot", "customer")
def _customer(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "Customer")


@resolver("QueryRoot", "order")
def _order(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "Order")


@resolver("QueryRoot", "product")
def _product(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "Product")


@resolver("QueryRoot", "refund")
def _refund(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "Refund")


@resolver("QueryRoot", "segment")
def _segment(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "Segment")


@resolver("QueryRoot", "bulkOperation")
def _bulk_operation(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], "BulkOperation")


@resolver("QueryRoot", "node")
def _node(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    return _lookup(ctx, args["id"], None)


@resolver("QueryRoot", "currentBulkOperation")
def _current_bulk_operation(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Any:
    if ctx.bulk is None:
        return None
    wanted = args.get("type") or "QUERY"
    ops = [op for op in ctx.bulk.operations(ctx.domain) if op.type == wanted]
    return max(ops, key=lambda op: op.id) if ops else None


def _lookup(ctx: RequestContext, value: str, kind: str | None) -> Any:
    try:
        found_kind, number = parse_gid(value)
    except ValueError:
        raise GraphQLError(
            f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"}
        ) from None
    if kind is not None and found_kind != kind:
        return None
    store = ctx.store
    with store.lock:
        if found_kind == "Customer":
            return store.customers.get(number)
        if found_kind == "Order":
            return store.orders.get(number)
        if found_kind == "Product":
            return store.products.get(number)
        if found_kind == "ProductVariant":
            for product in store.products.values():
                for variant in product.variants:
                    if variant.id == number:
                        return variant
            return None
        if found_kind == "Segment":
            return store.segments.get(number)
        if found_kind == "Refund":
            return store.refunds.get(number)
    if found_kind == "BulkOperation" and ctx.bulk is not None:
        return ctx.bulk.get(ctx.domain, number)
    return None


@resolver("QueryRoot", "shop")
def _shop(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    store = ctx.store
    return {
        "__typename": "Shop",
        "id": gid("Shop", shop_number(store.domain)),
        "name": store.name,
        "myshopifyDomain": store.domain,
        "email": f"owner@{store.domain}",
        "contactEmail": f"owner@{store.domain}",
        "currencyCode": store.currency,
        "ianaTimezone": store.timezone,
        "timezoneAbbreviation": "UTC",
        "url": f"https://{store.domain}",
        "plan": {
            "displayName": store.plan,
            "publicDisplayName": store.plan,
            "partnerDevelopment": False,
            "shopifyPlus": store.plan.lower() == "plus",
        },
    }


# --------------------------------------------------------------------------------------------
# Customer
# --------------------------------------------------------------------------------------------


SIMPLE_RESOLVERS: dict[str, dict[str, Callable[[Any], Any]]] = {}
"""Resolvers that need only the object (the bulk walker calls these directly: it is faster)."""


def _r(type_name: str, mapping: dict[str, Callable[[Any], Any]]) -> None:
    """Register simple resolvers that only need the object."""
    for name, fn in mapping.items():
        RESOLVERS.setdefault(type_name, {})[name] = (lambda f: lambda o, a, c: f(o))(fn)
        SIMPLE_RESOLVERS.setdefault(type_name, {})[name] = fn


def _display_name(c: Customer) -> str:
    return " ".join(p for p in (c.first_name, c.last_name) if p) or c.email or c.phone or ""


def _email_address(c: Customer) -> dict[str, Any] | None:
    if c.email is None:
        return None
    state = c.email_marketing_state
    return {
        "emailAddress": c.email,
        # CustomerEmailAddressMarketingState has no REDACTED (the address itself is gone then).
        "marketingState": "UNSUBSCRIBED" if state == "REDACTED" else state,
        "marketingOptInLevel": "SINGLE_OPT_IN" if state == "SUBSCRIBED" else None,
        "marketingUpdatedAt": iso(c.updated_at),
        "marketingUnsubscribeUrl": f"https://shopify.com/unsubscribe/{c.id}",
        "openTrackingUrl": f"https://shopify.com/open-tracking/{c.id}",
        "validFormat": "@" in c.email,
        "openTrackingLevel": "OPTED_IN",
    }


def _phone_number(c: Customer) -> dict[str, Any] | None:
    if c.phone is None:
        return None
    state = c.sms_marketing_state
    return {
        "phoneNumber": c.phone,
        "marketingState": state,
        "marketingOptInLevel": "SINGLE_OPT_IN" if state == "SUBSCRIBED" else None,
        "marketingUpdatedAt": None,
        "marketingCollectedFrom": None,
        "smsMarketingConsent": {
            "state": "NEVER_SUBSCRIBED" if state == "NOT_SUBSCRIBED" else state,
            "optInLevel": "SINGLE_OPT_IN" if state == "SUBSCRIBED" else None,
            "updatedAt": None,
            "collectedFrom": None,
        },
    }


def _customer_store_resolvers() -> None:
    _r(
        "Customer",
        {
            "id": lambda c: gid("Customer", c.id),
            "legacyResourceId": lambda c: str(c.id),
            "firstName": lambda c: c.first_name,
            "lastName": lambda c: c.last_name,
            "displayName": _display_name,
            "email": lambda c: c.email,
            "phone": lambda c: c.phone,
            "locale": lambda c: c.locale,
            "note": lambda c: c.note,
            "state": lambda c: "ENABLED",
            "verifiedEmail": lambda c: c.email is not None,
            "taxExempt": lambda c: False,
            "tags": lambda c: list(c.tags),
            "createdAt": lambda c: iso(c.created_at),
            "updatedAt": lambda c: iso(c.updated_at),
            "defaultEmailAddress": _email_address,
            "defaultPhoneNumber": _phone_number,
            "emailMarketingConsent": lambda c: (
                None
                if c.email is None
                else {
                    "marketingState": c.email_marketing_state,
                    "marketingOptInLevel": "SINGLE_OPT_IN"
                    if c.email_marketing_state == "SUBSCRIBED"
                    else None,
                    "consentUpdatedAt": iso(c.updated_at),
                }
            ),
            "smsMarketingConsent": lambda c: (
                None
                if c.phone is None
                else {
                    "marketingState": c.sms_marketing_state,
                    "marketingOptInLevel": "SINGLE_OPT_IN",
                    "consentUpdatedAt": None,
                    "consentCollectedFrom": None,
                }
            ),
            "defaultAddress": lambda c: address_dict(c.default_address, c.id),
            "addresses": lambda c: (
                [a] if (a := address_dict(c.default_address, c.id)) is not None else []
            ),
            "statistics": lambda c: {
                "rfmGroup": c.rfm_group,
                "predictedSpendTier": c.predicted_spend_tier,
            },
        },
    )


_customer_store_resolvers()


@resolver("Customer", "numberOfOrders")
def _number_of_orders(c: Customer, args: dict[str, Any], ctx: RequestContext) -> str:
    return str(ctx.store.number_of_orders(c.id))  # UnsignedInt64 serialises as a string


@resolver("Customer", "amountSpent")
def _amount_spent(c: Customer, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money(ctx.store.amount_spent(c.id), ctx.store.currency)


@resolver("Customer", "lastOrder")
def _last_order(c: Customer, args: dict[str, Any], ctx: RequestContext) -> Order | None:
    orders = ctx.store.customer_orders(c.id)
    return max(orders, key=lambda o: (o.processed_at, o.id)) if orders else None


@connection_field(
    "Customer",
    "orders",
    {
        "ID": lambda o: o.id,
        "CREATED_AT": lambda o: o.created_at,
        "PROCESSED_AT": lambda o: o.processed_at,
        "UPDATED_AT": lambda o: o.updated_at,
    },
)
def _customer_orders(c: Customer, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    return search(
        ctx.store.customer_orders(c.id), args.get("query"), _order_field, lambda o: o.name
    )


# --------------------------------------------------------------------------------------------
# Order, line items, products
# --------------------------------------------------------------------------------------------

_r(
    "Order",
    {
        "id": lambda o: gid("Order", o.id),
        "legacyResourceId": lambda o: str(o.id),
        "name": lambda o: o.name,
        "email": lambda o: o.email,
        "createdAt": lambda o: iso(o.created_at),
        "processedAt": lambda o: iso(o.processed_at),
        "updatedAt": lambda o: iso(o.updated_at),
        "cancelledAt": lambda o: iso(o.cancelled_at),
        "cancelReason": lambda o: o.cancel_reason.upper() if o.cancel_reason else None,
        "closed": lambda o: False,
        "test": lambda o: o.test,
        "currencyCode": lambda o: o.currency,
        "presentmentCurrencyCode": lambda o: o.currency,
        "discountCodes": lambda o: list(o.discount_codes),
        "discountCode": lambda o: o.discount_codes[0] if o.discount_codes else None,
        "billingAddress": lambda o: address_dict(o.billing_address, o.id),
        "currentTotalPriceSet": lambda o: money_bag(o.current_total, o.currency),
        "totalPriceSet": lambda o: money_bag(o.total_price, o.currency),
        "totalReceivedSet": lambda o: money_bag(o.total_price, o.currency),
        "netPaymentSet": lambda o: money_bag(o.total_price - o.refunded_total, o.currency),
        "currentSubtotalPriceSet": lambda o: money_bag(o.current_subtotal_price, o.currency),
        "subtotalPriceSet": lambda o: money_bag(o.subtotal_price, o.currency),
        "totalDiscountsSet": lambda o: money_bag(o.discount_total, o.currency),
        "currentTotalDiscountsSet": lambda o: money_bag(o.current_discount, o.currency),
        "totalRefundedSet": lambda o: money_bag(o.refunded_total, o.currency),
        "totalRefunded": lambda o: decimal_str(o.refunded_total),
        "totalRefundedShippingSet": lambda o: money_bag(o.refunded_shipping, o.currency),
        "totalShippingPriceSet": lambda o: money_bag(o.shipping_total, o.currency),
        "currentShippingPriceSet": lambda o: money_bag(o.current_shipping, o.currency),
        "displayFinancialStatus": lambda o: o.financial_status,
        "refundable": lambda o: o.refunded_total < o.total_price,
        "subtotalLineItemsQuantity": lambda o: sum(li.quantity for li in o.line_items),
        "currentSubtotalLineItemsQuantity": lambda o: sum(
            li.effective_quantity for li in o.line_items
        ),
    },
)


@resolver("Order", "customer")
def _order_customer(o: Order, args: dict[str, Any], ctx: RequestContext) -> Customer | None:
    if o.customer_id is None:
        return None
    return ctx.store.customers.get(o.customer_id)


@connection_field("Order", "lineItems", {"ID": lambda li: li.id})
def _line_items(o: Order, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    return list(o.line_items)


@resolver("Order", "refunds")
def _order_refunds(o: Order, args: dict[str, Any], ctx: RequestContext) -> list[Refund]:
    # A plain list (not a connection), oldest first; ``first`` only caps it.
    refunds = sorted(o.refunds, key=lambda r: (r.created_at, r.id))
    first = args.get("first")
    return refunds if first is None else refunds[: max(first, 0)]


def _line_currency(li: LineItem, ctx: RequestContext) -> str:
    # A line item has no link to its order; a sandbox shop sells in one currency.
    return ctx.store.currency


@resolver("LineItem", "originalTotalSet")
def _li_original(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money_bag(li.unit_price * li.quantity, _line_currency(li, ctx))


@resolver("LineItem", "discountedTotalSet")
def _li_discounted(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money_bag(li.unit_price * li.quantity, _line_currency(li, ctx))


@resolver("LineItem", "originalUnitPriceSet")
def _li_unit(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money_bag(li.unit_price, _line_currency(li, ctx))


@resolver("LineItem", "discountedUnitPriceSet")
def _li_unit_discounted(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> Any:
    return money_bag(li.unit_price, _line_currency(li, ctx))


@resolver("LineItem", "product")
def _li_product(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> Product | None:
    return ctx.store.products.get(li.product_id) if li.product_id is not None else None


@resolver("LineItem", "variant")
def _li_variant(li: LineItem, args: dict[str, Any], ctx: RequestContext) -> Variant | None:
    if li.product_id is None or li.variant_id is None:
        return None
    product = ctx.store.products.get(li.product_id)
    if product is None:
        return None
    return next((v for v in product.variants if v.id == li.variant_id), None)


_r(
    "LineItem",
    {
        "id": lambda li: gid("LineItem", li.id),
        "quantity": lambda li: li.quantity,
        "currentQuantity": lambda li: li.effective_quantity,
        "refundableQuantity": lambda li: li.effective_quantity,
        "sku": lambda li: li.sku,
        "title": lambda li: li.title,
        "name": lambda li: li.title,
        "variantTitle": lambda li: None,
        "requiresShipping": lambda li: True,
        "taxable": lambda li: True,
        "isGiftCard": lambda li: False,
    },
)

# --------------------------------------------------------------------------------------------
# Refunds
# --------------------------------------------------------------------------------------------


def _refund_order(r: Refund, ctx: RequestContext) -> Order | None:
    return ctx.store.orders.get(r.order_id)


def _refund_currency(r: Refund, ctx: RequestContext) -> str:
    order = _refund_order(r, ctx)
    return order.currency if order is not None else ctx.store.currency


_r(
    "Refund",
    {
        "id": lambda r: gid("Refund", r.id),
        "legacyResourceId": lambda r: str(r.id),
        "createdAt": lambda r: iso(r.created_at),
        "processedAt": lambda r: iso(r.created_at),
        "updatedAt": lambda r: iso(r.created_at),
        "note": lambda r: r.note,
        "duties": lambda r: [],
        "return": lambda r: None,
        "staffMember": lambda r: None,
    },
)


@resolver("Refund", "order")
def _refund_order_field(r: Refund, args: dict[str, Any], ctx: RequestContext) -> Order | None:
    return _refund_order(r, ctx)


@resolver("Refund", "totalRefundedSet")
def _refund_total(r: Refund, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money_bag(r.amount, _refund_currency(r, ctx))


@resolver("Refund", "totalRefunded")
def _refund_total_money(r: Refund, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return money(r.amount, _refund_currency(r, ctx))


@connection_field("Refund", "refundLineItems", {"ID": lambda rli: rli.id})
def _refund_line_items(r: Refund, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    return list(r.line_items)


@dataclass(frozen=True, slots=True)
class RefundTransaction:
    """The money a refund gave back: one successful ``OrderTransaction`` of kind REFUND."""

    id: int
    refund: Refund
    currency: str
    test: bool
    graphql_type: ClassVar[str] = "OrderTransaction"


@connection_field("Refund", "transactions", {"ID": lambda t: t.id})
def _refund_transactions(r: Refund, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    order = _refund_order(r, ctx)
    if not r.amount or order is None:
        return []
    return [RefundTransaction(r.transaction_id, r, order.currency, order.test)]


_r(
    "OrderTransaction",
    {
        "id": lambda t: gid("OrderTransaction", t.id),
        "kind": lambda t: "REFUND",
        "status": lambda t: "SUCCESS",
        "amountSet": lambda t: money_bag(t.refund.amount, t.currency),
        "amountV2": lambda t: money(t.refund.amount, t.currency),
        "amount": lambda t: decimal_str(t.refund.amount),
        "createdAt": lambda t: iso(t.refund.created_at),
        "processedAt": lambda t: iso(t.refund.created_at),
        "gateway": lambda t: "manual",
        "formattedGateway": lambda t: "Manual",
        "manualPaymentGateway": lambda t: True,
        "manuallyCapturable": lambda t: False,
        "multiCapturable": lambda t: False,
        "test": lambda t: t.test,
        "fees": lambda t: [],
        "errorCode": lambda t: None,
        "parentTransaction": lambda t: None,
    },
)


@resolver("OrderTransaction", "order")
def _transaction_order(t: RefundTransaction, args: dict[str, Any], ctx: RequestContext) -> Any:
    return ctx.store.orders.get(t.refund.order_id)


_r(
    "RefundLineItem",
    {
        "id": lambda rli: gid("RefundLineItem", rli.id),
        "lineItem": lambda rli: rli.line_item,
        "quantity": lambda rli: rli.quantity,
        "restockType": lambda rli: rli.restock_type,
        "restocked": lambda rli: rli.restocked,
        "location": lambda rli: None,
        "price": lambda rli: decimal_str(rli.line_item.unit_price),
        "subtotal": lambda rli: decimal_str(rli.subtotal),
        "totalTax": lambda rli: "0.0",
    },
)


@resolver("RefundLineItem", "priceSet")
def _rli_price(rli: RefundLineItem, args: dict[str, Any], ctx: RequestContext) -> Any:
    return money_bag(rli.line_item.unit_price, ctx.store.currency)


@resolver("RefundLineItem", "subtotalSet")
def _rli_subtotal(rli: RefundLineItem, args: dict[str, Any], ctx: RequestContext) -> Any:
    return money_bag(rli.subtotal, ctx.store.currency)


@resolver("RefundLineItem", "totalTaxSet")
def _rli_tax(rli: RefundLineItem, args: dict[str, Any], ctx: RequestContext) -> Any:
    return money_bag(Decimal("0"), ctx.store.currency)


_r(
    "Product",
    {
        "id": lambda p: gid("Product", p.id),
        "legacyResourceId": lambda p: str(p.id),
        "title": lambda p: p.title,
        "handle": lambda p: p.handle,
        "productType": lambda p: p.product_type,
        "vendor": lambda p: p.vendor,
        "status": lambda p: p.status,
        "tags": lambda p: [],
        "createdAt": lambda p: iso(p.created_at),
        "updatedAt": lambda p: iso(p.updated_at),
    },
)


@connection_field("Product", "variants", {"ID": lambda v: v.id, "POSITION": lambda v: v.id})
def _variants(p: Product, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    return list(p.variants)


_r(
    "ProductVariant",
    {
        "id": lambda v: gid("ProductVariant", v.id),
        "legacyResourceId": lambda v: str(v.id),
        "title": lambda v: v.title,
        "displayName": lambda v: v.title,
        "sku": lambda v: v.sku,
        "price": lambda v: f"{v.price:.2f}",
    },
)


@resolver("ProductVariant", "product")
def _variant_product(v: Variant, args: dict[str, Any], ctx: RequestContext) -> Product | None:
    return ctx.store.products.get(v.product_id)


_r(
    "Segment",
    {
        "id": lambda s: gid("Segment", s.id),
        "name": lambda s: s.name,
        "query": lambda s: s.query,
        "creationDate": lambda s: iso(s.creation_date),
        "lastEditDate": lambda s: iso(s.last_edit_date),
    },
)

_r(
    "BulkOperation",
    {
        "id": lambda b: gid("BulkOperation", b.id),
        "status": lambda b: b.status,
        "type": lambda b: b.type,
        "query": lambda b: b.query,
        "createdAt": lambda b: iso(b.created_at),
        "completedAt": lambda b: iso(b.completed_at),
        "errorCode": lambda b: b.error_code,
        "objectCount": lambda b: str(b.object_count),
        "rootObjectCount": lambda b: str(b.root_object_count),
        "fileSize": lambda b: None if b.file_size is None else str(b.file_size),
        "url": lambda b: b.url,
        "partialDataUrl": lambda b: b.partial_data_url,
    },
)

# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------


def _user_error(field_path: list[str] | None, message: str, code: str | None = None) -> dict:
    error: dict[str, Any] = {"field": field_path, "message": message}
    if code is not None:
        error["code"] = code
    return error


def normalize_tags(values: Iterable[str]) -> list[str]:
    """Shopify accepts a list of tags or comma-separated strings; tags are trimmed."""
    tags: list[str] = []
    for value in values:
        for part in value.split(","):
            tag = part.strip()
            if tag:
                tags.append(tag)
    return tags


def _tags_target(ctx: RequestContext, value: str) -> tuple[Customer | None, list[dict]]:
    try:
        kind, number = parse_gid(value)
    except ValueError:
        return None, [_user_error(["id"], f"Invalid global id '{value}'")]
    if kind != "Customer":
        return None, [_user_error(["id"], f"The sandbox keeps tags on customers only, not {kind}")]
    customer = ctx.store.customers.get(number)
    if customer is None:
        return None, [_user_error(["id"], "Customer does not exist")]
    return customer, []


@resolver("Mutation", "tagsAdd")
def _tags_add(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    customer, errors = _tags_target(ctx, args["id"])
    if customer is None:
        return {"node": None, "userErrors": errors}
    wanted = normalize_tags(args["tags"])
    too_long = [t for t in wanted if len(t) > MAX_TAG_LENGTH]
    if too_long:
        return {
            "node": None,
            "userErrors": [
                _user_error(["tags"], "Tags is invalid, tag exceeds maximum length of 255")
            ],
        }
    current = list(customer.tags)
    seen = {t.lower() for t in current}
    for tag in wanted:
        if tag.lower() not in seen:
            current.append(tag)
            seen.add(tag.lower())
    if len(current) > MAX_TAGS:
        return {
            "node": None,
            "userErrors": [_user_error(["tags"], f"Tags cannot be more than {MAX_TAGS}")],
        }
    if current != customer.tags:
        ctx.store.set_tags(customer.id, current)
    return {"node": customer, "userErrors": []}


@resolver("Mutation", "tagsRemove")
def _tags_remove(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    customer, errors = _tags_target(ctx, args["id"])
    if customer is None:
        return {"node": None, "userErrors": errors}
    drop = {t.lower() for t in normalize_tags(args["tags"])}
    kept = [t for t in customer.tags if t.lower() not in drop]
    if kept != customer.tags:
        ctx.store.set_tags(customer.id, kept)
    return {"node": customer, "userErrors": []}


_SEGMENT_CLAUSE = re.compile(
    r"^\s*[a-z_][a-z0-9_.]*\s*(=|!=|>=|<=|>|<|CONTAINS|NOT CONTAINS|IS NULL|IS NOT NULL|BETWEEN|"
    r"MATCHES|NOT MATCHES)",
    re.IGNORECASE,
)


def _segment_query_errors(query: str) -> list[dict]:
    clauses = re.split(r"\s+(?:AND|OR)\s+", query.strip(), flags=re.IGNORECASE)
    if not query.strip() or not all(_SEGMENT_CLAUSE.match(c.strip("() ")) for c in clauses):
        return [_user_error(["query"], f"Query Line 1 Column 0: '{query}' is not a valid query")]
    return []


@resolver("Mutation", "segmentCreate")
def _segment_create(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    name = args["name"].strip()
    if not name:
        return {"segment": None, "userErrors": [_user_error(["name"], "Name can't be blank")]}
    if any(s.name == name for s in ctx.store.segments.values()):
        return {
            "segment": None,
            "userErrors": [_user_error(["name"], "Name has already been taken")],
        }
    errors = _segment_query_errors(args["query"])
    if errors:
        return {"segment": None, "userErrors": errors}
    return {"segment": ctx.store.add_segment(name, args["query"]), "userErrors": []}


@resolver("Mutation", "segmentUpdate")
def _segment_update(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    segment = _lookup(ctx, args["id"], "Segment")
    if segment is None:
        return {"segment": None, "userErrors": [_user_error(["id"], "Segment does not exist")]}
    if args.get("query") is not None:
        errors = _segment_query_errors(args["query"])
        if errors:
            return {"segment": None, "userErrors": errors}
    name = args.get("name")
    if name is not None and any(
        s.name == name and s.id != segment.id for s in ctx.store.segments.values()
    ):
        return {
            "segment": None,
            "userErrors": [_user_error(["name"], "Name has already been taken")],
        }
    updated = ctx.store.update_segment(segment.id, name=name, query=args.get("query"))
    return {"segment": updated, "userErrors": []}


@resolver("Mutation", "stagedUploadsCreate")
def _staged_uploads_create(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict:
    if ctx.bulk is None:
        return {"stagedTargets": [], "userErrors": [_user_error(None, "Uploads unavailable")]}
    targets = []
    errors = []
    for index, item in enumerate(args["input"]):
        if item["resource"] != "BULK_MUTATION_VARIABLES":
            errors.append(
                _user_error(
                    ["input", str(index), "resource"],
                    f"The sandbox stages only BULK_MUTATION_VARIABLES, not {item['resource']}",
                )
            )
            continue
        targets.append(ctx.bulk.staged_target(ctx.domain, item["filename"], item["mimeType"]))
    return {"stagedTargets": targets, "userErrors": errors}


@resolver("Mutation", "bulkOperationRunQuery")
def _bulk_run_query(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    assert ctx.bulk is not None
    op, errors = ctx.bulk.run_query(ctx.domain, ctx.store, args["query"], args["groupObjects"])
    return {"bulkOperation": op, "userErrors": errors}


@resolver("Mutation", "bulkOperationRunMutation")
def _bulk_run_mutation(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    assert ctx.bulk is not None
    op, errors = ctx.bulk.run_mutation(
        ctx.domain, ctx.store, args["mutation"], args["stagedUploadPath"]
    )
    return {"bulkOperation": op, "userErrors": errors}


@resolver("Mutation", "bulkOperationCancel")
def _bulk_cancel(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    op = _lookup(ctx, args["id"], "BulkOperation")
    if op is None or ctx.bulk is None:
        return {
            "bulkOperation": None,
            "userErrors": [_user_error(["id"], "Bulk operation does not exist")],
        }
    errors = ctx.bulk.cancel(op)
    return {"bulkOperation": op, "userErrors": errors}


# --------------------------------------------------------------------------------------------
# Requests: validation errors shaped like Shopify's, cost, execution
# --------------------------------------------------------------------------------------------

_UNDEFINED_FIELD = re.compile(r"Cannot query field '(\w+)' on type '(\w+)'")
_UNKNOWN_ARG = re.compile(r"Unknown argument '(\w+)' on field '(\w+)\.(\w+)'")
_MISSING_ARG = re.compile(r"Argument '\w+\.(\w+)\((\w+):\)' of type '[^']+' is required")
_NO_SELECTION = re.compile(r"Field '(\w+)' of type '([^']+)' must have a selection of subfields")
_BAD_VARIABLE = re.compile(r"Variable '\$(\w+)' (?:got|has) invalid value[^;:]*[;:]?\s*(.*)", re.S)
_UNUSED_VAR = re.compile(r"Variable '\$(\w+)' is never used")


def shopify_error(error: GraphQLError, document: DocumentNode | None = None) -> dict[str, Any]:
    """A graphql-core error in the shape and wording Shopify (graphql-ruby) uses."""
    message = error.message
    extensions: dict[str, Any] = dict(error.extensions or {})
    if m := _UNDEFINED_FIELD.search(message):
        message = f"Field '{m.group(1)}' doesn't exist on type '{m.group(2)}'"
        extensions = {"code": "undefinedField", "typeName": m.group(2), "fieldName": m.group(1)}
    elif m := _UNKNOWN_ARG.search(message):
        message = f"Field '{m.group(3)}' doesn't accept argument '{m.group(1)}'"
        extensions = {
            "code": "argumentNotAccepted",
            "name": m.group(3),
            "typeName": "Field",
            "argumentName": m.group(1),
        }
    elif m := _MISSING_ARG.search(message):
        message = f"Field '{m.group(1)}' is missing required arguments: {m.group(2)}"
        extensions = {
            "code": "missingRequiredArguments",
            "className": "Field",
            "name": m.group(1),
            "arguments": m.group(2),
        }
    elif m := _NO_SELECTION.search(message):
        message = (
            f"Field must have selections (field '{m.group(1)}' returns {m.group(2)} but has no "
            f"selections. Did you mean '{m.group(1)} {{ ... }}'?)"
        )
        extensions = {"code": "selectionMismatch", "nodeName": f"field '{m.group(1)}'"}
    elif (m := _BAD_VARIABLE.search(message)) and error.path is None:
        declared = _variable_type(document, m.group(1))
        message = f"Variable ${m.group(1)} of type {declared} was provided invalid value"
        extensions = {
            "value": None,
            "problems": [{"path": [], "explanation": m.group(2).strip() or message}],
        }
    elif m := _UNUSED_VAR.search(message):
        message = f"Variable ${m.group(1)} is declared by anonymous query but not used"
        extensions = {"code": "variableNotUsed", "variableName": m.group(1)}
    elif "code" not in extensions:
        extensions["code"] = "validationError" if error.path is None else "INTERNAL_SERVER_ERROR"
    body: dict[str, Any] = {"message": message}
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        body["path"] = list(error.path)
    elif document is not None and error.nodes:
        path = _ast_path(document, error.nodes[0])
        if path:
            body["path"] = path
    body["extensions"] = extensions
    return body


def _variable_type(document: DocumentNode | None, name: str) -> str:

    for definition in document.definitions if document else ():
        if isinstance(definition, OperationDefinitionNode):
            for var in definition.variable_definitions or ():
                if var.variable.name.value == name:
                    return print_ast(var.type)
    return "?"


def _ast_path(document: DocumentNode, target: Any) -> list[str] | None:
    """graphql-ruby reports where in the document an invalid node sits: ``["query", "a", "b"]``."""

    def walk(selection_set: SelectionSetNode | None, trail: list[str]) -> list[str] | None:
        if selection_set is None:
            return None
        for selection in selection_set.selections:
            if selection is target:
                name = getattr(getattr(selection, "name", None), "value", "...")
                return [*trail, name]
            if isinstance(selection, FieldNode):
                found = walk(selection.selection_set, [*trail, selection.name.value])
            elif isinstance(selection, InlineFragmentNode):
                cond = selection.type_condition.name.value if selection.type_condition else ""
                found = walk(selection.selection_set, [*trail, f"... on {cond}"])
            else:
                found = None
            if found:
                return found
            if isinstance(selection, FieldNode) and selection.arguments:
                for argument in selection.arguments:
                    if argument is target:
                        return [*trail, selection.name.value, argument.name.value]
        return None

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            head = definition.operation.value
            if definition.name:
                head += f" {definition.name.value}"
        elif isinstance(definition, FragmentDefinitionNode):
            head = f"fragment {definition.name.value}"
        else:
            continue
        if definition is target:
            return [head]
        found = walk(definition.selection_set, [head])
        if found:
            return found
    return None


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


@functools.lru_cache(maxsize=512)
def parse_and_validate(query: str) -> tuple[DocumentNode | None, list[dict[str, Any]]]:
    """Parse and validate against the schema; errors already shaped like Shopify's.

    Cached by query text: an app sends the same few documents over and over, and validating
    against Shopify's large schema costs tens of milliseconds. Callers never mutate the result.
    """
    try:
        document = parse(query)
    except GraphQLError as error:
        body: dict[str, Any] = {
            "message": f"Parse error: {error.message.removeprefix('Syntax Error: ')}"
        }
        if error.locations:
            body["locations"] = [
                {"line": loc.line, "column": loc.column} for loc in error.locations
            ]
        body["extensions"] = {"code": "parseError"}
        return None, [body]
    errors = validate(schema(), document)
    if errors:
        return document, [shopify_error(e, document) for e in errors]
    return document, []


def execute(
    ctx: RequestContext,
    bucket: cost.LeakyBucket,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """Answer one Admin GraphQL request: validate, price, throttle, run. Always HTTP 200."""
    document, errors = parse_and_validate(query)
    if errors or document is None:
        return {"errors": errors}
    operation = select_operation(document, operation_name)
    if operation is None:
        message = (
            f'No operation named "{operation_name}"'
            if operation_name
            else "An operation name is required"
        )
        return {"errors": [{"message": message, "extensions": {"code": "OPERATION_NOT_FOUND"}}]}
    calculator = cost.CostCalculator(schema(), fragments_of(document), variables)
    requested = calculator.operation(operation)
    if requested > cost.MAX_QUERY_COST:
        return {
            "errors": [cost.max_cost_error(requested)],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": bucket.status(),
                }
            },
        }
    if not bucket.take(requested):
        return {
            "errors": [cost.throttled_error()],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": bucket.status(),
                }
            },
        }
    result = execute_sync(
        schema(),
        document,
        context_value=ctx,
        variable_values=variables,
        operation_name=operation_name,
    )
    if operation.operation.value == "mutation":
        actual = requested
    else:
        actual = calculator.operation(operation, result.data, actual=True) if result.data else 0
    bucket.refund(requested - actual)
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [shopify_error(e, document) for e in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    body["extensions"] = {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": bucket.status(),
        }
    }
    return body


def run_document(
    ctx: RequestContext,
    document: DocumentNode,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute a validated document without cost (bulk mutations run each line this way)."""
    result = execute_sync(schema(), document, context_value=ctx, variable_values=variables)
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [shopify_error(e) for e in result.errors]
    body["data"] = result.data
    return body


# Resolvers kept in their own modules register on import; they must be in RESOLVERS before
# schema() attaches them.
from goldpan_sandbox import discounts, flow, metafields  # noqa: E402, F401
