"""Contract tests: calculated query cost, the leaky bucket, THROTTLED and MAX_COST_EXCEEDED."""

from __future__ import annotations

from graphql import parse

from goldpan_sandbox import admin_api
from goldpan_sandbox.cost import CostCalculator, LeakyBucket, Plan
from goldpan_sandbox.shopify import ShopifySandbox
from tests.fixtures_sandbox import SANDBOX_SHOP, graphql


def _requested(query: str, variables: dict | None = None) -> int:
    document = parse(query)
    operation = admin_api.select_operation(document, None)
    assert operation is not None
    calc = CostCalculator(admin_api.schema(), admin_api.fragments_of(document), variables)
    return calc.operation(operation)


def test_objects_cost_one_scalars_nothing() -> None:
    assert _requested("{ shop { name currencyCode } }") == 1
    assert _requested("{ shop { name plan { displayName } } }") == 2


def test_connections_scale_with_page_size() -> None:
    assert _requested("{ customers(first: 10) { nodes { id } } }") == 2 + 10
    assert (
        _requested("query($n: Int) { customers(first: $n) { edges { node { id } } } }", {"n": 50})
        == 52
    )
    nested = "{ orders(first: 10) { nodes { id lineItems(first: 5) { nodes { sku } } } } }"
    assert _requested(nested) == 2 + 10 * (1 + 2 + 5)


def test_mutations_cost_ten() -> None:
    assert (
        _requested(
            'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["a"]) '
            "{ userErrors { message } } }"
        )
        == 10
    )


def test_bucket_refills_at_the_restore_rate() -> None:
    now = [0.0]
    bucket = LeakyBucket(Plan(100.0, 10.0), clock=lambda: now[0])
    assert bucket.take(90)
    assert not bucket.take(20)
    now[0] += 1.0
    assert bucket.status() == {
        "maximumAvailable": 100.0,
        "currentlyAvailable": 20,
        "restoreRate": 10.0,
    }
    assert bucket.take(20)


def test_every_response_reports_cost(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    body = graphql(
        shopify_sandbox, sandbox_token, "{ customers(first: 50) { nodes { id } } }"
    ).json()
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 52
    assert cost["actualQueryCost"] == 2 + 3  # three customers came back
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0
    assert cost["throttleStatus"]["restoreRate"] == 100.0
    assert 1940 <= cost["throttleStatus"]["currentlyAvailable"] <= 2000


def test_single_query_over_1000_is_refused(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    query = "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }"
    response = graphql(shopify_sandbox, sandbox_token, query)
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert error["extensions"]["maxCost"] == 1000
    assert "data" not in response.json()


def test_empty_bucket_answers_throttled_with_http_200(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    shopify_sandbox.set_plan(100.0, 1.0)
    shopify_sandbox.bucket(SANDBOX_SHOP).drain()
    response = graphql(shopify_sandbox, sandbox_token, "{ customers(first: 50) { nodes { id } } }")
    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    status = body["extensions"]["cost"]["throttleStatus"]
    assert status["maximumAvailable"] == 100.0 and status["currentlyAvailable"] < 52
