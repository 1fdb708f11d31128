"""A small Shopify stand-in for the tagging tests, served over loopback HTTP.

It executes the app's real documents with graphql-core against Shopify's published schema
(unknown fields, wrong variables and invalid documents fail as they would at Shopify), keeps
each shop's customer tags with Shopify's rules (trimmed, case-insensitive, at most 250), charges
a leaky-bucket cost (10 points per mutation field that runs, 2 per query), answers ``THROTTLED``
when the bucket is short, runs bulk mutations over staged JSONL uploads and writes result files
with ``__lineNumber``. Faults are scripted: ``faults`` (``"throttle"``, ``"503"``, ``"429"``) are
answered before the next requests; ``bulk_faults`` (``"fail"``) fail the next bulk operation
half-way; ``flaky`` customer ids answer ``userErrors`` once.

The full sandbox (``tests/fixtures_sandbox.py``) replaces this once it serves tag mutations; the
tests only talk HTTP to it through the real :class:`shopify_app.shopify.client.AdminClient`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import pytest
import requests
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableNode,
    build_client_schema,
    execute,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldpan_sandbox.server import start_server
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Customer as SandboxCustomer
from goldpan_sandbox.store import Store
from shopify_app.db.models import Customer, Membership, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.shopify.client import AdminClient
from tests.conftest import SCHEMA_PATH, TEST_API_KEY, TEST_API_SECRET, unique_shop_domain

MAX_TAGS = 250


@cache
def admin_schema() -> GraphQLSchema:
    with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return build_client_schema(data["data"], assume_valid=True)


def _included(node: FieldNode, variables: dict[str, Any]) -> bool:
    """Whether ``@include``/``@skip`` let this field run (fields skipped are not charged)."""
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("include", "skip"):
            continue
        arg = next((a for a in directive.arguments if a.name.value == "if"), None)
        if arg is None:
            continue
        value = arg.value
        flag = (
            bool(variables.get(value.name.value))
            if isinstance(value, VariableNode)
            else bool(getattr(value, "value", False))
        )
        if (name == "include") != flag:
            return False
    return True


def _key(tag: str) -> str:
    return tag.strip().lower()


def _split(tags: list[str]) -> list[str]:
    # Shopify accepts comma-separated strings in the list too.
    return [t.strip() for raw in tags for t in raw.split(",") if t.strip()]


@dataclass
class FakeShop:
    domain: str
    tags: dict[int, list[str]] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    available: float = 2000.0
    maximum: float = 2000.0
    restore: float = 100.0
    as_of: float = field(default_factory=time.monotonic)

    def refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.as_of) * self.restore)
        self.as_of = now


@dataclass
class BulkOp:
    id: str
    shop: str
    status: str
    url: str | None = None
    partial_url: str | None = None
    error_code: str | None = None
    object_count: int = 0


class FakeShopify:
    """The stand-in's state and ASGI app (see the module docstring)."""

    def __init__(self) -> None:
        self.schema = admin_schema()
        self.base = ""
        self.shops: dict[str, FakeShop] = {}
        self.lock = threading.RLock()
        self.faults: deque[str] = deque()
        self.bulk_faults: deque[str] = deque()
        self.flaky: set[int] = set()
        self.calls: Counter[str] = Counter()
        self.mutation_fields = 0
        self.points = 0.0
        self.throttled = 0
        self.uploads: dict[str, bytes] = {}
        self.results: dict[str, bytes] = {}
        self.ops: dict[str, BulkOp] = {}
        self._ids = itertools.count(1)
        self._documents: dict[str, DocumentNode] = {}
        self.app = Starlette(
            routes=[
                Route(
                    "/shops/{shop}/admin/api/{version}/graphql.json",
                    self.graphql,
                    methods=["POST"],
                ),
                Route("/uploads", self.upload, methods=["POST"]),
                Route("/results/{name}", self.result, methods=["GET"]),
            ]
        )

    # -- test helpers ---------------------------------------------------------------------------
    def add_shop(self, domain: str, *, restore: float = 100.0, maximum: float = 2000.0) -> FakeShop:
        shop = FakeShop(domain, available=maximum, maximum=maximum, restore=restore)
        self.shops[domain] = shop
        return shop

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def reset_counters(self) -> None:
        self.calls.clear()
        self.mutation_fields = 0
        self.points = 0.0
        self.throttled = 0

    # -- HTTP -----------------------------------------------------------------------------------
    async def graphql(self, request: Request) -> Response:
        body = await request.json()
        domain = request.path_params["shop"]
        if request.headers.get("X-Shopify-Access-Token") is None:
            return JSONResponse(
                {"errors": "[API] Invalid API key or access token"}, status_code=401
            )
        with self.lock:
            if self.faults:
                fault = self.faults.popleft()
                self.calls["fault:" + fault] += 1
                if fault in ("503", "502", "500"):
                    return Response("unavailable", status_code=int(fault))
                if fault == "429":
                    return Response("slow down", status_code=429, headers={"Retry-After": "0"})
                if fault == "throttle":
                    self.throttled += 1
                    return JSONResponse(self._throttled(domain, 10))
            return JSONResponse(self.run(domain, body["query"], body.get("variables") or {}))

    async def upload(self, request: Request) -> Response:
        form = await request.form()
        key = str(form["key"])
        upload = form["file"]
        self.uploads[key] = await upload.read()  # type: ignore[union-attr]
        return Response(status_code=201)

    async def result(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.results:
            return Response(status_code=404)
        return Response(self.results[name], media_type="application/jsonl")

    # -- GraphQL --------------------------------------------------------------------------------
    def _document(self, query: str) -> DocumentNode:
        document = self._documents.get(query)
        if document is None:
            document = parse(query)
            errors = validate(self.schema, document)
            if errors:
                raise ValueError("; ".join(e.message for e in errors))
            self._documents[query] = document
        return document

    def _cost(self, document: DocumentNode, variables: dict[str, Any]) -> tuple[int, int]:
        """(requested points, mutation fields that will run)."""
        op = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        if op.operation.value != "mutation":
            return 2, 0
        running = 0
        for sel in op.selection_set.selections:
            if not isinstance(sel, FieldNode):
                continue
            if _included(sel, variables):
                running += 1
        return 10 * running, running

    def _status(self, shop: FakeShop) -> dict[str, Any]:
        return {
            "maximumAvailable": shop.maximum,
            "currentlyAvailable": shop.available,
            "restoreRate": shop.restore,
        }

    def _throttled(self, domain: str, requested: int) -> dict[str, Any]:
        shop = self.shops[domain]
        shop.refill()
        return {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": self._status(shop),
                }
            },
        }

    def run(
        self, domain: str, query: str, variables: dict[str, Any], *, bulk: bool = False
    ) -> dict[str, Any]:
        shop = self.shops[domain]
        try:
            document = self._document(query)
        except ValueError as exc:
            return {"errors": [{"message": str(exc)}]}
        op = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        requested, fields = self._cost(document, variables)
        if not bulk:
            shop.refill()
            if requested > shop.available:
                self.throttled += 1
                return self._throttled(domain, requested)
            shop.available -= requested
            self.points += requested
            self.mutation_fields += fields
            self.calls[op.name.value if op.name else "anonymous"] += 1
        result = execute(
            self.schema, document, root_value=self._root(shop), variable_values=variables
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [{"message": e.message} for e in result.errors]
        if not bulk:
            body["extensions"] = {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": requested,
                    "throttleStatus": self._status(shop),
                }
            }
        return body

    def _root(self, shop: FakeShop) -> dict[str, Any]:
        return {
            "tagsAdd": lambda info, id, tags: self._tags(shop, id, tags, add=True),
            "tagsRemove": lambda info, id, tags: self._tags(shop, id, tags, add=False),
            "segmentCreate": lambda info, name, query: self._segment_create(shop, name, query),
            "segmentUpdate": lambda info, id, name=None, query=None: self._segment_update(
                shop, id, name, query
            ),
            "segments": lambda info, **args: self._segments(shop, args.get("query") or ""),
            "stagedUploadsCreate": lambda info, input: self._staged(input),
            "bulkOperationRunMutation": lambda info, **args: self._bulk(shop, args),
            "bulkOperation": lambda info, id: self._bulk_state(id),
        }

    def _tags(self, shop: FakeShop, gid: str, tags: list[str], *, add: bool) -> dict[str, Any]:
        customer_id = int(gid.rsplit("/", 1)[-1])
        if customer_id not in shop.tags:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Not found"}]}
        if customer_id in self.flaky:
            self.flaky.discard(customer_id)
            return {
                "node": None,
                "userErrors": [{"field": ["id"], "message": "Customer is being updated"}],
            }
        current = shop.tags[customer_id]
        wanted = _split(tags)
        if add:
            present = {_key(t) for t in current}
            new = list(current)
            for tag in wanted:
                if _key(tag) not in present:
                    new.append(tag)
                    present.add(_key(tag))
            if len(new) > MAX_TAGS:
                return {
                    "node": None,
                    "userErrors": [{"field": ["tags"], "message": "Too many tags"}],
                }
        else:
            gone = {_key(t) for t in wanted}
            new = [t for t in current if _key(t) not in gone]
        shop.tags[customer_id] = new
        stamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        node = {"__typename": "Customer", "id": gid, "tags": list(new), "updatedAt": stamp}
        return {"node": node, "userErrors": []}

    def _segment_create(self, shop: FakeShop, name: str, query: str) -> dict[str, Any]:
        gid = f"gid://shopify/Segment/{next(self._ids)}"
        segment = {"id": gid, "name": name, "query": query}
        shop.segments[gid] = segment
        return {"segment": segment, "userErrors": []}

    def _segment_update(
        self, shop: FakeShop, gid: str, name: str | None, query: str | None
    ) -> dict[str, Any]:
        segment = shop.segments.get(gid)
        if segment is None:
            return {"segment": None, "userErrors": [{"field": ["id"], "message": "Not found"}]}
        if name is not None:
            segment["name"] = name
        if query is not None:
            segment["query"] = query
        return {"segment": segment, "userErrors": []}

    def _segments(self, shop: FakeShop, query: str) -> dict[str, Any]:
        name = query.removeprefix("name:").strip("'").replace("\\'", "'")
        nodes = [s for s in shop.segments.values() if not query or s["name"] == name]
        return {"nodes": nodes}

    def _staged(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        targets = []
        for item in inputs:
            key = f"tmp/{next(self._ids)}/{item['filename']}"
            targets.append(
                {
                    "url": f"{self.base}/uploads",
                    "resourceUrl": None,
                    "parameters": [{"name": "key", "value": key}],
                }
            )
        return {"stagedTargets": targets, "userErrors": []}

    def _bulk(self, shop: FakeShop, args: dict[str, Any]) -> dict[str, Any]:
        path = args["stagedUploadPath"]
        if path not in self.uploads:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["stagedUploadPath"], "message": "no file", "code": None}],
            }
        gid = f"gid://shopify/BulkOperation/{next(self._ids)}"
        lines = [json.loads(x) for x in self.uploads[path].splitlines() if x.strip()]
        fail = bool(self.bulk_faults) and self.bulk_faults.popleft() == "fail"
        stop = len(lines) // 2 if fail else len(lines)
        out = []
        for number, variables in enumerate(lines[:stop]):
            answer = self.run(shop.domain, args["mutation"], variables, bulk=True)
            out.append(json.dumps({**answer, "__lineNumber": number}))
        name = f"{gid.rsplit('/', 1)[-1]}.jsonl"
        self.results[name] = ("\n".join(out) + "\n").encode() if out else b""
        op = BulkOp(gid, shop.domain, "FAILED" if fail else "COMPLETED", object_count=len(out))
        if fail:
            op.error_code = "INTERNAL_SERVER_ERROR"
            op.partial_url = f"{self.base}/results/{name}" if out else None
        else:
            op.url = f"{self.base}/results/{name}"
        self.ops[gid] = op
        return {
            "bulkOperation": {"id": gid, "status": "CREATED", "createdAt": "2026-11-23T00:00:00Z"},
            "userErrors": [],
        }

    def _bulk_state(self, gid: str) -> dict[str, Any] | None:
        op = self.ops.get(gid)
        if op is None:
            return None
        return {
            "id": op.id,
            "type": "MUTATION",
            "status": op.status,
            "errorCode": op.error_code,
            "objectCount": str(op.object_count),
            "rootObjectCount": str(op.object_count),
            "fileSize": None,
            "url": op.url,
            "partialDataUrl": op.partial_url,
            "createdAt": "2026-11-23T00:00:00Z",
            "completedAt": "2026-11-23T00:00:01Z",
        }


