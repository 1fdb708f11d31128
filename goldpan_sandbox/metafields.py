"""The sandbox's customer metafields: ``metafieldDefinitionCreate`` and ``metafieldsSet``.

Shopify's documented rules: ``metafieldsSet`` takes at most 25 metafields and is atomic (one
error and nothing is written); a value must parse as its type; a metafield with a definition
takes the definition's type; ``compareDigest`` must match the stored value's digest (``null``
means "must not exist yet"), else the write is refused as stale. Errors are
``MetafieldsSetUserError`` with ``elementIndex``. A definition's namespace and key are unique
per owner type. Only customers own metafields here; other owners are refused with a userError.
Bulk mutations run ``metafieldsSet`` line by line through the same resolver.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from goldpan_sandbox.admin_api import RequestContext, _r, _user_error, iso, resolver
from goldpan_sandbox.store import Customer, Metafield, MetafieldDefinition, gid, parse_gid

MAX_PER_CALL = 25
APP_NAMESPACE = "$app"
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Types whose definitions may be admin-filterable (Shopify: not json, not rich text, not lists).
FILTERABLE_TYPES = {
    "boolean",
    "date",
    "date_time",
    "number_decimal",
    "number_integer",
    "single_line_text_field",
}
TYPES = FILTERABLE_TYPES | {"json", "multi_line_text_field"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _valid(kind: str, value: str) -> bool:
    """Whether ``value`` parses as metafield type ``kind``."""
    try:
        if kind == "number_integer":
            return re.fullmatch(r"[+-]?[0-9]+", value) is not None
        if kind == "number_decimal":
            return Decimal(value).is_finite()
        if kind == "boolean":
            return value in ("true", "false")
        if kind == "date":
            dt.date.fromisoformat(value)
            return True
        if kind == "date_time":
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return True
        if kind == "json":
            json.loads(value)
            return True
    except (ValueError, InvalidOperation):
        return False
    return kind in ("single_line_text_field", "multi_line_text_field") and (
        kind == "multi_line_text_field" or "\n" not in value
    )


def _definition(ctx: RequestContext, namespace: str, key: str) -> MetafieldDefinition | None:
    for definition in ctx.store.metafield_definitions.values():
        if (definition.owner_type, definition.namespace, definition.key) == (
            "CUSTOMER",
            namespace,
            key,
        ):
            return definition
    return None


def _set_error(index: int, name: str, message: str, code: str) -> dict[str, Any]:
    return {**_user_error(["metafields", str(index), name], message, code), "elementIndex": index}


@resolver("Mutation", "metafieldsSet")
def _metafields_set(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    inputs = args["metafields"]
    if len(inputs) > MAX_PER_CALL:
        message = f"Exceeded the maximum metafields input limit of {MAX_PER_CALL}."
        error = _user_error(["metafields"], message, "LESS_THAN_OR_EQUAL_TO")
        return {"metafields": None, "userErrors": [{**error, "elementIndex": None}]}
    errors: list[dict[str, Any]] = []
    planned: list[tuple[Customer, str, str, str, str]] = []
    with ctx.store.lock:
        for index, item in enumerate(inputs):
            namespace = item.get("namespace") or APP_NAMESPACE
            key = item["key"]
            try:
                kind, number = parse_gid(item["ownerId"])
            except ValueError:
                kind, number = "", 0
            owner = ctx.store.customers.get(number) if kind == "Customer" else None
            if owner is None:
                errors.append(_set_error(index, "ownerId", "Owner does not exist.", "INVALID"))
                continue
            definition = _definition(ctx, namespace, key)
            current = owner.metafields.get(f"{namespace}.{key}")
            kind_given = item.get("type")
            mtype = kind_given or (definition.type if definition else None)
            mtype = mtype or (current.type if current else None)
            if mtype is None:
                message = "Type can't be blank."
                errors.append(_set_error(index, "type", message, "BLANK"))
                continue
            if definition is not None and mtype != definition.type:
                message = f"Type must be {definition.type} to match the definition."
                errors.append(_set_error(index, "type", message, "INVALID_TYPE"))
                continue
            if mtype not in TYPES:
                message = f"Type '{mtype}' is not supported by the sandbox."
                errors.append(_set_error(index, "type", message, "INVALID_TYPE"))
                continue
            value = item["value"]
            if not _valid(mtype, value):
                message = f"Value must be a valid {mtype}."
                errors.append(_set_error(index, "value", message, "INVALID_VALUE"))
                continue
            if "compareDigest" in item:
                wanted = item["compareDigest"]
                actual = current.digest if current else None
                if wanted != actual:
                    message = (
                        "The resource has been updated since it was loaded. Try again with an "
                        "updated `compareDigest` value."
                    )
                    errors.append(_set_error(index, "compareDigest", message, "STALE_OBJECT"))
                    continue
            planned.append((owner, namespace, key, mtype, value))
        if errors:
            return {"metafields": None, "userErrors": errors}
        now = _now()
        written = []
        for owner, namespace, key, mtype, value in planned:
            name = f"{namespace}.{key}"
            field = owner.metafields.get(name)
            if field is None:
                field = Metafield(ctx.store.next_id(), namespace, key, mtype, value, now, now)
                owner.metafields[name] = field
            elif (field.type, field.value) != (mtype, value):
                field.type, field.value, field.updated_at = mtype, value, now
            written.append(field)
    return {"metafields": written, "userErrors": []}


def _definition_error(path: str, message: str, code: str) -> dict[str, Any]:
    error = _user_error(["definition", path], message, code)
    return {**error, "elementIndex": None, "elementKey": None}


@resolver("Mutation", "metafieldDefinitionCreate")
def _definition_create(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    data = args["definition"]
    namespace = data.get("namespace") or APP_NAMESPACE
    key = data["key"]
    errors = []
    if data["ownerType"] != "CUSTOMER":
        message = "The sandbox models customer metafield definitions only."
        errors.append(_definition_error("ownerType", message, "INCLUSION"))
    if len(key) < 2:
        message = "Key is too short (minimum is 2 characters)"
        errors.append(_definition_error("key", message, "TOO_SHORT"))
    elif len(key) > 64:
        message = "Key is too long (maximum is 64 characters)"
        errors.append(_definition_error("key", message, "TOO_LONG"))
    elif not _KEY.match(key):
        message = "Key contains one or more invalid characters."
        errors.append(_definition_error("key", message, "INVALID_CHARACTER"))
    if not data["name"].strip():
        errors.append(_definition_error("name", "Name can't be blank", "BLANK"))
    if data["type"] not in TYPES:
        message = f"Type name {data['type']} is not a valid type."
        errors.append(_definition_error("type", message, "INCLUSION"))
    capabilities = data.get("capabilities") or {}
    filterable = bool((capabilities.get("adminFilterable") or {}).get("enabled"))
    if filterable and data["type"] not in FILTERABLE_TYPES:
        message = "The admin filterable capability is not eligible for this definition."
        errors.append(_definition_error("capabilities", message, "INVALID_CAPABILITY"))
    with ctx.store.lock:
        if not errors and _definition(ctx, namespace, key) is not None:
            message = f"Key is in use for Customer metafields on the '{namespace}' namespace."
            errors.append(_definition_error("key", message, "TAKEN"))
        if errors:
            return {"createdDefinition": None, "userErrors": errors}
        definition = MetafieldDefinition(
            id=ctx.store.next_id(),
            owner_type="CUSTOMER",
            namespace=namespace,
            key=key,
            name=data["name"].strip(),
            type=data["type"],
            description=data.get("description"),
            admin_filterable=filterable,
        )
        ctx.store.metafield_definitions[definition.id] = definition
    return {"createdDefinition": definition, "userErrors": []}


_r(
    "MetafieldDefinition",
    {
        "id": lambda d: gid("MetafieldDefinition", d.id),
        "name": lambda d: d.name,
        "namespace": lambda d: d.namespace,
        "key": lambda d: d.key,
        "description": lambda d: d.description,
        "ownerType": lambda d: d.owner_type,
        "type": lambda d: {"name": d.type, "category": None},
        "capabilities": lambda d: {
            "adminFilterable": {
                "eligible": d.type in FILTERABLE_TYPES,
                "enabled": d.admin_filterable,
                "status": "FILTERABLE" if d.admin_filterable else "NOT_FILTERABLE",
            }
        },
    },
)
_r(
    "Metafield",
    {
        "id": lambda m: gid("Metafield", m.id),
        "namespace": lambda m: m.namespace,
        "key": lambda m: m.key,
        "type": lambda m: m.type,
        "value": lambda m: m.value,
        "compareDigest": lambda m: m.digest,
        "createdAt": lambda m: iso(m.created_at),
        "updatedAt": lambda m: iso(m.updated_at),
    },
)


@resolver("Customer", "metafield")
def _customer_metafield(c: Customer, args: dict[str, Any], ctx: RequestContext) -> Any:
    namespace = args.get("namespace") or APP_NAMESPACE
    return c.metafields.get(f"{namespace}.{args['key']}")


def metafields_json(customer: Customer) -> dict[str, dict[str, Any]]:
    """The control API's view of a customer's metafields, by ``namespace.key``."""
    return {
        name: {"type": m.type, "value": m.value, "updatedAt": iso(m.updated_at)}
        for name, m in sorted(customer.metafields.items())
    }
