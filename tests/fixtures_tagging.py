"""Fixtures for the tagging tests: shops on the Shopify sandbox, over loopback HTTP.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``tag_sandbox``: a started :class:`ShopifySandbox` shared by the test module; shops are added
  per test, each with its own cost bucket;
- ``make_tag_env``: a factory for a fresh installed shop on it (keyword arguments become
  ``Shop.settings``), usable inside hypothesis examples; the sandbox's faults and plan are reset
  after the test;
- ``tag_env``: one such shop.

The code under test talks to the sandbox only through the real
:class:`~shopify_app.shopify.client.AdminClient`. :class:`TagEnv` reads Shopify's side from the
sandbox's store, edits customers as the merchant does in the admin, and plays the
``customers/update`` deliveries that bring Shopify's tags back into Goldpan's database.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from goldpan_sandbox.control import edit_customer
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Customer as SandboxCustomer
from goldpan_sandbox.store import Store
from shopify_app.db.models import Customer, Membership, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.shopify.client import AdminClient
from shopify_app.tagging import ledger
from tests.conftest import TEST_API_KEY, TEST_API_SECRET


class CountingSession(requests.Session):
    """A real HTTP session that counts the Admin API requests it sends (for "zero calls")."""

    def __init__(self) -> None:
        super().__init__()
        self.graphql_calls = 0

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if str(url).endswith("/graphql.json"):
            self.graphql_calls += 1
        return super().post(url, *args, **kwargs)


@dataclass
class TagEnv:
    """One shop wired to the sandbox: a context whose Shopify URL is the loopback server."""

    ctx: Context
    shop: Shop
    sandbox: ShopifySandbox
    client: AdminClient
    http: CountingSession

    @property
    def calls(self) -> int:
        """Admin GraphQL requests sent so far (retries included)."""
        return self.http.graphql_calls

    @property
    def store(self) -> Store:
        """The shop's data on the sandbox: what Shopify has."""
        return self.sandbox.store(self.shop.domain)

    def shopify_tags(self) -> dict[int, list[str]]:
        with self.store.lock:
            return {c.id: list(c.tags) for c in self.store.customers.values()}

    def native_segments(self) -> dict[str, str]:
        return {f"gid://shopify/Segment/{s.id}": s.query for s in self.store.segments.values()}

    def seed(
        self,
        customers: dict[int, list[str]],
        segments: dict[str, tuple[bool, set[int]]],
        *,
        renamed: dict[str, str] | None = None,
        written: dict[int, list[str]] | None = None,
    ) -> dict[str, int]:
        """Customers (same tags here and in Shopify); segments: handle → (tag_sync, members);
        ``written``: tags among the customers' that Goldpan wrote earlier (its ledger)."""
        ids: dict[str, int] = {}
        now = dt.datetime.now(dt.UTC)
        with self.ctx.sessions.begin() as session:
            for customer_id, tags in customers.items():
                session.add(Customer(shop_id=self.shop.id, id=customer_id, tags=list(tags)))
                self.store.add_customer(
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
            pairs = [(cid, tag) for cid, tags in (written or {}).items() for tag in tags]
            ledger.record(session, self.shop.id, added=pairs)
        return ids

    def written(self) -> dict[int, set[str]]:
        """Customer id → the tags Goldpan's ledger says it wrote (as Shopify compares them)."""
        with self.ctx.sessions() as session:
            return {
                cid: set(tags) for cid, tags in ledger.owned(session, self.shop.id, None).items()
            }

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

    def merchant_sets_tags(self, customer_id: int, tags: list[str]) -> None:
        """The merchant saves the customer's tags in the admin (Shopify's side only: Goldpan
        hears of it when its ``customers/update`` arrives, see :meth:`echo`)."""
        edit_customer(self.sandbox, self.shop.domain, customer_id, {"tags": list(tags)})

    def echo(self, customer_ids: Iterable[int] | None = None) -> None:
        """What customers/update deliveries do: store Shopify's tags locally (all customers,
        or ``customer_ids``)."""
        shopify = self.shopify_tags()
        chosen = set(shopify) if customer_ids is None else set(customer_ids)
        with self.ctx.sessions.begin() as session:
            for customer_id in chosen:
                row = session.get(Customer, (self.shop.id, customer_id))
                if row is not None and list(row.tags) != shopify[customer_id]:
                    row.tags = list(shopify[customer_id])

    def wait_for_bulk(self) -> None:
        """Block until every bulk operation of the shop has ended on the sandbox (what a
        ``bulk_operations/finish`` webhook means)."""
        for operation in self.sandbox.bulk.operations(self.shop.domain):
            if not self.sandbox.bulk.wait(operation):
                raise AssertionError(f"bulk operation {operation.id} never ended")


@pytest.fixture(scope="module")
def tag_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopifySandbox]:
    """The Shopify sandbox, one server for the module; shops are added per test."""
    sandbox = ShopifySandbox(
        TEST_API_KEY, TEST_API_SECRET, workdir=tmp_path_factory.mktemp("tag-sandbox"), seed=11
    )
    sandbox.start()
    yield sandbox
    sandbox.close()


def _fast_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.02))


_domain_numbers = itertools.count(1)


@pytest.fixture
def make_tag_env(
    ctx: Context, make_shop: Any, tag_sandbox: ShopifySandbox
) -> Iterator[Callable[..., TagEnv]]:
    """A factory for fresh shops on the sandbox, installed with a live expiring token."""

    def factory(**shop_settings: Any) -> TagEnv:
        # The sandbox serves the whole module: a shop name no earlier test gave it.
        domain = f"tags-{next(_domain_numbers)}.myshopify.com"
        tag_sandbox.add_shop(domain, Store(domain))
        token = str(tag_sandbox.install(domain)["access_token"])
        shop = make_shop(domain, token=token, settings=dict(shop_settings))
        settings = ctx.settings.with_overrides(shopify_base_url=tag_sandbox.shop_base("{shop}"))
        tctx = Context(
            settings=settings, engine=ctx.engine, sessions=ctx.sessions, cipher=ctx.cipher
        )
        http = CountingSession()
        client = AdminClient(tctx, shop.id, http=http, sleep=_fast_sleep)
        return TagEnv(ctx=tctx, shop=shop, sandbox=tag_sandbox, client=client, http=http)

    yield factory
    tag_sandbox.faults.clear()
    tag_sandbox.set_plan(2000.0, 100.0)


@pytest.fixture
def tag_env(make_tag_env: Callable[..., TagEnv]) -> TagEnv:
    """One fresh shop on the sandbox."""
    return make_tag_env()