class CountingSession(requests.Session):
    """A real HTTP session that counts the Admin API requests it sends (for "zero calls")."""

    def __init__(self) -> None:
        super().__init__()
        self.graphql_calls = 0

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if str(url).endswith("/graphql.json"):
            self.graphql_calls += 1
        return super().post(url, *args, **kwargs)


class Backend(Protocol):
    def add_customer(self, domain: str, customer_id: int, tags: list[str]) -> None: ...

    def tags(self, domain: str) -> dict[int, list[str]]: ...

    def segments(self, domain: str) -> dict[str, str]: ...


class FakeBackend:
    def __init__(self, fake: FakeShopify) -> None:
        self.fake = fake

    def add_customer(self, domain: str, customer_id: int, tags: list[str]) -> None:
        self.fake.shops[domain].tags[customer_id] = list(tags)

    def tags(self, domain: str) -> dict[int, list[str]]:
        return {cid: list(t) for cid, t in self.fake.shops[domain].tags.items()}

    def segments(self, domain: str) -> dict[str, str]:
        return {gid: s["query"] for gid, s in self.fake.shops[domain].segments.items()}


class SandboxBackend:
    def __init__(self, sandbox: ShopifySandbox) -> None:
        self.sandbox = sandbox

    def add_customer(self, domain: str, customer_id: int, tags: list[str]) -> None:
        now = dt.datetime.now(dt.UTC)
        self.sandbox.store(domain).add_customer(
            SandboxCustomer(
                id=customer_id,
                first_name=f"C{customer_id}",
                last_name=None,
                email=f"c{customer_id}@example.com",
                phone=None,
                created_at=now,
                updated_at=now,
                tags=list(tags),
            ),
            notify=False,
        )

    def tags(self, domain: str) -> dict[int, list[str]]:
        store = self.sandbox.store(domain)
        with store.lock:
            return {c.id: list(c.tags) for c in store.customers.values()}

    def segments(self, domain: str) -> dict[str, str]:
        store = self.sandbox.store(domain)
        return {f"gid://shopify/Segment/{s.id}": s.query for s in store.segments.values()}


