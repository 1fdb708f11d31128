"""Fixtures for the page in headless Chromium: one browser per test session, and tabs that fail
the CDN at once (no internet here) and record page errors.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``browser``: Chromium, launched once per session.
- ``page``: a 1280-px tab (function scope) that fails the test if the page threw.
- :func:`new_tab`: a tab of another width, for tests that manage it themselves.
- :func:`open_view`: load the page as the admin does (bounce, token, reload), then go to a
  route and wait until its view has drawn.
- :func:`wait_until`: poll a condition the page reaches in its own time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.fixtures_scaleout import wait_until as scaleout_wait_until

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_tab(browser: Browser, width: int = 1280) -> tuple[Page, list[str]]:
    """A tab of ``width`` CSS pixels and the list its page errors go to."""
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.route(re.compile(r"^https://cdn\.shopify\.com/.*"), lambda route: route.abort())
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    return tab, errors


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab, errors = new_tab(browser)
    yield tab
    tab.context.close()
    assert errors == [], errors


def open_view(
    page: Page, page_url: str, route: str = "", view: str | None = None, locale: str = "en"
) -> None:
    """Open ``page_url`` in ``locale``, go to ``#/route`` and wait until ``view`` (by default
    the route's first part, or ``home``) has drawn."""
    page.goto(page_url.replace("locale=en", f"locale={locale}"))
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    route = route.removeprefix("#/")
    page.evaluate("r => { location.hash = '#/' + r; }", route)
    shown = view or route.split("/")[0] or "home"
    page.wait_for_selector(f"body[data-view='{shown}']", timeout=30_000)


wait_until = functools.partial(scaleout_wait_until, step=0.5)
""":func:`tests.fixtures_scaleout.wait_until`, polling a page every half second."""
