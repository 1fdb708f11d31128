"""Fixtures for the generator-backed sandbox, the live-store CLI and the demo.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``generated_sandbox``: a started :class:`ShopifySandbox` serving a generated linen shop
  (function scope), as ``(sandbox, shop_domain)``.
- ``running_demo``: the whole demo (module scope) on a database of its own — both stand-ins,
  the app with its worker, installed on the generated shop and synced; :func:`module_demo`
  starts one with other options for a module's own fixture.
- ``demo``: a larger demo (150 customers, module scope) for the page's e2e tests; a module may
  override it with its own.
- ``seeded_page``: the real app (``create_app`` with the demo's :class:`SandboxAdmin`) on
  loopback against a running Shopify sandbox, for a shop installed with the sandbox's tokens
  and filled by :func:`~tests.fixtures_api.seed_shop` (function scope, the session's
  database). Queued jobs wait in an in-memory queue that nothing consumes, so a test sees
  exactly what the app queued (:func:`~tests.fixtures_auth.pending_tasks`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.demo import Demo, SandboxAdmin, page_url, start_demo
from goldpan_sandbox.generator import generate_store
from goldpan_sandbox.oauth import host_param
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Store
from shopify_app.crypto import TokenCipher
from shopify_app.jobs import Context, Runtime
from shopify_app.settings import Settings
from tests.conftest import TEST_API_KEY, TEST_API_SECRET, fresh_database
from tests.fixtures_api import seed_shop, serving

DEMO_AS_OF = dt.date(2026, 11, 23)
SEEDED_SHOP = "aegean-linen.myshopify.com"
SEEDED_CUSTOMERS = 120


@pytest.fixture
def generated_sandbox(tmp_path: Path) -> Iterator[tuple[ShopifySandbox, str]]:
    domain = "generated.myshopify.com"
    sandbox = ShopifySandbox(TEST_API_KEY, TEST_API_SECRET, workdir=tmp_path / "bulk", seed=5)
    sandbox.add_shop(domain, generate_store(domain, customers=80, seed=5, as_of=DEMO_AS_OF))
    sandbox.start()
    try:
        yield sandbox, domain
    finally:
        sandbox.close()


@contextmanager
def module_demo(
    tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any
) -> Iterator[Demo]:
    """A running demo (``start_demo(**options)``) on a database of its own, for a module-scoped
    fixture: the session's database is emptied before each test, a demo's rows must last."""
    workdir = tmp_path_factory.mktemp(name)
    with fresh_database(workdir) as database_url:
        running = start_demo(database_url=database_url, workdir=workdir, **options)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with module_demo(tmp_path_factory, "page-demo", customers=150, seed=11, sync_timeout=90) as d:
        yield d


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with module_demo(
        tmp_path_factory, "demo", customers=60, seed=3, as_of=DEMO_AS_OF, sync_timeout=60
    ) as demo:
        yield demo


@dataclass(frozen=True)
class SeededPage:
    """The app serving ``shop``'s page: ``page_url`` opens it as the demo does (shim on)."""

    app_url: str
    page_url: str
    shop: str
    customers: int
    ctx: Context
    sandbox: ShopifySandbox


@pytest.fixture
def seeded_page(
    tmp_path: Path,
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    cipher: TokenCipher,
    make_shop: Any,
) -> Iterator[SeededPage]:
    sandbox = ShopifySandbox(TEST_API_KEY, TEST_API_SECRET, workdir=tmp_path / "bulk", seed=7)
    sandbox.add_shop(SEEDED_SHOP, Store(SEEDED_SHOP, name="Aegean Linen Co."))
    sandbox.start()
    try:
        ctx = Context(
            settings=settings.with_overrides(shopify_base_url=sandbox.shop_base()),
            engine=engine,
            sessions=sessions,
            cipher=cipher,
        )
        Runtime(ctx, MemoryHuey("goldpan-page", immediate=False))
        # Installed with a live token set from the sandbox (as token exchange would store it),
        # without queueing an initial sync: the store's rows come from seed_shop.
        tokens = sandbox.install(SEEDED_SHOP)
        now = dt.datetime.now(dt.UTC)
        shop = make_shop(
            SEEDED_SHOP,
            token=tokens["access_token"],
            refresh_token=cipher.encrypt(tokens["refresh_token"]),
            access_token_expires_at=now + dt.timedelta(seconds=tokens["expires_in"]),
            refresh_token_expires_at=now + dt.timedelta(seconds=tokens["refresh_token_expires_in"]),
            scopes=tokens["scope"],
            name="Aegean Linen Co.",
            currency="USD",
        )
        seed_shop(sessions, shop.id, customers=SEEDED_CUSTOMERS, seed=7)
        with serving(ctx, admin=SandboxAdmin(sandbox.base_url)) as url:
            yield SeededPage(
                app_url=url,
                page_url=page_url(url, SEEDED_SHOP, host_param(SEEDED_SHOP)),
                shop=SEEDED_SHOP,
                customers=SEEDED_CUSTOMERS,
                ctx=ctx,
                sandbox=sandbox,
            )
    finally:
        sandbox.close()
