"""A small Shopify stand-in for the sync and admin tests, served over loopback HTTP.

It answers the documents in ``shopify_app/graphql/`` by operation name with Shopify-shaped
bodies (``extensions.cost.throttleStatus`` included), runs bulk operations whose result is a
JSONL file the test provides, accepts staged uploads, refreshes tokens, and can be scripted to
answer a sequence of faults first (THROTTLED, 429 with Retry-After, 503, slow answers).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from goldpan_sandbox.server import start_server
from shopify_app.jobs import Context

Scripted = Callable[[dict[str, Any]], Response] | Response

_OPERATION = re.compile(r"^(?:query|mutation)\s+(\w+)", re.MULTILINE)


def throttle(available: float = 1000, maximum: float = 1000, restore: float = 50) -> dict[str, Any]:
    return {
        "maximumAvailable": maximum,
        "currentlyAvailable": available,
        "restoreRate": restore,
    }


def graphql_body(
    data: Any, *, requested: int = 10, actual: int | None = None, **status: float
) -> dict[str, Any]:
    return {
        "data": data,
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": requested if actual is None else actual,
                "throttleStatus": throttle(**status),
            }
        },
    }


def throttled_body(requested: int = 100, available: float = 0) -> dict[str, Any]:
    return {
        "errors": [
            {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": ""}}
        ],
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": None,
                "throttleStatus": throttle(available=available),
            }
        },
    }


@dataclass
class BulkOp:
    id: str
    resource: str
    statuses: deque[str]
    status: str = "CREATED"
    error_code: str | None = None
    type: str = "QUERY"

    def advance(self) -> None:
        if self.statuses:
            self.status = self.statuses.popleft()


@dataclass
class FakeShopify:
    """State and script of the stand-in; ``url`` is set once the server runs."""

    url: str = ""
    script: deque[Scripted] = field(default_factory=deque)
    calls: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # resource → JSONL
    truncate: dict[str, int] = field(default_factory=dict)  # resource → bytes actually sent
    bulk_plan: dict[str, list[str]] = field(default_factory=dict)  # first export: status per poll
    ops: dict[str, BulkOp] = field(default_factory=dict)
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "customers" → nodes
    uploads: list[dict[str, Any]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=lambda: {"shpat_test"})
    refreshed: int = 0
    delay: float = 0.0  # seconds each GraphQL answer takes (timeouts)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def base_for(self, shop: str) -> str:
        return f"{self.url}/shops/{shop}"

    def operation_names(self) -> list[str]:
        return [c["operation"] for c in self.calls]

    # --- handlers ----------------------------------------------------------------------------

    async def graphql(self, request: Request) -> Response:
        body = await request.json()
        match = _OPERATION.search(body.get("query", ""))
        operation = match.group(1) if match else "anonymous"
        call = {
            "operation": operation,
            "variables": body.get("variables") or {},
            "token": request.headers.get("X-Shopify-Access-Token"),
            "at": time.monotonic(),
        }
        with self.lock:
            self.calls.append(call)
            scripted = self.script.popleft() if self.script else None
        if self.delay:
            time.sleep(self.delay)
        if call["token"] not in self.valid_tokens:
            return JSONResponse({"errors": "[API] Invalid API key or access token"}, 401)
        if scripted is not None:
            return scripted if isinstance(scripted, Response) else scripted(call)
        return JSONResponse(graphql_body(self.answer(operation, call["variables"])))

    def answer_call(self, call: dict[str, Any]) -> Response:
        """The normal answer (script entries use it to let some calls through)."""
        return JSONResponse(graphql_body(self.answer(call["operation"], call["variables"])))

    def answer(self, operation: str, variables: dict[str, Any]) -> Any:
        if operation == "Shop":
            return {"shop": {"id": "gid://shopify/Shop/1", "name": "Test", "currencyCode": "EUR"}}
        if operation == "BulkOperationRunQuery":
            resource = (
                re.search(r"^query Bulk(\w+)", variables["query"], re.MULTILINE).group(1).lower()
            )  # type: ignore[union-attr]
            op_id = f"gid://shopify/BulkOperation/{next(self._ids)}"
            plan = self.bulk_plan.pop(resource, ["COMPLETED"])  # later exports just work
            self.ops[op_id] = BulkOp(op_id, resource, deque(plan), status="CREATED")
            return {
                "bulkOperationRunQuery": {
                    "bulkOperation": {"id": op_id, "status": "CREATED", "createdAt": _now()},
                    "userErrors": [],
                }
            }
        if operation == "BulkOperation":
            op = self.ops.get(variables["id"])
            if op is None:
                return {"bulkOperation": None}
            op.advance()
            return {"bulkOperation": self.describe(op)}
        if operation == "BulkOperationsRunning":
            return {
                "bulkOperations": {
                    "nodes": [
                        {
                            "id": o.id,
                            "type": o.type,
                            "status": o.status,
                            "objectCount": "0",
                            "createdAt": _now(),
                        }
                        for o in self.ops.values()
                        if o.status in ("CREATED", "RUNNING")
                    ]
                }
            }
        if operation == "StagedUploadsCreate":
            return {
                "stagedUploadsCreate": {
                    "stagedTargets": [
                        {
                            "url": f"{self.url}/upload",
                            "resourceUrl": None,
                            "parameters": [
                                {"name": "key", "value": "tmp/1/bulk/vars.jsonl"},
                                {"name": "policy", "value": "p0l1cy"},
                            ],
                        }
                    ],
                    "userErrors": [],
                }
            }
        if operation == "BulkOperationRunMutation":
            op_id = f"gid://shopify/BulkOperation/{next(self._ids)}"
            self.ops[op_id] = BulkOp(op_id, "mutation", deque(), status="CREATED", type="MUTATION")
            self.uploads.append({"run": variables})
            return {
                "bulkOperationRunMutation": {
                    "bulkOperation": {"id": op_id, "status": "CREATED", "createdAt": _now()},
                    "userErrors": [],
                }
            }
        page = {"CustomersPage": "customers", "OrdersPage": "orders", "ProductsPage": "products"}
        if operation in page:
            key = page[operation]
            nodes = self.pages.get(key, [])
            start = int(variables.get("after") or 0)
            chunk = nodes[start : start + int(variables["first"])]
            end = start + len(chunk)
            return {
                key: {
                    "pageInfo": {"hasNextPage": end < len(nodes), "endCursor": str(end)},
                    "nodes": chunk,
                }
            }
        raise AssertionError(f"the stand-in does not answer {operation}")

    def describe(self, op: BulkOp) -> dict[str, Any]:
        lines = self.files.get(op.resource, b"").count(b"\n")
        done = op.status == "COMPLETED"
        return {
            "id": op.id,
            "type": op.type,
            "status": op.status,
            "errorCode": op.error_code,
            "objectCount": str(lines),
            "rootObjectCount": str(lines),
            "fileSize": str(len(self.files.get(op.resource, b""))),
            "url": f"{self.url}/files/{op.resource}.jsonl" if done else None,
            "partialDataUrl": None,
            "createdAt": _now(),
            "completedAt": _now() if done else None,
        }

    async def download(self, request: Request) -> Response:
        resource = request.path_params["name"]
        data = self.files.get(resource, b"")
        cut = self.truncate.pop(resource, None)
        if cut is None:
            return Response(data, media_type="application/jsonl")

        async def partial() -> Any:
            yield data[:cut]
            raise ConnectionError("connection dropped")

        # A streamed body that dies: the client sees the chunked transfer end abnormally.
        return StreamingResponse(partial(), media_type="application/jsonl")

    async def upload(self, request: Request) -> Response:
        form = await request.form()
        file = form["file"]
        content = await file.read()  # type: ignore[union-attr]
        self.uploads.append(
            {"fields": {k: v for k, v in form.items() if k != "file"}, "content": content}
        )
        return Response(status_code=201)

    async def token(self, request: Request) -> Response:
        self.refreshed += 1
        new = f"shpat_refreshed_{self.refreshed}"
        self.valid_tokens.add(new)
        return JSONResponse(
            {
                "access_token": new,
                "scope": "read_customers,write_customers,read_orders,read_products",
                "expires_in": 3600,
                "refresh_token": f"shprt_{self.refreshed}",
                "refresh_token_expires_in": 7776000,
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/shops/{shop}/admin/api/2026-10/graphql.json", self.graphql, methods=["POST"]
                ),
                Route("/shops/{shop}/admin/oauth/access_token", self.token, methods=["POST"]),
                Route("/files/{name}.jsonl", self.download),
                Route("/upload", self.upload, methods=["POST"]),
            ]
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@pytest.fixture(scope="session")
def fake_server_session() -> Iterator[tuple[Any, FakeShopify]]:
    holder: dict[str, FakeShopify] = {"fake": FakeShopify()}

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        await holder["fake"].app()(scope, receive, send)

    server = start_server(dispatch)
    yield server, holder  # type: ignore[misc]
    server.stop()


@pytest.fixture
def fake_shopify(fake_server_session: Any) -> FakeShopify:
    """A fresh stand-in state per test, on the session's loopback server."""
    server, holder = fake_server_session
    fake = FakeShopify(url=server.url)
    holder["fake"] = fake
    return fake


