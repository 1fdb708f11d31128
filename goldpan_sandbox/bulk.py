"""Bulk operations: queries written to JSONL the way Shopify writes them, and bulk mutations.

A bulk query runs in a background thread (``CREATED`` → ``RUNNING`` → ``COMPLETED``) and
produces JSONL: every node of the top-level connection is one line, every node of a nested
connection is its own line carrying ``__parentId``, nested connections are left out of their
parent's line, and (unless ``groupObjects: true``) lines come in no particular order — children
may even precede their parents, as Shopify warns. Lists of objects (``Order.refunds``) stay
inline in their parent's line, so a connection inside such a list (``refundLineItems`` under
``refunds``) is refused, as Shopify refuses it. The file is served from an expiring signed URL
on the sandbox, and ``bulk_operations/finish`` is sent when the operation ends.

:func:`iter_bulk_jsonl` is the pure serializer; it walks a compiled selection plan with the
resolvers of :mod:`admin_api` instead of running graphql-core once per row, so benchmarks can
write a million orders quickly.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_list_type,
    is_non_null_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from goldpan_sandbox import admin_api
from goldpan_sandbox.control import Faults
from goldpan_sandbox.store import Store, gid, shop_number

log = logging.getLogger(__name__)

MAX_CONCURRENT = 5
"""Concurrent bulk queries (and, separately, bulk mutations) per shop since 2026-01."""
MAX_CONNECTIONS = 5
MAX_NESTING = 2
URL_TTL = 7 * 24 * 3600.0
"""Result URLs expire after a week."""
SHUFFLE_WINDOW = 1024
"""Lines are shuffled within windows this long: no order guarantee, bounded memory."""


class BulkQueryError(ValueError):
    """A bulk query Shopify would refuse; the message is the userError's."""


@dataclass(eq=False)
class BulkOperation:
    id: int
    domain: str
    type: str  # QUERY | MUTATION
    query: str
    created_at: dt.datetime
    status: str = "CREATED"
    completed_at: dt.datetime | None = None
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_data_url: str | None = None
    group_objects: bool = False
    staged_path: str | None = None
    path: Path | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    graphql_type: ClassVar[str] = "BulkOperation"


# --------------------------------------------------------------------------------------------
# The serializer
# --------------------------------------------------------------------------------------------


