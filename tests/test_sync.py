"""The sync engine on a real database against the Shopify sandbox on loopback: bulk import end
to end, idempotent and resumable ingest, retried bulk operations, webhooks in any order,
reconciliation.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from goldpan_sandbox.store import Customer as StoreCustomer
from goldpan_sandbox.store import LineItem as StoreLineItem
from goldpan_sandbox.store import Order as StoreOrder
from goldpan_sandbox.store import Store
from shopify_app import jobs
from shopify_app.db.models import Customer, LineItem, Order, Product, Shop, SyncRun, Variant
from shopify_app.errors import SyncError, UserErrorsError
from shopify_app.shopify.client import AdminClient
from shopify_app.states import SyncRunKind, SyncRunStatus
from shopify_app.sync import bulk, ingest, reconcile, rows, runs, scopes
from shopify_app.sync.webhooks import apply_webhook
from tests.fixtures_sync import (
    RecordingHttp,
    SyncEnv,
    bulk_customer,
    bulk_store,
    shaped_store,
)

UTC = dt.UTC


def _state(ctx: Any, shop_id: int) -> dict[str, Any]:
    """Everything stored for a shop, comparable across runs."""
    with ctx.sessions() as session:

        def rows(model: Any, *cols: str) -> list[tuple[Any, ...]]:
            found = session.scalars(select(model).where(model.shop_id == shop_id)).all()
            return sorted(tuple(getattr(r, c) for c in ("id", *cols)) for r in found)

        return {
            "customers": rows(
                Customer, "email", "email_marketing_state", "phone", "tags", "amount_spent",
                "number_of_orders", "rfm_group", "company", "updated_at",
            ),
            "orders": rows(Order, "customer_id", "total", "discount_codes", "processed_at"),
            "line_items": rows(LineItem, "order_id", "product_id", "quantity", "amount"),
            "products": rows(Product, "title"),
            "variants": rows(Variant, "product_id", "price"),
        }  # fmt: skip


def _counts(state: dict[str, Any]) -> dict[str, int]:
    return {k: len(v) for k, v in state.items()}


def _run(ctx: Any, shop_id: int, resource: str = "orders") -> int:
    with ctx.sessions.begin() as session:
        run = SyncRun(
            shop_id=shop_id,
            kind=SyncRunKind.INITIAL,
            resource=resource,
            status=SyncRunStatus.INGESTING,
        )
        session.add(run)
        session.flush()
        return run.id


def _lines(objects: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(o).encode() for o in objects]


def test_utc_text() -> None:
    assert rows.utc_text("2026-01-02T03:04:05Z") == "2026-01-02 03:04:05.000000"
    assert rows.utc_text("2026-01-02T03:04:05-05:00") == "2026-01-02 08:04:05.000000"
    assert rows.utc_text(None) is None


def test_ingest_is_idempotent_and_children_may_come_first(recording_ctx, make_shop) -> None:
    shop = make_shop()
    store = bulk_store()
    objects = store["customers"] + store["orders"] + store["products"]
    run_id = _run(recording_ctx, shop.id)
    done = ingest.ingest_lines(recording_ctx, run_id, shop.id, _lines(objects), batch_lines=7)
    assert done == len(objects)
    first = _state(recording_ctx, shop.id)
    assert _counts(first) == {
        "customers": 20, "orders": 30, "line_items": 60, "products": 5, "variants": 5,
    }  # fmt: skip
    # Line items that arrived before their order still point at it.
    order_ids = {o[0] for o in first["orders"]}
    assert all(li[1] in order_ids for li in first["line_items"])
    ingest.ingest_lines(recording_ctx, run_id, shop.id, _lines(objects), batch_lines=11)
    assert _state(recording_ctx, shop.id) == first
    customer = next(c for c in first["customers"] if c[0] == 4)
    assert customer[1:5] == ("c4@example.com", "SUBSCRIBED", "+33612340004", [])
    assert customer[-1] == dt.datetime(2026, 10, 1, 10, tzinfo=UTC)


def test_killed_mid_ingest_resumes_exactly(recording_ctx, make_shop) -> None:
    reference_shop = make_shop()
    shop = make_shop()
    store = bulk_store(customers=10, orders=40)
    lines = _lines(store["orders"])
    ingest.ingest_lines(
        recording_ctx, _run(recording_ctx, reference_shop.id), reference_shop.id, lines
    )
    expected = _state(recording_ctx, reference_shop.id)

    def dies_after(n: int) -> Iterator[bytes]:
        for i, line in enumerate(lines):
            if i == n:
                raise KeyboardInterrupt("worker killed")
            yield line

    run_id = _run(recording_ctx, shop.id)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_lines(recording_ctx, run_id, shop.id, dies_after(25), batch_lines=10)
    with recording_ctx.sessions() as session:
        checkpoint = session.get(SyncRun, run_id).checkpoint
    assert checkpoint == 20  # the half-read third batch was never committed
    ingest.ingest_lines(
        recording_ctx, run_id, shop.id, lines[checkpoint:], start=checkpoint, batch_lines=10
    )
    assert _state(recording_ctx, shop.id) == expected
    with recording_ctx.sessions() as session:
        assert session.get(SyncRun, run_id).checkpoint == len(lines)


def _finish_payload(env: SyncEnv, gid: str) -> dict[str, Any]:
    """The ``bulk_operations/finish`` body the sandbox sent for ``gid`` (sent as it ends)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for sent in env.sandbox.delivery.log(shop=env.store.domain, topic="bulk_operations/finish"):
            payload = json.loads(sent.body)
            if payload["admin_graphql_api_id"] == gid:
                return dict(payload)
        time.sleep(0.01)
    raise AssertionError(f"no bulk_operations/finish for {gid}")


