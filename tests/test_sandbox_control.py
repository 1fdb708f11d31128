"""The control API and fault knobs: HTTP errors, slow answers, plans, customer edits."""

from __future__ import annotations

import requests

from goldpan_sandbox.shopify import ShopifySandbox
from tests.fixtures_sandbox import SANDBOX_SHOP, WebhookSink, graphql


def _control(sandbox: ShopifySandbox, path: str, **kwargs: object) -> requests.Response:
    method = "POST" if "json" in kwargs else "GET"
    return requests.request(method, f"{sandbox.base_url}/_sandbox{path}", timeout=5, **kwargs)  # type: ignore[arg-type]


def test_http_faults_then_recovery(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    assert _control(
        shopify_sandbox, "/faults", json={"http": {"status": 429, "count": 1, "retry_after": 1.5}}
    ).ok
    shopify_sandbox.faults.fail_next(503)
    first = graphql(shopify_sandbox, sandbox_token, "{ shop { name } }")
    assert first.status_code == 429 and first.headers["Retry-After"] == "1.5"
    assert graphql(shopify_sandbox, sandbox_token, "{ shop { name } }").status_code == 503
    assert graphql(shopify_sandbox, sandbox_token, "{ shop { name } }").status_code == 200


def test_slow_response_times_out_the_client(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    shopify_sandbox.faults.slow_next(1.0, count=1)
    try:
        requests.post(
            shopify_sandbox.graphql_url(SANDBOX_SHOP),
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": sandbox_token},
            timeout=0.2,
        )
        raise AssertionError("expected a timeout")
    except requests.Timeout:
        pass
    assert graphql(shopify_sandbox, sandbox_token, "{ shop { name } }").status_code == 200


def test_throttle_plan_knob(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    _control(shopify_sandbox, "/faults", json={"throttle": {"maximum": 50, "restore_rate": 5}})
    body = graphql(shopify_sandbox, sandbox_token, "{ shop { name } }").json()
    assert body["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 50.0
    assert body["extensions"]["cost"]["throttleStatus"]["restoreRate"] == 5.0


def test_edit_customer_and_list_deliveries(
    shopify_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    cid = sorted(shopify_sandbox.store(SANDBOX_SHOP).customers)[1]
    edited = requests.patch(
        f"{shopify_sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/customers/{cid}",
        json={"email_marketing_state": "UNSUBSCRIBED", "tags": "vip, wholesale"},
        timeout=5,
    )
    assert edited.status_code == 200
    assert edited.json()["email_marketing_consent"]["state"] == "unsubscribed"
    assert shopify_sandbox.store(SANDBOX_SHOP).customers[cid].tags == ["vip", "wholesale"]
    refused = requests.patch(
        f"{shopify_sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/customers/{cid}",
        json={"id": 5},
        timeout=5,
    )
    assert refused.status_code == 422
    assert shopify_sandbox.delivery.drain(5)
    log = _control(shopify_sandbox, "/webhooks?topic=customers/update").json()["deliveries"]
    assert len(log) == 1 and log[0]["delivered"] and log[0]["payload"]["id"] == cid
    shops = _control(shopify_sandbox, "/shops").json()["shops"]
    assert shops[0]["domain"] == SANDBOX_SHOP and shops[0]["orders"] == 5


def test_cancel_order_fires_cancelled_and_updated(
    shopify_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    oid = sorted(shopify_sandbox.store(SANDBOX_SHOP).orders)[0]
    response = _control(shopify_sandbox, f"/shops/{SANDBOX_SHOP}/orders/{oid}/cancel", json={})
    assert response.json()["cancelled_at"]
    assert shopify_sandbox.delivery.drain(5)
    assert sorted(webhook_sink.topics()) == ["orders/cancelled", "orders/updated"]


def test_compliance_and_uninstall_webhooks(
    shopify_sandbox: ShopifySandbox, sandbox_token: str, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    shopify_sandbox.delivery.topics.update(
        {
            "customers/redact": "/webhooks",
            "customers/data_request": "/webhooks",
            "shop/redact": "/webhooks",
            "app/uninstalled": "/webhooks",
        }
    )
    cid = sorted(shopify_sandbox.store(SANDBOX_SHOP).customers)[1]
    base = f"/shops/{SANDBOX_SHOP}"
    assert _control(shopify_sandbox, f"{base}/customers/{cid}/redact", json={}).status_code == 202
    assert _control(shopify_sandbox, f"{base}/customers/{cid}/data_request", json={}).ok
    assert _control(shopify_sandbox, f"{base}/uninstall", json={}).ok
    assert _control(shopify_sandbox, f"{base}/redact", json={}).ok
    assert shopify_sandbox.delivery.drain(5)
    assert webhook_sink.topics() == [
        "customers/redact",
        "customers/data_request",
        "app/uninstalled",
        "shop/redact",
    ]
    redact = shopify_sandbox.delivery.log(topic="customers/redact")[0].payload
    assert redact["shop_domain"] == SANDBOX_SHOP and redact["customer"]["id"] == cid
    assert len(redact["orders_to_redact"]) == 3
    # After uninstall the token no longer works.
    assert graphql(shopify_sandbox, sandbox_token, "{ shop { name } }").status_code == 401


def test_settings_point_at_the_sandbox(shopify_sandbox: ShopifySandbox) -> None:
    from shopify_app.settings import Settings

    settings = Settings(
        api_key="k",
        api_secret="s",
        token_encryption_keys=("x",),
        shopify_base_url=shopify_sandbox.shop_base(),
    )
    assert settings.graphql_url(SANDBOX_SHOP) == shopify_sandbox.graphql_url(SANDBOX_SHOP)


def test_order_by_handle_and_variant_for_a_new_customer(
    shopify_sandbox: ShopifySandbox,
) -> None:
    response = _control(
        shopify_sandbox,
        f"/shops/{SANDBOX_SHOP}/orders",
        json={
            "email": "new@example.com",
            "first_name": "Nia",
            "line_items": [{"handle": "runner", "variant": "run-s", "quantity": 2}],
            "discount_codes": ["SPRING"],
        },
    )
    assert response.status_code == 201
    order = response.json()
    assert order["line_items"][0]["sku"] == "RUN-S" and order["current_total_price"] == "84.00"
    assert order["customer"]["first_name"] == "Nia"
    missing = _control(
        shopify_sandbox,
        f"/shops/{SANDBOX_SHOP}/orders",
        json={"customer_id": 1, "line_items": [{"handle": "runner"}]},
    )
    assert missing.status_code == 422
    unknown = _control(
        shopify_sandbox,
        f"/shops/{SANDBOX_SHOP}/orders",
        json={"email": "a@b.c", "line_items": [{"handle": "nope"}]},
    )
    assert unknown.status_code == 422
