"""Contract tests: the sandbox's Admin GraphQL API answers as Shopify documents it."""

from __future__ import annotations

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from goldpan_sandbox.shopify import ShopifySandbox
from tests.fixtures_sandbox import SANDBOX_SHOP, crowded_store, graphql

CUSTOMERS = """
query Customers($after: String, $query: String) {
  customers(first: 2, after: $after, query: $query, sortKey: ID) {
    edges { cursor node {
      id firstName lastName
      defaultEmailAddress { emailAddress marketingState }
      defaultPhoneNumber { phoneNumber }
      defaultAddress { countryCodeV2 provinceCode city zip company }
      tags numberOfOrders amountSpent { amount currencyCode }
      statistics { rfmGroup predictedSpendTier } createdAt updatedAt
    } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


def test_rejects_requests_without_a_valid_token(shopify_sandbox: ShopifySandbox) -> None:
    response = graphql(shopify_sandbox, "shpat_wrong", "{ shop { name } }")
    assert response.status_code == 401
    assert response.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_unknown_shop_is_not_found(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    response = graphql(
        shopify_sandbox, sandbox_token, "{ shop { name } }", shop="nope.myshopify.com"
    )
    assert response.status_code == 404


def test_missing_query_is_a_400(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    response = requests.post(
        shopify_sandbox.graphql_url(SANDBOX_SHOP),
        json={"variables": {}},
        headers={"X-Shopify-Access-Token": sandbox_token},
        timeout=5,
    )
    assert response.status_code == 400


def test_customers_page_through_with_cursors(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    first = graphql(shopify_sandbox, sandbox_token, CUSTOMERS).json()
    assert "errors" not in first
    page = first["data"]["customers"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"] is True
    node = page["edges"][0]["node"]
    assert node["id"].startswith("gid://shopify/Customer/")
    assert node["defaultEmailAddress"] == {
        "emailAddress": "eleni@example.gr",
        "marketingState": "SUBSCRIBED",
    }
    assert node["numberOfOrders"] == "1"  # UnsignedInt64 is a string
    assert node["amountSpent"] == {"amount": "102.0", "currencyCode": "USD"}
    assert node["createdAt"] == "2026-01-05T10:00:00Z"
    second = graphql(
        shopify_sandbox, sandbox_token, CUSTOMERS, {"after": page["pageInfo"]["endCursor"]}
    ).json()["data"]["customers"]
    assert len(second["edges"]) == 1
    assert second["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": second["edges"][0]["cursor"],
    }
    assert second["edges"][0]["node"]["defaultAddress"]["company"] == "Grand Hotel"


def test_customers_search_by_updated_at(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    body = graphql(
        shopify_sandbox, sandbox_token, CUSTOMERS, {"query": "updated_at:>'2026-01-05T12:00:00Z'"}
    ).json()
    names = [e["node"]["firstName"] for e in body["data"]["customers"]["edges"]]
    assert names == ["Min-jun", "Dana"]


def test_orders_with_line_items(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    query = """{ orders(first: 10, sortKey: PROCESSED_AT) { nodes {
        id name email createdAt processedAt updatedAt cancelledAt test
        currentTotalPriceSet { shopMoney { amount currencyCode } }
        discountCodes billingAddress { company } customer { id }
        lineItems(first: 5) { nodes { id quantity currentQuantity sku title
          product { id } variant { id }
          originalTotalSet { shopMoney { amount } } discountedTotalSet { shopMoney { amount } } } }
    } } }"""
    body = graphql(shopify_sandbox, sandbox_token, query).json()
    orders = body["data"]["orders"]["nodes"]
    assert len(orders) == 5
    assert orders[0]["discountCodes"] == ["WEDDING10"]
    assert orders[2]["billingAddress"] == {"company": "Grand Hotel"}
    line = orders[2]["lineItems"]["nodes"][0]
    assert line["quantity"] == 120 and line["sku"] == "NAP-W"
    assert line["originalTotalSet"]["shopMoney"]["amount"] == "1020.0"
    assert line["variant"]["id"].startswith("gid://shopify/ProductVariant/")


def test_unknown_field_fails_with_shopify_error_shape(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    body = graphql(
        shopify_sandbox, sandbox_token, "{ customers(first: 1) { nodes { id favouriteColour } } }"
    ).json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["message"] == "Field 'favouriteColour' doesn't exist on type 'Customer'"
    assert error["locations"] == [{"line": 1, "column": 36}]
    assert error["path"] == ["query", "customers", "nodes", "favouriteColour"]
    assert error["extensions"]["code"] == "undefinedField"


def test_syntax_error_has_locations(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    body = graphql(shopify_sandbox, sandbox_token, "{ shop { name }").json()
    (error,) = body["errors"]
    assert error["locations"] and error["extensions"]["code"] == "parseError"


def test_deprecated_fields_still_answer(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    query = (
        "{ customers(first: 1) { nodes { email phone emailMarketingConsent { marketingState } } } }"
    )
    body = graphql(shopify_sandbox, sandbox_token, query).json()
    assert "errors" not in body
    assert body["data"]["customers"]["nodes"][0] == {
        "email": "eleni@example.gr",
        "phone": "+306912345678",
        "emailMarketingConsent": {"marketingState": "SUBSCRIBED"},
    }


def test_page_size_over_250_is_refused(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    body = graphql(
        shopify_sandbox, sandbox_token, "{ customers(first: 251) { nodes { id } } }"
    ).json()
    assert body["errors"][0]["path"] == ["customers"]
    assert body.get("data") is None


def _first_customer(sandbox: ShopifySandbox, token: str) -> str:
    body = graphql(sandbox, token, "{ customers(first: 1) { nodes { id } } }").json()
    return str(body["data"]["customers"]["nodes"][0]["id"])


TAGS_ADD = """mutation($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) {
  node { ... on Customer { tags } } userErrors { field message } } }"""
TAGS_REMOVE = """mutation($id: ID!, $tags: [String!]!) { tagsRemove(id: $id, tags: $tags) {
  node { id } userErrors { field message } } }"""


def test_tags_add_and_remove_follow_shopify_rules(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    cid = _first_customer(shopify_sandbox, sandbox_token)
    added = graphql(
        shopify_sandbox, sandbox_token, TAGS_ADD, {"id": cid, "tags": [" gp-vip ", "a, b"]}
    ).json()["data"]["tagsAdd"]
    assert added == {"node": {"tags": ["gp-vip", "a", "b"]}, "userErrors": []}
    again = graphql(
        shopify_sandbox, sandbox_token, TAGS_ADD, {"id": cid, "tags": ["GP-VIP"]}
    ).json()["data"]["tagsAdd"]
    assert again["node"]["tags"] == ["gp-vip", "a", "b"]  # case-insensitive, no duplicate
    too_long = graphql(
        shopify_sandbox, sandbox_token, TAGS_ADD, {"id": cid, "tags": ["x" * 256]}
    ).json()["data"]["tagsAdd"]
    assert too_long["node"] is None and too_long["userErrors"][0]["field"] == ["tags"]
    many = graphql(
        shopify_sandbox, sandbox_token, TAGS_ADD, {"id": cid, "tags": [f"t{i}" for i in range(248)]}
    ).json()["data"]["tagsAdd"]
    assert many["userErrors"] and many["node"] is None
    removed = graphql(
        shopify_sandbox, sandbox_token, TAGS_REMOVE, {"id": cid, "tags": ["a", "b"]}
    ).json()["data"]["tagsRemove"]
    assert removed["userErrors"] == []
    number = int(cid.rsplit("/", 1)[1])
    assert shopify_sandbox.store(SANDBOX_SHOP).customers[number].tags == ["gp-vip"]


def test_tags_on_a_missing_customer_is_a_user_error(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    body = graphql(
        shopify_sandbox, sandbox_token, TAGS_ADD, {"id": "gid://shopify/Customer/1", "tags": ["x"]}
    ).json()
    assert body["data"]["tagsAdd"]["userErrors"][0]["field"] == ["id"]


def test_segments_create_update_list(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    create = """mutation($name: String!, $query: String!) {
      segmentCreate(name: $name, query: $query) {
        segment { id name query } userErrors { field message } } }"""
    made = graphql(
        shopify_sandbox,
        sandbox_token,
        create,
        {"name": "Goldpan: VIP", "query": "customer_tags CONTAINS 'gp-vip'"},
    ).json()["data"]["segmentCreate"]
    assert made["userErrors"] == []
    duplicate = graphql(
        shopify_sandbox,
        sandbox_token,
        create,
        {"name": "Goldpan: VIP", "query": "customer_tags CONTAINS 'gp-vip'"},
    ).json()["data"]["segmentCreate"]
    assert duplicate["userErrors"][0]["field"] == ["name"]
    bad = graphql(
        shopify_sandbox, sandbox_token, create, {"name": "x", "query": "what is this"}
    ).json()["data"]["segmentCreate"]
    assert bad["userErrors"][0]["field"] == ["query"]
    update = """mutation($id: ID!, $query: String) { segmentUpdate(id: $id, query: $query) {
      segment { query } userErrors { message } } }"""
    updated = graphql(
        shopify_sandbox,
        sandbox_token,
        update,
        {"id": made["segment"]["id"], "query": "number_of_orders >= 3"},
    ).json()["data"]["segmentUpdate"]
    assert updated == {"segment": {"query": "number_of_orders >= 3"}, "userErrors": []}
    listed = graphql(
        shopify_sandbox, sandbox_token, "{ segments(first: 10) { nodes { name } } }"
    ).json()
    assert listed["data"]["segments"]["nodes"] == [{"name": "Goldpan: VIP"}]


def test_shop_and_products(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    body = graphql(
        shopify_sandbox,
        sandbox_token,
        "{ shop { name myshopifyDomain currencyCode } products(first: 5) { nodes { title "
        "variants(first: 5) { nodes { sku price } } } } }",
    ).json()
    assert body["data"]["shop"] == {
        "name": "Linen Sandbox",
        "myshopifyDomain": SANDBOX_SHOP,
        "currencyCode": "USD",
    }
    assert body["data"]["products"]["nodes"][0]["variants"]["nodes"] == [
        {"sku": "NAP-W", "price": "8.50"}
    ]


def _pages(store: object, first: int, sort_key: str, reverse: bool) -> list[str]:
    from goldpan_sandbox import admin_api
    from goldpan_sandbox.cost import LeakyBucket, Plan

    ctx = admin_api.RequestContext(SANDBOX_SHOP, store)  # type: ignore[arg-type]
    bucket = LeakyBucket(Plan(10**9, 10**9))
    query = """query($first: Int!, $after: String, $sort: CustomerSortKeys, $reverse: Boolean) {
      customers(first: $first, after: $after, sortKey: $sort, reverse: $reverse) {
        nodes { id } pageInfo { hasNextPage endCursor } } }"""
    seen: list[str] = []
    after = None
    while True:
        body = admin_api.execute(
            ctx,
            bucket,
            query,
            {"first": first, "after": after, "sort": sort_key, "reverse": reverse},
        )
        page = body["data"]["customers"]
        seen.extend(n["id"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]


@settings(max_examples=25, deadline=None)
@given(
    first=st.integers(min_value=1, max_value=40),
    sort_key=st.sampled_from(["ID", "UPDATED_AT", "CREATED_AT", "NAME"]),
    reverse=st.booleans(),
)
def test_paging_visits_every_customer_once(first: int, sort_key: str, reverse: bool) -> None:
    store = _CROWD
    seen = _pages(store, first, sort_key, reverse)
    assert len(seen) == len(set(seen)) == len(store.customers)


_CROWD = crowded_store(60)