def test_initial_sync_end_to_end(sync_env: SyncEnv) -> None:
    env = sync_env
    env.sandbox.faults.bulk_delay = 0.05  # the poller sees the exports RUNNING before they end
    run_ids = bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    assert len(run_ids) == 3
    state = _state(env.ctx, env.shop.id)
    assert _counts(state)["line_items"] == 60 and _counts(state)["customers"] == 20
    progress = runs.progress(env.ctx, env.shop.id)
    assert progress["orders"]["status"] == "done"
    assert progress["orders"]["objects_done"] == progress["orders"]["object_count"] == 90
    assert ("segments.recompute_shop", {"shop_id": env.shop.id}) in env.ctx.enqueued
    # The shop's details, then three exports started at once, before any was polled.
    names = env.http.operation_names()
    assert names[:4] == ["Shop"] + ["BulkOperationRunQuery"] * 3
    # A second call while nothing runs does not duplicate rows.
    assert bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    assert _state(env.ctx, env.shop.id) == state


@pytest.mark.parametrize(("resource", "outcome"), [("orders", "FAILED"), ("customers", "EXPIRED")])
def test_failed_and_expired_operations_are_retried(
    sync_env: SyncEnv, resource: str, outcome: str
) -> None:
    env = sync_env
    env.sandbox.faults.end_bulk(outcome, count=1, root=resource)  # the others complete
    bulk.initial(env.ctx, env.shop.id, poll_interval=0.01)
    state = _state(env.ctx, env.shop.id)
    assert _counts(state)["orders"] == 30 and _counts(state)["customers"] == 20
    with env.ctx.sessions() as session:
        found = {
            r.resource: r
            for r in session.scalars(select(SyncRun).where(SyncRun.shop_id == env.shop.id))
        }
    assert found[resource].attempts == 2 and found[resource].status == "done"
    assert {r.attempts for name, r in found.items() if name != resource} == {1}


def test_a_bulk_operation_failing_every_time_gives_up(sync_env: SyncEnv) -> None:
    env = sync_env
    client = env.client()
    run_id = _run(env.ctx, env.shop.id)
    with env.ctx.sessions.begin() as session:
        run = session.get(SyncRun, run_id)
        run.status, run.attempts, run.bulk_operation_id = "running", bulk.MAX_ATTEMPTS, "gid://x/1"
    assert bulk.advance(env.ctx, client, run_id, {"status": "FAILED", "errorCode": "TIMEOUT"})
    with env.ctx.sessions() as session:
        run = session.get(SyncRun, run_id)
    assert run.status == "failed" and "TIMEOUT" in run.error


