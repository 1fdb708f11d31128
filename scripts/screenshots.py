"""Screenshots of every view of the embedded page, in all four languages at 1024 and 390 px.

Runs the whole demo (the Shopify and Meta stand-ins, the app and its worker, a generated linen
shop) on loopback, opens the page in headless Chromium as the admin would, and writes
``docs/screenshots/<view>-<width>-<locale>.png`` (``segments-1024-en.png`` is the README's).
Each shot is checked before it is written: a view that scrolls sideways or shows a raw message
key (an untranslated string) is reported and the script exits 1 — then look at the PNG.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--customers 400]
        [--locales en,ar,el,ko] [--widths 1024,390]

The CDN scripts (App Bridge, Polaris) are unreachable offline; the page then draws its
Polaris-like fallback styles and its own tabs, which is what the screenshots show.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from sqlalchemy import select  # noqa: E402

from goldpan_sandbox.demo import Demo, start_demo  # noqa: E402
from shopify_app.db.models import Membership, Segment  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--font-render-hinting=none",
]
# (view, route); {segment} and {customer} are filled in from the demo's business buyers.
VIEWS = (
    ("home", "#/"),
    ("segments", "#/segments"),
    ("segment", "#/segments/{segment}"),
    ("customer", "#/customers/{customer}"),
    ("builder", "#/segments/new"),
    ("analytics", "#/analytics"),
    ("settings", "#/settings"),
)
KEYS = set(json.loads((ROOT / "web" / "i18n" / "en.json").read_text(encoding="utf-8")))


def show(page: Page, page_url: str, locale: str, route: str, view: str) -> None:
    """Load the page as the admin does, go to ``route`` and wait until ``view`` has drawn."""
    page.goto(page_url.replace("locale=en", f"locale={locale}"))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate("h => { location.hash = h; }", route)
    page.wait_for_selector(f"body[data-view='{view}']", timeout=60_000)
    page.wait_for_selector("#app:not([aria-busy='true'])", timeout=60_000)
    if view == "segment":
        page.wait_for_selector("[data-table='members']", timeout=60_000)
    page.wait_for_timeout(400)  # fonts and layout settle


def problems(page: Page) -> list[str]:
    """What a person would object to on sight: sideways scrolling, raw message keys."""
    found = []
    sideways = page.evaluate("() => document.scrollingElement.scrollWidth - window.innerWidth")
    if sideways > 0:
        found.append(f"scrolls sideways by {sideways}px")
    words = set(re.findall(r"[a-z_]+(?:\.[a-z0-9_]+)+", page.locator("body").inner_text()))
    raw = sorted(words & KEYS)
    if raw:
        found.append(f"raw message keys {raw}")
    return found


def capture(
    demo_url: str, ids: dict[str, int], out: Path, locales: list[str], widths: list[int]
) -> int:
    failures = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for width in widths:
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            page.route(re.compile(r"^https://cdn\.shopify\.com/.*"), lambda route: route.abort())
            for locale in locales:
                for view, route in VIEWS:
                    show(page, demo_url, locale, route.format(**ids), view)
                    path = out / f"{view}-{width}-{locale}.png"
                    page.screenshot(path=str(path), full_page=True)
                    wrong = problems(page)
                    failures += bool(wrong)
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    print(shown, *(f"  PROBLEM: {w}" for w in wrong), sep="\n" if wrong else "")
            context.close()
        browser.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--locales", default="en,ar,el,ko")
    parser.add_argument("--widths", default="1024,390")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    demo = start_demo(customers=args.customers, seed=args.seed, progress=lambda m: print(m))
    try:
        ids = demo_ids(demo)
        widths = [int(w) for w in args.widths.split(",")]
        failures = capture(demo.page_url, ids, args.out, args.locales.split(","), widths)
    finally:
        demo.stop()
    return 1 if failures else 0


def demo_ids(demo: Demo) -> dict[str, int]:
    """The business-buyers segment and its first member: the views that need an id show them."""
    with demo.ctx.sessions() as session:
        segment = session.scalar(
            select(Segment.id).where(
                Segment.shop_id == demo.shop_id, Segment.handle == "business-buyers"
            )
        )
        customer = session.scalar(
            select(Membership.customer_id).where(Membership.segment_id == segment).limit(1)
        )
    return {"segment": int(segment or 0), "customer": int(customer or 0)}


if __name__ == "__main__":
    raise SystemExit(main())