@dataclass
class TagEnv:
    """One shop wired to a Shopify stand-in: a context whose Shopify URL is the loopback server."""

    ctx: Context
    shop: Shop
    backend: Backend
    client: AdminClient
    http: CountingSession

    @property
    def calls(self) -> int:
        """Admin GraphQL requests sent so far (retries included)."""
        return self.http.graphql_calls

    def shopify_tags(self) -> dict[int, list[str]]:
        return self.backend.tags(self.shop.domain)

    def native_segments(self) -> dict[str, str]:
        return self.backend.segments(self.shop.domain)

    def seed(
        self,
        customers: dict[int, list[str]],
        segments: dict[str, tuple[bool, set[int]]],
        *,
        renamed: dict[str, str] | None = None,
    ) -> dict[str, int]:
        """Customers (same tags here and in Shopify); segments: handle → (tag_sync, members)."""
        ids: dict[str, int] = {}
        with self.ctx.sessions.begin() as session:
            for customer_id, tags in customers.items():
                session.add(Customer(shop_id=self.shop.id, id=customer_id, tags=list(tags)))
                self.backend.add_customer(self.shop.domain, customer_id, list(tags))
            session.flush()
            for handle, (sync, members) in segments.items():
                segment = Segment(
                    shop_id=self.shop.id,
                    handle=handle,
                    name=handle.title(),
                    tag=(renamed or {}).get(handle),
                    tag_sync=sync,
                )
                session.add(segment)
                session.flush()
                ids[handle] = segment.id
                for customer_id in members:
                    session.add(
                        Membership(
                            segment_id=segment.id, customer_id=customer_id, shop_id=self.shop.id
                        )
                    )
        return ids

    def set_members(self, segment_id: int, members: set[int]) -> None:
        with self.ctx.sessions.begin() as session:
            session.query(Membership).filter(Membership.segment_id == segment_id).delete()
            for customer_id in members:
                session.add(
                    Membership(segment_id=segment_id, customer_id=customer_id, shop_id=self.shop.id)
                )

    def local_tags(self) -> dict[int, list[str]]:
        with self.ctx.sessions() as session:
            rows = session.query(Customer.id, Customer.tags).filter(
                Customer.shop_id == self.shop.id
            )
            return {cid: list(tags) for cid, tags in rows}

    def echo(self) -> None:
        """What customers/update deliveries do: store Shopify's tags locally (helper D's sync)."""
        shopify = self.shopify_tags()
        with self.ctx.sessions.begin() as session:
            for customer_id, tags in shopify.items():
                row = session.get(Customer, (self.shop.id, customer_id))
                if row is not None and list(row.tags) != tags:
                    row.tags = list(tags)


