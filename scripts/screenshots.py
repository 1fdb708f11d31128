"""Screenshots of every view of the embedded page, in English and Arabic, for the README.

Runs the whole demo (the Shopify and Meta stand-ins, the app and its worker, a generated linen
shop) on loopback, opens the page in headless Chromium exactly as the admin would, and writes
``docs/screenshots/<view>-<locale>.png`` (``segments-en.png`` is the one the README shows).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--customers 400]
        [--locales en,ar] [--width 1280]

The CDN scripts (App Bridge, Polaris) are unreachable offline; the page then draws its
Polaris-like fallback styles, which is what the screenshots show.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from goldpan_sandbox.demo import start_demo  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--font-render-hinting=none",
]
VIEWS = ("home", "segments", "segment", "analytics", "settings")


def show(page: Page, page_url: str, locale: str, hash_: str, view: str) -> None:
    """Load the page as the admin does, go to ``hash_`` and wait until ``view`` has drawn."""
    page.goto(page_url.replace("locale=en", f"locale={locale}"))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate("h => { location.hash = h; }", hash_)
    page.wait_for_selector(f"body[data-view='{view}']", timeout=60_000)
    page.wait_for_timeout(300)  # fonts and layout settle


def capture(page_url: str, out: Path, locales: list[str], width: int) -> list[Path]:
    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.route(re.compile(r"^https://cdn\.shopify\.com/.*"), lambda route: route.abort())
        for locale in locales:
            show(page, page_url, locale, "#/segments", "segments")
            href = page.locator("[data-segment='business-buyers']").get_attribute("href")
            for view in VIEWS:
                target = href if view == "segment" else "#/" + ("" if view == "home" else view)
                show(page, page_url, locale, target or "#/segments", view)
                path = out / f"{view}-{locale}.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--locales", default="en,ar")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    demo = start_demo(customers=args.customers, seed=args.seed, progress=lambda m: print(m))
    try:
        for path in capture(demo.page_url, args.out, args.locales.split(","), args.width):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
