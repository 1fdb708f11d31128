"""Webhook intake over real HTTP (HMAC signed with the test secret) and the handling of stored
deliveries: verification before parsing, deduplication, unknown shops, grouping, uninstall and
compliance topics."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select, update

from goldpan_sandbox.server import RunningServer, start_server
from shopify_app import jobs
from shopify_app.db import write_engine
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    DataRequest,
    InboxDrain,
    LineItem,
    Membership,
    Order,
    Segment,
    Shop,
    WebhookEvent,
)
from shopify_app.db.types import utcnow
from shopify_app.jobs import Context
from shopify_app.server.app import create_app
from shopify_app.shopify import auth, webhooks
from shopify_app.states import WebhookStatus
from shopify_app.sync import compliance, inbox, tombstones
from shopify_app.sync.scopes import NOTICE_READ_ALL_ORDERS
from shopify_app.sync.webhooks import apply_webhook
from tests.conftest import TEST_API_SECRET
from tests.fixtures_auth import pending_tasks, session_token
from tests.fixtures_scaleout import wait_until

NOW = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
STAMP = "2026-11-01T12:00:00Z"


def order_payload(number: int, **fields: Any) -> dict[str, Any]:
    """An ``orders/*`` payload as Shopify sends it (the fields Goldpan reads)."""
    return {
        "id": number,
        "admin_graphql_api_id": f"gid://shopify/Order/{number}",
        "created_at": STAMP,
        "updated_at": STAMP,
        "line_items": [],
        **fields,
    }


def shop_payload(domain: str) -> dict[str, Any]:
    """The shop resource, as ``app/uninstalled`` carries it."""
    return {"id": 1, "name": "Linen & Co", "domain": "linen.example", "myshopify_domain": domain}


def shopify_time(moment: dt.datetime) -> str:
    """``X-Shopify-Triggered-At`` as Shopify writes it: UTC with nanoseconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "789Z"


@pytest.fixture
def app_server(queued_ctx: Context) -> Iterator[RunningServer]:
    running = start_server(create_app(queued_ctx))
    try:
        yield running
    finally:
        running.stop()


def deliver(
    server: RunningServer,
    topic: str,
    shop: str,
    payload: dict[str, Any],
    *,
    event_id: str | None = None,
    secret: str | None = TEST_API_SECRET,
    path: str = "/webhooks",
    triggered_at: str | None = None,
) -> requests.Response:
    body = json.dumps(payload).encode()
    if triggered_at is None:
        triggered_at = shopify_time(dt.datetime.now(dt.UTC))
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": triggered_at,
    }
    if secret is not None:
        headers["X-Shopify-Hmac-Sha256"] = auth.webhook_hmac(secret, body)
    return requests.post(f"{server.url}{path}", data=body, headers=headers, timeout=10)


def _queued_ids(ctx: Context) -> list[int]:
    return [kw["event_id"] for name, kw in pending_tasks(ctx) if name == "webhooks.process"]


def _drains(ctx: Context) -> list[str]:
    """The shop domains of the ``webhooks.drain`` tasks queued, in order."""
    return [kw["shop_domain"] for name, kw in pending_tasks(ctx) if name == "webhooks.drain"]


def deliver_and_process(
    ctx: Context, server: RunningServer, topic: str, shop: str, payload: dict[str, Any], **kw: Any
) -> WebhookEvent:
    """Deliver, then run the task the intake queued for it: its shop's drain for store data,
    else its own."""
    processes, drains = _queued_ids(ctx), _drains(ctx)
    response = deliver(server, topic, shop, payload, **kw)
    assert response.status_code == 200, response.text
    if topic in webhooks.GROUPED_TOPICS:
        assert _drains(ctx) == [*drains, shop]
        inbox.drain(ctx, shop_domain=shop)
        event_id = max(e.id for e in _events(ctx, shop))
    else:
        (event_id,) = set(_queued_ids(ctx)) - set(processes)
        inbox.process(ctx, event_id=event_id)
    with ctx.sessions() as session:
        event = session.get(WebhookEvent, event_id)
    assert event is not None
    return event


def _stored(domain: str, event_id: str, order: int) -> dict[str, Any]:
    """A queued ``orders/create`` row, as the intake inserts it."""
    body = json.dumps(order_payload(order))
    return {
        "shop_domain": domain,
        "event_id": event_id,
        "topic": "orders/create",
        "payload": body,
        "body_hash": hashlib.sha256(body.encode()).hexdigest(),
        "status": WebhookStatus.QUEUED,
    }


def _events(ctx: Context, shop: str) -> list[WebhookEvent]:
    with ctx.sessions() as session:
        return list(
            session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.shop_domain == shop)
                .order_by(WebhookEvent.id)
            )
        )


def _seed_customer(ctx: Context, shop_id: int, customer_id: int, email: str) -> int:
    """A customer with two orders (one line item each) in one segment; returns the segment id."""
    with ctx.sessions.begin() as session:
        session.add(
            Customer(
                shop_id=shop_id,
                id=customer_id,
                first_name="Ada",
                last_name="Lovelace",
                email=email,
                phone="+15550000000",
                tags=[],
            )
        )
        for n in (1, 2):
            order_id = customer_id * 10 + n
            session.add(
                Order(
                    shop_id=shop_id,
                    id=order_id,
                    customer_id=customer_id,
                    name=f"#{order_id}",
                    email=email,
                    created_at=NOW,
                    processed_at=NOW,
                    total=25.0,
                    billing_company="Ada Hotels",
                    discount_codes=[],
                )
            )
            session.add(
                LineItem(shop_id=shop_id, id=order_id * 10, order_id=order_id, title="Napkins")
            )
        segment = session.scalar(
            select(Segment).where(Segment.shop_id == shop_id, Segment.handle == "true-fans")
        )
        if segment is None:
            segment = Segment(shop_id=shop_id, handle="true-fans", name="True fans")
            session.add(segment)
            session.flush()
        session.add(
            Membership(
                segment_id=segment.id, customer_id=customer_id, shop_id=shop_id, reason="3 orders"
            )
        )
        return segment.id


# --- intake -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/compliance"])
def test_forged_or_missing_hmac_is_401(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any, path: str
) -> None:
    shop = make_shop()
    topic = "shop/redact" if path.endswith("compliance") else "orders/create"
    payload = {"shop_id": 1, "shop_domain": shop.domain}
    forged = deliver(app_server, topic, shop.domain, payload, secret="not-the-secret", path=path)
    missing = deliver(app_server, topic, shop.domain, payload, secret=None, path=path)
    assert (forged.status_code, missing.status_code) == (401, 401)
    # Tampering with the body after signing is caught too.
    body = json.dumps(payload).encode()
    tampered = requests.post(
        f"{app_server.url}{path}",
        data=body + b" ",
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop.domain,
            "X-Shopify-Hmac-Sha256": auth.webhook_hmac(TEST_API_SECRET, body),
        },
        timeout=5,
    )
    assert tampered.status_code == 401
    assert _events(queued_ctx, shop.domain) == []


def test_duplicate_delivery_is_processed_once(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    payload = {"id": 1, "previous": ["read_orders"], "current": ["read_orders", "read_customers"]}
    triggered = dt.datetime.now(dt.UTC).replace(microsecond=123456) - dt.timedelta(hours=1)
    first = deliver(
        app_server,
        "app/scopes_update",
        shop.domain,
        payload,
        event_id="evt-1",
        triggered_at=shopify_time(triggered),
    )
    second = deliver(app_server, "app/scopes_update", shop.domain, payload, event_id="evt-1")
    assert first.json() == {"status": "queued"}
    assert second.status_code == 200 and second.json() == {"status": "duplicate"}
    (event,) = _events(queued_ctx, shop.domain)
    assert event.topic == "app/scopes_update" and event.api_version == "2026-10"
    assert event.triggered_at == triggered
    assert _queued_ids(queued_ctx).count(event.id) == 1
    assert inbox.process(queued_ctx, event_id=event.id) == "done"
    # A redelivered job (e.g. re-queued at start-up) does not run the handler again.
    assert inbox.process(queued_ctx, event_id=event.id) == "done"
    (event,) = _events(queued_ctx, shop.domain)
    assert event.status == "done" and event.attempts == 1
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop.id)
        assert row is not None and row.scopes == "read_orders,read_customers"
        # Without read_all_orders the page shows why older orders are missing.
        assert NOTICE_READ_ALL_ORDERS in {n["code"] for n in row.settings["notices"]}
    # The same event id at another shop is a different event.
    other = make_shop()
    assert deliver(app_server, "app/scopes_update", other.domain, payload, event_id="evt-1").json()[
        "status"
    ] == ("queued")


def test_unknown_shop_gets_200_and_nothing_changes(
    app_server: RunningServer, queued_ctx: Context
) -> None:
    shop = "unknown.myshopify.com"
    for topic, path, payload in (
        ("orders/create", "/webhooks", order_payload(1)),
        ("shop/redact", "/webhooks/compliance", {"shop_id": 1, "shop_domain": shop}),
    ):
        response = deliver(app_server, topic, shop, payload, path=path)
        assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert _events(queued_ctx, shop) == []


def test_requeue_pending_picks_up_stranded_rows(queued_ctx: Context, make_shop: Any) -> None:
    shop = make_shop()
    with queued_ctx.sessions.begin() as session:
        event = WebhookEvent(
            shop_domain=shop.domain, event_id="stranded", topic="app/scopes_update", payload="{}"
        )
        session.add(event)
        session.flush()
        event_pk = event.id
    assert webhooks.requeue_pending(queued_ctx) == 1
    assert _queued_ids(queued_ctx) == [event_pk]
    assert inbox.process(queued_ctx, event_id=event_pk) == "skipped"


def test_unhandled_topics_are_skipped(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    event = deliver_and_process(queued_ctx, app_server, "themes/publish", shop.domain, {"id": 1})
    assert (event.status, event.error) == ("skipped", "no handler for themes/publish")
    bulk = deliver_and_process(
        queued_ctx,
        app_server,
        "bulk_operations/finish",
        shop.domain,
        {"admin_graphql_api_id": "gid://shopify/BulkOperation/1", "type": "other"},
    )
    assert (bulk.status, bulk.error) == ("skipped", "unknown bulk operation type 'other'")


# --- handlers ---------------------------------------------------------------------------------


def test_app_uninstalled_is_idempotent_and_keeps_data(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    _seed_customer(queued_ctx, shop.id, 501, "ada@example.com")
    assert (
        requests.get(
            f"{app_server.url}/api/session",
            headers={"Authorization": f"Bearer {session_token(shop.domain)}"},
            timeout=5,
        ).status_code
        == 200
    )
    first = deliver_and_process(
        queued_ctx, app_server, "app/uninstalled", shop.domain, shop_payload(shop.domain)
    )
    assert first.status == "done"
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop.id)
        assert row is not None
        assert row.access_token is None and row.refresh_token is None
        assert row.uninstalled_at is not None
        uninstalled_at = row.uninstalled_at
        assert session.get(Customer, (shop.id, 501)) is not None  # kept until shop/redact
    second = deliver_and_process(
        queued_ctx, app_server, "app/uninstalled", shop.domain, shop_payload(shop.domain)
    )
    assert (second.status, second.error) == ("done", "already uninstalled")
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop.id)
        assert row is not None and row.uninstalled_at == uninstalled_at
        audits = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.shop_id == shop.id, AuditEntry.action == "app/uninstalled")
        )
        assert audits == 1
    # The API no longer answers for the shop; background work cannot get a token.
    response = requests.get(
        f"{app_server.url}/api/session",
        headers={"Authorization": f"Bearer {session_token(shop.domain)}"},
        timeout=5,
    )
    assert response.status_code == 401
    # Store-data webhooks after uninstall change nothing.
    late = deliver_and_process(
        queued_ctx, app_server, "orders/create", shop.domain, order_payload(9)
    )
    assert (late.status, late.error) == ("skipped", "shop is uninstalled")


def test_customers_data_request_stores_an_export(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    _seed_customer(queued_ctx, shop.id, 601, "grace@example.com")
    payload = {
        "shop_id": 1,
        "shop_domain": shop.domain,
        "orders_requested": [6011],
        "customer": {"id": 601, "email": "grace@example.com", "phone": "+15550000000"},
        "data_request": {"id": 9999},
    }
    event = deliver_and_process(
        queued_ctx,
        app_server,
        "customers/data_request",
        shop.domain,
        payload,
        path="/webhooks/compliance",
    )
    assert event.status == "done"
    with queued_ctx.sessions() as session:
        (request,) = session.scalars(select(DataRequest).where(DataRequest.shop_id == shop.id))
        audit = session.scalar(
            select(AuditEntry).where(
                AuditEntry.shop_id == shop.id, AuditEntry.action == "customers/data_request"
            )
        )
    assert request.request_id == "9999" and request.customer_id == 601
    export = request.export
    assert export["customer"]["email"] == "grace@example.com"
    assert sorted(o["id"] for o in export["orders"]) == [6011, 6012]
    assert export["orders"][0]["line_items"][0]["title"] == "Napkins"
    assert export["segments"][0]["segment"] == "true-fans"
    assert export["segments"][0]["reason"] == "3 orders"
    assert audit is not None and audit.subject == "601" and audit.count == 2


def test_customers_redact_deletes_personal_data(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    segment_id = _seed_customer(queued_ctx, shop.id, 701, "gone@example.com")
    _seed_customer(queued_ctx, shop.id, 702, "stays@example.com")
    payload = {
        "shop_id": 1,
        "shop_domain": shop.domain,
        "customer": {"id": 701, "email": "gone@example.com", "phone": "+15550000000"},
        "orders_to_redact": [7011, 7012],
    }
    event = deliver_and_process(
        queued_ctx,
        app_server,
        "customers/redact",
        shop.domain,
        payload,
        path="/webhooks/compliance",
    )
    assert event.status == "done"
    with queued_ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 701)) is None
        assert session.get(Customer, (shop.id, 702)) is not None
        members = set(
            session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == segment_id)
            )
        )
        assert members == {702}
        for order_id in (7011, 7012):
            order = session.get(Order, (shop.id, order_id))
            assert order is not None
            assert (order.customer_id, order.email, order.billing_company) == (None, None, None)
        kept = session.get(Order, (shop.id, 7021))
        assert kept is not None and kept.email == "stays@example.com"
    # A customers/update delivered late cannot bring the redacted customer back.
    late = {"id": 701, "email": "gone@example.com", "updated_at": "2099-01-01T00:00:00Z"}
    assert apply_webhook(queued_ctx, shop.id, "customers/update", late) is False
    with queued_ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 701)) is None
    forget = [kw for name, kw in pending_tasks(queued_ctx) if name == "meta.forget_customer"]
    assert {
        "shop_id": shop.id,
        "customer_id": 701,
        "email": "gone@example.com",
        "phone": "+15550000000",
    } in forget


def test_shop_redact_deletes_everything_after_uninstall(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    _seed_customer(queued_ctx, shop.id, 801, "x@example.com")
    deliver_and_process(queued_ctx, app_server, "orders/create", shop.domain, order_payload(80))
    payload = {"shop_id": 1, "shop_domain": shop.domain}
    installed = deliver_and_process(
        queued_ctx, app_server, "shop/redact", shop.domain, payload, path="/webhooks/compliance"
    )
    assert installed.status == "skipped"  # reinstalled shops keep their data
    deliver_and_process(
        queued_ctx, app_server, "app/uninstalled", shop.domain, shop_payload(shop.domain)
    )
    event = deliver_and_process(
        queued_ctx, app_server, "shop/redact", shop.domain, payload, path="/webhooks/compliance"
    )
    assert event.status == "done"
    with queued_ctx.sessions() as session:
        assert session.get(Shop, shop.id) is None
        for model in (Customer, Order, LineItem, Segment, Membership, AuditEntry):
            count = session.scalar(
                select(func.count()).select_from(model).where(model.shop_id == shop.id)
            )
            assert count == 0, model.__name__
    assert [e.id for e in _events(queued_ctx, shop.domain)] == [event.id]
    with queued_ctx.sessions() as session:
        assert session.get(InboxDrain, shop.domain) is None
    # A late redelivery for the now unknown shop is acknowledged and ignored.
    late = deliver(app_server, "shop/redact", shop.domain, payload, path="/webhooks/compliance")
    assert late.json() == {"status": "ignored"}


# --- declared configuration -------------------------------------------------------------------


def test_app_toml_declares_what_the_intake_serves() -> None:
    import tomllib
    from pathlib import Path

    from shopify_app.settings import API_VERSION, DEFAULT_SCOPES

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "shopify.app.toml").read_text())
    assert config["embedded"] is True
    assert config["access_scopes"]["scopes"] == DEFAULT_SCOPES
    assert config["access_scopes"]["use_legacy_install_flow"] is False
    assert config["webhooks"]["api_version"] == API_VERSION
    served = {route.path for route in webhooks.routes}
    topics: dict[str, str] = {}
    for sub in config["webhooks"]["subscriptions"]:
        assert sub["uri"] in served
        for topic in sub.get("topics", []) + sub.get("compliance_topics", []):
            topics[topic] = sub["uri"]
    assert set(topics) == {
        "app/uninstalled",
        "app/scopes_update",
        "orders/create",
        "orders/updated",
        "orders/cancelled",
        "refunds/create",
        "customers/create",
        "customers/update",
        "customers/delete",
        "bulk_operations/finish",
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
    assert {t for t, uri in topics.items() if uri == "/webhooks/compliance"} == set(
        compliance.TOPICS
    )
    assert all(
        config["application_url"].rstrip("/") + "/auth/callback" == url
        for url in config["auth"]["redirect_urls"]
    )

    web = tomllib.loads((root / "shopify.web.toml").read_text())
    assert set(web["roles"]) == {"frontend", "backend"}
    # Run without a shell: a plain argv, the console script, no $VARS or pipes.
    argv = web["commands"]["dev"].split(" ")
    assert argv == [".venv/bin/shopify-app", "serve"]


def test_in_process_worker_handles_deliveries_end_to_end(
    settings: Any, make_shop: Any, tmp_path: Any
) -> None:
    """``serve``'s single-machine mode: a SQLite huey queue consumed inside the web process."""
    import time

    from shopify_app.server.app import build_context

    ctx = build_context(settings.with_overrides(huey_path=str(tmp_path / "e2e-huey.sqlite3")))
    shop = make_shop()
    # A row stranded by a crash before start-up is picked up when the app starts.
    with ctx.sessions.begin() as session:
        stranded = WebhookEvent(
            shop_domain=shop.domain,
            event_id="stranded-e2e",
            topic="app/scopes_update",
            payload=json.dumps({"current": ["read_orders"]}),
        )
        session.add(stranded)
        session.flush()
        stranded_id = stranded.id
    server = start_server(create_app(ctx, start_worker=True))
    try:
        response = deliver(server, "app/uninstalled", shop.domain, shop_payload(shop.domain))
        assert response.json() == {"status": "queued"}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            statuses = {e.topic: e.status for e in _events(ctx, shop.domain)}
            if statuses == {"app/uninstalled": "done", "app/scopes_update": "done"}:
                break
            time.sleep(0.05)
        assert statuses == {"app/uninstalled": "done", "app/scopes_update": "done"}
        with ctx.sessions() as session:
            row = session.get(Shop, shop.id)
            assert row is not None and row.uninstalled_at is not None
            assert row.scopes == "read_orders"
            event = session.get(WebhookEvent, stranded_id)
            assert event is not None and event.attempts == 1
    finally:
        server.stop()
        ctx.engine.dispose()


def test_late_uninstall_from_before_a_reinstall_is_ignored(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    # make_shop installs "now"; the delivery, retried by Shopify, was triggered an hour before.
    shop = make_shop()
    event = deliver_and_process(
        queued_ctx,
        app_server,
        "app/uninstalled",
        shop.domain,
        shop_payload(shop.domain),
        triggered_at=shopify_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
    )
    assert event.status == "skipped"
    with queued_ctx.sessions() as session:
        row = session.get(Shop, shop.id)
        assert row is not None and row.is_installed


# --- handling under load ----------------------------------------------------------------------


def test_a_shops_store_data_deliveries_queue_one_drain_that_handles_them_together(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop, other = make_shop(), make_shop()

    for n in (1, 2, 3):
        assert deliver(app_server, "orders/create", shop.domain, order_payload(500 + n)).ok
    assert deliver(app_server, "orders/create", other.domain, order_payload(600)).ok
    request = {
        "shop_id": 1,
        "shop_domain": shop.domain,
        "customer": {"id": 1},
        "orders_requested": [],
        "data_request": {"id": 1},
    }
    assert deliver(
        app_server, "customers/data_request", shop.domain, request, path="/webhooks/compliance"
    ).ok
    # One drain per shop, not a task per delivery; a compliance topic gets its own task.
    assert _drains(queued_ctx) == [shop.domain, other.domain]
    (compliance,) = _queued_ids(queued_ctx)

    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 3
    events = {e.topic: e for e in _events(queued_ctx, shop.domain)}
    orders = [e for e in _events(queued_ctx, shop.domain) if e.topic == "orders/create"]
    assert [(e.status, e.attempts) for e in orders] == [("done", 1)] * 3
    assert len({e.processed_at for e in orders}) == 1  # one group
    with queued_ctx.sessions() as session:
        stored = set(session.scalars(select(Order.id).where(Order.shop_id == shop.id)))
    assert stored == {501, 502, 503}
    # Neither another shop's deliveries nor a compliance topic were taken.
    assert events["customers/data_request"].status == "queued"
    assert [e.status for e in _events(queued_ctx, other.domain)] == ["queued"]
    assert inbox.process(queued_ctx, event_id=compliance) == "done"
    # Run again (a duplicate task), the drain finds nothing; the next delivery queues the next.
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 0
    assert deliver(app_server, "orders/create", shop.domain, order_payload(504)).ok
    assert _drains(queued_ctx) == [shop.domain, other.domain, shop.domain]
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 1


def test_a_groups_orders_stored_together_end_as_if_stored_one_by_one(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    """A drain stores its group's orders with one statement per step: an order delivered twice
    keeps the newer, a delivery older than the stored order changes nothing, a forgotten
    buyer stays forgotten, an edited-out line item goes."""
    later = "2026-11-01T13:00:00Z"

    def item(number: int) -> dict[str, Any]:
        return {"id": number, "quantity": 1, "price": "10.00", "title": f"Napkins {number}"}

    def customer(number: int) -> dict[str, Any]:
        gid = f"gid://shopify/Customer/{number}"
        return {"id": number, "admin_graphql_api_id": gid, "created_at": STAMP, "updated_at": STAMP}

    buyer = {"customer": {"id": 5}, "email": "ana@example.com"}
    deliveries = [
        ("orders/create", order_payload(1001, line_items=[item(1), item(2)], **buyer)),
        ("orders/updated", order_payload(1000, total_price="1.00", **buyer)),  # stale
        ("orders/updated", order_payload(1001, updated_at=later, line_items=[item(2)], **buyer)),
        ("orders/create", order_payload(1002, customer={"id": 77}, email="gone@example.com")),
        ("customers/update", {**customer(5), "email": "ana@example.com"}),
    ]

    def orders_of(domain: str, one_by_one: bool) -> list[tuple[Any, ...]]:
        shop = make_shop(domain=domain)
        with write_engine(queued_ctx.engine).begin() as conn:
            tombstones.record_deletion(conn, shop.id, "customers", 77)
        stored = order_payload(1000, updated_at=later, total_price="9.00", **buyer)
        deliver_and_process(queued_ctx, app_server, "orders/create", domain, stored)
        for topic, payload in deliveries:
            assert deliver(app_server, topic, domain, payload).ok
            if one_by_one:
                inbox.drain(queued_ctx, shop_domain=domain)
        if not one_by_one:
            inserts: list[str] = []

            def count(*args: Any) -> None:
                if args[2].startswith("INSERT INTO orders"):
                    inserts.append(args[2])

            sa_event.listen(queued_ctx.engine, "before_cursor_execute", count)
            try:
                assert inbox.drain(queued_ctx, shop_domain=domain) == len(deliveries)
            finally:
                sa_event.remove(queued_ctx.engine, "before_cursor_execute", count)
            assert len(inserts) == 1  # the group's orders at once
            groups = {e.processed_at for e in _events(queued_ctx, domain)[1:]}
            assert len(groups) == 1
        assert {e.status for e in _events(queued_ctx, domain)} == {"done"}
        with queued_ctx.sessions() as session:
            orders = session.execute(
                select(Order.id, Order.customer_id, Order.email, Order.total, Order.updated_at)
                .where(Order.shop_id == shop.id)
                .order_by(Order.id)
            ).all()
            items = session.execute(
                select(LineItem.order_id, LineItem.id)
                .where(LineItem.shop_id == shop.id)
                .order_by(LineItem.id)
            ).all()
        return [tuple(row) for row in orders] + [tuple(row) for row in items]

    together = orders_of("together.myshopify.com", one_by_one=False)
    assert together == orders_of("in-turn.myshopify.com", one_by_one=True)
    by_id = {row[0]: row for row in together[:3]}
    assert float(by_id[1000][3]) == 9.0  # the older delivery changed nothing
    assert by_id[1001][4] == dt.datetime(2026, 11, 1, 13, tzinfo=dt.UTC)
    assert by_id[1002][1:3] == (None, None)  # the forgotten buyer
    assert together[3:] == [(1001, 2)]  # item 1 was edited out


def test_a_drain_waits_for_a_delivery_being_stored_and_claims_it(
    queued_ctx: Context, make_shop: Any
) -> None:
    """The intake queues no drain while one is due: a drain that starts while such a delivery
    is being stored must wait for it and claim it, or it would stay queued with no task."""
    shop = make_shop()
    now = utcnow()
    marks = {"domain": shop.domain, "due": now, "lost_before": now - webhooks.DRAIN_LOST_AFTER}
    with write_engine(queued_ctx.engine).begin() as conn:
        conn.execute(insert(WebhookEvent).values(**_stored(shop.domain, "first", 901)))
        assert conn.scalar(webhooks._drain_due(conn.dialect.name), marks) == shop.domain
    # A second delivery's intake, not committed yet: the drain is due, so it queues none.
    intake = write_engine(queued_ctx.engine).connect()
    intake.begin()
    intake.execute(insert(WebhookEvent).values(**_stored(shop.domain, "second", 902)))
    assert intake.scalar(webhooks._drain_due(intake.dialect.name), marks) is None
    handled: list[int] = []
    drainer = threading.Thread(
        target=lambda: handled.append(inbox.drain(queued_ctx, shop_domain=shop.domain))
    )
    drainer.start()
    drainer.join(0.5)
    assert drainer.is_alive() and handled == []  # held by the intake's transaction
    intake.commit()
    intake.close()
    drainer.join(10)
    assert handled == [2]
    assert [e.status for e in _events(queued_ctx, shop.domain)] == ["done", "done"]
    # The drain is no longer due: the next delivery's intake queues one.
    with write_engine(queued_ctx.engine).begin() as conn:
        assert conn.scalar(webhooks._drain_due(conn.dialect.name), marks) == shop.domain


def test_a_lost_drain_is_queued_again(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    """A drain lives in a timer or a task, and both die with their process."""
    shop = make_shop()
    assert deliver(app_server, "orders/create", shop.domain, order_payload(910)).ok
    assert _drains(queued_ctx) == [shop.domain]
    queued_ctx.runtime.huey.flush()  # type: ignore[union-attr]  # the task is lost
    # Start-up (and every five minutes) queues a drain for the shop's queued deliveries.
    assert webhooks.requeue_pending(queued_ctx) == 1
    assert _drains(queued_ctx) == [shop.domain] and _queued_ids(queued_ctx) == []
    queued_ctx.runtime.huey.flush()  # type: ignore[union-attr]  # lost again
    # Its next delivery queues one as soon as the lost one is overdue.
    assert deliver(app_server, "orders/create", shop.domain, order_payload(911)).ok
    assert _drains(queued_ctx) == []
    with queued_ctx.sessions.begin() as session:
        session.execute(update(InboxDrain).values(due_at=utcnow() - webhooks.DRAIN_LOST_AFTER * 2))
    assert deliver(app_server, "orders/create", shop.domain, order_payload(912)).ok
    assert _drains(queued_ctx) == [shop.domain]
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 3


def test_a_delivery_being_handled_in_a_group_is_left_to_that_group(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    assert deliver(app_server, "orders/create", shop.domain, order_payload(801)).ok
    (event,) = _events(queued_ctx, shop.domain)
    # Another worker's group holds it (claimed just now): a task for it claims nothing.
    with queued_ctx.sessions.begin() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id)
            .values(status=WebhookStatus.PROCESSING)
        )
    assert inbox.process(queued_ctx, event_id=event.id) == "processing"
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 0
    (event,) = _events(queued_ctx, shop.domain)
    assert (event.status, event.attempts) == ("processing", 0)
    # Left behind by a worker that died: queued again at start-up, claimed and handled.
    with queued_ctx.sessions.begin() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id)
            .values(received_at=utcnow() - webhooks.STALE_PROCESSING * 2)
        )
    assert webhooks.requeue_pending(queued_ctx) == 1
    assert _queued_ids(queued_ctx) == [event.id]
    assert inbox.process(queued_ctx, event_id=event.id) == "done"
    (event,) = _events(queued_ctx, shop.domain)
    assert (event.status, event.attempts) == ("done", 1)


def test_a_retried_delivery_takes_its_shops_queued_ones_along(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    for n in (1, 2):
        assert deliver(app_server, "orders/create", shop.domain, order_payload(860 + n)).ok
    failed, _ = (e.id for e in _events(queued_ctx, shop.domain))
    with queued_ctx.sessions.begin() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == failed)
            .values(status=WebhookStatus.FAILED, attempts=1)
        )
    # A drain takes only queued deliveries: a failed one has its own retries...
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 1
    assert deliver(app_server, "orders/create", shop.domain, order_payload(863)).ok
    # ...which claim it, and take along what is queued meanwhile.
    assert inbox.process(queued_ctx, event_id=failed) == "done"
    attempts = [(e.id == failed, e.status, e.attempts) for e in _events(queued_ctx, shop.domain)]
    assert attempts == [(True, "done", 2), (False, "done", 1), (False, "done", 1)]


def test_with_gathering_a_shops_drain_waits_for_the_next_deliveries(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    queued_ctx.settings = queued_ctx.settings.with_overrides(webhook_gather_ms=300)
    for n in (1, 2, 3):
        assert deliver(app_server, "orders/create", shop.domain, order_payload(840 + n)).ok
    # The first delivery's drain is queued once the window closes; the others queue none.
    assert _drains(queued_ctx) == []
    wait_until(lambda: _drains(queued_ctx) == [shop.domain], 5, "the window to close")
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 3
    orders = _events(queued_ctx, shop.domain)
    assert [(e.status, e.attempts) for e in orders] == [("done", 1)] * 3
    assert len({e.processed_at for e in orders}) == 1
    # The next delivery opens the next window.
    assert deliver(app_server, "orders/create", shop.domain, order_payload(850)).ok
    wait_until(lambda: len(_drains(queued_ctx)) == 2, 5, "the next window to close")
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 1


def test_follow_ups_of_a_webhook_wait_coalesce_and_run_in_order(
    queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    follow_ups = jobs.FollowUps(queued_ctx)
    follow_ups.enqueue("tags.sync", shop_id=shop.id, customer_ids=[3])
    follow_ups.enqueue("meta.sync_customer", shop_id=shop.id, customer_id=3)
    follow_ups.enqueue("tags.sync", shop_id=shop.id, customer_ids=[1, 3])
    follow_ups.enqueue("meta.sync_customer", shop_id=shop.id, customer_id=3)  # the same: once
    # A whole-shop tag sync and other tasks go to the queue, as from any context.
    follow_ups.enqueue("tags.sync", shop_id=shop.id, customer_ids=None)
    follow_ups.enqueue("sync.poll", shop_id=shop.id)
    assert follow_ups.pending == [
        ("tags.sync", {"shop_id": shop.id, "customer_ids": [1, 3]}),
        ("meta.sync_customer", {"shop_id": shop.id, "customer_id": 3}),
    ]
    queued = [(n, kw) for n, kw in pending_tasks(queued_ctx) if kw.get("shop_id") == shop.id]
    assert queued == [
        ("tags.sync", {"shop_id": shop.id, "customer_ids": None}),
        ("sync.poll", {"shop_id": shop.id}),
    ]
    # Nothing to write for customers Goldpan does not hold: both run here, nothing is queued.
    assert follow_ups.run() == 2
    assert follow_ups.pending == []
    assert len([kw for _, kw in pending_tasks(queued_ctx) if kw.get("shop_id") == shop.id]) == 2


def test_a_failing_delivery_in_a_group_fails_alone(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    good = order_payload(701)
    broken = order_payload(702, line_items=[{"id": "not-a-number"}])
    # Fails in the database, after its order row is written: a line item id past 64 bits.
    half = order_payload(703, line_items=[{"id": 2**64, "quantity": 1, "price": "1.00"}])
    for payload in (broken, good, broken, half):
        assert deliver(app_server, "orders/create", shop.domain, payload).ok
    first, second, third, fourth = (e.id for e in _events(queued_ctx, shop.domain))
    assert inbox.drain(queued_ctx, shop_domain=shop.domain) == 4
    by_id = {e.id: e for e in _events(queued_ctx, shop.domain)}
    statuses = [by_id[i].status for i in (first, second, third, fourth)]
    assert statuses == ["failed", "done", "failed", "failed"]
    # A failed delivery keeps its payload for the retries; a handled one keeps none.
    assert [by_id[i].payload is None for i in (first, second, third)] == [False, True, False]
    # Each that failed is queued again on its own, with its retries...
    assert _queued_ids(queued_ctx) == [first, third, fourth]
    with pytest.raises(ValueError):
        inbox.process(queued_ctx, event_id=first)  # huey retries it
    # ...and one that failed half-way left nothing behind, beside the group's good one.
    with queued_ctx.sessions() as session:
        orders = set(session.scalars(select(Order.id).where(Order.shop_id == shop.id)))
    assert orders == {701}


# --- body size --------------------------------------------------------------------------------


def _raw_post(server: RunningServer, headers: dict[str, str], chunks: list[bytes]) -> int:
    """POST ``/webhooks`` over a raw connection (headers as given, body as sent so far); the
    answer's status, read even when the server stops reading the body early."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.putrequest("POST", "/webhooks")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for chunk in chunks:
            try:
                conn.send(chunk)
            except OSError:  # the server answered and closed: read its answer
                break
        return conn.getresponse().status
    finally:
        conn.close()


def test_oversized_bodies_are_refused_before_the_hmac_check(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    signed = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": "not-checked-yet",
    }
    # A declared length over the cap is answered at once: no body was sent at all.
    declared = {**signed, "Content-Length": str(200 * 1024 * 1024)}
    assert _raw_post(app_server, declared, []) == 413
    # Without a length (chunked), reading stops at the cap.
    piece = b"x" * (1024 * 1024)
    count = webhooks.MAX_BODY_BYTES // len(piece) + 2
    chunked = {**signed, "Transfer-Encoding": "chunked"}
    frames = [b"%x\r\n%s\r\n" % (len(piece), piece)] * count + [b"0\r\n\r\n"]
    assert _raw_post(app_server, chunked, frames) == 413
    # A body at the cap is read and checked as usual (here: a forged HMAC).
    at_cap = b"x" * webhooks.MAX_BODY_BYTES
    answer = requests.post(f"{app_server.url}/webhooks", data=at_cap, headers=signed, timeout=30)
    assert answer.status_code == 401
    assert _events(queued_ctx, shop.domain) == []


# --- what is kept, and for how long -----------------------------------------------------------


def test_a_handled_delivery_keeps_its_ids_and_body_hash_but_no_payload(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    payload = {"id": 1, "previous": [], "current": ["read_orders"]}
    event = deliver_and_process(
        queued_ctx, app_server, "app/scopes_update", shop.domain, payload, event_id="evt-kept"
    )
    body = json.dumps(payload).encode()
    assert (event.status, event.payload) == ("done", None)
    assert (event.event_id, event.topic) == ("evt-kept", "app/scopes_update")
    assert event.body_hash == hashlib.sha256(body).hexdigest()
    # The row still deduplicates: a redelivery of the same event is not handled again.
    again = deliver(app_server, "app/scopes_update", shop.domain, payload, event_id="evt-kept")
    assert again.json() == {"status": "duplicate"}


def test_an_event_id_with_another_body_is_not_taken_for_a_redelivery(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    """The event id is an unsigned header: a body signed for another event that borrows it is
    a delivery of its own, and cannot make the genuine one look like a duplicate."""
    shop = make_shop()
    first = {"id": 1, "previous": [], "current": ["read_orders"]}
    other = {"id": 1, "previous": [], "current": ["read_orders", "read_customers"]}
    assert deliver(app_server, "app/scopes_update", shop.domain, first, event_id="e").json() == {
        "status": "queued"
    }
    assert deliver(app_server, "app/scopes_update", shop.domain, other, event_id="e").json() == {
        "status": "queued"
    }
    assert deliver(app_server, "app/scopes_update", shop.domain, first, event_id="e").json() == {
        "status": "duplicate"
    }
    assert len(_events(queued_ctx, shop.domain)) == 2


def test_finished_deliveries_are_purged_after_the_retention_period(
    queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    old = utcnow() - webhooks.RETENTION - dt.timedelta(hours=1)
    recent = utcnow() - webhooks.RETENTION + dt.timedelta(hours=1)
    rows = {
        ("done", old): None,
        ("skipped", old): None,
        ("failed", old): "{}",
        ("queued", old): "{}",
        ("done", recent): None,
        ("failed", recent): "{}",
    }
    with queued_ctx.sessions.begin() as session:
        for n, ((status, received), payload) in enumerate(rows.items()):
            session.add(
                WebhookEvent(
                    shop_domain=shop.domain,
                    event_id=f"purge-{n}",
                    topic="orders/create",
                    payload=payload,
                    status=status,
                    received_at=received,
                )
            )
    assert webhooks.purge(queued_ctx) >= 3
    kept = {(e.status, e.received_at == old) for e in _events(queued_ctx, shop.domain)}
    # Only an unfinished delivery outlives the period (its handling is still to come).
    assert kept == {("queued", True), ("done", False), ("failed", False)}


def test_deliveries_stored_before_the_body_hash_lose_their_payload_once_handled(
    tmp_path: Any,
) -> None:
    """Migration 0006: rows a released version stored keep only what a handled delivery keeps."""
    from sqlalchemy import MetaData, Table, insert

    from shopify_app import db
    from tests.conftest import fresh_database

    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        released = Table("webhook_events", MetaData(), autoload_with=engine)
        bodies = {"done": '{"email": "old@example.com"}', "queued": '{"id": 5}'}
        with engine.begin() as conn:
            conn.execute(
                insert(released),
                [
                    {
                        "shop_domain": "old.myshopify.com",
                        "event_id": status,
                        "topic": "orders/create",
                        "received_at": dt.datetime(2026, 12, 1, 12),
                        "payload": body,
                        "status": status,
                        "attempts": 1,
                    }
                    for status, body in bodies.items()
                ],
            )
        db.upgrade(url)
        table = WebhookEvent.__table__
        with engine.connect() as conn:
            stored = {
                r.status: (r.payload, r.body_hash)
                for r in conn.execute(select(table.c.status, table.c.payload, table.c.body_hash))
            }
        engine.dispose()
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in bodies.items()}
    assert stored["done"] == (None, digest["done"])
    assert stored["queued"] == (bodies["queued"], digest["queued"])


# --- headers tied to the signed body -----------------------------------------------------------


def _replay(
    server: RunningServer, body: bytes, topic: str, shop: str, path: str = "/webhooks"
) -> requests.Response:
    """Send a body signed by Shopify again, with headers of the sender's choosing."""
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": auth.webhook_hmac(TEST_API_SECRET, body),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": shopify_time(dt.datetime.now(dt.UTC)),
    }
    return requests.post(f"{server.url}{path}", data=body, headers=headers, timeout=10)


def test_a_genuine_body_replayed_under_another_shop_or_topic_is_refused(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    """The review's repro: signed deliveries of one shop, replayed with another shop's domain
    (and ``app/uninstalled``, then ``shop/redact``), must not touch that shop."""
    mine, victim = make_shop(), make_shop()
    signed = {
        "order": order_payload(901),
        "uninstall": shop_payload(mine.domain),
        "shop redact": {"shop_id": 1, "shop_domain": mine.domain},
        "victim's redaction": {
            "shop_id": 2,
            "shop_domain": victim.domain,
            "customer": {"id": 5},
            "orders_to_redact": [],
        },
    }
    bodies = {name: json.dumps(payload).encode() for name, payload in signed.items()}
    for name in ("order", "uninstall", "shop redact", "victim's redaction"):
        uninstall = _replay(app_server, bodies[name], "app/uninstalled", victim.domain)
        redact = _replay(
            app_server, bodies[name], "shop/redact", victim.domain, "/webhooks/compliance"
        )
        assert (uninstall.status_code, redact.status_code) == (400, 400), name
    # Within one shop, a body is refused under a topic whose payload it is not.
    relabelled = _replay(app_server, bodies["order"], "customers/update", mine.domain)
    assert relabelled.status_code == 400
    assert "gid://shopify/Customer/" in relabelled.json()["error"]
    assert _events(queued_ctx, victim.domain) == []
    with queued_ctx.sessions() as session:
        row = session.get(Shop, victim.id)
        assert row is not None and row.is_installed
    # The same bodies with their own headers are accepted.
    assert _replay(app_server, bodies["order"], "orders/create", mine.domain).status_code == 200
    own = _replay(app_server, bodies["uninstall"], "app/uninstalled", mine.domain)
    assert own.json() == {"status": "queued"}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (
            "orders/create",
            {"id": 1},
            "orders/create payload's admin_graphql_api_id is not gid://shopify/Order/",
        ),
        (
            "orders/updated",
            {"id": 2, "admin_graphql_api_id": "gid://shopify/Order/3"},
            "payload id and admin_graphql_api_id disagree",
        ),
        (
            "customers/delete",
            order_payload(4),
            "customers/delete payload's admin_graphql_api_id is not gid://shopify/Customer/",
        ),
        (
            "bulk_operations/finish",
            {"type": "query"},
            "bulk_operations/finish payload's admin_graphql_api_id",
        ),
        (
            "app/uninstalled",
            {"id": 1, "domain": "linen.example"},
            "app/uninstalled payload without myshopify_domain",
        ),
        ("app/scopes_update", {"id": 1}, "app/scopes_update payload without current"),
        ("customers/redact", {"customer": {"id": 1}}, "customers/redact payload without shop"),
        ("customers/data_request", {"id": 1}, "customers/data_request payload without shop_domain"),
        ("orders/create", ["not", "an", "object"], "payload is not a JSON object"),
    ],
)
def test_a_payload_that_is_not_the_topics_is_refused(
    app_server: RunningServer,
    queued_ctx: Context,
    make_shop: Any,
    topic: str,
    payload: Any,
    reason: str,
) -> None:
    shop = make_shop()
    answer = deliver(app_server, topic, shop.domain, payload)
    assert answer.status_code == 400 and answer.json()["error"].startswith(reason)
    assert _events(queued_ctx, shop.domain) == []


def test_compliance_payloads_must_name_the_shop_and_their_own_topic(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop, other = make_shop(), make_shop()
    path = "/webhooks/compliance"
    redaction = {"shop_domain": shop.domain, "customer": {"id": 1}, "orders_to_redact": []}
    elsewhere = deliver(app_server, "customers/redact", other.domain, redaction, path=path)
    assert elsewhere.status_code == 400
    assert (
        elsewhere.json()["error"] == "payload shop_domain is not the shop of X-Shopify-Shop-Domain"
    )
    as_shop = deliver(app_server, "shop/redact", shop.domain, redaction, path=path)
    assert as_shop.json()["error"] == "shop/redact payload with another topic's fields"
    as_request = deliver(app_server, "customers/data_request", shop.domain, redaction, path=path)
    assert as_request.json()["error"] == "customers/data_request payload without data_request"
    assert _events(queued_ctx, shop.domain) == _events(queued_ctx, other.domain) == []


def test_deliveries_outside_shopifys_retry_window_are_refused(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    shop = make_shop()
    now = dt.datetime.now(dt.UTC)
    payload = order_payload(77)
    for age, status in (
        (webhooks.RETRY_WINDOW + dt.timedelta(hours=1), 400),
        (-dt.timedelta(hours=1), 400),  # "triggered" an hour from now
        (webhooks.RETRY_WINDOW - dt.timedelta(minutes=1), 200),  # Shopify's last retry
    ):
        answer = deliver(
            app_server, "orders/create", shop.domain, payload, triggered_at=shopify_time(now - age)
        )
        assert answer.status_code == status, (age, answer.text)
    assert len(_events(queued_ctx, shop.domain)) == 1


def test_shop_redact_acts_only_on_a_shop_that_uninstalled(
    app_server: RunningServer, queued_ctx: Context, make_shop: Any
) -> None:
    # No token (an install that never completed), but Goldpan never saw it uninstalled.
    shop = make_shop(access_token=None)
    event = deliver_and_process(
        queued_ctx,
        app_server,
        "shop/redact",
        shop.domain,
        {"shop_id": 1, "shop_domain": shop.domain},
        path="/webhooks/compliance",
    )
    assert (event.status, event.error) == ("skipped", "the shop never uninstalled the app")
    with queued_ctx.sessions() as session:
        assert session.get(Shop, shop.id) is not None
