"""The Meta card and panel in a real headless Chromium against the Meta stand-in: Facebook
Login in its own tab (the card notices its return by itself), then a segment's panel following
an incremental removal, the lookalike checks and a disconnect without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import delete, select

from goldpan_sandbox.demo import AD_ACCOUNT, Demo
from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import Membership, MetaConnection
from shopify_app.meta.audiences import LOOKALIKE_COUNTRIES
from shopify_app.states import MetaConnectionStatus
from tests.fixtures_browser import open_view
from tests.fixtures_meta import add_segment, make_people

pytestmark = pytest.mark.e2e


def test_facebook_login_shows_whose_account_and_waits_for_the_merchant(
    page: Page, demo: Demo
) -> None:
    open_view(page, demo.page_url, "settings")
    card = page.locator("[data-meta-status]")
    expect(card).to_have_attribute("data-meta-status", "disconnected")
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Connect with Facebook").click()
    tab = opened.value
    # The tab starts at Goldpan (/meta/login sets the browser's cookie), goes through the
    # dialog and comes back to the callback, which names the Facebook user.
    expect(tab.locator("h1")).to_have_text("Connected as Sandbox Merchant", timeout=30_000)
    tab.close()
    # No focus event, no reload: the card polls the status while the login tab is open.
    expect(card).to_have_attribute("data-meta-status", "confirm", timeout=15_000)
    expect(page.locator("s-banner[tone='warning']").first).to_contain_text(
        "Connected as Sandbox Merchant"
    )
    page.locator("[data-action='meta-confirm']").click()
    expect(page.locator("[data-input='ad-account']")).to_be_visible()
    expect(page.locator("[data-meta-user]")).to_have_text("Connected as Sandbox Merchant")


def _connect(demo: Demo) -> None:
    token = demo.meta.issue_system_user_token()
    with transaction(demo.ctx.sessions) as session:
        conn = session.get(MetaConnection, demo.shop_id) or MetaConnection(shop_id=demo.shop_id)
        session.add(conn)
        conn.access_token = demo.ctx.cipher.encrypt(token)
        conn.ad_account_id = AD_ACCOUNT
        conn.tos_accepted = True
        conn.status = MetaConnectionStatus.CONNECTED
        conn.user_name = "Sandbox Merchant"


def test_the_panel_follows_removals_and_checks_lookalikes(page: Page, demo: Demo) -> None:
    _connect(demo)
    people = make_people(130, seed=42)
    demo.meta.seed_people(people, match_rate=1.0)
    segment_id, ids = add_segment(
        demo.ctx.sessions, demo.shop_id, people, handle="meta-panel", name="Meta panel"
    )
    jobs.run_now(demo.ctx, "meta.sync_segment", shop_id=demo.shop_id, segment_id=segment_id)
    open_view(page, demo.page_url, "segments")
    page.evaluate("id => { location.hash = '#/segments/' + id; }", segment_id)
    panel = page.locator("[data-meta-panel]")
    facts = panel.locator("[data-audience='custom']")
    expect(facts.locator("[data-records]")).to_have_attribute("data-records", "130")
    expect(facts.locator("[data-meta-state]")).to_have_attribute("data-meta-state", "synced")
    expect(facts.locator("[data-meta-state]")).to_have_text("Synced")
    # The segment's sync switch says the same word.
    expect(page.locator("[data-meta-sync] [data-meta-state]")).to_have_text("Synced")
    first_change = facts.locator("[data-last-change]").get_attribute("data-last-change")

    # Countries from a list, named in the page's language; nothing Meta can't target.
    country = panel.locator("[data-input='lookalike-country']")
    codes = country.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert sorted(codes) == sorted(LOOKALIKE_COUNTRIES) and "XX" not in codes
    expect(country.locator("option[value='GR']")).to_have_text("Greece")
    country.select_option("GR")
    panel.locator("[data-input='lookalike-ratio']").select_option("2")
    panel.locator("[data-form='lookalike'] button[type='submit']").click()
    # The new lookalike is listed without a reload, and the same one is not offered again.
    expect(panel.locator("[data-lookalike='GR-0.02']")).to_contain_text("Greece")
    country.select_option("GR")
    panel.locator("[data-input='lookalike-ratio']").select_option("2")
    expect(panel.locator("[data-form='lookalike'] button[type='submit']")).to_be_disabled()
    expect(panel.locator("[data-form='lookalike']")).to_contain_text(
        "You already have this lookalike."
    )
    lookalikes = demo.meta.requests_to("/customaudiences", "POST")
    assert sum(r.params.get("subtype") == "LOOKALIKE" for r in lookalikes) == 1

    # An incremental removal: 40 customers leave the segment and the next sync removes them.
    page.locator("h1, h2").first.click()  # nothing focused in the panel: it may redraw
    with transaction(demo.ctx.sessions) as session:
        session.execute(
            delete(Membership).where(
                Membership.segment_id == segment_id, Membership.customer_id.in_(ids[:40])
            )
        )
    outcome = jobs.run_now(
        demo.ctx, "meta.sync_segment", shop_id=demo.shop_id, segment_id=segment_id
    )
    assert outcome == {"added": 0, "removed": 40}
    expect(facts.locator("[data-records]")).to_have_attribute("data-records", "90", timeout=15_000)
    assert facts.locator("[data-last-change]").get_attribute("data-last-change") != first_change
    # Under 100 people: no form, and the reason where the form was.
    expect(panel.locator("[data-form='lookalike']")).to_have_count(0)
    expect(panel.locator("[data-lookalike-reason='too_small']")).to_contain_text(
        "at least 100 matched people"
    )

    # Disconnecting leaves no segment saying "Synced".
    with transaction(demo.ctx.sessions) as session:
        conn = session.get_one(MetaConnection, demo.shop_id)
        conn.access_token, conn.status = None, MetaConnectionStatus.DISCONNECTED
    expect(facts.locator("[data-meta-state]")).to_have_attribute(
        "data-meta-state", "disconnected", timeout=15_000
    )
    expect(panel.locator("[data-lookalike-reason='connect']")).to_be_visible()
    with demo.ctx.sessions() as session:
        assert session.scalar(select(MetaConnection.ad_account_id)) == AD_ACCOUNT
    open_view(page, demo.page_url, "settings")
    card = page.locator("[data-meta-status]")
    expect(card).to_have_attribute("data-meta-status", "disconnected")
    expect(card).not_to_contain_text(AD_ACCOUNT)
