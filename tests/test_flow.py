"""Shopify Flow triggers end to end: the sandbox enables a workflow (and calls the app's signed
lifecycle callback over loopback), recomputes move customers in and out of a segment, and
the app announces each entry and departure once with ``flowTriggerReceive``."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from goldpan_sandbox import flow as sandbox_flow
from goldpan_sandbox.delivery import sign
from shopify_app import jobs
from shopify_app.actions import flow, holdout
from shopify_app.db.models import FlowEvent, FlowWorkflow, Membership, Segment, Shop
from shopify_app.errors import ShopifyError
from shopify_app.segments.recompute import forget_customers, recompute_shop_now, shop_config
from shopify_app.states import FlowEventStatus, FlowTrigger
from shopify_app.sync import bulk
from shopify_app.tagging.writes import AdminAPI
from tests.fixtures_api import serving
from tests.fixtures_sync import *  # noqa: F403
from tests.fixtures_sync import TEST_API_SECRET, SyncEnv

EXTENSIONS = Path(__file__).resolve().parents[1] / "extensions"
SEGMENT = "repeat-customers"


@pytest.fixture
def env(make_sync_env: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """A shop synced and recomputed with repeat customers needing three orders, the app served
    on loopback where the sandbox's Flow sends its lifecycle callbacks."""
    synced = make_sync_env()
    bulk.initial(synced.ctx, synced.shop.id, http=synced.http, poll_interval=0.01)
    _set_threshold(synced, 3)
    with serving(synced.ctx) as url:
        synced.sandbox.delivery.app_url = url
        yield synced


def _control(env: SyncEnv, path: str) -> str:
    return f"{env.sandbox.base_url}/_sandbox/shops/{env.store.domain}/{path}"


