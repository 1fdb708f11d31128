"""The page's JSON API over real HTTP, served by ``create_app`` with its session-token
middleware: authorization, cross-shop isolation, bad input, paging."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import (
    Customer,
    DataRequest,
    Membership,
    Segment,
    Shop,
    ShopMetrics,
    SyncRun,
)
from shopify_app.jobs import Context
from shopify_app.segments import metrics, recompute
from shopify_app.segments.library.reasons import Reason
from shopify_app.states import (
    MetaConnectionStatus,
    MetaState,
    SegmentKind,
    SyncRunKind,
    SyncRunStatus,
)
from tests.fixtures_api import ApiClient, RecordingRuntime, seed_shop, serving_recorded
from tests.fixtures_auth import session_token
from tests.messages import placeholders


@pytest.fixture
def queued() -> RecordingRuntime:
    return RecordingRuntime()


@pytest.fixture
def server(ctx: Context, queued: RecordingRuntime) -> Iterator[str]:
    """The app's base URL; what the API queues lands in ``queued``."""
    with serving_recorded(ctx, queued) as url:
        yield url


@pytest.fixture
def shop_a(make_shop: Any, sessions: sessionmaker[Session]) -> tuple[Shop, dict[str, int]]:
    shop = make_shop()
    return shop, seed_shop(sessions, shop.id, customers=150, seed=3)


@pytest.fixture
def shop_b(make_shop: Any, sessions: sessionmaker[Session]) -> tuple[Shop, dict[str, int]]:
    shop = make_shop()
    return shop, seed_shop(sessions, shop.id, customers=30, seed=4)


def test_requests_without_a_valid_session_token_are_refused(server: str, shop_a) -> None:
    shop, _ = shop_a
    r = requests.get(f"{server}/api/segments", timeout=5)
    assert r.status_code == 401
    assert r.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    expired = session_token(shop.domain, exp=int(time.time()) - 60)
    r = requests.get(
        f"{server}/api/segments", headers={"Authorization": f"Bearer {expired}"}, timeout=5
    )
    assert r.status_code == 401


def test_segments_list_shows_sizes_revenue_share_and_weekly_change(server: str, shop_a) -> None:
    shop, ids = shop_a
    body = ApiClient(server, shop.domain).get("/segments").json()
    rows = {row["handle"]: row for row in body["segments"]}
    assert set(rows) == set(ids)
    vip = rows["vip"]
    assert vip["members"] == 15
    assert 0 < vip["revenue_share"] <= 1
    # History says 8 days ago the segment was 16 % smaller than today's count.
    assert vip["change_week"] == 15 - int(15 * 0.84)
    # Nobody carries the tag yet by Goldpan's hand: tag sync is still writing.
    assert vip["tag_sync"] == {"enabled": True, "tag": "goldpan-vip", "written": 0}
    assert rows["one-time-buyers"]["tag_sync"]["enabled"] is False