def test_finish_webhook_ingests_and_download_breaks_resume(sync_env: SyncEnv) -> None:
    env = sync_env
    gid = env.client().run_bulk_query("bulk_customers")
    assert env.sandbox.bulk.wait(env.bulk_operation(gid))
    with env.ctx.sessions.begin() as session:
        session.add(
            SyncRun(shop_id=env.shop.id, kind=SyncRunKind.INITIAL, resource="customers",
                    status=SyncRunStatus.RUNNING, bulk_operation_id=gid, attempts=1)
        )  # fmt: skip
    env.sandbox.faults.truncate_downloads = 1  # the first download breaks off mid-file
    payload = _finish_payload(env, gid)
    assert (payload["status"], payload["type"]) == ("completed", "query")
    bulk.on_bulk_finish(env.ctx, env.shop.id, payload)
    assert env.sandbox.faults.truncate_downloads == 0  # the broken download did happen
    assert _counts(_state(env.ctx, env.shop.id))["customers"] == 20
    bulk.on_bulk_finish(env.ctx, env.shop.id, payload)  # a duplicate delivery changes nothing
    assert _counts(_state(env.ctx, env.shop.id))["customers"] == 20


def test_truncated_download_is_an_error(sync_env: SyncEnv) -> None:
    env = sync_env
    client = env.client()
    gid = client.run_bulk_query("bulk_customers")
    assert env.sandbox.bulk.wait(env.bulk_operation(gid))
    url = client.bulk_operation(gid)["url"]
    env.sandbox.faults.truncate_downloads = 1
    with pytest.raises(SyncError):
        list(client.stream_lines(url))


def _rest_order(order_id: int, updated: str, *, items: list[int], customer: int = 7) -> dict:
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_id}",
        "email": "x@example.com",
        "customer": {"id": customer},
        "created_at": "2026-11-01T10:00:00+01:00",
        "processed_at": "2026-11-01T10:00:00+01:00",
        "updated_at": updated,
        "cancelled_at": None,
        "test": False,
        "current_total_price": "40.00",
        "total_price": "40.00",
        "currency": "EUR",
        "discount_codes": [{"code": "TEN", "amount": "4.00", "type": "percentage"}],
        "billing_address": {"company": "Acme"},
        "line_items": [
            {"id": i, "product_id": 1, "variant_id": 2, "sku": "S", "title": "Tea",
             "quantity": 2, "current_quantity": 2, "price": "10.00", "total_discount": "0.00"}
            for i in items
        ],
    }  # fmt: skip


def test_order_webhooks_out_of_order_and_duplicated(recording_ctx, make_shop) -> None:
    shop = make_shop()
    newer = _rest_order(500, "2026-11-02T10:00:00+01:00", items=[1])
    older = _rest_order(500, "2026-11-01T10:05:00+01:00", items=[1, 2])
    assert apply_webhook(recording_ctx, shop.id, "orders/updated", newer)
    assert not apply_webhook(recording_ctx, shop.id, "orders/create", older)  # late, ignored
    assert apply_webhook(recording_ctx, shop.id, "orders/updated", newer)  # duplicate: same state
    state = _state(recording_ctx, shop.id)
    assert [li[0] for li in state["line_items"]] == [1]
    assert state["orders"][0][:4] == (500, 7, 40.0, ["TEN"])
    assert state["orders"][0][4] == dt.datetime(2026, 11, 1, 9, tzinfo=UTC)
    cancelled = _rest_order(500, "2026-11-03T10:00:00Z", items=[])
    cancelled["cancelled_at"] = "2026-11-03T10:00:00Z"
    apply_webhook(recording_ctx, shop.id, "orders/cancelled", cancelled)
    with recording_ctx.sessions() as session:
        assert session.get(Order, (shop.id, 500)).cancelled_at is not None
    assert _state(recording_ctx, shop.id)["line_items"] == []
    assert ("segments.recompute_customer", {"shop_id": shop.id, "customer_id": 7}) in (
        recording_ctx.enqueued
    )