@pytest.fixture(scope="module")
def fake_shopify() -> Iterator[FakeShopify]:
    fake = FakeShopify()
    server = start_server(fake.app)
    fake.base = server.url
    yield fake
    server.stop()


@pytest.fixture(scope="module")
def tag_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopifySandbox]:
    """Helper B's Shopify sandbox, one server for the module; shops are added per test."""
    sandbox = ShopifySandbox(
        TEST_API_KEY, TEST_API_SECRET, workdir=tmp_path_factory.mktemp("tag-sandbox"), seed=11
    )
    sandbox.start()
    yield sandbox
    sandbox.close()


def _fast_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.02))


def _env(ctx: Context, shop: Shop, base: str, backend: Backend) -> TagEnv:
    settings = ctx.settings.with_overrides(shopify_base_url=base)
    tctx = Context(settings=settings, engine=ctx.engine, sessions=ctx.sessions, cipher=ctx.cipher)
    http = CountingSession()
    client = AdminClient(tctx, shop.id, http=http, sleep=_fast_sleep)
    return TagEnv(ctx=tctx, shop=shop, backend=backend, client=client, http=http)


def make_tag_env(ctx: Context, make_shop: Any, fake: FakeShopify, **shop_settings: Any) -> TagEnv:
    """A fresh shop on the small stand-in (usable inside hypothesis examples too)."""
    shop = make_shop(settings=dict(shop_settings))
    fake.add_shop(shop.domain)
    fake.reset_counters()
    return _env(ctx, shop, f"{fake.base}/shops/{{shop}}", FakeBackend(fake))