class RecordingContext(Context):
    """A Context whose enqueued tasks are recorded instead of run (tests inspect them)."""

    enqueued: list[tuple[str, dict[str, Any]]]

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self.enqueued.append((name, kwargs))


@pytest.fixture
def sync_ctx(ctx: Context, fake_shopify: FakeShopify) -> RecordingContext:
    """The test context pointed at the stand-in, recording what it enqueues."""
    settings = ctx.settings.with_overrides(shopify_base_url=f"{fake_shopify.url}/shops/{{shop}}")
    recording = RecordingContext(
        settings=settings, engine=ctx.engine, sessions=ctx.sessions, cipher=ctx.cipher
    )
    recording.enqueued = []
    return recording


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def bulk_customer(number: int, *, updated: str = "2026-10-01T10:00:00Z", **extra: Any) -> dict:
    row: dict[str, Any] = {
        "id": gid("Customer", number),
        "firstName": f"First{number}",
        "lastName": "Ünal" if number % 2 else "Smith",
        "defaultEmailAddress": {
            "emailAddress": f"c{number}@example.com",
            "marketingState": "SUBSCRIBED" if number % 3 else "NOT_SUBSCRIBED",
        },
        "defaultPhoneNumber": None
        if number % 4
        else {
            "phoneNumber": f"+3361234{number:04d}",
            "smsMarketingConsent": {"state": "SUBSCRIBED"},
        },
        "defaultAddress": {
            "countryCodeV2": "FR",
            "provinceCode": None,
            "city": "Lyon",
            "zip": "69001",
            "company": "Acme" if number % 5 == 0 else None,
        },
        "tags": ["vip"] if number % 7 == 0 else [],
        "numberOfOrders": "2",
        "amountSpent": {"amount": "120.50", "currencyCode": "EUR"},
        "statistics": {"rfmGroup": "LOYAL", "predictedSpendTier": "HIGH"},
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": updated,
    }
    row.update(extra)
    return row


