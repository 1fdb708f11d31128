"""The Admin GraphQL client against a loopback Shopify stand-in: pacing, retries, typed errors,
token refresh, cost accounting and the bulk helpers."""

from __future__ import annotations

import pytest
import requests
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import Shop
from shopify_app.errors import (
    GraphQLError,
    SyncError,
    ThrottledError,
    TransientError,
    UserErrorsError,
)
from shopify_app.shopify.client import AdminClient, CostBucket, gid_number, load_document
from tests.fixtures_sync import *  # noqa: F403
from tests.fixtures_sync import FakeClock, FakeShopify, graphql_body, jsonl, throttled_body


def _client(sync_ctx, shop_id, clock: FakeClock, **kw) -> AdminClient:  # type: ignore[no-untyped-def]
    return AdminClient(sync_ctx, shop_id, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, **kw)


def test_gid_number() -> None:
    assert gid_number("gid://shopify/Order/123") == 123
    assert gid_number("gid://shopify/LineItem/9?x=1") == 9
    assert gid_number(None) is None


def test_bucket_projection() -> None:
    bucket = CostBucket()
    bucket.update(throttle_status(10), now=0.0)
    assert bucket.wait_for(100, 0.0) == pytest.approx(1.8)
    assert bucket.wait_for(100, 2.0) == 0.0
    assert bucket.wait_for(5000, 100.0) == 0.0  # capped at the maximum, never waits forever


def throttle_status(available: float) -> dict[str, float]:
    return {"maximumAvailable": 1000, "currentlyAvailable": available, "restoreRate": 50}


