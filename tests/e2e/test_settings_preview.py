"""The settings page in headless Chromium: a change that moves tags is shown before it applies.

The page's own app (``tests.fixtures_api.preview_server``: a seeded shop whose VIP and True fans
segments sync their tags) on loopback; queued jobs are recorded, not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.test_page import CHROMIUM_ARGS
from tests.fixtures_api import preview_server, session_token

pytestmark = pytest.mark.e2e

CUSTOMERS = 120
VIPS = CUSTOMERS // 10  # the seeded VIP segment: the top tenth by spend


class Recorded:
    """Stands in for the job queue: the API's follow-up jobs are recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[str, str, Recorded]]:
    queue = Recorded()
    with preview_server(tmp_path, customers=CUSTOMERS, runtime=queue) as (url, domain, _ctx):
        yield url, domain, queue


@pytest.fixture
def page(browser: Browser, app: tuple[str, str, Recorded]) -> Iterator[Page]:
    url, domain, _ = app
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.route(re.compile(r"^https://cdn\.shopify\.com/.*"), lambda route: route.abort())
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{url}/?shop={domain}&demo=1&locale=en#/settings")
    tab.wait_for_selector("body[data-view='settings']", timeout=30_000)
    yield tab
    context.close()
    assert errors == [], errors


def _prefix(app: tuple[str, str, Recorded]) -> str:
    url, domain, _ = app
    headers = {"Authorization": f"Bearer {session_token(domain)}"}
    body = requests.get(f"{url}/api/settings", headers=headers, timeout=10).json()
    return str(body["settings"]["tag_prefix"])


def test_a_prefix_change_is_previewed_and_applies_only_when_confirmed(
    page: Page, app: tuple[str, str, Recorded]
) -> None:
    prefix = page.locator("[data-setting='tag_prefix']")
    # The store tags its business customers "wholesale": a prefix that reads like it is refused.
    prefix.fill("wholesale-")
    page.locator("[data-action='save']").click()
    expect(page.locator("[data-field='tag_prefix'] .gp-field-error")).to_contain_text(
        "“wholesale” is already a tag in your store"
    )

    prefix.fill("gp-")
    page.locator("[data-action='save']").click()
    dialog = page.locator("dialog.gp-dialog")
    expect(dialog.locator("[data-tag='gp-vip']")).to_contain_text(f"added to {VIPS},")
    dialog.locator("[data-action='cancel']").click()
    expect(page.locator("s-banner[tone='info']")).to_contain_text("Nothing was changed")
    assert _prefix(app) == "goldpan-" and app[2].calls == []

    page.locator("[data-action='save']").click()
    page.locator("dialog.gp-dialog [data-action='confirm']").click()
    expect(page.locator("s-banner[tone='success']")).to_be_visible()
    assert _prefix(app) == "gp-"
    assert [(name, kw.get("old_prefix")) for name, kw in app[2].calls] == [
        ("segments.recompute_shop", None),
        ("tags.prefix_changed", "goldpan-"),
    ]