class _Planner:
    """Compiles selection sets into field plans once per (type, selection)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.schema = admin_api.schema()

    def collect(
        self, selections: list[FieldNode] | SelectionSetNode | None, type_name: str
    ) -> list[FieldNode]:
        out: list[FieldNode] = []
        items: Any = (
            selections.selections if isinstance(selections, SelectionSetNode) else selections
        )
        for selection in items or ():
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._applies(selection.type_condition, type_name):
                    out.extend(self.collect(selection.selection_set, type_name))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and self._applies(fragment.type_condition, type_name):
                    out.extend(self.collect(fragment.selection_set, type_name))
        return out

    def _applies(self, condition: Any, type_name: str) -> bool:
        if condition is None:
            return True
        wanted = condition.name.value
        if wanted == type_name:
            return True
        abstract = self.schema.get_type(wanted)
        concrete = self.schema.get_type(type_name)
        if abstract is None or concrete is None or not is_abstract_type(abstract):
            return False
        return self.schema.is_sub_type(abstract, concrete)


def _node_type(connection_type: Any) -> Any:
    nodes = connection_type.fields.get("nodes")
    if nodes is not None:
        return get_named_type(nodes.type)
    edge = get_named_type(connection_type.fields["edges"].type)
    return get_named_type(edge.fields["node"].type)


Render = Callable[[Any, list[Any]], dict[str, Any]]
_TYPENAME, _LEAF, _OBJECT, _LIST, _CONNECTION = range(5)


class _Compiler:
    """Turns (type, selection) into a closure rendering one object as a JSONL line.

    Compiling once per bulk query and calling plain closures per row is what makes a
    million-order export take minutes rather than hours.
    """

    def __init__(self, planner: _Planner, ctx: admin_api.RequestContext) -> None:
        self.planner = planner
        self.ctx = ctx
        self.schema = admin_api.schema()
        self._cache: dict[tuple[str, tuple[int, ...]], Render] = {}

    def getter(self, type_name: str, name: str, args: dict[str, Any]) -> Callable[[Any], Any]:
        simple = admin_api.SIMPLE_RESOLVERS.get(type_name, {}).get(name)
        if simple is not None:
            return simple
        full = admin_api.RESOLVERS.get(type_name, {}).get(name)
        ctx = self.ctx
        if full is not None:
            return lambda obj: full(obj, args, ctx)
        return lambda obj: obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    def compile(self, type_name: str, selection: list[FieldNode]) -> Render:
        cache_key = (type_name, tuple(id(n) for n in selection))
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        gql_type = self.schema.get_type(type_name)
        assert isinstance(gql_type, GraphQLObjectType), type_name
        steps: list[tuple[str, int, Any, Any]] = []
        for node in self.planner.collect(selection, type_name):
            name = node.name.value
            key = node.alias.value if node.alias else name
            if name == "__typename":
                steps.append((key, _TYPENAME, type_name, None))
                continue
            definition = gql_type.fields[name]
            args = get_argument_values(definition, node)
            named = get_named_type(definition.type)
            source = admin_api.UNORDERED_SOURCES.get((type_name, name))
            if source is not None:
                node_type = _node_type(named)
                inner = _connection_nodes(self.planner, node, named.name)
                fetch = (lambda src, a, c: lambda parent: src(parent, a, c))(source, args, self.ctx)
                steps.append((key, _CONNECTION, fetch, self.compile(node_type.name, inner)))
                continue
            getter = self.getter(type_name, name, args)
            if not node.selection_set:
                steps.append((key, _LEAF, getter, None))
                continue
            sub = list(self.planner.collect(node.selection_set, named.name))
            child = (
                self._abstract(sub) if is_abstract_type(named) else self.compile(named.name, sub)
            )
            inner_type = (
                definition.type.of_type if is_non_null_type(definition.type) else definition.type
            )
            kind = _LIST if is_list_type(inner_type) else _OBJECT
            steps.append((key, kind, getter, child))

        def render(obj: Any, children: list[Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, kind, getter, sub in steps:
                if kind == _LEAF:
                    out[key] = getter(obj)
                elif kind == _OBJECT:
                    value = getter(obj)
                    out[key] = None if value is None else sub(value, children)
                elif kind == _LIST:
                    value = getter(obj)
                    out[key] = None if value is None else [sub(v, children) for v in value]
                elif kind == _CONNECTION:
                    children.append((obj, getter, sub))
                else:
                    out[key] = getter
            return out

        self._cache[cache_key] = render
        return render

    def _abstract(self, selection: list[FieldNode]) -> Render:
        """An interface/union field: pick the concrete type's renderer per value."""
        by_type: dict[str, Render] = {}

        def render(obj: Any, children: list[Any]) -> dict[str, Any]:
            concrete = admin_api.typename(obj) or ""
            chosen = by_type.get(concrete)
            if chosen is None:
                chosen = by_type[concrete] = self.compile(concrete, selection)
            return chosen(obj, children)

        return render


def compile_bulk_query(document: str) -> tuple[DocumentNode, OperationDefinitionNode]:
    """Parse and check a bulk query as Shopify does; raises :class:`BulkQueryError`."""
    try:
        parsed = parse(document)
    except Exception as exc:
        raise BulkQueryError(f"Invalid bulk query: {exc}") from None
    errors = validate(admin_api.schema(), parsed)
    if errors:
        raise BulkQueryError(f"Invalid bulk query: {admin_api.shopify_error(errors[0])['message']}")
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation.value != "query":
        raise BulkQueryError("Bulk queries must contain exactly one query operation.")
    operation = operations[0]
    planner = _Planner(admin_api.fragments_of(parsed))
    connections = _count_connections(planner, "QueryRoot", operation.selection_set, 0)
    if connections == 0:
        raise BulkQueryError("Bulk queries must contain at least one connection.")
    if connections > MAX_CONNECTIONS:
        raise BulkQueryError(
            f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
        )
    return parsed, operation


def root_field(document: str) -> str | None:
    """The first top-level field of ``document``: ``orders`` for an export of orders,
    ``tagsAdd`` for a bulk mutation (None when it cannot be parsed)."""
    try:
        parsed = parse(document)
    except Exception:
        return None
    for definition in parsed.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    return selection.name.value
    return None


