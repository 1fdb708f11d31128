"""``ShopifySandbox``: a stand-in for Shopify with many shops on one loopback server.

Each shop lives under ``{base}/shops/{shop}`` — point ``SHOPIFY_BASE_URL`` at
``{base}/shops/{shop}`` and the app talks to it exactly as to ``https://{shop}``:

- ``/shops/{shop}/admin/oauth/...``: OAuth, token exchange and refresh (:mod:`oauth`);
- ``POST /shops/{shop}/admin/api/2026-10/graphql.json``: the Admin GraphQL API
  (:mod:`admin_api`), authenticated with ``X-Shopify-Access-Token``, priced and throttled per
  (app, shop) with a leaky bucket (:mod:`cost`), with fault knobs (:mod:`control`);
- bulk result downloads and staged uploads (:mod:`bulk`);
- webhooks to ``app_url`` for every store change (:mod:`delivery`);
- ``/_sandbox/...``: the JSON control API for the CLI, the demo and tests (:mod:`control`).

Usage::

    sandbox = ShopifySandbox(api_key, api_secret, app_url="http://127.0.0.1:8000")
    sandbox.add_shop("linen.myshopify.com", generate_store(...))
    server = sandbox.start()
    settings = settings.with_overrides(shopify_base_url=sandbox.shop_base("{shop}"))
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from goldpan_sandbox import admin_api, control
from goldpan_sandbox.bulk import BulkManager, BulkOperation, finish_payload
from goldpan_sandbox.control import ERROR_BODIES, Faults
from goldpan_sandbox.cost import LeakyBucket, Plan
from goldpan_sandbox.delivery import WebhookDelivery
from goldpan_sandbox.oauth import OAuthServer
from goldpan_sandbox.server import RunningServer, start_server
from goldpan_sandbox.store import Store, shop_number

log = logging.getLogger(__name__)

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


class ShopifySandbox:
    """Shopify's Admin side for any number of sandbox shops, served by one ASGI app."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        app_url: str | None = None,
        webhook_topics: dict[str, str] | None = None,
        *,
        plan: Plan | None = None,
        duplicate_rate: float = 0.0,
        retry_backoff: float = 1.0,
        max_attempts: int = 8,
        workdir: Path | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.oauth = OAuthServer(api_key, api_secret)
        self.faults = Faults()
        self.plan = plan or Plan()
        self.clock = clock
        """What the cost buckets measure time with: a test sharing its fake clock with the app's
        client sees the bucket refill by exactly the seconds the client slept."""
        self.delivery = WebhookDelivery(
            api_secret,
            app_url,
            webhook_topics,
            duplicate_rate=duplicate_rate,
            backoff=retry_backoff,
            max_attempts=max_attempts,
            seed=seed,
        )
        self.bulk = BulkManager(
            secret=api_secret,
            base_url=lambda: self.base_url,
            faults=self.faults,
            on_finish=self._bulk_finished,
            workdir=workdir,
        )
        self._stores: dict[str, Store] = {}
        self._buckets: dict[str, LeakyBucket] = {}
        self._lock = threading.Lock()
        self._server: RunningServer | None = None
        self._base_url: str | None = None
        self.asgi = Starlette(
            routes=[
                *self.oauth.routes,
                Route(
                    "/shops/{shop}/admin/api/{version}/graphql.json",
                    self._graphql,
                    methods=["POST"],
                ),
                *self.bulk.routes(),
                *control.routes(self),
            ]
        )

    # -- shops ------------------------------------------------------------------------------
    def add_shop(self, domain: str, store: Store | None = None) -> Store:
        """Open ``domain`` on the sandbox (an empty store unless one is given)."""
        store = store or Store(domain)
        if store.domain != domain:
            raise ValueError(f"store is for {store.domain}, not {domain}")
        with self._lock:
            if domain in self._stores:
                raise ValueError(f"{domain} already exists on this sandbox")
            self._stores[domain] = store
            self._buckets[domain] = LeakyBucket(self.plan, self.clock)
        self.delivery.watch(store)
        return store

    def store(self, domain: str) -> Store:
        """The store of ``domain``; KeyError when the sandbox has no such shop."""
        return self._stores[domain]

    def domains(self) -> list[str]:
        with self._lock:
            return list(self._stores)

    def bucket(self, domain: str) -> LeakyBucket:
        """The cost bucket of (this app, ``domain``)."""
        return self._buckets[domain]

    def set_plan(self, maximum: float, restore_rate: float) -> None:
        """Change the rate-limit plan of every shop (a knob: Plus, or a tiny bucket)."""
        self.plan = Plan(maximum, restore_rate)
        for bucket in list(self._buckets.values()):
            bucket.set_plan(self.plan)

    def install(self, domain: str) -> dict[str, Any]:
        """Install the app on ``domain`` without a browser; returns an expiring token set."""
        return self.oauth.install(domain)

    def uninstall(self, domain: str) -> None:
        """The merchant removes the app: tokens stop working and ``app/uninstalled`` is sent."""
        self.oauth.uninstall(domain)
        store = self.store(domain)
        self.delivery.send(
            domain,
            "app/uninstalled",
            {
                "id": shop_number(domain),
                "name": store.name,
                "domain": domain,
                "myshopify_domain": domain,
                "currency": store.currency,
                "iana_timezone": store.timezone,
            },
        )

    def redact_customer(self, domain: str, customer_id: int) -> None:
        """Send the ``customers/redact`` compliance webhook (a customer asked to be forgotten)."""
        store = self.store(domain)
        customer = store.customers.get(customer_id)
        self.delivery.send(
            domain,
            "customers/redact",
            {
                "shop_id": shop_number(domain),
                "shop_domain": domain,
                "customer": {
                    "id": customer_id,
                    "email": customer.email if customer else None,
                    "phone": customer.phone if customer else None,
                },
                "orders_to_redact": [o.id for o in store.customer_orders(customer_id)],
            },
        )

    def request_customer_data(self, domain: str, customer_id: int) -> None:
        """Send ``customers/data_request`` (a customer asked for their data)."""
        store = self.store(domain)
        customer = store.customers.get(customer_id)
        self.delivery.send(
            domain,
            "customers/data_request",
            {
                "shop_id": shop_number(domain),
                "shop_domain": domain,
                "orders_requested": [o.id for o in store.customer_orders(customer_id)],
                "customer": {
                    "id": customer_id,
                    "email": customer.email if customer else None,
                    "phone": customer.phone if customer else None,
                },
                "data_request": {"id": store.next_id()},
            },
        )

    def redact_shop(self, domain: str) -> None:
        """Send ``shop/redact`` (48 hours after uninstall, in production)."""
        self.delivery.send(
            domain, "shop/redact", {"shop_id": shop_number(domain), "shop_domain": domain}
        )

    # -- server -----------------------------------------------------------------------------
    @property
    def app_url(self) -> str | None:
        return self.delivery.app_url

    @app_url.setter
    def app_url(self, value: str | None) -> None:
        self.delivery.app_url = value.rstrip("/") if value else None

    def start(self, port: int | None = None) -> RunningServer:
        """Serve on loopback (a free port by default) and start delivering webhooks."""
        if self._server is not None:
            return self._server
        self._server = start_server(self.asgi, port=port)
        self._base_url = self._server.url
        self.delivery.start()
        return self._server

    def stop(self) -> None:
        self.delivery.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def close(self) -> None:
        """Stop and delete bulk files."""
        self.stop()
        self.bulk.close()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        """For an ASGI-only sandbox mounted elsewhere (the demo's own server)."""
        self._base_url = value.rstrip("/")

    def shop_base(self, domain: str = "{shop}") -> str:
        """``SHOPIFY_BASE_URL`` for the app: ``http://127.0.0.1:<port>/shops/{shop}``."""
        return f"{self.base_url}/shops/{domain}"

    def graphql_url(self, domain: str) -> str:
        return f"{self.shop_base(domain)}/admin/api/{admin_api.API_VERSION}/graphql.json"

    # -- requests ---------------------------------------------------------------------------
    async def _graphql(self, request: Request) -> Response:
        headers = {
            "X-Shopify-API-Version": admin_api.API_VERSION,
            "X-Request-Id": str(uuid.uuid4()),
        }
        delay = self.faults.take_delay()
        if delay:
            await asyncio.sleep(delay)
        fault = self.faults.take_http()
        if fault is not None:
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:.1f}"
            return JSONResponse(
                {"errors": ERROR_BODIES.get(fault.status, "Error")}, fault.status, headers
            )
        domain = request.path_params["shop"]
        store = self._stores.get(domain)
        if store is None or request.path_params["version"] != admin_api.API_VERSION:
            return JSONResponse({"errors": "Not Found"}, 404, headers)
        token = request.headers.get("x-shopify-access-token")
        if not self.oauth.authenticate(domain, token):
            return JSONResponse({"errors": INVALID_TOKEN}, 401, headers)
        raw = await request.body()
        try:
            if request.headers.get("content-type", "").startswith("application/graphql"):
                body: Any = {"query": raw.decode()}
            else:
                body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return JSONResponse(
                {"errors": {"query": "Required parameter missing or invalid"}}, 400, headers
            )
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return JSONResponse(
                {"errors": {"variables": "Required parameter missing or invalid"}}, 400, headers
            )
        ctx = admin_api.RequestContext(domain, store, bulk=self.bulk, base_url=self.base_url)
        result = await run_in_threadpool(
            admin_api.execute,
            ctx,
            self._buckets[domain],
            body["query"],
            variables,
            body.get("operationName"),
        )
        return JSONResponse(result, 200, headers)

    def _bulk_finished(self, op: BulkOperation) -> None:
        self.delivery.send(op.domain, "bulk_operations/finish", finish_payload(op))