def test_customer_webhooks(recording_ctx, make_shop) -> None:
    shop = make_shop()
    payload = {
        "id": 77, "email": "a@example.com", "first_name": "Ana", "last_name": "Lee",
        "phone": None, "tags": "goldpan-vip, wholesale",
        "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "default_address": {"country_code": "US", "province_code": "NY", "city": "NYC",
                            "zip": "10001", "company": None},
        "created_at": "2026-01-01T00:00:00-05:00", "updated_at": "2026-11-05T00:00:00-05:00",
    }  # fmt: skip
    apply_webhook(recording_ctx, shop.id, "customers/create", payload)
    with recording_ctx.sessions() as session:
        stored = session.get(Customer, (shop.id, 77))
    assert stored.tags == ["goldpan-vip", "wholesale"]
    assert stored.email_marketing_state == "SUBSCRIBED"
    update = dict(payload, tags="wholesale", updated_at="2026-11-06T00:00:00-05:00")
    apply_webhook(recording_ctx, shop.id, "customers/update", update)
    stale = dict(payload, tags="stale", updated_at="2026-11-05T12:00:00-05:00")
    assert not apply_webhook(recording_ctx, shop.id, "customers/update", stale)
    with recording_ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 77)).tags == ["wholesale"]
    apply_webhook(recording_ctx, shop.id, "customers/delete", {"id": 77})
    with recording_ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 77)) is None


def test_bulk_data_never_undoes_a_newer_webhook(recording_ctx, make_shop) -> None:
    shop = make_shop()
    webhook = {
        "id": 5,
        "email": "new@example.com",
        "tags": "fresh",
        "updated_at": "2026-11-05T00:00:00Z",
        "created_at": "2026-01-01T00:00:00Z",
    }
    apply_webhook(recording_ctx, shop.id, "customers/update", webhook)
    old = bulk_customer(5, updated="2026-10-01T00:00:00Z")
    ingest.ingest_lines(
        recording_ctx, _run(recording_ctx, shop.id, "customers"), shop.id, _lines([old])
    )
    with recording_ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 5)).email == "new@example.com"


def test_reconcile_pulls_changes_since_the_watermark(sync_env: SyncEnv) -> None:
    env = sync_env
    shop = env.shop
    bulk.initial(env.ctx, shop.id, poll_interval=0.01)
    # Changes the webhooks never brought: a customer's tags, and 150 new customers.
    env.store.update_customer(3, tags=["new-tag"], notify=False)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    for n in range(100, 250):
        env.store.add_customer(
            StoreCustomer(n, f"First{n}", "Smith", f"c{n}@example.com", None, now, now),
            notify=False,
        )
    env.ctx.enqueued.clear()
    assert reconcile.reconcile(env.ctx, shop.id, http=env.http) == 151
    with env.ctx.sessions() as session:
        assert session.get(Customer, (shop.id, 3)).tags == ["new-tag"]
        assert (
            session.scalar(
                select(func.count()).select_from(Customer).where(Customer.shop_id == shop.id)
            )
            == 170
        )
    pages = env.http.named("CustomersPage")
    assert len(pages) == 2 and pages[0].variables["query"].startswith("updated_at:>'")
    first_end = pages[0].answer["data"]["customers"]["pageInfo"]["endCursor"]
    assert pages[1].variables["after"] == first_end
    assert ("segments.recompute_shop", {"shop_id": shop.id}) in env.ctx.enqueued


def test_missing_read_all_orders_stores_a_notice(recording_ctx, make_shop) -> None:
    shop = make_shop()
    assert scopes.check_scopes(recording_ctx, shop.id)
    with recording_ctx.sessions() as session:
        notices = session.get(Shop, shop.id).settings["notices"]
    assert [n["code"] for n in notices] == [scopes.NOTICE_READ_ALL_ORDERS]
    granted = make_shop(scopes="read_customers,write_customers,read_orders,read_all_orders")
    assert not scopes.check_scopes(recording_ctx, granted.id)
    with recording_ctx.sessions() as session:
        assert session.get(Shop, granted.id).settings.get("notices", []) == []


