"""Every GraphQL document the app sends, checked against Shopify's published 2026-10 schema.

One operation per file, valid, nothing deprecated (fields, arguments, enum values), and the
scopes declared in ``shopify.app.toml`` are exactly the ones the documents need — derived from
the schema file's ``offline_scopes`` hints, plus an explicit map for root fields the hints leave
blank.
"""

from __future__ import annotations

import gzip
import json
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    GraphQLSchema,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_client_schema,
    get_named_type,
    parse,
    validate,
    visit,
)

from shopify_app.shopify.client import GRAPHQL_DIR, load_document
from tests.conftest import SCHEMA_PATH

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(GRAPHQL_DIR.glob("*.graphql"))

# Root fields whose hint is empty although Shopify documents a scope for them: tags are
# written on customers only (tagging.py), which needs write_customers; so are score metafields
# and their definitions (actions/scores.py: owner CUSTOMER).
EXPLICIT_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Mutation", "tagsAdd"): ("write_customers",),
    ("Mutation", "tagsRemove"): ("write_customers",),
    ("Mutation", "metafieldsSet"): ("write_customers",),
    ("Mutation", "metafieldDefinitionCreate"): ("write_customers",),
}


@cache
def _schema_file() -> dict[str, Any]:
    with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def schema() -> GraphQLSchema:
    data = _schema_file()
    return build_client_schema(data.get("data", data), assume_valid=True)


@cache
def scope_hints() -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], tuple[str, ...]]]:
    """(type → scopes, (type, field) → scopes); alternatives keep the first (primary) scope."""
    types: dict[str, tuple[str, ...]] = {}
    fields: dict[tuple[str, str], tuple[str, ...]] = {}
    for item in _schema_file().get("offline_scopes", {}).get("items", []):
        scopes = tuple(item.get("offlineScopes") or ())[:1]
        if not scopes:
            continue
        if item["type"] == "type":
            types[item["typeName"]] = scopes
        else:
            fields[(item["typeName"], item["fieldName"])] = scopes
    return types, fields


def _parse(path: Path) -> DocumentNode:
    return parse(load_document(path.stem))


class _Walker(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.deprecated: list[str] = []
        self.scopes: set[str] = set()

    def enter_field(self, node: Any, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        field = self.type_info.get_field_def()
        if parent is None or field is None:
            return
        if field.deprecation_reason:
            self.deprecated.append(f"{parent.name}.{node.name.value}")
        types, fields = scope_hints()
        key = (parent.name, node.name.value)
        self.scopes.update(fields.get(key, ()))
        self.scopes.update(EXPLICIT_SCOPES.get(key, ()))
        named = get_named_type(field.type)
        if named is not None:
            self.scopes.update(types.get(named.name, ()))

    def enter_argument(self, node: Any, *_: Any) -> None:
        arg = self.type_info.get_argument()
        if arg is not None and arg.deprecation_reason:
            self.deprecated.append(f"argument {node.name.value}")

    def enter_enum_value(self, node: Any, *_: Any) -> None:
        value = self.type_info.get_enum_value()
        if value is not None and value.deprecation_reason:
            self.deprecated.append(f"enum value {node.value}")

    def enter_object_field(self, node: Any, *_: Any) -> None:
        field = self.type_info.get_input_type()
        if field is not None and getattr(field, "deprecation_reason", None):
            self.deprecated.append(f"input field {node.name.value}")


def _walk(document: DocumentNode) -> _Walker:
    type_info = TypeInfo(schema())
    walker = _Walker(type_info)
    visit(document, TypeInfoVisitor(type_info, walker))
    return walker


def test_documents_exist() -> None:
    names = {p.stem for p in DOCUMENTS}
    for required in (
        "shop",
        "customers_page",
        "orders_page",
        "products_page",
        "bulk_customers",
        "bulk_orders",
        "bulk_products",
        "bulk_operation",
        "bulk_operations_running",
        "staged_uploads_create",
        "bulk_operation_run_query",
        "bulk_operation_run_mutation",
    ):
        assert required in names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_one_operation_per_file(path: Path) -> None:
    operations = [d for d in _parse(path).definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1
    assert operations[0].name is not None, "operations are named (logs and the sandbox use it)"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_valid_against_the_schema(path: Path) -> None:
    errors = validate(schema(), _parse(path))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_nothing_deprecated(path: Path) -> None:
    assert _walk(_parse(path)).deprecated == []


def test_customer_contact_fields_are_the_current_ones() -> None:
    text = load_document("bulk_customers")
    assert "defaultEmailAddress" in text and "defaultPhoneNumber" in text
    assert "emailMarketingConsent" not in text


def test_the_deprecation_walk_catches_deprecated_fields() -> None:
    bad = parse("query Q { customers(first: 1) { nodes { id email phone } } }")
    assert _walk(bad).deprecated == ["Customer.email", "Customer.phone"]


def _declared_scopes() -> set[str]:
    config = tomllib.loads((ROOT / "shopify.app.toml").read_text(encoding="utf-8"))
    raw = config["access_scopes"]["scopes"]
    return {s.strip() for s in raw.split(",") if s.strip()}


def required_scopes() -> set[str]:
    """Every scope any document in shopify_app/graphql/ needs."""
    needed: set[str] = set()
    for path in DOCUMENTS:
        needed |= _walk(_parse(path)).scopes
    return needed


def test_scope_derivation_reads_the_hints() -> None:
    assert _walk(parse("query Q { customers(first: 1) { nodes { id } } }")).scopes == {
        "read_customers"
    }
    assert "read_orders" in _walk(parse(load_document("bulk_orders"))).scopes


def test_declared_scopes_are_exactly_those_needed() -> None:
    declared, needed = _declared_scopes(), required_scopes()
    # Line items' product { id } / variant { id } and the product catalogue need read_products
    # (Product and ProductVariant are read_products types in the schema's hints).
    assert declared == needed, (
        f"shopify.app.toml declares {sorted(declared)}; the documents need {sorted(needed)} "
        f"(missing {sorted(needed - declared)}, unused {sorted(declared - needed)})"
    )