def test_another_shops_segment_is_not_found(server: str, shop_a, shop_b) -> None:
    (shop, _ids), (_other, other_ids) = shop_a, shop_b
    client = ApiClient(server, shop.domain)
    foreign = other_ids["vip"]
    for path in (
        f"/segments/{foreign}",
        f"/segments/{foreign}/members",
        f"/segments/{foreign}/members.csv",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()
    r = client.post(f"/segments/{foreign}/tag-sync", {"enabled": True, "confirm": True})
    assert r.status_code == 404
    # and the foreign segment is untouched
    listing = ApiClient(server, _other.domain).get("/segments").json()["segments"]
    assert next(s for s in listing if s["id"] == foreign)["tag_sync"]["enabled"] is True


def test_member_pages_search_and_sort(server: str, shop_a) -> None:
    shop, ids = shop_a
    client = ApiClient(server, shop.domain)
    seg = ids["one-time-buyers"]
    first = client.get(f"/segments/{seg}/members").json()
    assert len(first["members"]) == 50
    assert first["has_next"] is True
    total = first["total"]
    assert total > 50
    seen = {m["id"] for m in first["members"]}
    page = 2
    while True:
        body = client.get(f"/segments/{seg}/members", page=page).json()
        seen |= {m["id"] for m in body["members"]}
        if not body["has_next"]:
            break
        page += 1
    assert len(seen) == total
    # keyset continuation gives the same second page as the offset one
    after = client.get(f"/segments/{seg}/members", after=first["next_after"]).json()
    second = client.get(f"/segments/{seg}/members", page=2).json()
    assert [m["id"] for m in after["members"]] == [m["id"] for m in second["members"]]

    by_spend = client.get(f"/segments/{ids['vip']}/members", sort="-spent").json()["members"]
    spent = [m["spent"] for m in by_spend]
    assert spent == sorted(spent, reverse=True)
    assert all(m["reason"].startswith("spent $") for m in by_spend)

    needle = first["members"][0]["email"]
    found = client.get(f"/segments/{seg}/members", q=needle.upper()).json()
    assert [m["email"] for m in found["members"]] == [needle]
    assert found["total"] == 1  # a search says how many it matched


def test_business_buyers_carry_the_reason_they_qualify(server: str, shop_a) -> None:
    shop, ids = shop_a
    members = ApiClient(server, shop.domain).get(f"/segments/{ids['business-buyers']}/members")
    reason = members.json()["members"][0]["reason"]
    assert " units of " in reason and " on " in reason


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"sort": "password"}, "sort"),
        ({"sort": "--spent"}, "sort"),
        ({"q": "x" * 101}, "q"),
    ],
)
def test_bad_member_queries_answer_400_with_the_field(
    server: str, shop_a, params: dict[str, str], field: str
) -> None:
    shop, ids = shop_a
    r = ApiClient(server, shop.domain).get(f"/segments/{ids['vip']}/members", **params)
    assert r.status_code == 400
    assert r.json()["field"] == field


def test_unknown_and_malformed_segment_ids(server: str, shop_a) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    assert client.get("/segments/999999999").status_code == 404
    r = client.get("/segments/abc")
    assert r.status_code == 400 and r.json()["field"] == "segment_id"


def test_members_csv_export_is_complete_and_formula_safe(
    server: str, shop_a, sessions: sessionmaker[Session]
) -> None:
    shop, ids = shop_a
    with sessions.begin() as session:
        seg = session.get(Segment, ids["vip"])
        assert seg is not None
        expected = seg.member_count
    r = ApiClient(server, shop.domain).get(f"/segments/{ids['vip']}/members.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="goldpan-vip.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == expected
    assert all(not row["email"].startswith("=") for row in rows)


def test_members_csv_says_structured_reasons_in_english(
    server: str, shop_a, sessions: sessionmaker[Session]
) -> None:
    shop, ids = shop_a
    stored = Reason(
        "business.order_units", {"units": 48, "product": "Dinner Napkins", "day_date": "2026-03-03"}
    ).to_json()
    with sessions.begin() as session:
        member = session.scalars(
            select(Membership).where(Membership.segment_id == ids["business-buyers"]).limit(1)
        ).one()
        member.reason = stored
        customer_id = member.customer_id
        email = session.get(Customer, (shop.id, customer_id)).email  # type: ignore[union-attr]
    client = ApiClient(server, shop.domain)
    # The page gets the structured reason to translate; the spreadsheet gets English.
    page = client.get(f"/segments/{ids['business-buyers']}/members", q=email).json()["members"]
    assert {m["id"]: m["reason"] for m in page}[customer_id] == stored
    r = client.get(f"/segments/{ids['business-buyers']}/members.csv")
    rows = {
        int(row["customer_id"]): row
        for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))
    }
    assert rows[customer_id]["reason"] == "48 units of Dinner Napkins on 3 March 2026"