def _count_connections(planner: _Planner, type_name: str, selection: Any, depth: int) -> int:
    schema = admin_api.schema()
    gql_type = schema.get_type(type_name)
    fields = getattr(gql_type, "fields", {})
    total = 0
    collected = planner.collect(selection, type_name)
    for node in collected:
        name = node.name.value
        if name.startswith("__") or name not in fields:
            continue
        named = get_named_type(fields[name].type)
        if not node.selection_set:
            continue
        if (type_name, name) in admin_api.CONNECTION_SOURCES:
            if depth + 1 > MAX_NESTING:
                raise BulkQueryError(
                    f"Bulk queries cannot contain connections with a nesting depth greater "
                    f"than {MAX_NESTING}."
                )
            node_type = _node_type(named)
            inner = _connection_nodes(planner, node, named.name)
            has_nested = any(
                (node_type.name, n.name.value) in admin_api.CONNECTION_SOURCES
                for n in planner.collect(inner, node_type.name)
            )
            if has_nested and not any(
                n.name.value == "id" and n.alias is None
                for n in planner.collect(inner, node_type.name)
            ):
                raise BulkQueryError(
                    f"The parent 'node' field for a nested connection must select the 'id' "
                    f"field without an alias. Connection field: '{name}'."
                )
            total += 1 + _count_connections(planner, node_type.name, inner, depth + 1)
        elif not is_abstract_type(named):
            inner_count = _count_connections(planner, named.name, node.selection_set, depth)
            if inner_count and _is_list(fields[name].type):
                raise BulkQueryError(
                    "Queries that contain a connection field within a list field are not "
                    "currently supported."
                )
            total += inner_count
    return total


def _is_list(gql_type: Any) -> bool:
    return is_list_type(gql_type.of_type if is_non_null_type(gql_type) else gql_type)


def _connection_nodes(planner: _Planner, node: FieldNode, type_name: str) -> list[FieldNode]:
    out: list[FieldNode] = []
    for sub in planner.collect(node.selection_set, type_name):
        if sub.name.value == "nodes" and sub.selection_set:
            out.extend(planner.collect(sub.selection_set, ""))
        elif sub.name.value == "edges" and sub.selection_set:
            for edge_field in planner.collect(sub.selection_set, ""):
                if edge_field.name.value == "node" and edge_field.selection_set:
                    out.extend(planner.collect(edge_field.selection_set, ""))
    return out


