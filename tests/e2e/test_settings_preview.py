"""The settings page in headless Chromium: a change that moves tags is shown before it applies.

The real app (``create_app`` with the demo's stand-in admin) against a running Shopify sandbox,
which mints the page's session tokens (``seeded_page``: a seeded shop whose VIP and True fans
segments sync their tags). Queued jobs wait in the app's queue, where the test reads them.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.fixtures_api import ApiClient
from tests.fixtures_auth import pending_tasks
from tests.fixtures_browser import new_tab, open_view
from tests.fixtures_demo import SeededPage

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(page: Page, seeded_page: SeededPage) -> Page:
    """The tab on the settings view, loaded as the admin loads it (bounce page, session token)."""
    open_view(page, seeded_page.page_url, "settings")
    return page


def _prefix(app: SeededPage) -> str:
    body = ApiClient(app.app_url, app.shop).get("/settings").json()
    return str(body["settings"]["tag_prefix"])


def test_a_prefix_change_is_previewed_and_applies_only_when_confirmed(
    page: Page, seeded_page: SeededPage
) -> None:
    vips = seeded_page.customers // 10  # the seeded VIP segment: the top tenth by spend
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
    expect(dialog.locator("[data-tag='gp-vip']")).to_contain_text(f"added to {vips},")
    dialog.locator("[data-action='cancel']").click()
    expect(page.locator("s-banner[tone='info']")).to_contain_text("Nothing was changed")
    assert _prefix(seeded_page) == "goldpan-"
    assert pending_tasks(seeded_page.ctx) == []

    page.locator("[data-action='save']").click()
    page.locator("dialog.gp-dialog [data-action='confirm']").click()
    expect(page.locator("s-banner[tone='success']")).to_be_visible()
    assert _prefix(seeded_page) == "gp-"
    assert [(name, kw.get("old_prefix")) for name, kw in pending_tasks(seeded_page.ctx)] == [
        ("segments.recompute_shop", None),
        ("tags.prefix_changed", "goldpan-"),
    ]


def _save(page: Page) -> None:
    page.locator("[data-action='save']").click()


def test_errors_are_worded_in_the_form_units_beside_the_input_that_is_wrong(page: Page) -> None:
    first_tier = page.locator("[data-tier-row]").first
    first_tier.locator("[data-tier='discount']").fill("95")
    _save(page)
    # The discount is outlined, not the days beside it, and the message uses the form's label.
    expect(first_tier.locator("[data-tier='discount']")).to_have_attribute("aria-invalid", "true")
    expect(first_tier.locator("[data-tier='days']")).not_to_have_attribute("aria-invalid", "true")
    expect(first_tier.locator(".gp-field-error")).to_have_text(
        "Discount percent: enter a number from 0 to 90."
    )
    first_tier.locator("[data-tier='discount']").fill("10")

    # VIP share is shown in percent, and so are its limits (the API's are fractions).
    vip = page.locator("[data-setting='vip_share']")
    vip.fill("90")
    _save(page)
    expect(vip).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-field='vip_share'] .gp-field-error")).to_have_text(
        "VIP: top share of customers by spend (%): enter a number from 0.1 to 50."
    )
    expect(first_tier.locator("[data-tier='discount']")).not_to_have_attribute(
        "aria-invalid", "true"
    )
    vip.fill("10")

    # A contradiction: true fans may not be a lower bar than repeat customers.
    page.locator("[data-setting='repeat_min_orders']").fill("5")
    _save(page)
    expect(page.locator("[data-field='true_fan_min_orders'] .gp-field-error")).to_have_text(
        "True fans need at least as many orders as repeat customers (5)."
    )
    expect(page.locator("[data-setting='true_fan_min_orders']")).to_be_focused()


def test_errors_are_in_the_merchants_language(page: Page, seeded_page: SeededPage) -> None:
    page.goto(seeded_page.page_url.replace("locale=en", "locale=ko"))
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.evaluate("() => { location.hash = '#/settings'; }")
    page.wait_for_selector("[data-setting='vip_share']", timeout=30_000)
    page.locator("[data-setting='vip_share']").fill("90")
    _save(page)
    expect(page.locator("[data-field='vip_share'] .gp-field-error")).to_contain_text(
        "0.1에서 50 사이의 숫자를 입력하세요."
    )
    page.locator("[data-setting='vip_share']").fill("10")
    page.locator("[data-setting='tag_prefix']").fill("wholesale-")
    _save(page)
    expect(page.locator("[data-field='tag_prefix'] .gp-field-error")).to_contain_text(
        "“wholesale”은(는) 이미 스토어에서 쓰는 태그입니다(고객 "
    )


def _pick_second_option(rule: Locator, side: str, words: str) -> str:
    """Type in a side's picker, move to the second option with the arrow key, pick it with
    Enter: the chip added is the option that was active."""
    box = rule.locator(f"[data-side='{side}'] [role='combobox']")
    box.fill(words)
    options = rule.locator(f"[data-side='{side}'] [role='option']")
    expect(options.first).to_have_attribute("aria-selected", "true")
    box.press("ArrowDown")
    second = options.nth(1)
    expect(second).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", second.get_attribute("id") or "")
    picked = second.inner_text()
    box.press("Enter")
    expect(rule.locator(f"[data-side='{side}'] [role='listbox']")).to_be_hidden()
    expect(box).to_be_focused()
    return picked


def test_a_rule_error_names_that_rule_and_a_korean_rule_gets_a_readable_tag(
    page: Page, seeded_page: SeededPage
) -> None:
    page.locator("[data-action='add-rule']").click()
    rule = page.locator(".gp-rule").nth(2)
    rule.locator("[data-rule='name']").fill("생일 선물")
    picked = _pick_second_option(rule, "bought", "napkin")
    expect(rule.locator("[data-side='bought'] .gp-chip")).to_have_count(1)
    expect(rule.locator("[data-side='bought'] .gp-chip")).to_contain_text(picked)
    # The same product on both sides: refused beside this rule's "never bought", not the first.
    assert _pick_second_option(rule, "never", "napkin") == picked
    _save(page)
    expect(rule.locator("[data-field='never'] .gp-field-error")).to_contain_text(
        f"“{picked}” is in both"
    )
    expect(page.locator(".gp-rule").first.locator(".gp-field-error")).to_have_text(["", "", ""])
    # Words that match nothing are saved, with a warning beside them.
    rule.locator("[data-side='never'] .gp-chip-remove").click()
    never = rule.locator("[data-side='never'] [role='combobox']")
    never.fill("velvet throw")
    expect(rule.locator("[data-side='never'] [data-words]")).to_have_attribute(
        "aria-selected", "true"
    )
    never.press("Enter")
    _save(page)
    expect(page.locator("s-banner[tone='success']")).to_be_visible(timeout=60_000)
    expect(rule.locator("[data-field='never'] .gp-field-error")).to_contain_text(
        "“velvet throw” matches no product"
    )
    saved = ApiClient(seeded_page.app_url, seeded_page.shop).get("/settings").json()
    assert saved["settings"]["cross_sell"][2]["handle"] == "saengil-seonmul"
    assert saved["settings"]["cross_sell"][2]["never"] == ["velvet throw"]
    # Saved again, the new rule stays the same rule (its handle was kept by the page).
    rule.locator("[data-rule='name']").fill("생일 선물 세트")
    _save(page)
    expect(page.locator("[data-save-bar]")).to_be_hidden(timeout=60_000)
    saved = ApiClient(seeded_page.app_url, seeded_page.shop).get("/settings").json()
    assert [r["handle"] for r in saved["settings"]["cross_sell"]][2] == "saengil-seonmul"


def _leaving_is_guarded(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => {
              const event = new Event("beforeunload", { cancelable: true });
              window.dispatchEvent(event);
              return event.defaultPrevented;
            }"""
        )
    )


