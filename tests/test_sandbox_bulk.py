"""Contract tests: bulk queries (JSONL with __parentId, expiring URL, finish webhook) and
bulk mutations through a staged upload."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from goldpan_sandbox.bulk import BulkQueryError, iter_bulk_jsonl
from goldpan_sandbox.delivery import sign
from goldpan_sandbox.shopify import ShopifySandbox
from tests.conftest import TEST_API_SECRET
from tests.fixtures_sandbox import SANDBOX_SHOP, WebhookSink, crowded_store, graphql, small_store

ORDERS_BULK = """
{ orders { edges { node {
  id name processedAt customer { id }
  currentTotalPriceSet { shopMoney { amount } }
  lineItems { edges { node { id sku quantity variant { id } } } }
} } } }
"""

RUN_QUERY = """mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) {
  bulkOperation { id status } userErrors { field message code } } }"""
OP = """query($id: ID!) { bulkOperation(id: $id) {
  id status errorCode objectCount rootObjectCount fileSize url partialDataUrl type } }"""


def _wait(sandbox: ShopifySandbox, token: str, gid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        op = graphql(sandbox, token, OP, {"id": gid}).json()["data"]["bulkOperation"]
        if op["status"] not in ("CREATED", "RUNNING"):
            return dict(op)
        time.sleep(0.02)
    raise AssertionError("bulk operation did not finish")


def test_jsonl_lines_nest_through_parent_id() -> None:
    store = small_store()
    lines = [json.loads(line) for line in iter_bulk_jsonl(store, ORDERS_BULK, seed=1)]
    orders = [line for line in lines if "__parentId" not in line]
    items = [line for line in lines if "__parentId" in line]
    assert len(orders) == 5 and len(items) == 5
    assert {i["__parentId"] for i in items} == {o["id"] for o in orders}
    assert all("lineItems" not in o for o in orders)  # nested connections are not inlined
    assert orders[0]["currentTotalPriceSet"]["shopMoney"]["amount"]
    grouped = [json.loads(x) for x in iter_bulk_jsonl(store, ORDERS_BULK, group_objects=True)]
    assert all(
        "__parentId" not in grouped[i] and grouped[i + 1]["__parentId"] == grouped[i]["id"]
        for i in range(0, len(grouped), 2)
    )


def test_bulk_query_rules() -> None:
    store = small_store()
    with pytest.raises(BulkQueryError, match="at least one connection"):
        list(iter_bulk_jsonl(store, "{ shop { name } }"))
    with pytest.raises(BulkQueryError, match="must select the 'id'"):
        list(iter_bulk_jsonl(store, "{ orders { nodes { name lineItems { nodes { id } } } } }"))


def test_bulk_query_runs_and_serves_an_expiring_file(
    shopify_sandbox: ShopifySandbox, sandbox_token: str, webhook_sink: WebhookSink
) -> None:
    shopify_sandbox.app_url = webhook_sink.url
    started = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    run = started["data"]["bulkOperationRunQuery"]
    assert run["userErrors"] == [] and run["bulkOperation"]["status"] in ("CREATED", "RUNNING")
    op = _wait(shopify_sandbox, sandbox_token, run["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED" and op["type"] == "QUERY"
    assert op["objectCount"] == "10" and op["rootObjectCount"] == "5"
    download = requests.get(op["url"], timeout=5)
    assert download.status_code == 200
    assert int(op["fileSize"]) == len(download.content)
    assert len(download.text.splitlines()) == 10
    tampered = op["url"].replace("Signature=", "Signature=0")
    assert requests.get(tampered, timeout=5).status_code == 403
    assert shopify_sandbox.delivery.drain(5)
    finish = [
        (h, b) for h, b in webhook_sink.received if h["x-shopify-topic"] == "bulk_operations/finish"
    ]
    assert len(finish) == 1
    headers, body = finish[0]
    assert headers["x-shopify-hmac-sha256"] == sign(TEST_API_SECRET, body)
    payload = json.loads(body)
    assert payload["admin_graphql_api_id"] == op["id"]
    assert payload["status"] == "completed" and payload["type"] == "query"


def test_expired_url_is_refused(shopify_sandbox: ShopifySandbox, sandbox_token: str) -> None:
    shopify_sandbox.bulk.url_ttl = -1
    run = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    op = _wait(
        shopify_sandbox, sandbox_token, run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    )
    response = requests.get(op["url"], timeout=5)
    assert response.status_code == 400 and "ExpiredToken" in response.text


def test_at_most_five_bulk_queries_run_at_once(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    shopify_sandbox.faults.bulk_delay = 3.0  # long enough that none finishes meanwhile
    results = [
        graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
        for _ in range(6)
    ]
    errors = [r["data"]["bulkOperationRunQuery"]["userErrors"] for r in results]
    assert errors[:5] == [[]] * 5
    assert errors[5][0]["code"] == "LIMIT_REACHED"
    running = graphql(
        shopify_sandbox,
        sandbox_token,
        '{ bulkOperations(first: 10, query: "status:running") { nodes { id status } } }',
    ).json()["data"]["bulkOperations"]["nodes"]
    assert 1 <= len(running) <= 5 and all(n["status"] == "RUNNING" for n in running)


def test_bulk_failure_and_expiry_faults(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    shopify_sandbox.faults.end_bulk("FAILED", count=1, error_code="TIMEOUT")
    run = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    failed = _wait(
        shopify_sandbox, sandbox_token, run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    )
    assert failed["status"] == "FAILED" and failed["errorCode"] == "TIMEOUT"
    assert failed["url"] is None and failed["partialDataUrl"]
    shopify_sandbox.faults.end_bulk("EXPIRED", count=1)
    run = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    expired = _wait(
        shopify_sandbox, sandbox_token, run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    )
    assert expired["status"] == "EXPIRED" and expired["url"] is None
    run = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    fine = _wait(
        shopify_sandbox, sandbox_token, run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    )
    assert fine["status"] == "COMPLETED"


def test_truncated_download_breaks_the_stream(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    run = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": ORDERS_BULK}).json()
    op = _wait(
        shopify_sandbox, sandbox_token, run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    )
    shopify_sandbox.faults.truncate_downloads = 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(op["url"], timeout=5).content  # noqa: B018
    assert len(requests.get(op["url"], timeout=5).content) == int(op["fileSize"])


def test_invalid_bulk_query_is_a_user_error(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    body = graphql(shopify_sandbox, sandbox_token, RUN_QUERY, {"q": "{ shop { name } }"}).json()
    run = body["data"]["bulkOperationRunQuery"]
    assert run["bulkOperation"] is None
    assert run["userErrors"][0]["code"] == "INVALID"


STAGE = """mutation { stagedUploadsCreate(input: [{resource: BULK_MUTATION_VARIABLES,
  filename: "tags.jsonl", mimeType: "text/jsonl", httpMethod: POST}]) {
  stagedTargets { url resourceUrl parameters { name value } } userErrors { message } } }"""
RUN_MUTATION = """mutation($m: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $m, stagedUploadPath: $path) {
    bulkOperation { id status } userErrors { field message code } } }"""
TAGS_ADD = """mutation call($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) {
  node { id } userErrors { field message } } }"""


def test_bulk_mutation_through_a_staged_upload(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    ids = sorted(store.customers)
    rows = [{"id": f"gid://shopify/Customer/{i}", "tags": ["gp-fan"]} for i in ids]
    rows.append({"id": "gid://shopify/Customer/1", "tags": ["gp-fan"]})
    staged = graphql(shopify_sandbox, sandbox_token, STAGE).json()["data"]["stagedUploadsCreate"]
    (target,) = staged["stagedTargets"]
    params = {p["name"]: p["value"] for p in target["parameters"]}
    upload = requests.post(
        target["url"],
        data=params,
        files={"file": ("tags.jsonl", "\n".join(json.dumps(r) for r in rows).encode())},
        timeout=5,
    )
    assert upload.status_code == 201
    run = graphql(
        shopify_sandbox, sandbox_token, RUN_MUTATION, {"m": TAGS_ADD, "path": params["key"]}
    ).json()["data"]["bulkOperationRunMutation"]
    assert run["userErrors"] == []
    op = _wait(shopify_sandbox, sandbox_token, run["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED" and op["type"] == "MUTATION"
    results = [json.loads(line) for line in requests.get(op["url"], timeout=5).text.splitlines()]
    assert [r["__lineNumber"] for r in results] == [0, 1, 2, 3]
    assert results[0]["data"]["tagsAdd"]["userErrors"] == []
    assert results[3]["data"]["tagsAdd"]["userErrors"][0]["field"] == ["id"]
    assert all("gp-fan" in store.customers[i].tags for i in ids)


def test_bulk_mutation_needs_an_uploaded_file(
    shopify_sandbox: ShopifySandbox, sandbox_token: str
) -> None:
    run = graphql(
        shopify_sandbox, sandbox_token, RUN_MUTATION, {"m": TAGS_ADD, "path": "tmp/nothing"}
    ).json()["data"]["bulkOperationRunMutation"]
    assert run["userErrors"][0]["code"] == "NO_SUCH_FILE"


def test_bulk_counts_match_the_store_and_every_child_has_a_parent() -> None:
    store = crowded_store(90)
    document = (
        "{ customers { edges { node { id orders { edges { node { id "
        "lineItems { edges { node { id quantity } } } } } } } } } }"
    )
    with pytest.raises(BulkQueryError, match="nesting depth"):
        list(iter_bulk_jsonl(store, document))
    lines = [json.loads(x) for x in iter_bulk_jsonl(store, ORDERS_BULK, seed=3)]
    roots = {line["id"] for line in lines if "__parentId" not in line}
    children = [line for line in lines if "__parentId" in line]
    assert len(roots) == len(store.orders)
    assert len(children) == sum(len(o.line_items) for o in store.orders.values())
    assert all(child["__parentId"] in roots for child in children)
    # No ordering guarantee: with enough lines some child precedes its parent.
    position = {line["id"]: i for i, line in enumerate(lines)}
    assert any(position[c["__parentId"]] > position[c["id"]] for c in children)
