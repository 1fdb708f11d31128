"""Fixtures for the generator-backed sandbox, the live-store CLI and the demo.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``generated_sandbox``: a started :class:`ShopifySandbox` serving a generated linen shop
  (function scope), as ``(sandbox, shop_domain)``.
- ``running_demo``: the whole demo (module scope) on a database of its own — both stand-ins,
  the app with its worker, installed on the generated shop and synced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldpan_sandbox.demo import Demo, start_demo
from goldpan_sandbox.generator import generate_store
from goldpan_sandbox.shopify import ShopifySandbox
from tests.conftest import TEST_API_KEY, TEST_API_SECRET, fresh_database

DEMO_AS_OF = dt.date(2026, 11, 23)


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


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # Its own database: the session's is emptied before each test, the demo's rows must last
    # the module.
    workdir = tmp_path_factory.mktemp("demo")
    with fresh_database(workdir) as database_url:
        demo = start_demo(
            customers=60,
            seed=3,
            database_url=database_url,
            workdir=workdir,
            as_of=DEMO_AS_OF,
            sync_timeout=60,
        )
        try:
            yield demo
        finally:
            demo.stop()
