"""Contract tests: webhooks signed like Shopify's, REST-shaped, delivered at least once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import requests

from goldpan_sandbox.delivery import WebhookDelivery, sign, topics_from_toml
from goldpan_sandbox.shopify import ShopifySandbox
from tests.conftest import TEST_API_SECRET
from tests.fixtures_sandbox import SANDBOX_SHOP, WebhookSink, graphql


def test_signature_matches_shopifys_published_vector() -> None:
    assert (
        sign("test_secret_key", b'{"foo": "bar"}') == "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
    )


def test_topics_come_from_the_app_toml(tmp_path: Path) -> None:
    toml = tmp_path / "shopify.app.toml"
    toml.write_text(
        '[webhooks]\napi_version = "2026-10"\n'
        '[[webhooks.subscriptions]]\ntopics = ["orders/create", "customers/update"]\n'
        'uri = "/webhooks"\n'
        '[[webhooks.subscriptions]]\ncompliance_topics = ["customers/redact"]\n'
        'uri = "/webhooks/compliance"\n'
    )
    assert topics_from_toml(toml) == {
        "orders/create": "/webhooks",
        "customers/update": "/webhooks",
        "customers/redact": "/webhooks/compliance",
    }


def test_placed_order_sends_signed_rest_shaped_webhooks(
    shopify_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    store = shopify_sandbox.store(SANDBOX_SHOP)
    customer_id = sorted(store.customers)[0]
    response = requests.post(
        f"{shopify_sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/orders",
        json={"customer_id": customer_id, "line_items": [{"quantity": 3}]},
        timeout=5,
    )
    assert response.status_code == 201
    assert shopify_sandbox.delivery.drain(5)
    assert sorted(webhook_sink.topics()) == ["customers/update", "orders/create"]
    for headers, body in webhook_sink.received:
        digest = hmac.new(TEST_API_SECRET.encode(), body, hashlib.sha256).digest()
        assert headers["x-shopify-hmac-sha256"] == base64.b64encode(digest).decode()
        assert headers["x-shopify-shop-domain"] == SANDBOX_SHOP
        assert headers["x-shopify-api-version"] == "2026-10"
        assert headers["x-shopify-webhook-id"] and headers["x-shopify-event-id"]
        assert headers["x-shopify-triggered-at"]
    order = next(
        json.loads(b) for h, b in webhook_sink.received if h["x-shopify-topic"] == "orders/create"
    )
    assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
    assert order["customer"]["id"] == customer_id
    line = order["line_items"][0]
    assert line["quantity"] == 3 and line["current_quantity"] == 3 and line["sku"] == "NAP-W"
    assert line["price"] == "8.50" and order["current_total_price"] == "25.50"
    assert set(order) >= {
        "email",
        "created_at",
        "updated_at",
        "processed_at",
        "cancelled_at",
        "test",
        "currency",
        "discount_codes",
        "billing_address",
    }


def test_tag_change_sends_customers_update(
    shopify_sandbox: ShopifySandbox, sandbox_token: str, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    cid = sorted(shopify_sandbox.store(SANDBOX_SHOP).customers)[0]
    graphql(
        shopify_sandbox,
        sandbox_token,
        f'mutation {{ tagsAdd(id: "gid://shopify/Customer/{cid}", tags: ["gp-a", "gp-b"]) '
        "{ userErrors { message } } }",
    )
    assert shopify_sandbox.delivery.drain(5)
    ((headers, body),) = webhook_sink.received
    assert headers["x-shopify-topic"] == "customers/update"
    customer = json.loads(body)
    assert customer["tags"] == "gp-a, gp-b"
    assert customer["email_marketing_consent"]["state"] == "subscribed"
    assert customer["default_address"]["country_code"] == "GR"


def test_errors_are_retried_until_accepted(
    shopify_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    webhook_sink.statuses = [500, 503]
    cid = sorted(shopify_sandbox.store(SANDBOX_SHOP).customers)[0]
    shopify_sandbox.store(SANDBOX_SHOP).update_customer(cid, first_name="Eleni")
    assert shopify_sandbox.delivery.drain(10)
    assert len(webhook_sink.received) == 3
    assert len({h["x-shopify-webhook-id"] for h, _ in webhook_sink.received}) == 1
    (delivery,) = shopify_sandbox.delivery.log(topic="customers/update")
    assert [a.status for a in delivery.attempts] == [500, 503, 200] and delivery.delivered


def test_duplicates_share_the_event_id(webhook_sink: WebhookSink) -> None:
    delivery = WebhookDelivery(
        TEST_API_SECRET, webhook_sink.url, {"orders/create": "/webhooks"}, duplicate_rate=1.0
    )
    delivery.start()
    try:
        delivery.send(SANDBOX_SHOP, "orders/create", {"id": 1})
        delivery.send(SANDBOX_SHOP, "orders/updated", {"id": 1})  # not subscribed
        assert delivery.drain(5)
    finally:
        delivery.stop()
    assert len(webhook_sink.received) == 2
    first, second = (h for h, _ in webhook_sink.received)
    assert first["x-shopify-event-id"] == second["x-shopify-event-id"]
    assert first["x-shopify-webhook-id"] != second["x-shopify-webhook-id"]


def test_fallback_subscriptions_match_the_repository_toml() -> None:
    from goldpan_sandbox.delivery import DEFAULT_TOML, FALLBACK_TOPICS

    assert topics_from_toml(DEFAULT_TOML) == FALLBACK_TOPICS
