"""Calculated query cost and the leaky bucket, as Shopify's Admin GraphQL API charges them.

Shopify prices a query before running it (``requestedQueryCost``) from the shape of the
document: every object costs 1, scalars and enums cost nothing, a connection costs 2 plus its
page size (``first``/``last``) times the cost of one node, and a mutation field costs 10. After
running it, Shopify charges what was really returned (``actualQueryCost``) and refunds the rest.

Each (app, shop) pair has a bucket that holds ``maximum`` points and refills ``restore_rate``
points per second. A query whose requested cost exceeds what is available is refused with a
``THROTTLED`` error (still HTTP 200); a query whose requested cost exceeds ``MAX_QUERY_COST``
can never run (``MAX_COST_EXCEEDED``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_composite_type,
    is_list_type,
    is_non_null_type,
)

MAX_QUERY_COST = 1000
"""Shopify's single-query cost limit."""

MUTATION_COST = 10
OBJECT_COST = 1
CONNECTION_BASE_COST = 2


@dataclass(frozen=True)
class Plan:
    """A rate-limit plan: bucket size and points restored per second."""

    maximum: float = 2000.0
    restore_rate: float = 100.0


PLANS: dict[str, Plan] = {
    "standard": Plan(2000.0, 100.0),
    "advanced": Plan(4000.0, 200.0),
    "plus": Plan(20000.0, 1000.0),
    "enterprise": Plan(40000.0, 2000.0),
}
"""Restore rates are documented; bucket sizes above Standard are the sandbox's assumption."""


class LeakyBucket:
    """Points available to one (app, shop) pair; thread-safe."""

    def __init__(self, plan: Plan | None = None, clock: Callable[[], float] = time.monotonic):
        self.plan = plan or Plan()
        self._clock = clock
        self._available = self.plan.maximum
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._at)
        self._available = min(self.plan.maximum, self._available + elapsed * self.plan.restore_rate)
        self._at = now

    def set_plan(self, plan: Plan) -> None:
        """Switch plans (a fault knob); keeps the current level, capped at the new maximum."""
        with self._lock:
            self._refill()
            self.plan = plan
            self._available = min(self._available, plan.maximum)

    def drain(self, points: float | None = None) -> None:
        """Empty the bucket (or take ``points``) without a query: lets tests provoke THROTTLED."""
        with self._lock:
            self._refill()
            self._available = 0.0 if points is None else max(0.0, self._available - points)

    def take(self, cost: float) -> bool:
        """Take ``cost`` points if available; False (nothing taken) when there are too few."""
        with self._lock:
            self._refill()
            if cost > self._available:
                return False
            self._available -= cost
            return True

    def refund(self, points: float) -> None:
        with self._lock:
            self._refill()
            self._available = min(self.plan.maximum, self._available + max(0.0, points))

    def status(self) -> dict[str, Any]:
        """``throttleStatus`` as Shopify reports it."""
        with self._lock:
            self._refill()
            return {
                "maximumAvailable": float(self.plan.maximum),
                "currentlyAvailable": math.floor(self._available),
                "restoreRate": float(self.plan.restore_rate),
            }


def _is_connection(type_name: str) -> bool:
    return type_name.endswith("Connection")


