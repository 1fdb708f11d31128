"""Never damage a merchant's tags: the page's API, the jobs and the Shopify sandbox together.

Issue 16 ("Tags and settings"), end to end: ``create_app`` on loopback with jobs running inline,
tag writes going to the Shopify sandbox over HTTP. The merchant's own tags (``VIP``, ``staff``,
``pop-up-2024``, a hand-typed ``goldpan-friends``) survive every prefix change, rename and
"remove all"; a prefix or tag the store already uses is refused; a prefix change moves every tag
Goldpan wrote and leaves none behind; lapsed tiers keep their syncs when their days change;
every change that moves tags or audiences is previewed and applies only when confirmed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy import select

from goldpan_sandbox.server import RunningServer, start_server
from goldpan_sandbox.store import Customer as SandboxCustomer
from shopify_app import jobs
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    LineItem,
    Membership,
    Order,
    Product,
    Segment,
    Shop,
    SyncRun,
)
from shopify_app.segments import settings_change
from shopify_app.server.app import create_app
from shopify_app.tagging.tags import tag_key
from tests.fixtures_api import session_token

if TYPE_CHECKING:
    from tests.fixtures_tagging import TagEnv

pytest_plugins = ["tests.fixtures_tagging"]

NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
_ids = itertools.count(500_000)

# Customer id → (the merchant's tags, days ago of each order).
STORE: dict[int, tuple[list[str], list[int]]] = {
    101: (["VIP"], [10]),
    102: (["staff", "goldpan-friends"], [20]),
    103: (["pop-up-2024"], [300, 10]),
    104: (["VIP"], [200, 30]),
    105: ([], [70]),
    106: (["VIP"], [100]),
    # Goldpan-looking tags the merchant typed by hand: still theirs.
    107: (["Goldpan-Fan-Club"], [150]),
    108: (["staff"], [200]),
    109: (["VIP"], []),
    110: (["shop-vip"], []),
}
MERCHANT = {cid: tags for cid, (tags, _) in STORE.items()}


class Api:
    """The page's calls: a fresh session token per request, as App Bridge's fetch."""

    def __init__(self, server: RunningServer, shop: str) -> None:
        self.base = f"{server.url}/api"
        self.shop = shop

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {session_token(self.shop)}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self._headers(), timeout=60)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self._headers(), timeout=60)

    def put(self, path: str, body: Any) -> requests.Response:
        return requests.put(self.base + path, json=body, headers=self._headers(), timeout=60)

    def change(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Save settings as the page does: the effect first (409), then the confirmation."""
        first = self.put("/settings", {"settings": settings})
        assert first.status_code == 409, first.text
        preview = first.json()
        done = self.put("/settings", {"settings": settings, "confirm": preview["token"]})
        assert done.status_code == 200, done.text
        return preview

    def sync_tags(self, handle: str, *, tag: str | None = None) -> None:
        """Turn a segment's tag sync on (preview, then confirm), optionally renaming its tag."""
        segment_id = self.segment(handle)["id"]
        body: dict[str, Any] = {"enabled": True, **({"tag": tag} if tag else {})}
        self.post(f"/segments/{segment_id}/tag-sync", body)
        done = self.post(f"/segments/{segment_id}/tag-sync", {**body, "confirm": True})
        assert done.status_code == 200, done.text

    def segment(self, handle: str) -> dict[str, Any]:
        rows = self.get("/segments").json()["segments"]
        return next(row for row in rows if row["handle"] == handle)


@pytest.fixture
def shop(make_tag_env: Callable[..., TagEnv]) -> Iterator[tuple[TagEnv, Api]]:
    """A synced shop with :data:`STORE` here and in the sandbox, segments computed, and the
    real app serving its API; enqueued jobs run inline (recompute, tag writes to the sandbox)."""
    env = make_tag_env()
    _add_store(env, STORE)
    with env.ctx.sessions.begin() as session:
        session.add(
            SyncRun(shop_id=env.shop.id, kind="initial", resource="customers", status="done")
        )
    jobs.run_now(env.ctx, "segments.recompute_shop", shop_id=env.shop.id)
    server = start_server(create_app(env.ctx))
    try:
        yield env, Api(server, env.shop.domain)
    finally:
        server.stop()


