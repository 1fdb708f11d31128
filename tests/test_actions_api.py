"""The actions API over real HTTP (``create_app`` and its session-token middleware): the
win-back discount switches per lapsed tier and the scores switch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Segment, Shop
from shopify_app.jobs import Context
from tests.fixtures_api import ApiClient, RecordingRuntime, seed_shop, serving_recorded


@pytest.fixture
def queued() -> RecordingRuntime:
    return RecordingRuntime()


@pytest.fixture
def server(ctx: Context, queued: RecordingRuntime) -> Iterator[str]:
    with serving_recorded(ctx, queued) as url:
        queued.calls.clear()
        yield url


@pytest.fixture
def shop(make_shop: Any, sessions: sessionmaker[Session]) -> Shop:
    made = make_shop()
    seed_shop(sessions, made.id, customers=30, seed=5)
    return made  # type: ignore[no-any-return]


def test_discount_switch_per_tier(
    server: str, shop: Shop, queued: RecordingRuntime, sessions: sessionmaker[Session]
) -> None:
    client = ApiClient(server, shop.domain)
    state = client.get("/actions").json()
    tiers = state["discounts"]
    assert [t["handle"] for t in tiers] == [f"lapsed-tier-{i}" for i in range(1, len(tiers) + 1)]
    assert all(t["enabled"] is False and t["status"] == "off" for t in tiers)

    refused = client.put("/actions/discounts/1", {"enabled": True})
    assert refused.status_code == 400 and refused.json()["field"] == "tier"  # no tag sync yet
    with sessions.begin() as session:
        session.execute(
            update(Segment)
            .where(Segment.shop_id == shop.id, Segment.handle == "lapsed-tier-1")
            .values(tag_sync=True)
        )
    done = client.put("/actions/discounts/1", {"enabled": True}).json()
    assert done["discounts"][0]["enabled"] is True and done["discounts"][0]["tag_sync"] is True
    assert ("actions.sync_discounts", {"shop_id": shop.id}) in queued.calls

    for path, body, field in (
        ("/actions/discounts/9", {"enabled": True}, "tier"),
        ("/actions/discounts/x", {"enabled": True}, "tier"),
        ("/actions/discounts/1", {"enabled": "yes"}, "enabled"),
    ):
        answer = client.put(path, body)
        assert answer.status_code == 400 and answer.json()["field"] == field


def test_scores_switch_queues_the_first_write(
    server: str, shop: Shop, queued: RecordingRuntime
) -> None:
    client = ApiClient(server, shop.domain)
    assert client.get("/actions").json()["scores"]["enabled"] is False
    state = client.put("/actions/scores", {"enabled": True}).json()
    assert state["scores"]["enabled"] is True
    assert queued.calls == [("actions.write_scores", {"shop_id": shop.id})]
    assert client.put("/actions/scores", {"enabled": False}).json()["scores"]["enabled"] is False
    assert len(queued.calls) == 1


def test_actions_carry_the_holdouts_and_results_per_tier(
    server: str, shop: Shop, sessions: sessionmaker[Session]
) -> None:
    client = ApiClient(server, shop.domain)
    assert client.put("/settings", {"settings": {"holdouts": {"lapsed-tier-2": 0.2}}}).json()[
        "applied"
    ]
    state = client.get("/actions").json()
    assert state["holdouts"] == {"lapsed-tier-2": 0.2}
    report = state["results"]
    assert [t["segment"] for t in report["tiers"]] == ["lapsed-tier-1", "lapsed-tier-2"]
    assert report["cohorts"] == [] and report["window_days"] == 60  # nothing recorded yet