def test_unsaved_changes_show_a_save_bar_and_guard_leaving(
    page: Page, seeded_page: SeededPage
) -> None:
    bar = page.locator("[data-save-bar]")
    milestone = page.locator("[data-setting='milestone_amount']")
    expect(bar).to_be_hidden()
    assert not _leaving_is_guarded(page)
    milestone.fill("750")
    expect(bar).to_be_visible()
    assert _leaving_is_guarded(page)
    # Back to what was saved: nothing is unsaved any more.
    milestone.fill("500")
    expect(bar).to_be_hidden()
    milestone.fill("750")
    bar.locator("[data-action='discard']").click()
    expect(page.locator("[data-setting='milestone_amount']")).to_have_value("500")
    expect(page.locator("[data-save-bar]")).to_be_hidden()
    assert not _leaving_is_guarded(page)
    # A chip removed is a change too; the bar's Save saves it.
    page.locator(".gp-rule").first.locator("[data-side='never'] .gp-chip-remove").first.click()
    expect(page.locator("[data-save-bar]")).to_be_visible()
    page.locator("[data-save-bar] [data-action='bar-save']").click()
    expect(page.locator("s-banner[tone='success']")).to_be_visible(timeout=60_000)
    expect(page.locator("[data-save-bar]")).to_be_hidden()
    assert not _leaving_is_guarded(page)
    saved = ApiClient(seeded_page.app_url, seeded_page.shop).get("/settings").json()
    assert saved["settings"]["cross_sell"][0]["never"] == ["tea napkin", "placemat"]