def bulk_order(number: int, customer: int | None, *, updated: str = "2026-10-01T10:00:00Z") -> dict:
    return {
        "id": gid("Order", number),
        "name": f"#{1000 + number}",
        "email": None,
        "customer": {"id": gid("Customer", customer)} if customer else None,
        "createdAt": "2026-03-01T12:00:00Z",
        "processedAt": "2026-03-01T12:00:00Z",
        "updatedAt": updated,
        "cancelledAt": None,
        "test": False,
        "currentTotalPriceSet": {"shopMoney": {"amount": "59.90", "currencyCode": "EUR"}},
        "discountCodes": ["WELCOME"] if number % 2 else [],
        "billingAddress": {"company": None},
    }


def bulk_line_item(number: int, order: int) -> dict:
    return {
        "id": gid("LineItem", number),
        "title": f"Item {number}",
        "sku": f"SKU-{number % 5}",
        "quantity": 2,
        "currentQuantity": 2,
        "product": {"id": gid("Product", number % 5 + 1)},
        "variant": {"id": gid("ProductVariant", number % 5 + 1)},
        "discountedTotalSet": {"shopMoney": {"amount": "29.95"}},
        "__parentId": gid("Order", order),
    }


def bulk_store(customers: int = 20, orders: int = 30) -> dict[str, list[dict[str, Any]]]:
    """Bulk JSONL objects per resource; some line items come *before* their order."""
    order_lines: list[dict[str, Any]] = []
    item = 1
    for number in range(1, orders + 1):
        children = [bulk_line_item(item + k, number) for k in range(1 + number % 3)]
        item += len(children)
        parent = bulk_order(number, customer=(number % customers) + 1 if number % 6 else None)
        order_lines += [*children, parent] if number % 4 == 0 else [parent, *children]
    product_lines: list[dict[str, Any]] = []
    for number in range(1, 6):
        product_lines.append(
            {
                "id": gid("Product", number),
                "title": f"Product {number}",
                "handle": f"product-{number}",
                "productType": "Tea",
                "vendor": "Goldpan",
                "status": "ACTIVE",
                "updatedAt": "2026-09-01T00:00:00Z",
            }
        )
        product_lines.append(
            {
                "id": gid("ProductVariant", number),
                "title": "Default",
                "sku": f"SKU-{number - 1}",
                "price": "14.97",
                "__parentId": gid("Product", number),
            }
        )
    return {
        "customers": [bulk_customer(n) for n in range(1, customers + 1)],
        "orders": order_lines,
        "products": product_lines,
    }
