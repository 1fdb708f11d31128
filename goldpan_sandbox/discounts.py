"""The sandbox's code discounts: ``discountCodeBasicCreate`` / ``Update`` / ``Deactivate``.

Validation follows Shopify's documented rules for ``DiscountCodeBasicInput``: on create,
``code``, ``title``, ``startsAt``, ``context`` (or the deprecated ``customerSelection``, never
both) and ``customerGets`` are required; a code is unique in the shop; a percentage lies in
0–1; ``endsAt`` follows ``startsAt``; segments must exist. Errors come back as
``DiscountUserError`` (``field`` path under ``basicCodeDiscount``, ``message``, ``code``).
Deactivating ends the discount now, so its status reads EXPIRED, as in Shopify.
Only what a percentage-off-for-segments discount needs is modelled; other inputs (amounts,
product lists, other contexts) are refused with a userError rather than silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from goldpan_sandbox.admin_api import (
    RequestContext,
    _lookup,
    _r,
    _user_error,
    iso,
    paginate,
    resolver,
)
from goldpan_sandbox.store import Discount, Store, gid, parse_gid

_INPUT = "basicCodeDiscount"
MAX_CODE_LENGTH = 255


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _when(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _error(path: list[str], message: str, code: str) -> dict[str, Any]:
    return {**_user_error([_INPUT, *path], message, code), "extraInfo": None}


def _segments(ctx: RequestContext, data: dict[str, Any]) -> tuple[list[int] | None, list[dict]]:
    """Segment ids from ``context.customerSegments.add`` (or the deprecated customerSelection)."""
    if data.get("context") is not None and data.get("customerSelection") is not None:
        message = "Only one of context or customerSelection can be provided."
        return None, [_error(["context"], message, "TOO_MANY_ARGUMENTS")]
    where = "context" if data.get("context") is not None else "customerSelection"
    selection = data.get(where)
    if selection is None:
        return None, []
    chosen = selection.get("customerSegments")
    if chosen is None or set(selection) - {"customerSegments"}:
        message = "The sandbox models discounts for customer segments only."
        return None, [_error([where], message, "INVALID")]
    ids: list[int] = []
    for value in chosen.get("add") or []:
        segment = _lookup(ctx, value, "Segment")
        if segment is None:
            message = f"Customer segment with id {value} does not exist."
            return None, [_error([where, "customerSegments", "add"], message, "INVALID")]
        ids.append(segment.id)
    if not ids:
        message = "Customer segments must include at least one segment."
        return None, [_error([where, "customerSegments", "add"], message, "BLANK")]
    return ids, []


def _percentage(data: dict[str, Any]) -> tuple[float | None, list[dict]]:
    gets = data.get("customerGets")
    if gets is None:
        return None, []
    value = gets.get("value") or {}
    if set(value) - {"percentage"} or "percentage" not in value:
        message = "The sandbox models percentage discounts only."
        return None, [_error(["customerGets", "value"], message, "INVALID")]
    items = gets.get("items")
    if items is not None and items.get("all") is not True:
        message = "The sandbox models discounts on all items only."
        return None, [_error(["customerGets", "items"], message, "INVALID")]
    percentage = float(value["percentage"])
    if not 0.0 <= percentage <= 1.0:
        message = "Value must be between 0.0 and 1.0"
        path = ["customerGets", "value", "percentage"]
        return None, [_error(path, message, "VALUE_OUTSIDE_RANGE")]
    return percentage, []


def _check(
    ctx: RequestContext, data: dict[str, Any], current: Discount | None
) -> tuple[dict[str, Any], list[dict]]:
    """Validated changes from ``data`` (all required on create, each optional on update)."""
    errors: list[dict] = []
    changes: dict[str, Any] = {}
    creating = current is None
    for name, label in (("code", "Code"), ("title", "Title"), ("startsAt", "Starts at")):
        if creating and not data.get(name):
            errors.append(_error([name], f"{label} can't be blank", "BLANK"))
    if creating and data.get("context") is None and data.get("customerSelection") is None:
        errors.append(_error(["context"], "Context can't be blank", "BLANK"))
    if creating and data.get("customerGets") is None:
        errors.append(_error(["customerGets"], "Customer gets can't be blank", "BLANK"))
    code = data.get("code")
    if code is not None:
        code = code.strip()
        if len(code) > MAX_CODE_LENGTH:
            message = f"Code is too long (maximum is {MAX_CODE_LENGTH} characters)"
            errors.append(_error(["code"], message, "TOO_LONG"))
        taken = any(
            d.code.lower() == code.lower() and (current is None or d.id != current.id)
            for d in ctx.store.discounts.values()
        )
        if taken:
            message = "Code must be unique. Please try a different code."
            errors.append(_error(["code"], message, "TAKEN"))
        changes["code"] = code
    segments, problems = _segments(ctx, data)
    errors += problems
    if segments is not None:
        changes["segment_ids"] = segments
    percentage, problems = _percentage(data)
    errors += problems
    if percentage is not None:
        changes["percentage"] = percentage
    for name, attr in (("title", "title"), ("appliesOncePerCustomer", "applies_once_per_customer")):
        if data.get(name) is not None:
            changes[attr] = data[name]
    if data.get("startsAt") is not None:
        changes["starts_at"] = _when(data["startsAt"])
    if "endsAt" in data:
        changes["ends_at"] = _when(data["endsAt"])
    starts = changes.get("starts_at", current.starts_at if current else None)
    ends = changes.get("ends_at", current.ends_at if current else None)
    if starts is not None and ends is not None and ends <= starts:
        message = "Ends at needs to be after starts_at"
        errors.append(_error(["endsAt"], message, "END_DATE_BEFORE_START_DATE"))
    return changes, errors


@resolver("Mutation", "discountCodeBasicCreate")
def _create(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    data = args[_INPUT]
    with ctx.store.lock:
        changes, errors = _check(ctx, data, None)
        if errors:
            return {"codeDiscountNode": None, "userErrors": errors}
        now = _now()
        discount = Discount(
            id=ctx.store.next_id(),
            title=changes["title"],
            code=changes["code"],
            percentage=changes["percentage"],
            segment_ids=changes["segment_ids"],
            starts_at=changes["starts_at"],
            ends_at=changes.get("ends_at"),
            applies_once_per_customer=bool(changes.get("applies_once_per_customer", False)),
            created_at=now,
            updated_at=now,
        )
        ctx.store.discounts[discount.id] = discount
    return {"codeDiscountNode": discount, "userErrors": []}


def _target(ctx: RequestContext, value: str) -> Discount | None:
    try:
        kind, number = parse_gid(value)
    except ValueError:
        return None
    return ctx.store.discounts.get(number) if kind == "DiscountCodeNode" else None


_MISSING = [{**_user_error(["id"], "Discount does not exist", "INVALID"), "extraInfo": None}]


@resolver("Mutation", "discountCodeBasicUpdate")
def _update(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    with ctx.store.lock:
        discount = _target(ctx, args["id"])
        if discount is None:
            return {"codeDiscountNode": None, "userErrors": _MISSING}
        changes, errors = _check(ctx, args[_INPUT], discount)
        if errors:
            return {"codeDiscountNode": None, "userErrors": errors}
        for name, value in changes.items():
            setattr(discount, name, value)
        discount.updated_at = _now()
    return {"codeDiscountNode": discount, "userErrors": []}


@resolver("Mutation", "discountCodeDeactivate")
def _deactivate(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    with ctx.store.lock:
        discount = _target(ctx, args["id"])
        if discount is None:
            return {"codeDiscountNode": None, "userErrors": _MISSING}
        now = _now()
        if discount.ends_at is None or discount.ends_at > now:
            discount.ends_at = max(now, discount.starts_at)
        discount.updated_at = now
    return {"codeDiscountNode": discount, "userErrors": []}


@resolver("QueryRoot", "codeDiscountNode")
def _node(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Discount | None:
    return _target(ctx, args["id"])


@resolver("QueryRoot", "codeDiscountNodeByCode")
def _by_code(obj: Any, args: dict[str, Any], ctx: RequestContext) -> Discount | None:
    wanted = args["code"].strip().lower()
    with ctx.store.lock:
        return next((d for d in ctx.store.discounts.values() if d.code.lower() == wanted), None)


def usage_count(ctx: RequestContext, discount: Discount) -> int:
    """Orders carrying the code (Shopify counts redemptions asynchronously; the sandbox now)."""
    wanted = discount.code.lower()
    with ctx.store.lock:
        return sum(
            1
            for o in ctx.store.orders.values()
            if any(c.lower() == wanted for c in o.discount_codes)
        )


class _Basic:
    """The ``DiscountCodeBasic`` view of a node (``codeDiscount``) has its own typename."""

    graphql_type = "DiscountCodeBasic"

    def __init__(self, discount: Discount) -> None:
        self.discount = discount


_r(
    "DiscountCodeNode",
    {
        "id": lambda d: gid("DiscountCodeNode", d.id),
        "codeDiscount": _Basic,
    },
)
_r(
    "DiscountCodeBasic",
    {
        "title": lambda b: b.discount.title,
        "status": lambda b: b.discount.status(_now()),
        "startsAt": lambda b: iso(b.discount.starts_at),
        "endsAt": lambda b: iso(b.discount.ends_at),
        "createdAt": lambda b: iso(b.discount.created_at),
        "updatedAt": lambda b: iso(b.discount.updated_at),
        "appliesOncePerCustomer": lambda b: b.discount.applies_once_per_customer,
        "context": lambda b: {
            "__typename": "DiscountCustomerSegments",
            "segments": list(b.discount.segment_ids),
        },
        "customerGets": lambda b: {
            "value": {"__typename": "DiscountPercentage", "percentage": b.discount.percentage},
            "items": {"__typename": "AllDiscountItems", "allItems": True},
            "appliesOnOneTimePurchase": True,
            "appliesOnSubscription": False,
        },
        "codesCount": lambda b: {"count": 1, "precision": "EXACT"},
    },
)


@resolver("DiscountCustomerSegments", "segments")
def _context_segments(obj: dict, args: dict[str, Any], ctx: RequestContext) -> list[Any]:
    return [s for i in obj["segments"] if (s := ctx.store.segments.get(i)) is not None]


@resolver("DiscountCodeBasic", "asyncUsageCount")
def _usage(obj: _Basic, args: dict[str, Any], ctx: RequestContext) -> int:
    return usage_count(ctx, obj.discount)


@resolver("DiscountCodeBasic", "codes")
def _codes(obj: _Basic, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    code = {
        "id": gid("DiscountRedeemCode", obj.discount.id),
        "code": obj.discount.code,
        "asyncUsageCount": usage_count(ctx, obj.discount),
    }
    return paginate([code], args, lambda c: [c["id"]])


def checkout_discount(
    store: Store, codes: Sequence[str], customer_id: int | None, now: dt.datetime
) -> Discount | None:
    """The store's discount among ``codes`` as checkout would take it for this customer; raises
    ``ValueError`` with the reason when checkout refuses it (not active, not for this customer's
    segments, or used already where it applies once per customer). Codes the store did not
    create here (the generator's history) are taken as they are: None."""
    wanted = {c.strip().lower() for c in codes}
    with store.lock:
        found = next((d for d in store.discounts.values() if d.code.lower() in wanted), None)
        used = found is not None and any(
            o.customer_id == customer_id
            and found.code.lower() in {c.lower() for c in o.discount_codes}
            for o in store.orders.values()
        )
    if found is None:
        return None
    if found.status(now) != "ACTIVE":
        raise ValueError(f"discount code {found.code} is not active ({found.status(now)})")
    if found.segment_ids:
        try:
            eligible = any(
                customer_id in store.segment_members(i)
                for i in found.segment_ids
                if i in store.segments
            )
        except NotImplementedError:
            eligible = True  # a query the sandbox cannot evaluate: not refused on its account
        if not eligible:
            raise ValueError(f"discount code {found.code} is not available to this customer")
    if found.applies_once_per_customer and used:
        raise ValueError(f"discount code {found.code} was already used by this customer")
    return found


def discount_json(ctx: RequestContext, discount: Discount) -> dict[str, Any]:
    """The control API's view (``GET /_sandbox/shops/{shop}/discounts``)."""
    return {
        "id": gid("DiscountCodeNode", discount.id),
        "title": discount.title,
        "code": discount.code,
        "percentage": discount.percentage,
        "segments": [gid("Segment", i) for i in discount.segment_ids],
        # Who the code is for, readable without a second lookup per segment.
        "segmentQueries": [
            ctx.store.segments[i].query for i in discount.segment_ids if i in ctx.store.segments
        ],
        "startsAt": iso(discount.starts_at),
        "endsAt": iso(discount.ends_at),
        "appliesOncePerCustomer": discount.applies_once_per_customer,
        "status": discount.status(_now()),
        "usageCount": usage_count(ctx, discount),
    }