class CostCalculator:
    """Walks an operation with the schema to price it.

    With ``data`` (the execution result) it prices what was really returned: connections count
    their returned nodes instead of the requested page size.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any] | None,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = dict(variables or {})

    def operation(self, op: OperationDefinitionNode, data: Any = None, actual: bool = False) -> int:
        root = (
            self.schema.mutation_type
            if op.operation.value == "mutation"
            else self.schema.query_type
        )
        if root is None:
            return 0
        if op.operation.value == "mutation":
            # Mutations are priced flat per top-level field, whatever they select.
            return MUTATION_COST * sum(1 for _ in self._fields(op.selection_set, root.name))
        return self._selection(op.selection_set, root, data, actual)

    def _fields(self, selection_set: SelectionSetNode | None, type_name: str) -> Any:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._fields(selection.selection_set, type_name)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    yield from self._fields(fragment.selection_set, type_name)

    def _included(self, selection: Any) -> bool:
        """Honour ``@skip``/``@include``: excluded fields are not executed, so not charged."""
        for directive in selection.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            for argument in directive.arguments or ():
                if argument.name.value != "if":
                    continue
                value: Any = argument.value
                if isinstance(value, VariableNode):
                    flag = bool(self.variables.get(value.name.value))
                else:
                    flag = getattr(value, "value", True) is True
                if (name == "skip") == flag:
                    return False
        return True

    def _selection(
        self, selection_set: SelectionSetNode | None, parent: Any, data: Any, actual: bool
    ) -> int:
        total = 0
        fields = getattr(parent, "fields", None)
        if fields is None:
            # An abstract type without fields of its own (a union): price the fragments'
            # fields against each possible type's definitions, first match wins.
            return sum(
                OBJECT_COST for _ in self._fields(selection_set, getattr(parent, "name", ""))
            )
        for node in self._fields(selection_set, parent.name):
            name = node.name.value
            if name.startswith("__"):
                continue
            field = fields.get(name)
            if field is None:
                continue
            named = get_named_type(field.type)
            if not is_composite_type(named):
                continue
            key = node.alias.value if node.alias else name
            value = data.get(key) if isinstance(data, dict) else None
            if actual and value is None:
                continue
            if _is_connection(named.name):
                total += self._connection(node, field, named, value, actual)
            elif is_list_type(field.type) or (
                is_non_null_type(field.type) and is_list_type(field.type.of_type)
            ):
                items = value if isinstance(value, list) else [None]
                for item in items:
                    total += OBJECT_COST + self._selection(node.selection_set, named, item, actual)
            else:
                total += OBJECT_COST + self._selection(node.selection_set, named, value, actual)
        return total

    def _connection(self, node: FieldNode, field: Any, named: Any, value: Any, actual: bool) -> int:
        if actual and isinstance(value, dict):
            edges = value.get("edges")
            nodes = value.get("nodes")
            items = edges if isinstance(edges, list) else nodes if isinstance(nodes, list) else []
            size = len(items)
        else:
            size = self._page_size(node)
        node_type = self._node_type(named)
        per_node = 0
        sample_nodes: list[Any] = []
        if actual and isinstance(value, dict):
            if isinstance(value.get("edges"), list):
                sample_nodes = [e.get("node") for e in value["edges"] if isinstance(e, dict)]
            elif isinstance(value.get("nodes"), list):
                sample_nodes = list(value["nodes"])
        for sub in self._fields(node.selection_set, named.name):
            sub_name = sub.name.value
            if sub_name == "edges":
                for edge_field in self._fields(sub.selection_set, ""):
                    if edge_field.name.value == "node" and node_type is not None:
                        per_node += self._node_cost(edge_field, node_type, sample_nodes, actual)
            elif sub_name == "nodes" and node_type is not None:
                per_node += self._node_cost(sub, node_type, sample_nodes, actual)
        if actual and sample_nodes:
            return CONNECTION_BASE_COST + per_node
        return CONNECTION_BASE_COST + size * per_node

    def _node_cost(self, node: FieldNode, node_type: Any, samples: list[Any], actual: bool) -> int:
        if actual and samples:
            return sum(
                OBJECT_COST + self._selection(node.selection_set, node_type, s, True)
                for s in samples
                if s is not None
            )
        return OBJECT_COST + self._selection(node.selection_set, node_type, None, False)

    def _page_size(self, node: FieldNode) -> int:
        """``first``/``last`` as literals or variables (invalid values count as 0)."""
        for argument in node.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            value: Any = argument.value
            if isinstance(value, VariableNode):
                raw = self.variables.get(value.name.value)
            elif isinstance(value, IntValueNode):
                raw = value.value
            else:
                raw = None
            try:
                return max(0, int(raw)) if raw is not None else 0
            except (TypeError, ValueError):
                return 0
        return 0

    @staticmethod
    def _node_type(connection_type: Any) -> Any:
        nodes = connection_type.fields.get("nodes")
        if nodes is not None:
            return get_named_type(nodes.type)
        edges = connection_type.fields.get("edges")
        if edges is not None:
            edge = get_named_type(edges.type)
            node = edge.fields.get("node")
            return get_named_type(node.type) if node is not None else None
        return None


def max_cost_error(cost: int) -> dict[str, Any]:
    """The error Shopify answers when one query asks for more than :data:`MAX_QUERY_COST`."""
    return {
        "message": (
            f"Query cost is {cost}, which exceeds the single query max cost limit "
            f"({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits "
            "for more information on how the\ncost of a query is calculated.\n\nTo query larger "
            "amounts of data with fewer limits, bulk operations should be used instead.\nSee "
            "https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage "
            "details.\n"
        ),
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": MAX_QUERY_COST},
    }


def throttled_error() -> dict[str, Any]:
    """The error Shopify answers (with HTTP 200) when the bucket cannot cover a query."""
    return {
        "message": "Throttled",
        "extensions": {
            "code": "THROTTLED",
            "documentation": "https://shopify.dev/api/usage/rate-limits",
        },
    }