def _add_store(env: TagEnv, store: dict[int, tuple[list[str], list[int]]]) -> None:
    with env.ctx.sessions.begin() as session:
        for cid, (tags, days) in store.items():
            session.add(
                Customer(
                    shop_id=env.shop.id,
                    id=cid,
                    email=f"c{cid}@example.com",
                    email_marketing_state="SUBSCRIBED",
                    tags=list(tags),
                )
            )
            for ago in days:
                oid = next(_ids)
                at = NOW - dt.timedelta(days=ago)
                session.add(
                    Order(
                        shop_id=env.shop.id,
                        id=oid,
                        customer_id=cid,
                        created_at=at,
                        processed_at=at,
                        total=20.0,
                    )
                )
                session.add(
                    LineItem(
                        shop_id=env.shop.id,
                        id=next(_ids),
                        order_id=oid,
                        title="Napkins",
                        quantity=1,
                        amount=20.0,
                    )
                )
            env.store.add_customer(
                SandboxCustomer(
                    cid, "C", str(cid), f"c{cid}@example.com", None, NOW, NOW, tags=list(tags)
                ),
                notify=False,
            )


def _wanted(env: TagEnv) -> dict[int, set[str]]:
    """What Goldpan's tags should be, from the database: synced segments' tags on their members."""
    wanted: dict[int, set[str]] = defaultdict(set)
    with env.ctx.sessions() as session:
        rows = session.execute(
            select(Membership.customer_id, Segment.tag)
            .join(Segment, Segment.id == Membership.segment_id)
            .where(Segment.shop_id == env.shop.id, Segment.tag_sync.is_(True), Segment.enabled)
        )
        for cid, tag in rows:
            wanted[cid].add(tag)
    return wanted


def _assert_tags(env: TagEnv) -> dict[int, list[str]]:
    """Shopify holds every merchant tag, in place, and after them exactly the Goldpan tags the
    segments call for (one copy each, none the customer already had); the ledger holds those."""
    shopify = env.shopify_tags()
    wanted = _wanted(env)
    written = env.written()
    goldpans: dict[int, list[str]] = {}
    for cid, tags in shopify.items():
        mine = MERCHANT[cid]
        assert tags[: len(mine)] == mine, (cid, tags)
        had = {tag_key(t) for t in mine}
        ours = tags[len(mine) :]
        assert sorted(ours) == sorted(t for t in wanted.get(cid, set()) if tag_key(t) not in had)
        assert written.get(cid, set()) == {tag_key(t) for t in ours}, cid
        goldpans[cid] = ours
    return goldpans


def test_a_prefix_or_tag_the_store_uses_is_refused(shop: tuple[TagEnv, Api]) -> None:
    env, api = shop
    for prefix in ("VIP", "vip-", "VIP."):
        r = api.put("/settings", {"settings": {"tag_prefix": prefix}})
        assert r.status_code == 400, prefix
        assert r.json() == {
            "error": "“VIP” is already a tag in your store (used on 4 customers)",
            "field": "tag_prefix",
            # What the page words in the merchant's language.
            "code": "tag_taken",
            "params": {"tag": "VIP", "count": 4},
        }
    # A prefix that would give a segment a tag the store uses: "shop-" makes "shop-vip".
    r = api.put("/settings", {"settings": {"tag_prefix": "shop-"}})
    assert r.json()["error"] == "“shop-vip” is already a tag in your store (used on 1 customer)"
    # The store's tags that merely start alike are no collision; a short prefix is refused.
    r = api.put("/settings", {"settings": {"tag_prefix": "s"}})
    assert r.status_code == 400 and "at least 3 characters" in r.json()["error"]
    # A renamed segment tag is checked too, as Shopify compares tags.
    segment_id = api.segment("vip")["id"]
    r = api.post(f"/segments/{segment_id}/tag-sync", {"enabled": True, "tag": "Pop-Up-2024"})
    assert r.status_code == 400
    assert r.json()["error"] == "“pop-up-2024” is already a tag in your store (used on 1 customer)"
    other = api.segment("repeat-customers")["tag"]
    r = api.post(f"/segments/{segment_id}/tag-sync", {"enabled": True, "tag": other})
    assert r.status_code == 400 and r.json()["field"] == "tag"
    assert api.get("/settings").json()["settings"]["tag_prefix"] == "goldpan-"
    assert env.shopify_tags() == MERCHANT