def test_execute_returns_data_and_records_cost(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    with _client(sync_ctx, shop.id, clock) as client:
        data = client.execute("shop")
        assert data["shop"]["name"] == "Test"
        client.execute("shop")
    with sync_ctx.sessions() as session:
        assert session.get(Shop, shop.id).api_cost_spent == 20
    assert fake_shopify.calls[0]["token"] == "shpat_test"


def test_waits_before_the_bucket_runs_dry(sync_ctx, make_shop, fake_shopify: FakeShopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    # The first answer says the query costs 100 and only 10 points are left (restore 50/s):
    # the second request must wait 1.8 s *before* being sent, and is never throttled.
    fake_shopify.script.append(
        JSONResponse(graphql_body({"shop": {"name": "a"}}, requested=100, available=10))
    )
    client = _client(sync_ctx, shop.id, clock)
    client.execute("shop")
    assert clock.sleeps == []
    client.execute("shop")
    assert clock.sleeps == [pytest.approx(1.8)]
    assert len(fake_shopify.calls) == 2


def test_retries_throttled_then_succeeds(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    fake_shopify.script.extend(
        [JSONResponse(throttled_body(requested=100, available=0)) for _ in range(2)]
    )
    data = _client(sync_ctx, shop.id, clock).execute("shop")
    assert data["shop"]["name"] == "Test"
    assert len(fake_shopify.calls) == 3
    # Each retry waited at least until the bucket could hold the request (100 / 50 = 2 s).
    assert all(s >= 2.0 for s in clock.sleeps[:2])


def test_persistent_throttling_raises_throttled_error(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    fake_shopify.script.extend([JSONResponse(throttled_body()) for _ in range(3)])
    with pytest.raises(ThrottledError) as err:
        _client(sync_ctx, shop.id, clock, max_attempts=3).execute("shop")
    assert err.value.shop == shop.domain


def test_429_honours_retry_after(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    fake_shopify.script.append(Response("slow down", 429, headers={"Retry-After": "7"}))
    _client(sync_ctx, shop.id, clock).execute("shop")
    assert clock.sleeps[0] >= 7


def test_5xx_then_success_with_bounded_backoff(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    fake_shopify.script.extend([Response("", 503), Response("", 502), Response("", 504)])
    _client(sync_ctx, shop.id, clock).execute("shop")
    assert len(fake_shopify.calls) == 4
    assert clock.sleeps == sorted(clock.sleeps)  # exponential
    assert max(clock.sleeps) <= 30


def test_5xx_forever_raises_transient_error(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()
    fake_shopify.script.extend([Response("", 503) for _ in range(3)])
    with pytest.raises(TransientError) as err:
        _client(sync_ctx, shop.id, clock, max_attempts=3).execute("shop")
    assert shop.domain in str(err.value)


def test_timeout_is_retried(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    clock = FakeClock()

    class ShortTimeout(requests.Session):
        def post(self, url, **kw):  # type: ignore[no-untyped-def,override]
            kw["timeout"] = 0.2 if fake_shopify.delay else kw.get("timeout")
            return super().post(url, **kw)

    fake_shopify.delay = 0.5

    def fast_again(call):  # type: ignore[no-untyped-def]
        fake_shopify.delay = 0.0
        return JSONResponse(graphql_body({"shop": {"name": "late"}}))

    fake_shopify.script.append(fast_again)
    data = _client(sync_ctx, shop.id, clock, http=ShortTimeout()).execute("shop")
    assert data["shop"]["name"] in ("late", "Test")
    assert clock.sleeps  # the timeout was followed by a backoff


def test_graphql_errors_are_typed(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    fake_shopify.script.append(
        JSONResponse({"errors": [{"message": "Field 'x' doesn't exist", "extensions": {}}]})
    )
    with pytest.raises(GraphQLError) as err:
        _client(sync_ctx, shop.id, FakeClock()).execute("shop")
    assert err.value.errors[0]["message"].startswith("Field")
    assert err.value.shop == shop.domain


def test_user_errors_are_typed(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    fake_shopify.script.append(
        JSONResponse(
            graphql_body(
                {
                    "bulkOperationRunQuery": {
                        "bulkOperation": None,
                        "userErrors": [{"field": ["query"], "message": "bad", "code": None}],
                    }
                }
            )
        )
    )
    with pytest.raises(UserErrorsError) as err:
        _client(sync_ctx, shop.id, FakeClock()).run_bulk_query("bulk_customers")
    assert err.value.user_errors[0]["message"] == "bad"


def test_401_refreshes_the_token_once(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop(token="shpat_revoked")
    data = _client(sync_ctx, shop.id, FakeClock()).execute("shop")
    assert data["shop"]["name"] == "Test"
    assert fake_shopify.refreshed == 1
    assert [c["token"] for c in fake_shopify.calls] == ["shpat_revoked", "shpat_refreshed_1"]


def test_bulk_query_and_status(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    fake_shopify.files["customers"] = jsonl([{"id": "gid://shopify/Customer/1"}])
    fake_shopify.bulk_plan["customers"] = ["RUNNING", "COMPLETED"]
    client = _client(sync_ctx, shop.id, FakeClock())
    gid = client.run_bulk_query("bulk_customers")
    sent = fake_shopify.calls[-1]["variables"]["query"]
    assert sent == load_document("bulk_customers")
    assert client.bulk_operation(gid)["status"] == "RUNNING"
    done = client.bulk_operation(gid)
    assert done["status"] == "COMPLETED" and done["objectCount"] == "1"
    assert list(client.stream_jsonl(done["url"])) == [{"id": "gid://shopify/Customer/1"}]


def test_bulk_mutation_uploads_then_runs(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    client = _client(sync_ctx, shop.id, FakeClock())
    rows = [{"id": f"gid://shopify/Customer/{i}", "tags": ["goldpan-vip"]} for i in range(3)]
    gid = client.run_bulk_mutation("tags_add", rows)
    assert gid.startswith("gid://shopify/BulkOperation/")
    upload, run = fake_shopify.uploads
    assert upload["fields"] == {"key": "tmp/1/bulk/vars.jsonl", "policy": "p0l1cy"}
    assert upload["content"] == jsonl(rows).replace(b", ", b",").replace(b": ", b":")
    assert run["run"]["stagedUploadPath"] == "tmp/1/bulk/vars.jsonl"
    assert run["run"]["mutation"] == load_document("tags_add")


def test_stream_skips_and_detects_truncation(sync_ctx, make_shop, fake_shopify) -> None:
    shop = make_shop()
    rows = [{"id": f"gid://shopify/Customer/{i}"} for i in range(100)]
    fake_shopify.files["customers"] = jsonl(rows)
    client = _client(sync_ctx, shop.id, FakeClock())
    url = f"{fake_shopify.url}/files/customers.jsonl"
    assert list(client.stream_jsonl(url, skip=95)) == rows[95:]
    fake_shopify.truncate["customers"] = 500
    with pytest.raises(SyncError):
        list(client.stream_jsonl(url))