def make_sandbox_env(
    ctx: Context, make_shop: Any, sandbox: ShopifySandbox, **shop_settings: Any
) -> TagEnv:
    """A fresh shop on helper B's sandbox, installed with a live expiring token."""
    domain = unique_shop_domain("tags")
    sandbox.add_shop(domain, Store(domain))
    token = str(sandbox.install(domain)["access_token"])
    shop = make_shop(domain, token=token, settings=dict(shop_settings))
    return _env(ctx, shop, sandbox.shop_base("{shop}"), SandboxBackend(sandbox))


@pytest.fixture
def tag_env(ctx: Context, make_shop: Any, fake_shopify: FakeShopify) -> Iterator[TagEnv]:
    yield make_tag_env(ctx, make_shop, fake_shopify)
    fake_shopify.faults.clear()
    fake_shopify.bulk_faults.clear()
    fake_shopify.flaky.clear()


@pytest.fixture
def sandbox_env(ctx: Context, make_shop: Any, tag_sandbox: ShopifySandbox) -> Iterator[TagEnv]:
    yield make_sandbox_env(ctx, make_shop, tag_sandbox)
    tag_sandbox.faults.clear()
    tag_sandbox.set_plan(2000.0, 100.0)


__all__ = [
    "FakeShopify",
    "TagEnv",
    "fake_shopify",
    "make_sandbox_env",
    "make_tag_env",
    "sandbox_env",
    "tag_env",
    "tag_sandbox",
]