def test_before_the_customer_import_ends_shopify_is_asked(
    make_tag_env: Callable[..., TagEnv],
) -> None:
    env = make_tag_env()
    for cid in (1, 2, 3):
        env.store.add_customer(
            SandboxCustomer(cid, None, None, None, None, NOW, NOW, tags=["VIP", f"m{cid}"]),
            notify=False,
        )
    server = start_server(create_app(env.ctx))
    try:
        api = Api(server, env.shop.domain)
        r = api.put("/settings", {"settings": {"tag_prefix": "vip-"}})
        assert r.status_code == 400
        assert r.json()["error"] == "“VIP” is already a tag in your store (used on 3 customers)"
        r = api.put("/settings", {"settings": {"tag_prefix": "gp-"}})
        assert r.status_code == 200, r.text
    finally:
        server.stop()


def test_merchant_tags_survive_prefix_changes_renames_and_remove_all(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    api.sync_tags("one-time-buyers")
    api.sync_tags("repeat-customers")
    first = _assert_tags(env)
    assert first[101] == ["goldpan-one-time-buyers"] and first[103] == ["goldpan-repeat-customers"]

    preview = api.change({"tag_prefix": "gp-"})
    moves = {row["tag"]: row for row in preview["tags"]}
    members = {cid for cid, tags in _wanted(env).items() if tags}
    assert moves["gp-one-time-buyers"]["added"] == 6 and moves["gp-repeat-customers"]["added"] == 2
    assert moves["goldpan-one-time-buyers"]["removed"] == 6
    assert preview["customers"] == len(members)
    moved = _assert_tags(env)
    assert moved[101] == ["gp-one-time-buyers"] and moved[107] == ["gp-one-time-buyers"]
    # Only the merchant's own Goldpan-looking tags are left under the old prefix.
    assert [
        t for tags in env.shopify_tags().values() for t in tags if tag_key(t)[:8] == "goldpan-"
    ] == [
        "goldpan-friends",
        "Goldpan-Fan-Club",
    ]

    api.change({"tag_prefix": "goldpan-"})
    back = _assert_tags(env)
    assert back == first  # exactly one copy of each tag, no gp-* left
    assert not any(t.startswith("gp-") for tags in env.shopify_tags().values() for t in tags)
    # Prefixes were free to move between: Goldpan's own tags are no collision.

    api.sync_tags("one-time-buyers", tag="Welcome back")
    renamed = _assert_tags(env)
    assert renamed[101] == ["Welcome back"] and renamed[107] == ["Welcome back"]

    r = api.post("/tags/remove-all", {"confirm": True})
    assert r.status_code == 202
    assert env.shopify_tags() == MERCHANT
    assert env.written() == {}


def test_an_unconfirmed_change_changes_nothing(shop: tuple[TagEnv, Api]) -> None:
    env, api = shop
    api.sync_tags("one-time-buyers")
    api.sync_tags("repeat-customers")
    before = env.shopify_tags()
    written = env.written()
    last_entry = (
        select(AuditEntry.id)
        .where(AuditEntry.shop_id == env.shop.id)
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    with env.ctx.sessions() as session:
        audit = session.scalar(last_entry)
        settings = session.get(Shop, env.shop.id).settings  # type: ignore[union-attr]
    for change in ({"tag_prefix": "gp-"}, {"repeat_min_orders": 3}):
        r = api.put("/settings", {"settings": change})
        assert r.status_code == 409, change
        assert r.json()["applied"] is False and r.json()["token"]
        r = api.put("/settings", {"settings": change, "confirm": "not-the-token"})
        assert r.status_code == 409
    assert env.shopify_tags() == before and env.written() == written
    with env.ctx.sessions() as session:
        assert session.scalar(last_entry) == audit
        assert session.get(Shop, env.shop.id).settings == settings  # type: ignore[union-attr]
    assert api.segment("one-time-buyers")["tag"] == "goldpan-one-time-buyers"


def test_a_tier_change_keeps_tier_syncs_and_turns_off_a_removed_tier(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    api.sync_tags("lapsed-tier-1")
    api.sync_tags("lapsed-tier-2")
    with env.ctx.sessions.begin() as session:
        for segment in session.scalars(select(Segment).where(Segment.shop_id == env.shop.id)):
            if segment.handle in ("lapsed-tier-1", "lapsed-tier-2"):
                segment.meta_sync = True
    tier1, tier2 = api.segment("lapsed-tier-1"), api.segment("lapsed-tier-2")
    _assert_tags(env)
    assert env.shopify_tags()[106] == ["VIP", "goldpan-lapsed-tier-2"]

    tiers = [
        {"days": 45, "discount_percent": 10},
        {"days": 120, "discount_percent": 15},
        {"days": 180, "discount_percent": 20},
    ]
    preview = api.change({"lapsed_tiers": tiers})
    # 106 (100 days) moves from tier 2 to tier 1; 108 (200 days) from tier 2 to the new tier 3.
    assert {r["tag"]: (r["added"], r["removed"]) for r in preview["tags"]} == {
        "goldpan-lapsed-tier-1": (1, 0),
        "goldpan-lapsed-tier-2": (0, 2),
    }
    assert {a["segment"]: (a["added"], a["removed"]) for a in preview["audiences"]} == {
        "lapsed-tier-1": (1, 0),
        "lapsed-tier-2": (0, 2),
    }
    assert preview["removed"] == []
    after1, after2 = api.segment("lapsed-tier-1"), api.segment("lapsed-tier-2")
    # Same segments: same id, tag, tag sync and Meta sync; the name follows the days. (How
    # many members carry the tag, ``written``, follows the new members.)
    for was, now in ((tier1, after1), (tier2, after2)):
        assert (now["id"], now["tag"], now["tag_sync"]["enabled"], now["meta_sync"]["enabled"]) == (
            was["id"],
            was["tag"],
            was["tag_sync"]["enabled"],
            True,
        )
    assert after1["name"] == "Lapsed 45–119 days"
    tier3 = api.segment("lapsed-tier-3")
    assert tier3["tag_sync"]["enabled"] is False and tier3["members"] == 1
    assert env.shopify_tags()[106] == ["VIP", "goldpan-lapsed-tier-1"]
    _assert_tags(env)

    api.sync_tags("lapsed-tier-3")
    assert env.shopify_tags()[108] == ["staff", "goldpan-lapsed-tier-3"]
    # Back to two tiers: tier 3 is removed, and says so before and after.
    preview = api.change({"lapsed_tiers": tiers[:2]})
    assert [(r["segment"], r["tag_sync"]) for r in preview["removed"]] == [("lapsed-tier-3", True)]
    gone = api.segment("lapsed-tier-3")
    assert gone["tag_sync"]["enabled"] is False and gone["members"] == 0
    assert env.shopify_tags()[108] == ["staff", "goldpan-lapsed-tier-2"]
    _assert_tags(env)
    with env.ctx.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id, AuditEntry.action == "segment.removed"
            )
        ).one()
    assert entry.subject == "lapsed-tier-3" and entry.detail["tag_sync"] is True


def test_a_recompute_keeps_a_renamed_tag(shop: tuple[TagEnv, Api]) -> None:
    env, api = shop
    api.sync_tags("one-time-buyers", tag="First order")
    jobs.run_now(env.ctx, "segments.recompute_shop", shop_id=env.shop.id)
    assert api.segment("one-time-buyers")["tag"] == "First order"
    assert env.shopify_tags()[101] == ["VIP", "First order"]


def test_a_rule_product_matching_nothing_is_saved_with_a_warning_at_that_product(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    # No catalogue yet: nothing to judge a product against, so nothing is warned.
    rule = {"name": "Mats", "bought": ["napkin"], "never": ["placemat"]}
    r = api.put("/settings", {"settings": {"cross_sell": [rule]}})
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == []
    with env.ctx.sessions.begin() as session:
        session.add_all(
            [
                Product(shop_id=env.shop.id, id=9001, title="Linen Napkins"),
                Product(shop_id=env.shop.id, id=9002, title="Placemats"),
            ]
        )
    rules = [rule, {"name": "Typo", "bought": ["9001"], "never": ["plcaemat", "9999"]}]
    r = api.put("/settings", {"settings": {"cross_sell": rules}})
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [
        {"field": "cross_sell[1].never[0]", "code": "no_match", "params": {"product": "plcaemat"}},
        {"field": "cross_sell[1].never[1]", "code": "no_match", "params": {"product": "9999"}},
    ]
    # Saved all the same: the product may be added to the catalogue later.
    saved = api.get("/settings").json()["settings"]["cross_sell"]
    assert [r["handle"] for r in saved] == ["mats", "typo"]


RECENT = {
    "handle": "recent",
    "name": "Recent",
    "rules": [{"field": "days_since_last_order", "op": "<=", "value": 40}],
}


def test_an_archived_custom_segment_takes_its_tags_off_and_can_be_restored(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    r = api.put("/settings", {"settings": {"custom_segments": [RECENT]}})
    assert r.status_code == 200, r.text  # nothing syncs it yet: nothing moves
    api.sync_tags("custom-recent")
    recent = {101, 102, 103, 104}  # last orders 10, 20, 10 and 30 days ago
    tagged = {c for c, tags in env.shopify_tags().items() if "goldpan-custom-recent" in tags}
    assert tagged == recent

    # Archived: previewed like a delete (tags off, sync off), and the rules are kept.
    preview = api.change({"custom_segments": [{**RECENT, "archived": True}]})
    assert [(r["segment"], r["tag_sync"]) for r in preview["removed"]] == [("custom-recent", True)]
    assert {r["tag"]: (r["added"], r["removed"]) for r in preview["tags"]} == {
        "goldpan-custom-recent": (0, 4)
    }
    assert not any("goldpan-custom-recent" in tags for tags in env.shopify_tags().values())
    _assert_tags(env)
    row = api.segment("custom-recent")
    assert (row["archived"], row["defined"], row["members"]) == (True, False, 0)
    assert row["tag_sync"]["enabled"] is False
    kept = api.get("/settings").json()["settings"]["custom_segments"]
    assert kept == [{**RECENT, "archived": True}]

    # Restored: its members come back; its tag waits until the merchant turns the sync on.
    r = api.put("/settings", {"settings": {"custom_segments": [RECENT]}})
    assert r.status_code == 200, r.text
    row = api.segment("custom-recent")
    assert (row["archived"], row["defined"], row["members"]) == (False, True, 4)
    assert not any("goldpan-custom-recent" in tags for tags in env.shopify_tags().values())


def test_a_renamed_segment_has_its_new_name_before_any_recompute(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    rule = {"handle": "mats", "name": "Mats", "bought": ["napkins"], "never": ["placemat"]}
    assert api.put("/settings", {"settings": {"custom_segments": [RECENT], "cross_sell": [rule]}})
    # Applied as the API does, but without the recompute it queues.
    change = settings_change.prepare(
        env.ctx,
        env.shop.id,
        {
            "custom_segments": [{**RECENT, "name": "Bought lately"}],
            "cross_sell": [{**rule, "name": "생일 선물"}],
        },
    )
    assert not change.effect.moves
    settings_change.apply(env.ctx, change)
    assert api.segment("custom-recent")["name"] == "Bought lately"
    assert api.segment("cross-sell-mats")["name"] == "생일 선물"


def test_a_tags_condition_reads_the_stores_tags_but_never_goldpans(
    shop: tuple[TagEnv, Api],
) -> None:
    env, api = shop
    vip = {"handle": "vips", "rules": [{"field": "tags", "op": "has", "value": "vip"}]}
    r = api.put("/settings", {"settings": {"custom_segments": [vip]}})
    assert r.status_code == 200, r.text
    # 109 is tagged VIP but has never ordered: segments are of customers who ordered.
    expected = {cid for cid, (tags, days) in STORE.items() if "VIP" in tags and days}
    with env.ctx.sessions() as session:
        segment_id = api.segment("custom-vips")["id"]
        members = set(
            session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == segment_id)
            )
        )
    assert members == expected
    preview = api.post("/segments/preview", {"segment": vip})
    assert preview.status_code == 200 and preview.json()["members"] == len(expected)

    # A tag Goldpan writes, under its prefix or renamed, would make a segment feed on itself.
    api.sync_tags("one-time-buyers", tag="First order")
    for tag in ("goldpan-repeat-customers", "first ORDER"):
        spec = {"handle": "loop", "rules": [{"field": "tags", "op": "has", "value": tag}]}
        for r in (
            api.put("/settings", {"settings": {"custom_segments": [vip, spec]}}),
            api.post("/segments/preview", {"segment": spec}),
        ):
            assert r.status_code == 400, (tag, r.text)
            assert r.json()["code"] == "own_tag"
            assert r.json()["field"].endswith("rules[0].value")