def test_tag_sync_previews_before_enabling(server: str, shop_a, queued: RecordingRuntime) -> None:
    shop, ids = shop_a
    client = ApiClient(server, shop.domain)
    seg = ids["lapsed-tier-2"]
    preview = client.post(f"/segments/{seg}/tag-sync", {"enabled": True}).json()
    assert preview["applied"] is False
    assert preview["preview"]["gain"] >= 0 and "lose" in preview["preview"]
    assert preview["tag"] == "goldpan-lapsed-tier-2"
    listing = client.get("/segments").json()["segments"]
    assert next(s for s in listing if s["id"] == seg)["tag_sync"]["enabled"] is False
    assert queued.calls == []

    done = client.post(f"/segments/{seg}/tag-sync", {"enabled": True, "confirm": True}).json()
    assert done == {"applied": True, "tag_sync": True, "tag": "goldpan-lapsed-tier-2"}
    assert (
        "tags.segment_changed",
        {"shop_id": shop.id, "segment_id": seg, "old_tag": None},
    ) in queued.calls
    audit = client.get("/audit").json()["entries"]
    assert audit[0]["action"] == "tag_sync.enable" and audit[0]["subject"] == "lapsed-tier-2"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({}, "enabled"),
        ({"enabled": True, "confirm": 1}, "confirm"),
        ({"enabled": True, "tag": "a,b"}, "tag"),
        ([1, 2], "body"),
    ],
)
def test_bad_tag_sync_bodies(server: str, shop_a, body: Any, field: str) -> None:
    shop, ids = shop_a
    r = ApiClient(server, shop.domain).post(f"/segments/{ids['vip']}/tag-sync", body)
    assert r.status_code == 400
    assert r.json()["field"] == field


def test_meta_preview_counts_consenting_members(server: str, shop_a) -> None:
    shop, ids = shop_a
    client = ApiClient(server, shop.domain)
    body = client.get(f"/segments/{ids['vip']}/meta-preview").json()
    assert body["connected"] is False and body["policy"] == "subscribed"
    assert 0 < body["preview"]["upload"] < body["preview"]["members"] == 15


