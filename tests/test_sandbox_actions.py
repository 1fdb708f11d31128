"""Contract tests: the sandbox's discounts and customer metafields answer as Shopify documents.

The app's own documents (shopify_app/graphql/) are sent over loopback HTTP.
"""

from __future__ import annotations

from typing import Any

import requests

from goldpan_sandbox import control
from goldpan_sandbox.shopify import ShopifySandbox
from shopify_app.shopify.client import load_document
from tests.fixtures_sandbox import *  # noqa: F403
from tests.fixtures_sandbox import SANDBOX_SHOP, graphql

SEGMENT = "gid://shopify/Segment/{}"


def _call(sandbox: ShopifySandbox, token: str, name: str, variables: dict[str, Any]) -> Any:
    body = graphql(sandbox, token, load_document(name), variables).json()
    assert "errors" not in body, body
    return body["data"]


def _segment(sandbox: ShopifySandbox) -> str:
    segment = sandbox.store(SANDBOX_SHOP).add_segment(
        "Goldpan: Lapsed", "customer_tags CONTAINS 'x'"
    )
    return SEGMENT.format(segment.id)


def _discount(segment: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Come back",
        "code": "COMEBACK10-TEST",
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2027-01-01T00:00:00Z",
        "appliesOncePerCustomer": True,
        "context": {"customerSegments": {"add": [segment]}},
        "customerGets": {"value": {"percentage": 0.1}, "items": {"all": True}},
        **extra,
    }


def _listed(sandbox: ShopifySandbox) -> list[dict[str, Any]]:
    response = requests.get(
        f"{sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/discounts", timeout=5
    )
    return response.json()["discounts"]  # type: ignore[no-any-return]