def _workflow(env: SyncEnv, trigger: FlowTrigger, enabled: bool = True) -> dict[str, Any]:
    response = requests.post(
        _control(env, "flow-workflows"),
        json={"trigger": trigger.value, "enabled": enabled},
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _events(env: SyncEnv) -> list[dict[str, Any]]:
    response = requests.get(_control(env, "flow-events"), timeout=10)
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _members(env: SyncEnv, handle: str = SEGMENT) -> set[int]:
    with env.ctx.sessions() as session:
        return set(
            session.scalars(
                select(Membership.customer_id)
                .join(Segment, Segment.id == Membership.segment_id)
                .where(Segment.shop_id == env.shop.id, Segment.handle == handle)
            )
        )


def _settings(env: SyncEnv, **values: Any) -> None:
    with env.ctx.sessions.begin() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        shop.settings = {**(shop.settings or {}), **values}


def _set_threshold(env: SyncEnv, orders: int) -> None:
    """The orders a repeat customer needs, then a full recompute."""
    _settings(env, repeat_min_orders=orders)
    recompute_shop_now(env.ctx, env.shop.id)


def _widen(env: SyncEnv) -> set[int]:
    """Repeat customers from two orders on (a real recompute); returns who entered."""
    before = _members(env)
    _set_threshold(env, 2)
    entered = _members(env) - before
    assert len(entered) >= 2, "the store must have several customers with exactly two orders"
    return entered


def _flow_calls(env: SyncEnv, since: int = 0) -> int:
    return sum(1 for c in env.http.calls[since:] if c.operation == "FlowTriggerReceive")


def test_extensions_declare_the_fields_the_app_sends() -> None:
    """Both triggers carry the customer reference and exactly :data:`flow.FIELDS`; the handles
    follow Flow's rules (at most 30 characters, letters, digits and hyphens)."""
    for trigger, name in flow.TRIGGER_NAMES.items():
        config = tomllib.loads((EXTENSIONS / trigger.value / "shopify.extension.toml").read_text())
        [ext] = config["extensions"]
        assert (ext["type"], ext["handle"], ext["name"]) == ("flow_trigger", trigger.value, name)
        assert len(ext["handle"]) <= 30 and ext["handle"].replace("-", "").isalnum()
        fields = config["settings"]["fields"]
        assert fields[0] == {"type": "customer_reference"}
        assert {f["key"]: f["type"] for f in fields[1:]} == flow.FIELDS
        assert all(f["key"].replace(" ", "").isalpha() for f in fields[1:])
    lifecycle = tomllib.loads(
        (EXTENSIONS / "goldpan-flow-lifecycle" / "shopify.extension.toml").read_text()
    )
    assert lifecycle["extensions"][0]["type"] == "flow_trigger_lifecycle_callback"
    assert lifecycle["extensions"][0]["url"] == "/flow/lifecycle"


def test_entering_a_segment_sends_one_flow_event(env: SyncEnv) -> None:
    assert _workflow(env, FlowTrigger.ENTERED) == {
        "trigger": FlowTrigger.ENTERED.value,
        "enabled": True,
        "callback_status": 200,
        "error": None,
    }
    with env.ctx.sessions() as session:
        row = session.get(FlowWorkflow, (env.shop.id, FlowTrigger.ENTERED))
        assert row is not None and row.enabled
    # Hearing of the workflow queues the first run, which records today's members.
    assert ("actions.flow_events", {"shop_id": env.shop.id}) in env.ctx.enqueued
    baseline = flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert baseline.recorded > 0 and baseline.sent == 0  # enabling replays nobody
    assert _events(env) == []

    entered = _widen(env)
    assert ("actions.flow_events", {"shop_id": env.shop.id}) in env.ctx.enqueued
    report = flow.sync_events(env.ctx, env.shop.id, client=env.client())
    events = _events(env)
    assert report.sent == len(events) == len(entered)
    assert {e["payload"]["customer_id"] for e in events} == entered
    for event in events:
        assert event["handle"] == FlowTrigger.ENTERED.value and event["workflow_enabled"]
        body = event["payload"]
        assert (body["Segment handle"], body["Tier"]) == (SEGMENT, 0)  # not a lapsed tier
        assert body["Reason"] and len(body["RFM score"]) == 3
        assert 0 <= body["Chance still active"] <= 1

    # A second recompute and a rerun of the task (a retry) find every entry already announced.
    calls = len(env.http.calls)
    recompute_shop_now(env.ctx, env.shop.id)
    jobs.run_now(env.ctx, "actions.flow_events", shop_id=env.shop.id)
    assert flow.sync_events(env.ctx, env.shop.id, client=env.client()).sent == 0
    assert len(_events(env)) == len(entered) and _flow_calls(env, calls) == 0


class _FailsAfter:
    """An Admin client whose ``FlowTriggerReceive`` fails after ``ok`` calls (a lost network)."""

    def __init__(self, client: AdminAPI, ok: int) -> None:
        self.client, self.ok = client, ok

    def execute(self, document_name: str, variables: dict[str, Any] | None = None) -> Any:
        if document_name == "flow_trigger_receive":
            if self.ok == 0:
                raise ShopifyError("connection reset")
            self.ok -= 1
        return self.client.execute(document_name, variables)


def test_a_retried_run_sends_only_what_the_failed_one_did_not(env: SyncEnv) -> None:
    _workflow(env, FlowTrigger.ENTERED)
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    entered = _widen(env)
    with pytest.raises(ShopifyError):
        flow.sync_events(env.ctx, env.shop.id, client=_FailsAfter(env.client(), 1))  # type: ignore[arg-type]
    assert len(_events(env)) == 1
    flow.sync_events(env.ctx, env.shop.id, client=env.client())  # the task's retry
    ids = [e["payload"]["customer_id"] for e in _events(env)]
    assert sorted(ids) == sorted(entered)  # each once


def test_no_event_for_held_out_customers(env: SyncEnv) -> None:
    _settings(env, holdouts={SEGMENT: 0.5})
    _workflow(env, FlowTrigger.ENTERED)
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    entered = _widen(env)
    with env.ctx.sessions() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        cfg = shop_config(shop)
    held = {c for c in entered if holdout.held_out(cfg, SEGMENT, c)}
    assert held and held != entered, "a 50% hold-out of the entrants holds some, not all"
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert {e["payload"]["customer_id"] for e in _events(env)} == entered - held
    with env.ctx.sessions() as session:
        skipped = set(
            session.scalars(
                select(FlowEvent.customer_id).where(
                    FlowEvent.customer_id.in_(held), FlowEvent.status == FlowEventStatus.SKIPPED
                )
            )
        )
    assert skipped == held  # recorded, so never announced later


def test_no_event_without_a_workflow(env: SyncEnv) -> None:
    _workflow(env, FlowTrigger.ENTERED)
    _workflow(env, FlowTrigger.ENTERED, enabled=False)  # the merchant turned it off again
    calls = len(env.http.calls)
    _widen(env)
    report = flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert report.recorded == report.sent == 0
    assert _events(env) == [] and _flow_calls(env, calls) == 0


def test_leaving_a_segment_sends_the_left_trigger(env: SyncEnv) -> None:
    _workflow(env, FlowTrigger.LEFT)
    entered = _widen(env)
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert _events(env) == []  # only "left" has a workflow
    _set_threshold(env, 3)
    left = entered - _members(env)
    assert left == entered
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    events = _events(env)
    assert {e["handle"] for e in events} == {FlowTrigger.LEFT.value}
    assert {e["payload"]["customer_id"] for e in events} == left
    assert flow.sync_events(env.ctx, env.shop.id, client=env.client()).sent == 0


def _lifecycle_body(env: SyncEnv, enabled: bool, timestamp: str) -> bytes:
    return json.dumps(
        {
            "flow_trigger_definition_id": flow.TRIGGER_NAMES[FlowTrigger.ENTERED],
            "has_enabled_flow": enabled,
            "shop_id": 1,
            "shopify_domain": env.store.domain,
            "timestamp": timestamp,
        }
    ).encode()


def test_lifecycle_callback_is_verified_and_newest_wins(env: SyncEnv) -> None:
    url = f"{env.sandbox.delivery.app_url}/flow/lifecycle"
    body = _lifecycle_body(env, True, "2026-12-01T10:00:00.000Z")
    forged = requests.post(
        url, data=body, headers={"X-Shopify-Hmac-Sha256": sign("not-the-secret", body)}, timeout=10
    )
    unsigned = requests.post(url, data=body, timeout=10)
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    with env.ctx.sessions() as session:
        assert session.scalars(select(FlowWorkflow)).all() == []

    def post(data: bytes) -> int:
        signed = {"X-Shopify-Hmac-Sha256": sign(TEST_API_SECRET, data)}
        return requests.post(url, data=data, headers=signed, timeout=10).status_code

    assert post(body) == 200
    assert post(_lifecycle_body(env, False, "2026-12-01T09:00:00.000Z")) == 200  # older: ignored
    with env.ctx.sessions() as session:
        row = session.get(FlowWorkflow, (env.shop.id, FlowTrigger.ENTERED))
        assert row is not None and row.enabled
    assert post(_lifecycle_body(env, False, "2026-12-01T11:00:00.000Z")) == 200
    assert post(b"{not json") == 400
    with env.ctx.sessions() as session:
        row = session.get(FlowWorkflow, (env.shop.id, FlowTrigger.ENTERED))
        assert row is not None and not row.enabled


def test_sandbox_validates_flow_trigger_receive_as_flow_does(env: SyncEnv) -> None:
    client = env.client()
    customer_id = next(iter(env.store.customers))
    good = {
        "customer_id": customer_id,
        **{key: ("" if kind != "number_decimal" else 0) for key, kind in flow.FIELDS.items()},
        "Business buyer": False,
    }

    def errors(handle: str, payload: Any) -> list[dict[str, Any]]:
        data = client.execute("flow_trigger_receive", {"handle": handle, "payload": payload})
        found: list[dict[str, Any]] = data["flowTriggerReceive"]["userErrors"]
        return found

    assert errors(FlowTrigger.ENTERED.value, good) == []
    [unknown] = errors("no-such-trigger", good)
    assert unknown == {
        "field": ["body"],
        "message": "Errors validating schema:\n  Invalid handle 'no-such-trigger'.\n",
    }
    [mismatch] = errors(
        FlowTrigger.ENTERED.value,
        {**{k: v for k, v in good.items() if k != "Reason"}, "Tier": "one", "Extra": 1},
    )
    assert mismatch["field"] == ["body"]
    assert "Required field missing: 'Reason'." in mismatch["message"]
    assert "Invalid field: 'Extra'." in mismatch["message"]
    assert "Type error for field 'Tier': one is not a Number." in mismatch["message"]
    [nobody] = errors(FlowTrigger.ENTERED.value, {**good, "customer_id": 999_999})
    assert "Invalid customer_id '999999'" in nobody["message"]
    [large] = errors(FlowTrigger.ENTERED.value, {**good, "Reason": "x" * 50_001})
    assert large["message"] == (
        "Errors validating schema:\n  Properties size exceeds the limit of 50000 bytes.\n"
    )
    # Only the valid call became an event, and no workflow ran on it.
    assert [e["workflow_enabled"] for e in sandbox_flow.events_json(env.store)] == [False]


def test_payload_carries_the_tier_and_its_code_within_flows_limits() -> None:
    segment = Segment(handle="lapsed-tier-2", name="Lapsed 90+ days " + "é" * 400)
    scores = {"p_alive": "0.35", "expected_orders_90d": "0.5", "predicted_value_12m": "120"}
    body = flow.payload(7, segment, "r" * 1000, "COMEBACK15-7KQ2", scores)
    assert (body["customer_id"], body["Tier"], body["Discount code"]) == (7, 2, "COMEBACK15-7KQ2")
    assert (body["Chance still active"], body["Predicted value"]) == (0.35, 120.0)
    assert len(body["Segment name"]) == len(body["Reason"]) == flow.MAX_TEXT
    assert body["Business buyer"] is False and body["RFM score"] == ""
    assert set(body) == {"customer_id", *flow.FIELDS}
    assert flow.tier_of("true-fans") == flow.tier_of("lapsed-tier-x") == 0


def test_a_forgotten_customer_leaves_no_flow_rows_and_no_departure(env: SyncEnv) -> None:
    _workflow(env, FlowTrigger.ENTERED)
    _workflow(env, FlowTrigger.LEFT)
    entered = _widen(env)
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    gone = min(entered)
    with env.ctx.sessions.begin() as session:
        forget_customers(session.connection(), env.shop.id, [gone])
    with env.ctx.sessions() as session:
        assert not session.scalars(select(FlowEvent).where(FlowEvent.customer_id == gone)).all()
    sent = len(_events(env))
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert len(_events(env)) == sent  # no "left" for a customer redacted out of the segment


def test_switching_a_segment_off_is_not_everyone_leaving(env: SyncEnv) -> None:
    _workflow(env, FlowTrigger.LEFT)
    _widen(env)
    flow.sync_events(env.ctx, env.shop.id, client=env.client())
    with env.ctx.sessions.begin() as session:
        segment = session.scalars(
            select(Segment).where(Segment.shop_id == env.shop.id, Segment.handle == SEGMENT)
        ).one()
        segment.enabled = False
    recompute_shop_now(env.ctx, env.shop.id)
    assert _members(env) == set()
    report = flow.sync_events(env.ctx, env.shop.id, client=env.client())
    assert report.recorded > 0 and report.sent == 0 and _events(env) == []