# App Bridge as the admin provides it, reduced to what the save bar uses: the ui-save-bar
# element and shopify.saveBar.show / hide (recorded). The demo shim supplies the rest.
APP_BRIDGE_SAVE_BAR = """
customElements.define("ui-save-bar", class extends HTMLElement {});
window.__saveBar = [];
let bridge;
Object.defineProperty(window, "shopify", {
  configurable: true,
  get: () => bridge,
  set: (value) => {
    bridge = value;
    bridge.saveBar = {
      show: (id) => window.__saveBar.push(["show", id]),
      hide: (id) => window.__saveBar.push(["hide", id]),
    };
  },
});
"""


def test_in_the_admin_unsaved_changes_use_app_bridges_save_bar(
    browser: Browser, seeded_page: SeededPage
) -> None:
    tab, _ = new_tab(browser)  # App Bridge's stand-in below throws nothing worth asserting
    context = tab.context
    try:
        tab.add_init_script(APP_BRIDGE_SAVE_BAR)
        saves: list[str] = []
        tab.on("request", lambda r: saves.append(r.url) if r.method == "PUT" else None)
        open_view(tab, seeded_page.page_url, "settings")
        tab.wait_for_selector("[data-setting='milestone_amount']", timeout=30_000)
        bar = tab.locator("ui-save-bar")
        bar_id = bar.get_attribute("id")
        # Its Save is the primary button, its Discard the one without a variant (App Bridge's rule).
        expect(bar.locator("button[variant='primary']")).to_have_count(1)
        expect(bar.locator("button:not([variant])")).to_have_count(1)
        expect(tab.locator("[data-save-bar]")).to_have_count(0)  # no in-page bar in the admin
        tab.locator("[data-setting='milestone_amount']").fill("750")
        assert tab.evaluate("() => window.__saveBar.at(-1)") == ["show", bar_id]
        tab.locator("[data-setting='milestone_amount']").fill("500")
        assert tab.evaluate("() => window.__saveBar.at(-1)") == ["hide", bar_id]
        tab.locator("[data-setting='milestone_amount']").fill("600")
        bar.locator("button[variant='primary']").dispatch_event("click")
        expect(tab.locator("s-banner[tone='success']")).to_be_visible(timeout=60_000)
        assert tab.evaluate("() => window.__saveBar.at(-1)") == ["hide", bar_id]
        assert len(saves) == 1, saves  # one save (a second, racing it, would be refused)
        saved = ApiClient(seeded_page.app_url, seeded_page.shop).get("/settings").json()
        assert saved["settings"]["milestone_amount"] == 600
    finally:
        context.close()
