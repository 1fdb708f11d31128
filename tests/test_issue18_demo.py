"""Issue 18's "done when", walked through the demo at ``./dev demo``'s default size (2,000
customers) the way a merchant and a person at the sandbox would: the app's page API with
session tokens the Shopify sandbox mints, and the sandbox's control API, all over loopback.

The pieces have tests of their own on small shops (test_actions, test_winback_proof,
test_flow, test_meta_value); this one checks they hold together on a shop of the demo's size,
where the purchase model has to fit and a lookalike's source has to reach Meta's minimum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import requests

from goldpan_sandbox.demo import Demo, start_demo
from shopify_app.actions.holdout import bucket
from tests.conftest import fresh_database
from tests.fixtures_demo import DEMO_AS_OF

T = TypeVar("T")
DEMO_CUSTOMERS = 2000  # `shopify-app demo`'s default
WAIT = 90.0  # seconds the inline worker gets to act on a change (a bound, not a measurement)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("issue18")
    with fresh_database(workdir) as database_url:
        running = start_demo(
            customers=DEMO_CUSTOMERS,
            seed=7,
            database_url=database_url,
            workdir=workdir,
            as_of=DEMO_AS_OF,
        )
        try:
            yield running
        finally:
            running.stop()


class Merchant:
    """The page's API calls, each with a fresh session token from the sandbox."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        token = self.demo.shopify.oauth.mint_session_token(self.demo.shop_domain)
        return requests.request(
            method,
            f"{self.demo.app_url}/api{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.call(method, path, body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def segment_id(self, handle: str) -> int:
        rows = self.ok("GET", "/segments")["segments"]
        return int(next(r["id"] for r in rows if r["handle"] == handle))

    def members(self, handle: str) -> list[int]:
        """Every member's id, page after page."""
        sid, found, after = self.segment_id(handle), [], 0
        while True:
            page = self.ok("GET", f"/segments/{sid}/members?after={after}")
            found += [m["id"] for m in page["members"]]
            if not page["has_next"]:
                return found
            after = page["next_after"]


class Sandbox:
    """The Shopify sandbox's control API for the demo shop."""

    def __init__(self, demo: Demo) -> None:
        self.base = f"{demo.sandbox_url}/_sandbox/shops/{demo.shop_domain}"

    def get(self, path: str) -> Any:
        response = requests.get(self.base + path, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = requests.post(self.base + path, json=body, timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def order(self, customer_id: int, price: str = "40", codes: list[str] | None = None) -> None:
        spec: dict[str, Any] = {"customer_id": customer_id, "line_items": [{"price": price}]}
        if codes:
            spec["discount_codes"] = codes
        self.post("/orders", spec)

    def metafields(self, customer_id: int) -> dict[str, Any]:
        return dict(self.get(f"/customers/{customer_id}").get("metafields", {}))


def until(probe: Callable[[], T | None], what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fails naming ``what`` if it never does."""
    deadline = time.monotonic() + WAIT
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"the demo never got to: {what}")
        time.sleep(0.3)


def _audit(merchant: Merchant, action: str) -> list[dict[str, Any]]:
    return [e for e in merchant.ok("GET", "/audit")["entries"] if e["action"] == action]


def _score_run(merchant: Merchant) -> None:
    """Switch scores on again (which queues a write run) and wait for that run to finish."""
    before = merchant.ok("GET", "/actions")["scores"]["written_at"]
    merchant.ok("PUT", "/actions/scores", {"enabled": True})
    until(
        lambda: merchant.ok("GET", "/actions")["scores"]["written_at"] != before,
        "a score write run",
    )


def test_issue_18_end_to_end_in_the_demo(demo: Demo) -> None:
    merchant, sandbox = Merchant(demo), Sandbox(demo)

    # 1. The 60-day tier's discount: a code limited to a segment of its own (the tier's tag
    # without the hold-out and reminder tags), whose members are the tier's treated customers.
    tier_id = merchant.segment_id("lapsed-tier-1")
    assert merchant.ok("POST", f"/segments/{tier_id}/tag-sync", {"enabled": True, "confirm": True})[
        "applied"
    ]
    merchant.ok("PUT", "/actions/discounts/1", {"enabled": True})
    [discount] = until(lambda: sandbox.get("/discounts")["discounts"], "a discount in Shopify")
    tier = next(t for t in merchant.ok("GET", "/actions")["discounts"] if t["tier"] == 1)
    assert (discount["code"], discount["percentage"]) == (tier["code"], 0.1)
    assert discount["status"] == "ACTIVE" and discount["appliesOncePerCustomer"] is True
    [query] = discount["segmentQueries"]
    assert query == (
        "customer_tags CONTAINS 'goldpan-lapsed-tier-1'"
        " AND customer_tags NOT CONTAINS 'goldpan-holdout-lapsed-tier-1'"
        " AND customer_tags NOT CONTAINS 'goldpan-lapsed-reminder'"
    )
    reminded = set(merchant.members("lapsed-reminder"))
    lapsed = set(merchant.members("lapsed-tier-1"))
    number = discount["segments"][0].rsplit("/", 1)[1]

    def discount_segment() -> set[int] | None:
        # The tags (tier, reminder) reach Shopify shortly after the switch.
        found = set(sandbox.get(f"/segments/{number}/members")["customers"])
        return found if found == lapsed - reminded else None

    treated = until(discount_segment, "the discount segment holding the tier minus reminders")

    # 2. A lapsed customer orders with the code: one redemption, one recovered customer. A
    # customer due a reminder instead is refused the code at checkout.
    refused = requests.post(
        f"{sandbox.base}/orders",
        json={"customer_id": min(lapsed & reminded), "discount_codes": [discount["code"]]},
        timeout=30,
    )
    assert refused.status_code == 422 and "not available" in refused.text
    back = min(treated)
    sandbox.order(back, price="30", codes=[discount["code"]])

    def tier_results() -> dict[str, Any] | None:
        tiers = merchant.ok("GET", "/actions")["results"]["tiers"]
        row = next(t for t in tiers if t["segment"] == "lapsed-tier-1")
        return row if row["redemptions"] else None

    row = until(tier_results, "the redemption on the Actions page")
    assert row["codes"] == [discount["code"]]
    # $30 of items less the tier's 10%.
    assert (row["redemptions"], row["redemption_revenue"]) == (1, 27.0)
    assert (row["recovered"], row["recovered_revenue"]) == (1, 27.0)

    # 3. Scores as metafields; a second run writes nothing; an order changes that customer's.
    merchant.ok("PUT", "/actions/scores", {"enabled": True})
    [first] = until(lambda: _audit(merchant, "scores.write"), "the first score write")
    assert first["count"] > DEMO_CUSTOMERS // 2 and first["result"] == "ok"
    regulars = [c for c in merchant.members("repeat-customers") if c != back]
    regular, onlooker = regulars[0], regulars[1]
    scored, watched = sandbox.metafields(regular), sandbox.metafields(onlooker)
    assert {k.split(".", 1)[1] for k in scored} >= {"p_alive", "predicted_value_12m", "rfm_group"}
    _score_run(merchant)
    assert len(_audit(merchant, "scores.write")) == 1  # the second run wrote nothing
    assert sandbox.metafields(regular) == scored

    orders = merchant.ok("GET", f"/customers/{regular}")["customer"]["orders"]
    sandbox.order(regular, price="400")
    until(
        lambda: merchant.ok("GET", f"/customers/{regular}")["customer"]["orders"] > orders,
        "the order in the app",
    )
    _score_run(merchant)
    latest = _audit(merchant, "scores.write")[0]
    assert (latest["count"], latest["result"]) == (1, "ok")
    assert sandbox.metafields(regular) != scored
    assert sandbox.metafields(onlooker) == watched

    # 4. Flow: nothing without a workflow; with one, one event per segment entered, and none
    # for a customer held out of that segment.
    one_time = merchant.members("one-time-buyers")
    sandbox.order(one_time[0])
    until(lambda: one_time[0] in merchant.members("repeat-customers"), "a new repeat customer")
    assert sandbox.get("/flow-events")["events"] == []
    enabled = sandbox.post(
        "/flow-workflows", {"trigger": "goldpan-segment-entered", "enabled": True}
    )
    assert (enabled["callback_status"], enabled["error"]) == (200, None)
    changed = merchant.call(
        "PUT", "/settings", {"settings": {"holdouts": {"repeat-customers": 0.5}}}
    )
    if changed.status_code == 409:
        token = changed.json()["token"]
        changed = merchant.call(
            "PUT",
            "/settings",
            {"settings": {"holdouts": {"repeat-customers": 0.5}}, "confirm": token},
        )
    assert changed.status_code == 200, changed.text
    rest = one_time[1:]
    held = next(c for c in rest if bucket("repeat-customers", c) < 0.5)
    kept = next(c for c in rest if bucket("repeat-customers", c) >= 0.5)
    for customer in (held, kept):
        sandbox.order(customer)

    def entered() -> list[tuple[int, str]] | None:
        events = sandbox.get("/flow-events")["events"]
        pairs = [(e["payload"]["customer_id"], e["payload"]["Segment handle"]) for e in events]
        return pairs if (kept, "repeat-customers") in pairs else None

    pairs = until(entered, "a Flow event for the treated newcomer")
    assert pairs.count((kept, "repeat-customers")) == 1
    assert (held, "repeat-customers") not in pairs
    # Others may enter segments too (two new orders move the RFM and VIP cut-offs); no one
    # enters repeat-customers but the two who ordered.
    assert {c for c, handle in pairs if handle == "repeat-customers"} == {kept}

    # 5. A value-based audience of a segment and a lookalike from it, on Meta.
    tab: dict[str, str] = {}

    def visit(url: str) -> str:
        response = requests.get(url, cookies=tab, allow_redirects=False, timeout=30)
        tab.update(response.cookies.get_dict())
        assert response.status_code in (200, 302), response.text
        return str(response.headers.get("location", ""))

    visit(visit(visit(merchant.ok("POST", "/meta/connect")["url"])))
    merchant.ok("POST", "/meta/confirm")
    account = merchant.ok("GET", "/meta/adaccounts")["data"][0]["id"]
    assert merchant.ok("POST", "/meta/account", {"ad_account_id": account})["connected"]
    source = merchant.segment_id("repeat-customers")
    merchant.ok("POST", f"/meta/segments/{source}/sync", {"enabled": True})
    merchant.ok("POST", f"/meta/segments/{source}/value-audience")

    def value_audience() -> dict[str, Any] | None:
        panel = merchant.ok("GET", f"/meta/segments/{source}")
        audience = panel.get("value_audience") or {}
        return audience if audience.get("state") == "synced" else None

    value = until(value_audience, "a synced value-based audience")
    assert value["records"] >= 100 and value["error"] is None
    made = merchant.ok(
        "POST",
        f"/meta/segments/{source}/lookalike",
        {"country": "US", "ratio": 1, "source": "value"},
    )["created"]
    assert made["kind"] == "lookalike" and made["status"] == "ready"
    assert made["origin_audience_id"] == value["audience_id"]