def test_large_batches_with_repeated_lines(recording_ctx, make_shop) -> None:
    # Batches of BULK_ROWS rows or more take PostgreSQL's COPY path; a line repeated in one batch
    # (a retried export re-reading an object) must not break it.
    shop = make_shop()
    store = bulk_store(customers=300, orders=300)
    objects = store["customers"] + store["orders"]
    lines = _lines(objects)
    run_id = _run(recording_ctx, shop.id)
    ingest.ingest_lines(recording_ctx, run_id, shop.id, lines + lines[:250], batch_lines=5000)
    state = _state(recording_ctx, shop.id)
    assert _counts(state)["customers"] == 300 and _counts(state)["orders"] == 300
    ingest.ingest_lines(recording_ctx, run_id, shop.id, lines, batch_lines=400)
    assert _state(recording_ctx, shop.id) == state


def test_a_failing_write_stops_the_ingest_at_its_checkpoint(recording_ctx, make_shop) -> None:
    shop = make_shop()
    good = _lines(bulk_store(customers=30)["customers"])
    broken = json.dumps({"id": "gid://shopify/Customer/x"}).encode()  # not a number
    run_id = _run(recording_ctx, shop.id)
    with pytest.raises(ValueError):
        ingest.ingest_lines(recording_ctx, run_id, shop.id, [*good, broken, *good], batch_lines=10)
    with recording_ctx.sessions() as session:
        assert session.get(SyncRun, run_id).checkpoint == 30


def test_poll_on_a_queue_reschedules_itself(sync_env: SyncEnv) -> None:
    from huey import MemoryHuey

    env = sync_env
    shop = env.shop
    queued = jobs.Context(
        settings=env.ctx.settings, engine=env.ctx.engine, sessions=env.ctx.sessions,
        cipher=env.ctx.cipher,
    )  # fmt: skip
    runtime = jobs.Runtime(queued, MemoryHuey(f"poll-{shop.id}"))
    env.hold_bulk()  # the export keeps running until released
    gid = AdminClient(queued, shop.id).run_bulk_query("bulk_customers")
    env.wait_running(gid)
    with queued.sessions.begin() as session:
        session.add(
            SyncRun(shop_id=shop.id, kind=SyncRunKind.INITIAL, resource="customers",
                    status=SyncRunStatus.RUNNING, bulk_operation_id=gid, attempts=1)
        )  # fmt: skip
    assert bulk.poll(queued, shop.id) is False
    [task] = runtime.huey.pending()
    assert task.name == "sync.poll" and task.eta is not None  # queued with a delay
    assert bulk.poll(queued, shop.id) is False
    env.release_bulk()
    assert bulk.poll(queued, shop.id) is True  # third look: COMPLETED, ingested
    assert _counts(_state(queued, shop.id))["customers"] == 20


def _sandbox_sync(
    make_sync_env: Callable[..., SyncEnv], prepare: Any = None, then: Any = None
) -> tuple[Any, Any]:
    """Run the initial sync of a generated store on the sandbox; (state, store).

    ``prepare(sandbox)`` runs before the sync, ``then(sandbox, store, ctx, shop_id)`` after it
    (with the sandbox still up)."""
    from goldpan_sandbox.generator import generate_store

    env = make_sync_env(lambda domain: generate_store(domain, customers=40, seed=3))
    if prepare is not None:
        prepare(env.sandbox)
    bulk.initial(env.ctx, env.shop.id, poll_interval=0.05)
    if then is not None:
        then(env.sandbox, env.store, env.ctx, env.shop.id)
    return _state(env.ctx, env.shop.id), env.store


def _assert_equals_store(state: dict[str, Any], store: Any) -> None:
    assert {c[0]: (c[1], c[4]) for c in state["customers"]} == {
        c.id: (c.email, list(c.tags)) for c in store.customers.values()
    }
    assert {o[0]: (o[1], o[2]) for o in state["orders"]} == {
        o.id: (o.customer_id, float(o.current_total)) for o in store.orders.values()
    }
    assert {li[0]: (li[1], li[3]) for li in state["line_items"]} == {
        li.id: (o.id, li.effective_quantity) for o in store.orders.values() for li in o.line_items
    }
    assert len(state["variants"]) == sum(len(p.variants) for p in store.products.values())


