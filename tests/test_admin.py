"""The Admin GraphQL client against the Shopify sandbox on loopback: pacing, retries, typed
errors, token refresh, cost accounting and the bulk helpers.

The client and the sandbox's cost bucket share one :class:`FakeClock`: the client's waits are
recorded instead of slept, and the bucket refills by exactly what the client waited.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shopify_app.db.models import Shop
from shopify_app.errors import (
    GraphQLError,
    SyncError,
    ThrottledError,
    TransientError,
    UserErrorsError,
)
from shopify_app.shopify.client import AdminClient, CostBucket, gid_number, load_document
from tests.fixtures_sync import FakeClock, RecordingHttp, SyncEnv, jsonl, shaped_store


def _client(env: SyncEnv, clock: FakeClock, **kw) -> AdminClient:  # type: ignore[no-untyped-def]
    kw.setdefault("http", env.http)
    return AdminClient(env.ctx, env.shop.id, sleep=clock.sleep, clock=clock, rng=lambda: 0.5, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(make_sync_env: Callable[..., SyncEnv], clock: FakeClock) -> SyncEnv:
    """A sandbox shop named "Test" whose cost bucket runs on ``clock``."""
    return make_sync_env(clock=clock)


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


def test_execute_returns_data_and_records_cost(env: SyncEnv, clock: FakeClock) -> None:
    with _client(env, clock) as client:
        data = client.execute("shop")
        assert data["shop"]["name"] == "Test"
        client.execute("shop")
    spent = sum(call.cost["actualQueryCost"] for call in env.http.calls)
    assert spent > 0
    with env.ctx.sessions() as session:
        assert session.get(Shop, env.shop.id).api_cost_spent == spent
    assert env.http.calls[0].token == env.tokens["access_token"]


def test_waits_before_the_bucket_runs_dry(env: SyncEnv, clock: FakeClock) -> None:
    env.sandbox.set_plan(1000, 50)
    # What one `shop` query costs, learnt from a first client.
    _client(env, clock).execute("shop")
    cost = env.http.calls[-1].cost["requestedQueryCost"]
    # Leave just enough for one more, and half a point Shopify does not report (whole points).
    env.bucket.drain()
    env.bucket.refund(cost + 0.5)
    env.http.calls.clear()
    client = _client(env, clock)
    client.execute("shop")
    assert clock.sleeps == []
    status = env.http.calls[0].cost["throttleStatus"]
    # The first answer says the bucket is empty: the second request waits *before* being sent
    # until the bucket holds what the query costs, and is never throttled.
    client.execute("shop")
    expected = (cost - status["currentlyAvailable"]) / status["restoreRate"]
    assert expected > 0
    assert clock.sleeps == [pytest.approx(expected)]
    assert len(env.http.calls) == 2 and not any(call.throttled for call in env.http.calls)


def test_retries_throttled_then_succeeds(env: SyncEnv, clock: FakeClock) -> None:
    env.sandbox.set_plan(1000, 1)
    env.bucket.drain()
    env.bucket.refund(0.5)  # less than any query costs

    def another_worker_spends_the_refill() -> None:
        env.bucket.drain()
        env.bucket.refund(0.5)
        clock.on_sleep = None  # once

    clock.on_sleep = another_worker_spends_the_refill
    data = _client(env, clock).execute("shop")
    assert data["shop"]["name"] == "Test"
    calls = env.http.calls
    assert len(calls) == 3 and [c.throttled for c in calls] == [True, True, False]
    # Each retry waited at least until the bucket could hold the request.
    needed = calls[0].cost["requestedQueryCost"] / calls[0].cost["throttleStatus"]["restoreRate"]
    assert all(s >= needed for s in clock.sleeps[:2])


def test_persistent_throttling_raises_throttled_error(env: SyncEnv, clock: FakeClock) -> None:
    env.bucket.drain()
    clock.on_sleep = env.bucket.drain  # the app's other workers keep the bucket empty
    with pytest.raises(ThrottledError) as err:
        _client(env, clock, max_attempts=3).execute("shop")
    assert err.value.shop == env.shop.domain
    assert [c.throttled for c in env.http.calls] == [True] * 3


def test_429_honours_retry_after(env: SyncEnv, clock: FakeClock) -> None:
    env.sandbox.faults.fail_next(429, 1, retry_after=7)
    _client(env, clock).execute("shop")
    assert clock.sleeps[0] >= 7


def test_5xx_then_success_with_bounded_backoff(env: SyncEnv, clock: FakeClock) -> None:
    for status in (503, 502, 504):
        env.sandbox.faults.fail_next(status)
    _client(env, clock).execute("shop")
    assert [c.status for c in env.http.calls] == [503, 502, 504, 200]
    assert clock.sleeps == sorted(clock.sleeps)  # exponential
    assert max(clock.sleeps) <= 30


def test_5xx_forever_raises_transient_error(env: SyncEnv, clock: FakeClock) -> None:
    env.sandbox.faults.fail_next(503, 3)
    with pytest.raises(TransientError) as err:
        _client(env, clock, max_attempts=3).execute("shop")
    assert env.shop.domain in str(err.value)


def test_timeout_is_retried(env: SyncEnv, clock: FakeClock) -> None:
    class FirstRequestTimesOut(RecordingHttp):
        """A short read timeout on the first Admin request, which the sandbox answers late."""

        sent = 0

        def post(self, url, **kw):  # type: ignore[no-untyped-def,override]
            if str(url).endswith("/graphql.json"):
                self.sent += 1
                if self.sent == 1:
                    kw["timeout"] = 0.2
            return super().post(url, **kw)

    env.sandbox.faults.slow_next(0.5, count=1)
    http = FirstRequestTimesOut()
    data = _client(env, clock, http=http).execute("shop")
    assert data["shop"]["name"] == "Test"
    assert http.sent == 2 and len(http.calls) == 1  # the first never got its answer
    assert clock.sleeps  # the timeout was followed by a backoff


def test_graphql_errors_are_typed(env: SyncEnv, clock: FakeClock) -> None:
    with pytest.raises(GraphQLError) as err:
        _client(env, clock).request("query Broken { shop { x } }", label="broken")
    assert err.value.errors[0]["message"].startswith("Field")
    assert err.value.shop == env.shop.domain


def test_user_errors_are_typed(env: SyncEnv, clock: FakeClock) -> None:
    env.hold_bulk()  # five exports keep running: the shop's limit
    client = _client(env, clock)
    for _ in range(5):
        client.run_bulk_query("bulk_customers")
    with pytest.raises(UserErrorsError) as err:
        client.run_bulk_query("bulk_customers")
    assert err.value.user_errors[0]["code"] == "LIMIT_REACHED"
    assert "at most 5 bulk query operations" in err.value.user_errors[0]["message"]


def test_401_refreshes_the_token_once(make_sync_env: Callable[..., SyncEnv]) -> None:
    env = make_sync_env()
    with env.ctx.sessions.begin() as session:
        session.get(Shop, env.shop.id).access_token = env.ctx.cipher.encrypt("shpat_revoked")
    data = _client(env, FakeClock()).execute("shop")
    assert data["shop"]["name"] == "Test"
    refreshes = [g for s, g in env.sandbox.oauth.token_requests if g == "refresh_token"]
    assert refreshes == ["refresh_token"]
    with env.ctx.sessions() as session:
        stored = env.ctx.cipher.decrypt(session.get(Shop, env.shop.id).access_token)
    assert [c.token for c in env.http.calls] == ["shpat_revoked", stored]
    assert stored != env.tokens["access_token"]


def test_bulk_query_and_status(make_sync_env: Callable[..., SyncEnv], clock: FakeClock) -> None:
    env = make_sync_env(lambda domain: shaped_store(domain, customers=1, orders=0), clock=clock)
    env.hold_bulk()
    client = _client(env, clock)
    gid = client.run_bulk_query("bulk_customers")
    sent = env.http.calls[-1].variables["query"]
    assert sent == load_document("bulk_customers")
    env.wait_running(gid)
    assert client.bulk_operation(gid)["status"] == "RUNNING"
    env.release_bulk()
    done = client.bulk_operation(gid)
    assert done["status"] == "COMPLETED" and done["objectCount"] == "1"
    [line] = list(client.stream_jsonl(done["url"]))
    assert line["id"] == "gid://shopify/Customer/1" and line["firstName"] == "First1"


def test_bulk_mutation_uploads_then_runs(env: SyncEnv, clock: FakeClock) -> None:
    client = _client(env, clock)
    rows = [{"id": f"gid://shopify/Customer/{i}", "tags": ["goldpan-vip"]} for i in (1, 2, 3)]
    gid = client.run_bulk_mutation("tags_add", rows)
    assert gid.startswith("gid://shopify/BulkOperation/")
    [staged] = env.http.named("StagedUploadsCreate")
    target = staged.answer["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    [upload] = env.http.uploads
    assert upload["fields"] == {p["name"]: p["value"] for p in target["parameters"]}
    assert upload["content"] == jsonl(rows).replace(b", ", b",").replace(b": ", b":")
    [run] = env.http.named("BulkOperationRunMutation")
    assert run.variables["stagedUploadPath"] == upload["fields"]["key"]
    assert run.variables["mutation"] == load_document("tags_add")
    # Shopify ran every line.
    assert env.sandbox.bulk.wait(env.bulk_operation(gid))
    assert all("goldpan-vip" in env.store.customers[i].tags for i in (1, 2, 3))


def test_stream_skips_and_detects_truncation(
    make_sync_env: Callable[..., SyncEnv], clock: FakeClock
) -> None:
    env = make_sync_env(lambda domain: shaped_store(domain, customers=100, orders=0), clock=clock)
    client = _client(env, clock)
    gid = client.run_bulk_query("bulk_customers")
    assert env.sandbox.bulk.wait(env.bulk_operation(gid))
    url = client.bulk_operation(gid)["url"]
    rows = list(client.stream_jsonl(url))
    assert len(rows) == 100
    assert list(client.stream_jsonl(url, skip=95)) == rows[95:]
    env.sandbox.faults.truncate_downloads = 1
    with pytest.raises(SyncError):
        list(client.stream_jsonl(url))