def test_settings_round_trip_and_refusals(server: str, shop_a, queued: RecordingRuntime) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    current = client.get("/settings").json()
    assert "tag_prefix" in current["settings"]
    assert current["meta"]["status"] == "disconnected"

    # vip and true-fans sync their tags: a new prefix moves them, so the effect comes first.
    r = client.put("/settings", {"settings": {"tag_prefix": "gp-"}})
    assert r.status_code == 409, r.text
    preview = r.json()
    assert preview["applied"] is False and preview["changed"] == ["tag_prefix"]
    moves = {row["tag"]: row for row in preview["tags"]}
    assert moves["gp-vip"] == {"tag": "gp-vip", "segment": "vip", "added": 15, "removed": 0}
    # These customers were never given goldpan-vip (no ledger rows): nothing to take off.
    assert "goldpan-vip" not in moves
    assert preview["customers"] >= 15 and queued.calls == []
    assert client.get("/settings").json()["settings"]["tag_prefix"] == "goldpan-"
    # A confirmation of another preview applies nothing either.
    r = client.put("/settings", {"settings": {"tag_prefix": "gp-"}, "confirm": "0" * 32})
    assert r.status_code == 409 and queued.calls == []
    r = client.put("/settings", {"settings": {"tag_prefix": "gp-"}, "confirm": preview["token"]})
    assert r.status_code == 200, r.text
    assert r.json()["applied"] is True
    assert client.get("/settings").json()["settings"]["tag_prefix"] == "gp-"
    assert ("segments.recompute_shop", {"shop_id": shop.id}) in queued.calls
    # every tag Goldpan wrote under the old prefix moves to the new one
    assert ("tags.prefix_changed", {"shop_id": shop.id, "old_prefix": "goldpan-"}) in queued.calls
    listing = client.get("/segments").json()["segments"]
    assert next(s for s in listing if s["handle"] == "vip")["tag"] == "gp-vip"
    queued.calls.clear()
    # A change that moves nothing synced applies at once.
    r = client.put("/settings", {"settings": {"milestone_amount": 750}})
    assert r.status_code == 200 and r.json()["tags"] == []
    assert [name for name, _ in queued.calls] == ["segments.recompute_shop"]

    r = client.put("/settings", {"settings": {"tag_prefix": ""}})
    assert r.status_code == 400 and r.json()["field"] == "tag_prefix"
    tiers = [{"days": 60, "discount_percent": 10}, {"days": 30, "discount_percent": 5}]
    r = client.put("/settings", {"settings": {"lapsed_tiers": tiers}})
    assert r.status_code == 400 and r.json()["field"] == "lapsed_tiers[1].days"
    assert r.json()["code"] == "tier_days_order" and r.json()["params"] == {"before": 60}
    r = client.put("/settings", {"settings": {"no_such_setting": 1}})
    assert r.status_code == 400 and r.json()["field"] == "no_such_setting"
    r = client.put("/settings", {"settings": {}})
    assert r.status_code == 400
    r = requests.put(
        f"{server}/api/settings",
        data=b"{not json",
        headers={"Authorization": f"Bearer {session_token(shop.domain)}"},
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert client.get("/settings").json()["settings"]["tag_prefix"] == "gp-"


def test_home_reports_sync_and_retention_headline(server: str, shop_a, ctx: Context) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    body = client.get("/home").json()
    assert body["sync"]["state"] == "done"
    assert any(n["key"] == "scope_all_orders" for n in body["notices"])
    assert body["metrics"] is None  # no full recompute has stored them yet
    recompute.recompute_shop_now(ctx, shop.id)
    headline = client.get("/home").json()["metrics"]
    assert list(headline["headline"]) == list(metrics.DEFINITIONS)
    assert 0 < headline["headline"]["repeat_purchase_rate"] < 1
    assert headline["year_before"]["as_of"] < headline["as_of"]


def test_analytics_and_products(server: str, shop_a, shop_b, ctx: Context) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    assert client.get("/analytics").json()["metrics"] is None
    recompute.recompute_shop_now(ctx, shop.id)
    recompute.recompute_shop_now(ctx, shop_b[0].id)
    body = client.get("/analytics").json()["metrics"]
    assert body["cohorts"]["month"] and body["cohorts"]["product"]
    assert sum(b["count"] for b in body["days_between_orders_histogram"]) > 0
    assert sum(c["customers"] for c in body["rfm"]["cells"]) == body["headline"]["customers"]
    assert body["repeat_rate_trend"] and body["first_product"]
    found = client.get("/products", q="napkin").json()["products"]
    assert {p["title"] for p in found} == {"Cocktail Napkins", "Dinner Napkins", "Tea Napkins"}
    # the other shop's analytics are computed from its own orders only
    other = ApiClient(server, shop_b[0].domain).get("/analytics").json()["metrics"]
    assert other["headline"]["customers"] == 30


def test_audit_is_per_shop(server: str, shop_a, shop_b) -> None:
    (shop, _), (other, _) = shop_a, shop_b
    mine = ApiClient(server, shop.domain).get("/audit").json()["entries"]
    theirs = ApiClient(server, other.domain).get("/audit").json()["entries"]
    assert {e["id"] for e in mine}.isdisjoint({e["id"] for e in theirs})
    assert ApiClient(server, shop.domain).get("/audit", before="x").status_code == 400


def test_data_request_exports_are_downloadable_by_their_shop_only(
    server: str, shop_a, shop_b, sessions: sessionmaker[Session]
) -> None:
    (shop, _), (other, _) = shop_a, shop_b
    with sessions.begin() as session:
        row = DataRequest(
            shop_id=shop.id, request_id="9999", customer_id=42, export={"customer": {"id": 42}}
        )
        session.add(row)
        session.flush()
        request_id = row.id
    mine = ApiClient(server, shop.domain)
    listed = mine.get("/data-requests").json()["requests"]
    assert [r["id"] for r in listed] == [request_id] and listed[0]["customer_id"] == 42
    export = mine.get(f"/data-requests/{request_id}")
    assert export.status_code == 200 and export.json() == {"customer": {"id": 42}}
    assert "attachment" in export.headers["Content-Disposition"]
    theirs = ApiClient(server, other.domain)
    assert theirs.get(f"/data-requests/{request_id}").status_code == 404
    assert theirs.get("/data-requests").json()["requests"] == []
    assert mine.get("/data-requests/abc").status_code == 400


def test_renaming_a_tag_migrates_it_and_remove_all_needs_confirmation(
    server: str, shop_a, queued: RecordingRuntime
) -> None:
    shop, ids = shop_a
    client = ApiClient(server, shop.domain)
    seg = ids["vip"]
    r = client.post(f"/segments/{seg}/tag-sync", {"enabled": True, "tag": "best customers"})
    assert r.json() == {"applied": True, "tag_sync": True, "tag": "best customers"}
    assert queued.calls[-1] == (
        "tags.segment_changed",
        {"shop_id": shop.id, "segment_id": seg, "old_tag": "goldpan-vip"},
    )
    assert (
        client.post(f"/segments/{seg}/tag-sync", {"enabled": True, "tag": "x" * 300}).json()[
            "field"
        ]
        == "tag"
    )
    assert client.post("/tags/remove-all", {}).status_code == 400
    assert client.post("/tags/remove-all", {"confirm": True}).status_code == 202
    assert queued.calls[-1] == ("tags.remove_all", {"shop_id": shop.id})
    r = client.post(f"/segments/{ids['lapsed-tier-1']}/native-segment", {})
    assert r.status_code == 400 and r.json()["field"] == "tag_sync"


WEB = Path(__file__).resolve().parent.parent / "web"


def test_every_language_has_every_message_with_the_same_placeholders() -> None:
    english = json.loads((WEB / "i18n" / "en.json").read_text(encoding="utf-8"))
    for lang in ("ar", "ko", "el"):
        other = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        assert set(other) == set(english), lang
        for key, message in english.items():
            # A translation may drop {count} where its grammar spells the number out ("one").
            assert placeholders(other[key]) <= placeholders(message) | {"count"}, (lang, key)
            assert isinstance(other[key], dict) == isinstance(message, dict), (lang, key)
            if isinstance(message, dict):
                assert "other" in other[key], (lang, key)


def test_every_message_the_page_uses_exists() -> None:
    english = json.loads((WEB / "i18n" / "en.json").read_text(encoding="utf-8"))
    used: set[str] = set()
    for path in [*WEB.glob("*.js"), *WEB.glob("views/*.js")]:
        used |= set(re.findall(r"""\bt\("([a-z_]+\.[a-z0-9_.\-]+)\"""", path.read_text()))
    assert used, "no messages found"
    # Statuses the API sends and the page shows, by the message family that words them
    # (t(`meta_state.${state}`)); built-in segments are grouped by page, not by kind.
    shown = {
        "meta_state": set(MetaState),
        "meta.conn": set(MetaConnectionStatus),
        "segments.group": set(SegmentKind) - {SegmentKind.BUILTIN},
    }
    page = "".join(path.read_text() for path in [*WEB.glob("*.js"), *WEB.glob("views/*.js")])
    for family, values in shown.items():
        assert f"t(`{family}.${{" in page, family
        used |= {f"{family}.{value}" for value in values}
    assert sorted(used - set(english)) == []


def test_metrics_of_an_older_shape_wait_for_the_next_recompute_and_survive_settings(
    server: str, shop_a, sessions: sessionmaker[Session], ctx: Context
) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    with sessions.begin() as session:
        # What the page kept before metrics had their own table and version.
        session.merge(
            ShopMetrics(shop_id=shop.id, as_of=dt.date(2026, 1, 1), data={"customers": 3})
        )
    assert client.get("/analytics").json()["metrics"] is None
    assert client.get("/home").json()["metrics"] is None
    recompute.recompute_shop_now(ctx, shop.id)
    stored = client.get("/analytics").json()
    assert stored["metrics"]["version"] == metrics.VERSION and stored["computed_at"]
    # A settings change leaves them alone: they are not part of the shop's settings.
    change = {"settings": {"vip_share": 0.2}}
    preview = client.put("/settings", change)  # it moves VIP tags: previewed first
    assert preview.status_code == 409
    confirmed = client.put("/settings", {**change, "confirm": preview.json()["token"]})
    assert confirmed.status_code == 200
    assert client.get("/analytics").json() == stored


def test_home_shows_import_progress_while_the_initial_sync_runs(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    with sessions.begin() as session:
        session.add_all(
            [
                SyncRun(shop_id=shop.id, kind=SyncRunKind.INITIAL, resource="customers",
                        status=SyncRunStatus.DONE, object_count=50, objects_done=50),
                SyncRun(shop_id=shop.id, kind=SyncRunKind.INITIAL, resource="orders",
                        status=SyncRunStatus.INGESTING, object_count=200, objects_done=80),
            ]
        )  # fmt: skip
    body = ApiClient(server, shop.domain).get("/home").json()
    assert body["sync"]["state"] == "running"
    assert body["sync"]["progress"] == pytest.approx(0.4)
    assert body["metrics"] is None
    assert ApiClient(server, shop.domain).get("/segments").json()["segments"] == []


def test_the_page_files_are_served_with_the_api(server: str) -> None:
    page = requests.get(f"{server}/static/app.js", timeout=5)
    assert page.status_code == 200 and "hashchange" in page.text


def test_a_draft_custom_segment_is_counted_without_being_saved(server: str, shop_a) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    before = client.get("/settings").json()["settings"]["custom_segments"]
    draft = {
        "name": "Two orders or more",
        "match": "all",
        "rules": [{"field": "orders_count", "op": ">=", "value": 2}],
    }
    r = client.post("/segments/preview", {"segment": draft})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["description"] == "orders >= 2"
    assert 0 < body["members"] < body["customers"]
    assert len(body["sample"]) == min(5, body["members"])
    # An OR over a contradiction and the same rule matches exactly as many.
    either = {
        "match": "any",
        "rules": [draft["rules"][0], {"field": "orders_count", "op": "<", "value": 0}],
    }
    assert (
        client.post("/segments/preview", {"segment": either}).json()["members"] == body["members"]
    )
    # Nothing was saved.
    assert client.get("/settings").json()["settings"]["custom_segments"] == before


def test_a_draft_custom_segment_error_names_the_condition(server: str, shop_a) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    draft = {
        "match": "all",
        "rules": [
            {"field": "orders_count", "op": ">=", "value": 2},
            {"match": "any", "rules": [{"field": "total_spent", "op": ">", "value": "lots"}]},
        ],
    }
    r = client.post("/segments/preview", {"segment": draft})
    assert r.status_code == 400
    assert r.json()["field"] == "segment.rules[1].rules[0].value"
    r = client.post("/segments/preview", {"segment": "orders > 2"})
    assert r.status_code == 400 and r.json()["field"] == "segment"


def test_the_list_describes_custom_segments_and_drops_deleted_ones(
    server: str, shop_a, ctx: Context
) -> None:
    shop, _ = shop_a
    client = ApiClient(server, shop.domain)
    rule = {
        "handle": "two-orders",
        "name": "Two orders",
        "match": "all",
        "rules": [{"field": "orders_count", "op": ">=", "value": 2}],
    }
    assert client.put("/settings", {"settings": {"custom_segments": [rule]}}).status_code == 200
    recompute.recompute_shop_now(ctx, shop.id)
    previewed = client.post("/segments/preview", {"segment": rule}).json()["members"]
    rows = {row["handle"]: row for row in client.get("/segments").json()["segments"]}
    custom = rows["custom-two-orders"]
    assert custom["kind"] == "custom" and custom["definition"] == rule
    # The preview counts what the recompute stores.
    assert custom["members"] == previewed > 0
    region = next(row for row in rows.values() if row["kind"] == "region")
    assert region["definition"]["country"]

    assert all(row["defined"] for row in rows.values())
    # Deleted (it synced nothing, so no confirmation): at once no longer defined, so the page
    # leaves it out; its row stays for its history.
    assert client.put("/settings", {"settings": {"custom_segments": []}}).status_code == 200
    rows = {row["handle"]: row for row in client.get("/segments").json()["segments"]}
    assert rows["custom-two-orders"]["defined"] is False and rows["vip"]["defined"] is True