def test_initial_sync_against_the_sandbox_equals_the_store(
    make_sync_env: Callable[..., SyncEnv],
) -> None:
    """End to end on the sandbox (schema-validated documents, real cost bucket, real bulk
    runner with shuffled lines): the database ends up holding exactly the store's data."""
    _assert_equals_store(*_sandbox_sync(make_sync_env))


def test_sandbox_faults_still_end_in_the_exact_store(make_sync_env: Callable[..., SyncEnv]) -> None:
    """503s, a 429, a failed bulk operation and a download cut halfway: same end state."""

    def faults(sandbox: Any) -> None:
        sandbox.faults.fail_next(503, 2)
        sandbox.faults.fail_next(429, 1, retry_after=0.1)
        sandbox.faults.end_bulk("FAILED", count=1)
        sandbox.faults.truncate_downloads = 1

    _assert_equals_store(*_sandbox_sync(make_sync_env, faults))


def test_initial_retried_after_a_refused_export_starts_only_what_is_missing(
    sync_env: SyncEnv,
) -> None:
    env = sync_env
    # Three exports already run: the shop's limit of five lets only two of ours start.
    env.hold_bulk()
    for _ in range(3):
        AdminClient(env.ctx, env.shop.id).run_bulk_query("bulk_products")
    with pytest.raises(UserErrorsError) as refused:
        bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    assert refused.value.user_errors[0]["code"] == "LIMIT_REACHED"
    env.release_bulk()
    assert len(bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)) == 1
    started = env.http.named("BulkOperationRunQuery")
    assert len(started) == 4
    assert _counts(_state(env.ctx, env.shop.id)) == {
        "customers": 20, "orders": 30, "line_items": 60, "products": 5, "variants": 5,
    }  # fmt: skip


def test_poll_resumes_an_ingest_whose_worker_died(
    make_sync_env: Callable[..., SyncEnv], make_shop: Any
) -> None:
    env = make_sync_env(lambda domain: shaped_store(domain, customers=10, orders=40))
    client = env.client()
    gid = client.run_bulk_query("bulk_orders")
    assert env.sandbox.bulk.wait(env.bulk_operation(gid))
    url = client.bulk_operation(gid)["url"]
    lines = list(client.stream_lines(url))
    reference = make_shop()
    ingest.ingest_lines(env.ctx, _run(env.ctx, reference.id), reference.id, lines)
    shop = env.shop
    run_id = _run(env.ctx, shop.id)  # "ingesting"

    def dies(n: int) -> Iterator[bytes]:
        yield from lines[:n]
        raise KeyboardInterrupt("worker killed")

    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_lines(env.ctx, run_id, shop.id, dies(35), batch_lines=10)
    with env.ctx.sessions.begin() as session:
        run = session.get(SyncRun, run_id)
        run.url = url
        run.bulk_operation_id = gid
        assert run.checkpoint == 30
    # A late (duplicate) finish webhook does not start a second ingest of a claimed run.
    bulk.on_bulk_finish(env.ctx, shop.id, _finish_payload(env, gid))
    with env.ctx.sessions() as session:
        assert session.get(SyncRun, run_id).checkpoint == 30
    assert bulk.poll(env.ctx, shop.id, wait=True, interval=0.01, stall_seconds=0.03)
    assert _state(env.ctx, shop.id) == _state(env.ctx, reference.id)


def _customer_payload(customer_id: int, updated: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "id": customer_id, "email": f"c{customer_id}@example.com", "first_name": "Ana",
        "last_name": "Lee", "phone": None, "tags": "vip",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": updated,
    }  # fmt: skip
    payload.update(extra)
    return payload


def _has_customer(ctx: Any, shop_id: int, customer_id: int) -> bool:
    with ctx.sessions() as session:
        return session.get(Customer, (shop_id, customer_id)) is not None