def test_discount_create_update_deactivate(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    segment = _segment(shopify_sandbox)
    created = _call(
        shopify_sandbox,
        sandbox_token,
        "discount_code_basic_create",
        {"basicCodeDiscount": _discount(segment)},
    )["discountCodeBasicCreate"]
    assert created["userErrors"] == []
    node = created["codeDiscountNode"]
    assert node["codeDiscount"]["status"] == "ACTIVE"
    [listed] = _listed(shopify_sandbox)
    assert (listed["code"], listed["percentage"], listed["segments"]) == (
        "COMEBACK10-TEST",
        0.1,
        [segment],
    )
    assert listed["appliesOncePerCustomer"] is True
    assert listed["segmentQueries"] == ["customer_tags CONTAINS 'x'"]

    updated = _call(
        shopify_sandbox,
        sandbox_token,
        "discount_code_basic_update",
        {"id": node["id"], "basicCodeDiscount": {"customerGets": {"value": {"percentage": 0.2}}}},
    )["discountCodeBasicUpdate"]
    assert updated["userErrors"] == []
    assert _listed(shopify_sandbox)[0]["percentage"] == 0.2

    ended = _call(shopify_sandbox, sandbox_token, "discount_code_deactivate", {"id": node["id"]})
    assert (
        ended["discountCodeDeactivate"]["codeDiscountNode"]["codeDiscount"]["status"] == "EXPIRED"
    )
    assert _listed(shopify_sandbox)[0]["status"] == "EXPIRED"


def test_discount_input_is_validated_like_shopify(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    segment = _segment(shopify_sandbox)
    create = "discount_code_basic_create"
    ok = _call(shopify_sandbox, sandbox_token, create, {"basicCodeDiscount": _discount(segment)})
    assert ok["discountCodeBasicCreate"]["userErrors"] == []
    cases = [
        (_discount(segment), "TAKEN", ["basicCodeDiscount", "code"]),
        (
            _discount(segment, code="X1", customerGets={"value": {"percentage": 15}}),
            "VALUE_OUTSIDE_RANGE",
            ["basicCodeDiscount", "customerGets", "value", "percentage"],
        ),
        (
            _discount(segment, code="X2", endsAt="2025-01-01T00:00:00Z"),
            "END_DATE_BEFORE_START_DATE",
            ["basicCodeDiscount", "endsAt"],
        ),
        (
            _discount(SEGMENT.format(1), code="X3"),
            "INVALID",
            ["basicCodeDiscount", "context", "customerSegments", "add"],
        ),
        (
            {k: v for k, v in _discount(segment, code="X4").items() if k != "title"},
            "BLANK",
            ["basicCodeDiscount", "title"],
        ),
    ]
    for data, code, field in cases:
        answer = _call(shopify_sandbox, sandbox_token, create, {"basicCodeDiscount": data})
        payload = answer["discountCodeBasicCreate"]
        assert payload["codeDiscountNode"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)]
    missing = _call(
        shopify_sandbox,
        sandbox_token,
        "discount_code_deactivate",
        {"id": "gid://shopify/DiscountCodeNode/1"},
    )["discountCodeDeactivate"]
    assert missing["userErrors"][0]["field"] == ["id"]
    assert len(_listed(shopify_sandbox)) == 1


def test_checkout_takes_the_code_once_from_its_segment_and_takes_its_percentage_off(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    segment = _segment(shopify_sandbox)  # customers tagged "x"
    _call(
        shopify_sandbox,
        sandbox_token,
        "discount_code_basic_create",
        {"basicCodeDiscount": _discount(segment)},
    )
    store = shopify_sandbox.store(SANDBOX_SHOP)
    inside, outside = list(store.customers)[:2]
    control.edit_customer(shopify_sandbox, SANDBOX_SHOP, inside, {"tags": ["X"]})

    def order(customer: int) -> requests.Response:
        return requests.post(
            f"{shopify_sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/orders",
            json={
                "customer_id": customer,
                "discount_codes": ["comeback10-test"],
                "line_items": [{"price": "30", "quantity": 2}],
            },
            timeout=5,
        )

    refused = order(outside)
    assert refused.status_code == 422 and "not available to this customer" in refused.text
    placed = order(inside)
    assert placed.status_code == 201, placed.text
    assert (placed.json()["total_discounts"], placed.json()["total_price"]) == ("6.00", "54.00")
    again = order(inside)  # appliesOncePerCustomer
    assert again.status_code == 422 and "already used" in again.text
    assert _listed(shopify_sandbox)[0]["usageCount"] == 1


def _metafield(owner: int, key: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "ownerId": f"gid://shopify/Customer/{owner}",
        "namespace": "$app:goldpan",
        "key": key,
        "value": value,
        **extra,
    }


def test_metafield_definitions_and_values(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    definition = {
        "ownerType": "CUSTOMER",
        "namespace": "$app:goldpan",
        "key": "p_alive",
        "name": "Chance still active",
        "type": "number_decimal",
        "capabilities": {"adminFilterable": {"enabled": True}},
    }
    first = _call(
        shopify_sandbox, sandbox_token, "metafield_definition_create", {"definition": definition}
    )
    assert first["metafieldDefinitionCreate"]["userErrors"] == []
    again = _call(
        shopify_sandbox, sandbox_token, "metafield_definition_create", {"definition": definition}
    )
    assert [e["code"] for e in again["metafieldDefinitionCreate"]["userErrors"]] == ["TAKEN"]

    customer = next(iter(shopify_sandbox.store(SANDBOX_SHOP).customers))
    written = _call(
        shopify_sandbox,
        sandbox_token,
        "metafields_set",
        {"metafields": [_metafield(customer, "p_alive", "0.42")]},
    )["metafieldsSet"]
    assert written["userErrors"] == []
    seen = requests.get(
        f"{shopify_sandbox.base_url}/_sandbox/shops/{SANDBOX_SHOP}/customers/{customer}", timeout=5
    ).json()
    assert seen["metafields"]["$app:goldpan.p_alive"]["value"] == "0.42"
    assert seen["metafields"]["$app:goldpan.p_alive"]["type"] == "number_decimal"

    # Atomic: one bad value (a word for a decimal) and nothing in the call is written.
    refused = _call(
        shopify_sandbox,
        sandbox_token,
        "metafields_set",
        {
            "metafields": [
                _metafield(customer, "p_alive", "0.5"),
                _metafield(customer, "p_alive", "high"),
            ]
        },
    )["metafieldsSet"]
    assert [(e["code"], e["elementIndex"]) for e in refused["userErrors"]] == [("INVALID_VALUE", 1)]
    store = shopify_sandbox.store(SANDBOX_SHOP)
    assert store.customers[customer].metafields["$app:goldpan.p_alive"].value == "0.42"

    stale = _call(
        shopify_sandbox,
        sandbox_token,
        "metafields_set",
        {"metafields": [_metafield(customer, "p_alive", "0.5", compareDigest="nope")]},
    )["metafieldsSet"]
    assert [e["code"] for e in stale["userErrors"]] == ["STALE_OBJECT"]

    too_many = [_metafield(customer, "p_alive", "0.1")] * 26
    over = _call(shopify_sandbox, sandbox_token, "metafields_set", {"metafields": too_many})
    assert [e["code"] for e in over["metafieldsSet"]["userErrors"]] == ["LESS_THAN_OR_EQUAL_TO"]