def _lines(
    store: Store, document: str, ctx: admin_api.RequestContext | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yield one group per root node: its line first, then its descendants' lines."""
    parsed, operation = compile_bulk_query(document)
    planner = _Planner(admin_api.fragments_of(parsed))
    ctx = ctx or admin_api.RequestContext(store.domain, store)
    compiler = _Compiler(planner, ctx)
    root = compiler.compile(
        "QueryRoot", list(planner.collect(operation.selection_set, "QueryRoot"))
    )
    connections: list[Any] = []
    root(None, connections)
    for _, fetch, render in connections:
        for node in fetch(None):
            group: list[dict[str, Any]] = []
            _group(render, node, group)
            yield group


def _group(render: Render, node: Any, out: list[dict[str, Any]]) -> None:
    children: list[Any] = []
    line = render(node, children)
    out.append(line)
    parent_id = line.get("id")
    for parent, fetch, child_render in children:
        for child in fetch(parent):
            start = len(out)
            _group(child_render, child, out)
            out[start]["__parentId"] = parent_id


def iter_bulk_jsonl(
    store: Store,
    document: str,
    *,
    group_objects: bool = False,
    seed: int | None = None,
    ctx: admin_api.RequestContext | None = None,
) -> Iterator[str]:
    """The JSONL lines (without newlines) a bulk run of ``document`` over ``store`` produces.

    Raises :class:`BulkQueryError` for a query Shopify would refuse. ``group_objects`` keeps
    each node's children right after it; otherwise lines are shuffled within windows of
    :data:`SHUFFLE_WINDOW` (``seed`` makes the order reproducible).
    """
    rng = random.Random(seed)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if group_objects:
        for group in _lines(store, document, ctx):
            for line in group:
                yield dumps(line)
        return
    window: list[str] = []
    for group in _lines(store, document, ctx):
        window.extend(dumps(line) for line in group)
        if len(window) >= SHUFFLE_WINDOW:
            rng.shuffle(window)
            yield from window
            window = []
    rng.shuffle(window)
    yield from window


# --------------------------------------------------------------------------------------------
# Operations, uploads, downloads
# --------------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class BulkManager:
    """Bulk operations of every shop of one sandbox, their files and their URLs."""

    def __init__(
        self,
        *,
        secret: str,
        base_url: Callable[[], str],
        faults: Faults | None = None,
        on_finish: Callable[[BulkOperation], None] | None = None,
        workdir: Path | None = None,
        url_ttl: float = URL_TTL,
    ) -> None:
        self._secret = secret.encode()
        self._base_url = base_url
        self.faults = faults or Faults()
        self.on_finish = on_finish
        self.url_ttl = url_ttl
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="sandbox-bulk-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ops: dict[int, BulkOperation] = {}
        self._uploads: dict[str, Path] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- registry ---------------------------------------------------------------------------
    def operations(self, domain: str) -> list[BulkOperation]:
        with self._lock:
            return [op for op in self._ops.values() if op.domain == domain]

    def get(self, domain: str, number: int) -> BulkOperation | None:
        with self._lock:
            op = self._ops.get(number)
        return op if op is not None and op.domain == domain else None

    def wait(self, op: BulkOperation, timeout: float = 30.0) -> bool:
        """Block until ``op`` ends (tests)."""
        return op.done.wait(timeout)

    def _running(self, domain: str, kind: str) -> int:
        return sum(
            1
            for op in self.operations(domain)
            if op.type == kind and op.status in ("CREATED", "RUNNING", "CANCELING")
        )

    # -- queries ----------------------------------------------------------------------------
    def run_query(
        self, domain: str, store: Store, query: str, group_objects: bool
    ) -> tuple[BulkOperation | None, list[dict[str, Any]]]:
        try:
            compile_bulk_query(query)
        except BulkQueryError as exc:
            return None, [{"field": ["query"], "message": str(exc), "code": "INVALID"}]
        with self._lock:
            running = sum(
                1
                for op in self._ops.values()
                if op.domain == domain
                and op.type == "QUERY"
                and op.status in ("CREATED", "RUNNING", "CANCELING")
            )
            if running >= MAX_CONCURRENT:
                return None, [
                    {
                        "field": None,
                        "message": f"A shop can run at most {MAX_CONCURRENT} bulk query "
                        "operations at a time.",
                        "code": "LIMIT_REACHED",
                    }
                ]
            op = BulkOperation(
                id=next(self._ids) + 5_000_000_000,
                domain=domain,
                type="QUERY",
                query=query,
                created_at=_now(),
                group_objects=group_objects,
            )
            self._ops[op.id] = op
        snapshot = copy.copy(op)
        threading.Thread(
            target=self._run_query, args=(op, store), name=f"bulk-{op.id}", daemon=True
        ).start()
        # The mutation answers with the operation as created (Shopify: CREATED), even if the
        # thread has already moved it on.
        return snapshot, []

    def _run_query(self, op: BulkOperation, store: Store) -> None:
        op.status = "RUNNING"
        path = self.workdir / f"bulk-{op.id}.jsonl"
        try:
            count = roots = 0
            with path.open("w", encoding="utf-8") as handle:
                for line in iter_bulk_jsonl(
                    store, op.query, group_objects=op.group_objects, seed=op.id
                ):
                    handle.write(line)
                    handle.write("\n")
                    count += 1
                    if '"__parentId"' not in line:
                        roots += 1
                    if op.cancel_requested:
                        break
            op.object_count, op.root_object_count = count, roots
            op.path = path
            op.file_size = path.stat().st_size
            self._hold(op)
            self._finish(op, self.faults.take_bulk_outcome(root_field(op.query)))
        except Exception:
            log.exception("bulk query %s failed", op.id)
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            op.completed_at = _now()
            self._notify(op)

    def _hold(self, op: BulkOperation) -> None:
        # The knob is read on every tick, so a test can release operations it holds; a cancel
        # ends the wait too (the operation then ends CANCELED).
        started = time.monotonic()
        while not op.cancel_requested and time.monotonic() - started < self.faults.bulk_delay:
            time.sleep(0.01)

    def _finish(self, op: BulkOperation, outcome: str | None) -> None:
        """End ``op`` as ``outcome`` (a fault: ``FAILED``/``EXPIRED``) or ``COMPLETED``."""
        if op.cancel_requested:
            op.status = "CANCELED"
            op.completed_at = _now()
            self._notify(op)
            return
        op.completed_at = _now()
        if outcome == "FAILED":
            op.status, op.error_code = "FAILED", self.faults.bulk_error_code
            if op.file_size:
                op.partial_data_url = self.signed_url(op)
        elif outcome == "EXPIRED":
            op.status = "EXPIRED"
            op.url = None
        else:
            op.status = "COMPLETED"
            # Shopify gives no URL for an empty result.
            op.url = self.signed_url(op) if op.object_count else None
        self._notify(op)

    def _notify(self, op: BulkOperation) -> None:
        op.done.set()
        if self.on_finish is not None:
            try:
                self.on_finish(op)
            except Exception:
                log.exception("bulk finish hook failed for %s", op.id)

    def cancel(self, op: BulkOperation) -> list[dict[str, Any]]:
        if op.status not in ("CREATED", "RUNNING"):
            return [
                {
                    "field": ["id"],
                    "message": "A bulk operation cannot be canceled when it is "
                    f"{op.status.lower()}",
                }
            ]
        op.cancel_requested = True
        op.status = "CANCELING"
        return []

    # -- mutations --------------------------------------------------------------------------
    def staged_target(self, domain: str, filename: str, mime_type: str) -> dict[str, Any]:
        """Where to POST a bulk mutation's variables file (a form upload, like GCS)."""
        key = f"tmp/{shop_number(domain)}/bulk/{uuid.uuid4()}/{filename}"
        expires = int(time.time() + 3600)
        signature = self._sign(f"upload:{key}:{expires}")
        url = f"{self._base_url()}/_sandbox/staged-uploads/"
        parameters = [
            ("key", key),
            ("Content-Type", mime_type),
            ("success_action_status", "201"),
            ("acl", "private"),
            ("policy", str(expires)),
            ("x-goog-credential", "sandbox"),
            ("x-goog-algorithm", "GOOG4-HMAC-SHA256"),
            ("x-goog-date", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())),
            ("x-goog-signature", signature),
        ]
        return {
            "url": url,
            "resourceUrl": f"{url}{key}",
            "parameters": [{"name": n, "value": v} for n, v in parameters],
        }

    def store_upload(self, key: str, data: bytes) -> None:
        path = self.workdir / f"upload-{hashlib.sha256(key.encode()).hexdigest()[:24]}.jsonl"
        path.write_bytes(data)
        with self._lock:
            self._uploads[key] = path

    def run_mutation(
        self, domain: str, store: Store, mutation: str, staged_path: str
    ) -> tuple[BulkOperation | None, list[dict[str, Any]]]:
        with self._lock:
            upload = self._uploads.get(staged_path)
        if upload is None:
            return None, [
                {
                    "field": ["stagedUploadPath"],
                    "message": "The JSONL file could not be found. Try uploading the file again.",
                    "code": "NO_SUCH_FILE",
                }
            ]
        document, errors = admin_api.parse_and_validate(mutation)
        operations = (
            [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if document
            else []
        )
        if (
            errors
            or len(operations) != 1
            or operations[0].operation.value != "mutation"
            or len(operations[0].selection_set.selections) != 1
        ):
            detail = errors[0]["message"] if errors else "expected one mutation with one field"
            return None, [
                {
                    "field": ["mutation"],
                    "message": f"Invalid mutation: {detail}",
                    "code": "INVALID_MUTATION",
                }
            ]
        if self._running(domain, "MUTATION") >= MAX_CONCURRENT:
            return None, [
                {
                    "field": None,
                    "message": f"A shop can run at most {MAX_CONCURRENT} bulk mutation "
                    "operations at a time.",
                    "code": "LIMIT_REACHED",
                }
            ]
        op = BulkOperation(
            id=next(self._ids) + 5_000_000_000,
            domain=domain,
            type="MUTATION",
            query=mutation,
            created_at=_now(),
            staged_path=staged_path,
        )
        with self._lock:
            self._ops[op.id] = op
        assert document is not None
        snapshot = copy.copy(op)
        threading.Thread(
            target=self._run_mutation,
            args=(op, store, document, upload),
            name=f"bulk-{op.id}",
            daemon=True,
        ).start()
        # The mutation answers with the operation as created (Shopify: CREATED), even if the
        # thread has already moved it on.
        return snapshot, []

    def _run_mutation(
        self, op: BulkOperation, store: Store, document: DocumentNode, upload: Path
    ) -> None:
        op.status = "RUNNING"
        ctx = admin_api.RequestContext(op.domain, store, bulk=self)
        path = self.workdir / f"bulk-{op.id}.jsonl"
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        # A failed operation (INTERNAL_SERVER_ERROR, TIMEOUT) "resulted in partial or incomplete
        # data": it stops partway, the rows after the failure never run, and partialDataUrl holds
        # the results of those that did. The sandbox fails halfway through the file.
        outcome = self.faults.take_bulk_outcome(root_field(op.query))
        stop = _row_count(upload) // 2 if outcome == "FAILED" else None
        try:
            count = 0
            with upload.open(encoding="utf-8") as source, path.open("w", encoding="utf-8") as out:
                for number, raw in enumerate(source):
                    if op.cancel_requested or count == stop:
                        break
                    if not raw.strip():
                        continue
                    try:
                        variables = json.loads(raw)
                        result = admin_api.run_document(ctx, document, variables)
                    except ValueError as exc:
                        result = {"errors": [{"message": f"Invalid JSON on line: {exc}"}]}
                    result["__lineNumber"] = number
                    out.write(dumps(result) + "\n")
                    count += 1
            op.object_count = op.root_object_count = count
            op.path = path
            op.file_size = path.stat().st_size
            self._hold(op)
            self._finish(op, outcome)
        except Exception:
            log.exception("bulk mutation %s failed", op.id)
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            op.completed_at = _now()
            self._notify(op)

    # -- signed URLs ------------------------------------------------------------------------
    def _sign(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def signed_url(self, op: BulkOperation) -> str:
        expires = int(time.time() + self.url_ttl)
        signature = self._sign(f"{op.id}:{expires}")
        return (
            f"{self._base_url()}/_sandbox/bulk-results/{op.id}.jsonl"
            f"?Expires={expires}&Signature={signature}"
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/bulk-results/{op_id:int}.jsonl", self._download, methods=["GET"]),
            Route("/_sandbox/staged-uploads/", self._upload, methods=["POST"]),
        ]

    def _download(self, request: Request) -> Response:
        number = request.path_params["op_id"]
        expires = request.query_params.get("Expires", "")
        signature = request.query_params.get("Signature", "")
        if not expires.isdigit() or not hmac.compare_digest(
            signature, self._sign(f"{number}:{expires}")
        ):
            return _xml_error(403, "SignatureDoesNotMatch", "Access denied.")
        if int(expires) < time.time():
            return _xml_error(400, "ExpiredToken", "Invalid argument.")
        with self._lock:
            op = self._ops.get(number)
        if op is None or op.path is None or not op.path.exists():
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
        if self.faults.take_truncation():
            return _truncated(op.path)
        return FileResponse(op.path, media_type="application/jsonl")

    async def _upload(self, request: Request) -> Response:
        form = await request.form(max_part_size=100 * 1024 * 1024)
        key = str(form.get("key") or "")
        policy = str(form.get("policy") or "")
        signature = str(form.get("x-goog-signature") or "")
        if not key or not hmac.compare_digest(signature, self._sign(f"upload:{key}:{policy}")):
            return _xml_error(403, "AccessDenied", "Invalid upload signature.")
        if policy.isdigit() and int(policy) < time.time():
            return _xml_error(400, "ExpiredToken", "Invalid argument.")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _xml_error(400, "InvalidArgument", "A 'file' field is required.")
        data = await upload.read()
        if len(data) > 100 * 1024 * 1024:
            return _xml_error(400, "EntityTooLarge", "Your proposed upload exceeds 100 MB.")
        self.store_upload(key, data)
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><PostResponse>"
            f"<Location>{request.url}{key}</Location><Bucket>shopify-staged-uploads</Bucket>"
            f"<Key>{key}</Key></PostResponse>"
        )
        return Response(body, status_code=201, media_type="application/xml")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _row_count(upload: Path) -> int:
    """Rows (non-blank lines) in a bulk mutation's variables file."""
    with upload.open(encoding="utf-8") as source:
        return sum(1 for raw in source if raw.strip())


def _xml_error(status: int, code: str, message: str) -> Response:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def _truncated(path: Path) -> Response:
    """Half the file under the full Content-Length: the connection drops mid-download."""
    size = path.stat().st_size
    data = path.read_bytes()[: max(1, size // 2)]

    async def body() -> Any:
        yield data

    return StreamingResponse(
        body(),
        media_type="application/jsonl",
        headers={"content-length": str(size)},
    )


def finish_payload(op: BulkOperation) -> dict[str, Any]:
    """The ``bulk_operations/finish`` webhook body."""
    return {
        "admin_graphql_api_id": gid("BulkOperation", op.id),
        "completed_at": admin_api.iso(op.completed_at),
        "created_at": admin_api.iso(op.created_at),
        "error_code": op.error_code.lower() if op.error_code else None,
        "status": op.status.lower(),
        "type": op.type.lower(),
    }