def _with_customers_88_and_90(domain: str) -> Store:
    """:func:`shaped_store` plus customers 88 and 90, changed on 2026-11-08."""
    store = shaped_store(domain)
    changed = dt.datetime(2026, 11, 8, tzinfo=UTC)
    for number in (88, 90):
        store.add_customer(
            StoreCustomer(number, "Ana", "Lee", f"c{number}@example.com", None, changed, changed),
            notify=False,
        )
    return store


def test_nothing_brings_a_deleted_customer_back(make_sync_env: Callable[..., SyncEnv]) -> None:
    """Deliveries are unordered and at least once, and Shopify never reuses an id: whatever
    arrives about a customer after its deletion is stale, whichever path it takes."""
    env = make_sync_env(_with_customers_88_and_90)
    ctx, shop = env.ctx, env.shop
    create = _customer_payload(88, "2026-11-05T00:00:00Z")
    assert apply_webhook(ctx, shop.id, "customers/create", create)
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": 88})
    # The update Shopify sent before the deletion arrives late, even claiming a later time.
    late = _customer_payload(88, "2026-11-06T00:00:00Z", tags="late")
    assert not apply_webhook(ctx, shop.id, "customers/update", late)
    assert not apply_webhook(ctx, shop.id, "customers/create", create)  # redelivered
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": 88})  # duplicate
    assert not _has_customer(ctx, shop.id, 88)
    # A delete that overtakes the create of a customer never stored: the create stays out too.
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": 89})
    assert not apply_webhook(
        ctx, shop.id, "customers/create", _customer_payload(89, "2026-11-05T00:00:00Z")
    )
    # Their order's webhooks store the order, without the buyer Goldpan forgot.
    order = _rest_order(900, "2026-11-07T10:00:00Z", items=[9001], customer=88)
    assert apply_webhook(ctx, shop.id, "orders/create", order)
    with ctx.sessions() as session:
        stored = session.get(Order, (shop.id, 900))
        assert stored is not None
        assert (stored.customer_id, stored.email) == (None, None)
    # A bulk export and a reconciliation page read before the deletion (the sandbox's pages
    # still hold customer 88).
    old = bulk_customer(88, updated="2026-11-08T00:00:00Z")
    run_id = _run(ctx, shop.id, "customers")
    ingest.ingest_lines(ctx, run_id, shop.id, _lines([old]))
    assert not _has_customer(ctx, shop.id, 88)
    with ctx.sessions.begin() as session:
        run = session.get(SyncRun, run_id)
        run.status, run.watermark = "done", dt.datetime(2026, 11, 1, tzinfo=UTC)
    assert reconcile.reconcile(ctx, shop.id) == 2
    assert not _has_customer(ctx, shop.id, 88)
    assert _has_customer(ctx, shop.id, 90)  # the others are stored as ever
    # Deleting another customer leaves the rest alone.
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": 90})
    assert not _has_customer(ctx, shop.id, 90)


def test_reconcile_reads_every_line_item_and_variant(
    make_sync_env: Callable[..., SyncEnv],
) -> None:
    """Orders whose webhooks were missed, with 120 and 200 line items (more than an orders page
    holds; more than one page of the remainder), and a new product with 130 variants (more
    than a products page holds): reconciliation on the sandbox (real schema, real cost limits)
    leaves exactly the store's data."""
    from decimal import Decimal

    from goldpan_sandbox.store import LineItem as StoreLineItem
    from goldpan_sandbox.store import Order as StoreOrder
    from goldpan_sandbox.store import Product as StoreProduct
    from goldpan_sandbox.store import Variant as StoreVariant

    def place_long_orders(sandbox: Any, store: Any, sandboxed: Any, shop_id: int) -> None:
        now = dt.datetime.now(UTC).replace(microsecond=0)
        variants = [v for p in store.products.values() for v in p.variants]
        customer_id = next(iter(store.customers))
        for size in (120, 200):
            items = [
                StoreLineItem(
                    id=store.next_id(), product_id=v.product_id, variant_id=v.id, sku=v.sku,
                    title=f"Line {n}", quantity=1 + n % 3, unit_price=v.price,
                    current_quantity=0 if n % 7 == 0 else None,
                )
                for n, v in ((n, variants[n % len(variants)]) for n in range(size))
            ]  # fmt: skip
            order = StoreOrder(
                id=store.next_id(), name=store.next_order_name(), customer_id=customer_id,
                email=None, created_at=now, processed_at=now, updated_at=now,
                currency=store.currency, line_items=items,
            )  # fmt: skip
            store.add_order(order, notify=False)  # as if both webhooks were lost
        product_id = store.next_id()
        variants_ = [
            StoreVariant(
                id=store.next_id(), product_id=product_id, title=f"Colour {n}", sku=f"NAP-{n}",
                price=Decimal("4.50"),
            )
            for n in range(130)
        ]  # fmt: skip
        store.add_product(
            StoreProduct(
                id=product_id, title="Napkins", handle=f"napkins-{product_id}",
                product_type="Linen", vendor="Goldpan", created_at=now, updated_at=now,
                variants=variants_,
            )
        )  # fmt: skip
        # Some 2,500 points of pages: a Plus shop's bucket keeps the test from waiting for them.
        sandbox.set_plan(20_000, 1_000)
        sandboxed.enqueued.clear()
        assert reconcile.reconcile(sandboxed, shop_id) > 0
        assert (
            "segments.recompute_customer",
            {"shop_id": shop_id, "customer_id": customer_id},
        ) in sandboxed.enqueued

    state, store = _sandbox_sync(make_sync_env, then=place_long_orders)
    _assert_equals_store(state, store)
    long_orders = [o for o in store.orders.values() if len(o.line_items) >= 120]
    assert len(long_orders) == 2
    for order in long_orders:
        stored = {li[0] for li in state["line_items"] if li[1] == order.id}
        assert stored == {li.id for li in order.line_items}
    [napkins] = [p for p in store.products.values() if p.title == "Napkins"]
    assert {v[0] for v in state["variants"] if v[1] == napkins.id} == {
        v.id for v in napkins.variants
    }


def _order_5_with_400_line_items(domain: str) -> Store:
    store = shaped_store(domain, customers=1, orders=0)
    placed = dt.datetime(2026, 11, 1, tzinfo=UTC)
    items = [
        StoreLineItem(10_000 + n, 1, 1, "SKU-0", f"Item {n}", 1, Decimal("1.00"))
        for n in range(400)
    ]
    store.add_order(
        StoreOrder(5, "#1005", 1, None, placed, placed, placed, "EUR", items), notify=False
    )
    return store


class CursorStuckAfterOnePage(RecordingHttp):
    """The sandbox's answers, except that from the second page of an order's line items on the
    ``endCursor`` is the cursor the page was asked for: pagination that does not advance."""

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().post(url, *args, **kwargs)
        call = self.calls[-1] if self.calls else None
        if (
            call is None
            or call.operation != "OrderLineItems"
            or call.variables.get("after") is None
        ):
            return response
        order = ((call.answer or {}).get("data") or {}).get("order")
        if order is not None:
            order["lineItems"]["pageInfo"]["endCursor"] = call.variables["after"]
            response._content = json.dumps(call.answer).encode()
        return response


def test_line_item_paging_ends_on_a_deleted_order_and_on_a_stuck_cursor(
    make_sync_env: Callable[..., SyncEnv],
) -> None:
    env = make_sync_env(_order_5_with_400_line_items)
    http = CursorStuckAfterOnePage()
    client = AdminClient(env.ctx, env.shop.id, http=http)
    batch = rows.Batch.empty()
    order_6, order_5 = "gid://shopify/Order/6", "gid://shopify/Order/5"  # 6: not in the shop
    assert reconcile.remaining_children(client, env.shop.id, "orders", order_6, "c", batch) == 0
    with pytest.raises(SyncError, match="did not advance"):
        reconcile.remaining_children(client, env.shop.id, "orders", order_5, None, batch)
    pages = http.named("OrderLineItems")
    first_end = pages[1].answer["data"]["order"]["lineItems"]["pageInfo"]["endCursor"]
    assert [p.variables["after"] for p in pages] == ["c", None, first_end]
    assert pages[0].variables["first"] == reconcile.LINE_ITEMS_PAGE
