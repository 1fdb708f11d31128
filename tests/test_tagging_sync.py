"""Tag writes over loopback HTTP: convergence, no echo loops, faults, bulk, renames, removal,
and the ledger: only tags Goldpan wrote are ever removed.

Every test runs against the Shopify sandbox (``tests/fixtures_tagging.py``).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from goldpan_sandbox.shopify import ShopifySandbox
from shopify_app import db, jobs
from shopify_app.db.models import AuditEntry, Customer, Segment, Shop
from shopify_app.errors import ShopifyError
from shopify_app.shopify.client import AdminClient
from shopify_app.states import AuditResult, JobStatus
from shopify_app.tagging.bulk import on_bulk_finish, poll_bulk
from shopify_app.tagging.changes import (
    ensure_native_segment,
    on_prefix_changed,
    on_segment_changed,
    preview,
)
from shopify_app.tagging.writes import SyncReport, sync_tags

if TYPE_CHECKING:
    from tests.fixtures_tagging import TagEnv

MERCHANT = ["wholesale", "VIP", "newsletter", "other-app:loyal"]


def _ids(n: int, start: int = 1000) -> list[int]:
    return list(range(start, start + n))


def _goldpan(tags: list[str]) -> set[str]:
    return {t.lower() for t in tags if t.lower().startswith("goldpan-") or t == "VIP Club"}


def _merchant(tags: list[str]) -> list[str]:
    return [t for t in tags if not (t.lower().startswith("goldpan-") or t == "VIP Club")]


def _seed_mixed(env: TagEnv, n: int = 30) -> dict[str, int]:
    """Customers with merchant tags and, for some, a tag Goldpan wrote in an earlier run."""
    rng = random.Random(7)
    customers = {}
    written = {}
    for cid in _ids(n):
        tags = rng.sample(MERCHANT, rng.randint(0, 3))
        if rng.random() < 0.4:
            ours = rng.choice(["goldpan-lapsed", "Goldpan-Fans", "goldpan-gone"])
            tags.append(ours)
            written[cid] = [ours]
        customers[cid] = tags
    members = {
        "fans": {c for c in customers if c % 2 == 0},
        "lapsed": {c for c in customers if c % 3 == 0},
        "bulk": {c for c in customers if c % 5 == 0},
    }
    return env.seed(
        customers,
        {
            "fans": (True, members["fans"]),
            "lapsed": (True, members["lapsed"]),
            "bulk": (False, members["bulk"]),
        },
        written=written,
    )


def _expected(customer_id: int) -> set[str]:
    want = set()
    if customer_id % 2 == 0:
        want.add("goldpan-fans")
    if customer_id % 3 == 0:
        want.add("goldpan-lapsed")
    return want


def _assert_converged(env: TagEnv, before: dict[int, list[str]]) -> None:
    shopify = env.shopify_tags()
    assert set(shopify) == set(before)
    written = env.written()
    for cid, tags in shopify.items():
        assert _merchant(tags) == _merchant(before[cid]), cid
        assert _goldpan(tags) == _expected(cid), cid
        # The ledger holds exactly the Goldpan tags the customer carries.
        assert written.get(cid, set()) == _expected(cid), cid
    assert env.local_tags() == shopify


def _poll_until_done(env: TagEnv) -> None:
    """Bulk operations run in the sandbox's threads: poll (the lost-webhook fallback) until done."""
    for _ in range(400):
        if poll_bulk(env.ctx, env.shop.id, client=env.client) == 0:
            return
        time.sleep(0.025)
    raise AssertionError("tag bulk operations never finished")


def test_writes_converge_and_second_run_is_free(tag_env: TagEnv) -> None:
    env = tag_env
    _seed_mixed(env)
    before = env.shopify_tags()
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert report.changed > 0 and report.requests == env.calls
    _assert_converged(env, before)
    calls = env.calls
    again = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert again.changed == 0 and env.calls == calls
    # The customers/update echo of our own writes changes nothing and writes nothing.
    env.echo()
    sync_tags(env.ctx, env.shop.id, client=env.client)
    assert env.calls == calls


def test_one_mutation_field_per_needed_change(tag_env: TagEnv) -> None:
    env = tag_env
    env.seed(
        {1: ["a"], 2: ["goldpan-old"], 3: ["goldpan-old", "b"], 4: []},
        {"fans": (True, {1, 3})},
        written={2: ["goldpan-old"], 3: ["goldpan-old"]},
    )
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    # 1: add; 2: remove; 3: add + remove; 4: nothing — one request (tags_batch_4), four fields
    # run: 40 points when skipped slots are free, at most 80 if every slot were priced.
    assert report.changed == 3 and report.requests == 1 and env.calls == 1
    assert 40 <= env.client.cost_spent <= 80
    assert env.shopify_tags() == {1: ["a", "goldpan-fans"], 2: [], 3: ["b", "goldpan-fans"], 4: []}
    # A single change is one plain tagsAdd: 10 points.
    spent = env.client.cost_spent
    env.set_members(_segment_id(env, "fans"), {1, 3, 4})
    sync_tags(env.ctx, env.shop.id, [4], client=env.client)
    assert env.client.cost_spent - spent == 10 and env.shopify_tags()[4] == ["goldpan-fans"]


def _segment_id(env: TagEnv, handle: str) -> int:
    with env.ctx.sessions() as session:
        return session.scalars(
            select(Segment.id).where(Segment.shop_id == env.shop.id, Segment.handle == handle)
        ).one()


def test_faults_mid_write_still_converge(tag_env: TagEnv, tag_sandbox: ShopifySandbox) -> None:
    env = tag_env
    _seed_mixed(env, 120)
    before = env.shopify_tags()
    # A bucket that holds barely one full batch: throttling between requests, plus 5xx/429.
    tag_sandbox.set_plan(250.0, 2000.0)
    tag_sandbox.faults.fail_next(503, 2)
    tag_sandbox.faults.fail_next(429, 1, retry_after=0.01)
    tag_sandbox.faults.fail_next(502, 1)
    sync_tags(env.ctx, env.shop.id, client=env.client)
    _assert_converged(env, before)


def test_a_write_that_gives_up_resumes_on_the_next_run(
    tag_env: TagEnv, tag_sandbox: ShopifySandbox
) -> None:
    env = tag_env
    _seed_mixed(env, 60)
    before = env.shopify_tags()
    env.client.max_attempts = 2
    sync_tags(env.ctx, env.shop.id, [1000, 1001, 1002], client=env.client)
    tag_sandbox.faults.fail_next(503, 2)
    with pytest.raises(ShopifyError):
        sync_tags(env.ctx, env.shop.id, client=env.client)
    with env.ctx.sessions() as session:
        errors = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id, AuditEntry.result == AuditResult.ERROR
            )
        ).all()
    assert [e.action for e in errors] == ["tags.write"]
    sync_tags(env.ctx, env.shop.id, client=env.client)
    _assert_converged(env, before)


def _merchant_imports(env: TagEnv, customer_ids: list[int]) -> None:
    """The merchant's import fills these customers to Shopify's 250-tag limit in the admin;
    Goldpan has not heard of it yet (their customers/update is still on its way)."""
    shopify = env.shopify_tags()
    for cid in customer_ids:
        filler = [f"import-{i}" for i in range(250 - len(shopify[cid]))]
        env.merchant_sets_tags(cid, [*shopify[cid], *filler])


def _merchant_undoes_import(env: TagEnv, customer_ids: list[int]) -> None:
    """The merchant takes the import's tags off again, and the customers/update arrives."""
    shopify = env.shopify_tags()
    for cid in customer_ids:
        env.merchant_sets_tags(cid, [t for t in shopify[cid] if not t.startswith("import-")])
    env.echo(customer_ids)


def test_user_errors_are_reported_and_retried_next_run(tag_env: TagEnv) -> None:
    env = tag_env
    _seed_mixed(env, 12)
    before = env.shopify_tags()
    # Each of them needs one Goldpan tag added: Shopify answers that tagsAdd with userErrors.
    _merchant_imports(env, [1000, 1002])
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert report.failed and set(report.failed) <= {1000, 1002}
    _merchant_undoes_import(env, [1000, 1002])
    sync_tags(env.ctx, env.shop.id, client=env.client)
    _assert_converged(env, before)


def test_bulk_path_converges_and_retries_row_errors(make_tag_env: Callable[..., TagEnv]) -> None:
    env = make_tag_env(tag_bulk_threshold=5)
    _seed_mixed(env, 40)
    before = env.shopify_tags()
    # Both need one tag added and none removed: their rows of the add operation answer
    # userErrors whatever order the two operations' rows run in.
    _merchant_imports(env, [1000, 1006])
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert len(report.bulk_operations) == 2
    # While the operations run, a recompute for those customers writes nothing twice.
    calls = env.calls
    during = sync_tags(env.ctx, env.shop.id, [1000, 1002], client=env.client)
    assert during.requests == 0 and during.in_flight == 2 and env.calls == calls
    env.wait_for_bulk()
    _merchant_undoes_import(env, [1000, 1006])
    # Completion by webhook for one (removes), by polling for the other (adds).
    finish = {"admin_graphql_api_id": report.bulk_operations[0], "type": "mutation"}
    on_bulk_finish(env.ctx, env.shop.id, finish, client=env.client)
    assert poll_bulk(env.ctx, env.shop.id, client=env.client) == 0
    _assert_converged(env, before)
    with env.ctx.sessions() as session:
        adds = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id,
                AuditEntry.subject == report.bulk_operations[1],
            )
        ).one()
    assert adds.action == "tags.bulk_add" and set(adds.detail["failed"]) == {"1000", "1006"}
    # A repeated finish webhook is a no-op; so is the next run.
    assert on_bulk_finish(env.ctx, env.shop.id, finish, client=env.client) is None
    calls = env.calls
    assert sync_tags(env.ctx, env.shop.id, client=env.client).requests == 0
    assert env.calls == calls


def test_bulk_path_completes_by_polling(make_tag_env: Callable[..., TagEnv]) -> None:
    env = make_tag_env(tag_bulk_threshold=5)
    _seed_mixed(env, 40)
    before = env.shopify_tags()
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert len(report.bulk_operations) == 2
    _poll_until_done(env)
    _assert_converged(env, before)
    calls = env.calls
    sync_tags(env.ctx, env.shop.id, client=env.client)
    assert env.calls == calls


def test_failed_and_expired_bulk_operations_converge(
    make_tag_env: Callable[..., TagEnv], tag_sandbox: ShopifySandbox
) -> None:
    env = make_tag_env(tag_bulk_threshold=5)
    _seed_mixed(env, 40)
    before = env.shopify_tags()
    tag_sandbox.faults.end_bulk("EXPIRED", count=1)
    sync_tags(env.ctx, env.shop.id, client=env.client)
    tag_sandbox.faults.end_bulk("FAILED", count=1)
    _poll_until_done(env)
    _assert_converged(env, before)
    with env.ctx.sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id, AuditEntry.action.like("tags.bulk_%")
            )
        ).all()
    assert {e.detail.get("status") for e in entries} >= {"EXPIRED"}
    assert {e.job_status for e in entries} == {JobStatus.DONE}


def test_failed_bulk_with_partial_results_converges(
    make_tag_env: Callable[..., TagEnv], tag_sandbox: ShopifySandbox
) -> None:
    env = make_tag_env(tag_bulk_threshold=5)
    _seed_mixed(env, 40)
    before = env.shopify_tags()
    # Both operations (removes, adds) fail partway: only their first rows ran.
    tag_sandbox.faults.end_bulk("FAILED", count=2)
    sync_tags(env.ctx, env.shop.id, client=env.client)
    _poll_until_done(env)
    _assert_converged(env, before)
    with env.ctx.sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id, AuditEntry.action.like("tags.bulk_%")
            )
        ).all()
    assert "partial" in {e.result for e in entries}
    assert {e.job_status for e in entries} == {JobStatus.DONE}


def test_tag_limit_is_reported_and_merchant_tags_kept(tag_env: TagEnv) -> None:
    env = tag_env
    full = [f"m{i}" for i in range(249)]
    env.seed({1: full}, {"a": (True, {1}), "b": (True, {1})})
    report = sync_tags(env.ctx, env.shop.id, client=env.client)
    assert report.limited == {1: ("goldpan-b",)}
    assert env.shopify_tags()[1] == [*full, "goldpan-a"]
    with env.ctx.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == env.shop.id, AuditEntry.action == "tags.limit"
            )
        ).one()
    assert "250" in entry.detail["message"] and entry.detail["customers"] == {"1": ["goldpan-b"]}


def test_rename_migrates_diff_only_and_native_segment_follows(tag_env: TagEnv) -> None:
    env = tag_env
    ids = env.seed(
        {1: ["x", "goldpan-fans"], 2: ["goldpan-fans"], 3: ["y", "True Fans"]},
        {"fans": (True, {1, 2})},
        written={1: ["goldpan-fans"], 2: ["goldpan-fans"]},
    )
    gid = ensure_native_segment(env.ctx, env.shop.id, ids["fans"], client=env.client)
    assert env.native_segments() == {gid: "customer_tags CONTAINS 'goldpan-fans'"}
    with env.ctx.sessions.begin() as session:
        segment = session.get(Segment, ids["fans"])
        assert segment is not None and segment.native_segment_id == gid
        segment.tag = "True Fans"
    report = on_segment_changed(
        env.ctx, env.shop.id, ids["fans"], "goldpan-fans", client=env.client
    )
    assert report.changed == 2
    # 3 had "True Fans" before Goldpan (the rename's collision check is the API's): kept.
    assert env.shopify_tags() == {1: ["x", "True Fans"], 2: ["True Fans"], 3: ["y", "True Fans"]}
    assert env.native_segments() == {gid: "customer_tags CONTAINS 'True Fans'"}
    # Turning tag sync off removes the renamed tag where Goldpan wrote it, nothing else.
    with env.ctx.sessions.begin() as session:
        seg = session.get(Segment, ids["fans"])
        assert seg is not None
        seg.tag_sync = False
    jobs.run_now(env.ctx, "tags.segment_changed", shop_id=env.shop.id, segment_id=ids["fans"])
    assert env.shopify_tags() == {1: ["x"], 2: [], 3: ["y", "True Fans"]}
    assert env.written() == {}


def test_remove_all_and_preview(tag_env: TagEnv) -> None:
    env = tag_env
    ids = env.seed(
        {
            1: ["x", "goldpan-fans", "goldpan-stale"],
            2: ["VIP Club"],
            3: ["y", "goldpan-mine"],
            4: [],
            5: ["VIP Club", "goldpan-fans"],
        },
        {"fans": (False, {1, 3}), "club": (True, {4})},
        renamed={"club": "VIP Club"},
        written={1: ["goldpan-fans", "goldpan-stale"], 2: ["VIP Club"]},
    )
    with env.ctx.sessions() as session:
        # 5 carries both tags without Goldpan having written them: nothing to lose there.
        assert preview(session, env.shop.id) == {
            "fans": {"gain": 1, "lose": 0},
            "club": {"gain": 1, "lose": 1},
        }
    jobs.run_now(env.ctx, "tags.sync", shop_id=env.shop.id)
    # "fans" does not sync, so the tags Goldpan wrote for it are stale and go; the merchant's
    # look-alikes stay.
    assert env.shopify_tags() == {
        1: ["x"],
        2: [],
        3: ["y", "goldpan-mine"],
        4: ["VIP Club"],
        5: ["VIP Club", "goldpan-fans"],
    }
    jobs.run_now(env.ctx, "tags.remove_all", shop_id=env.shop.id)
    assert env.shopify_tags() == {
        1: ["x"],
        2: [],
        3: ["y", "goldpan-mine"],
        4: [],
        5: ["VIP Club", "goldpan-fans"],
    }
    assert env.written() == {}
    with env.ctx.sessions() as session:
        segments = session.scalars(select(Segment).where(Segment.id.in_(ids.values())))
        assert not any(s.tag_sync for s in segments)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.lists(
        st.sets(
            st.sampled_from(
                ["m1", "M2", "goldpan-a", "GOLDPAN-B", "goldpan-c", "VIP Club", "goldpan-mine"]
            )
        ),
        min_size=1,
        max_size=8,
    ),
    first=st.lists(st.sets(st.sampled_from(["a", "b", "c"])), min_size=8, max_size=8),
    second=st.lists(st.sets(st.sampled_from(["a", "b", "c"])), min_size=8, max_size=8),
)
def test_any_membership_changes_converge_over_http(
    make_tag_env: Callable[..., TagEnv],
    start: list[set[str]],
    first: list[set[str]],
    second: list[set[str]],
) -> None:
    env = make_tag_env()
    customers = {i: sorted(tags) for i, tags in enumerate(start, 1)}
    # Goldpan wrote the goldpan-a/b/c tags in an earlier run; "goldpan-mine" is the merchant's.
    ours = {"goldpan-a", "goldpan-b", "goldpan-c"}
    ids = env.seed(
        customers,
        {h: (True, {i for i in customers if h in first[i - 1]}) for h in ("a", "b", "c")},
        written={i: [t for t in tags if t.lower() in ours] for i, tags in customers.items()},
    )
    keep = ("m1", "M2", "VIP Club", "goldpan-mine")
    for memberships in (first, second):
        for h in ("a", "b", "c"):
            env.set_members(ids[h], {i for i in customers if h in memberships[i - 1]})
        sync_tags(env.ctx, env.shop.id, client=env.client)
        env.echo()
        for i, tags in env.shopify_tags().items():
            assert [t for t in tags if t in keep] == [t for t in customers[i] if t in keep]
            assert {t.lower() for t in tags if t.lower() in ours} == {
                f"goldpan-{h}" for h in memberships[i - 1]
            }
            assert env.written().get(i, set()) == {f"goldpan-{h}" for h in memberships[i - 1]}
        calls = env.calls
        sync_tags(env.ctx, env.shop.id, client=env.client)
        assert env.calls == calls


def test_concurrent_runs_never_write_the_same_change_twice(
    tag_env: TagEnv, tag_sandbox: ShopifySandbox
) -> None:
    env = tag_env
    _seed_mixed(env, 80)
    before = env.shopify_tags()
    needed = {cid for cid, tags in before.items() if _goldpan(tags) != _expected(cid)}
    reports: list[SyncReport] = []

    def run() -> None:
        client = AdminClient(env.ctx, env.shop.id, sleep=lambda s: time.sleep(min(s, 0.02)))
        reports.append(sync_tags(env.ctx, env.shop.id, client=client))

    _at_once(*[(run, ())] * 4)
    assert sum(r.changed for r in reports) == len(needed)
    _assert_converged(env, before)


def _at_once(*calls: tuple[Callable[..., None], tuple[Any, ...]]) -> None:
    """Run the calls in threads of their own, all at once; return when all are done."""
    threads = [threading.Thread(target=fn, args=args) for fn, args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_uninstalled_shop_is_left_alone(tag_env: TagEnv) -> None:
    env = tag_env
    env.seed({1: ["goldpan-old"]}, {"fans": (True, {1})})
    with env.ctx.sessions.begin() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        shop.uninstalled_at = shop.installed_at
    assert sync_tags(env.ctx, env.shop.id, client=env.client).requests == 0
    assert env.calls == 0


def test_prefix_change_moves_only_goldpans_own_tags(tag_env: TagEnv) -> None:
    env = tag_env
    customers = {1: ["goldpan-fans", "goldpan-merchant-own"], 2: ["x"]}
    env.seed(customers, {"fans": (True, {1, 2})}, written={1: ["goldpan-fans"]})
    with env.ctx.sessions.begin() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        shop.settings = {**shop.settings, "tag_prefix": "gp-"}
    on_prefix_changed(env.ctx, env.shop.id, "goldpan-", client=env.client)
    assert env.shopify_tags() == {1: ["goldpan-merchant-own", "gp-fans"], 2: ["x", "gp-fans"]}


def test_a_late_older_customers_update_cannot_undo_our_write(tag_env: TagEnv) -> None:
    """Shopify's updatedAt from the mutation answer is stored, so helper D's sync sees an
    older delivery (the merchant's edit from before our write, arriving late) as stale."""
    from shopify_app.sync.webhooks import apply_webhook

    env = tag_env
    env.seed({1: ["x", "goldpan-old"]}, {"fans": (True, {1})}, written={1: ["goldpan-old"]})
    sync_tags(env.ctx, env.shop.id, client=env.client)
    with env.ctx.sessions() as session:
        row = session.get(Customer, (env.shop.id, 1))
        assert row is not None and row.updated_at is not None
        written_at = row.updated_at
    late = {
        "id": 1,
        "admin_graphql_api_id": "gid://shopify/Customer/1",
        "updated_at": (written_at - dt.timedelta(seconds=5)).isoformat(),
        "tags": "goldpan-old, x",
    }
    assert apply_webhook(env.ctx, env.shop.id, "customers/update", late) is False
    assert env.local_tags()[1] == env.shopify_tags()[1] == ["x", "goldpan-fans"]


def _audit(env: TagEnv, action: str) -> list[AuditEntry]:
    with env.ctx.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.shop_id == env.shop.id, AuditEntry.action == action)
                .order_by(AuditEntry.id)
            )
        )


def _data_version(env: TagEnv) -> int:
    with env.ctx.sessions() as session:
        return int(session.scalars(select(Shop.data_version).where(Shop.id == env.shop.id)).one())


def test_a_few_customers_per_run_converge_one_request_each(tag_env: TagEnv) -> None:
    """The webhook follow-up: runs for a customer or a small group (one claim per run, see
    ``writes._sync_few``) write one request per run that changes anything, audit it, keep the
    ledger, and an unchanged run costs no request and writes nothing."""
    env = tag_env
    _seed_mixed(env, 30)
    before = env.shopify_tags()
    groups = [[1000], [1001, 1002, 1003], list(range(1004, 1014)), [1014, 1014, 1015]]
    groups += [[cid] for cid in range(1016, 1030)]
    reports = [sync_tags(env.ctx, env.shop.id, group, client=env.client) for group in groups]
    writing = [r for r in reports if r.changed]
    assert all(r.requests == 1 for r in writing) and env.calls == len(writing)
    assert sum(r.checked for r in reports) == 30
    _assert_converged(env, before)
    entries = _audit(env, "tags.write")
    assert [e.count for e in entries] == [r.changed for r in writing]
    assert {e.result for e in entries} == {AuditResult.OK}
    # Nothing left to do: no request, no write transaction (the page's version stays put).
    version = _data_version(env)
    env.echo()
    for group in groups:
        assert sync_tags(env.ctx, env.shop.id, group, client=env.client).changed == 0
    assert env.calls == len(writing) and _data_version(env) == version
    assert len(_audit(env, "tags.write")) == len(entries)


def test_a_few_customers_drop_stale_ledger_rows_and_report_limits(tag_env: TagEnv) -> None:
    env = tag_env
    full = [f"m{i}" for i in range(249)]
    # 2's goldpan-old was taken off by the merchant: the ledger must stop claiming it.
    env.seed(
        {1: full, 2: ["x"]}, {"a": (True, {1}), "b": (True, {1})}, written={2: ["goldpan-old"]}
    )
    version = _data_version(env)
    report = sync_tags(env.ctx, env.shop.id, [2], client=env.client)
    assert report.requests == 0 and env.calls == 0
    assert env.written() == {} and _data_version(env) > version
    report = sync_tags(env.ctx, env.shop.id, [1, 2], client=env.client)
    assert report.limited == {1: ("goldpan-b",)} and report.requests == 1
    assert env.shopify_tags()[1] == [*full, "goldpan-a"]
    [limit] = _audit(env, "tags.limit")
    assert limit.detail["customers"] == {"1": ["goldpan-b"]} and limit.result == "partial"


def test_a_few_customers_on_an_uninstalled_shop_are_left_alone(tag_env: TagEnv) -> None:
    env = tag_env
    env.seed({1: ["goldpan-old"]}, {"fans": (True, {1})}, written={1: ["goldpan-old"]})
    with env.ctx.sessions.begin() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        shop.uninstalled_at = shop.installed_at
    assert sync_tags(env.ctx, env.shop.id, [1], client=env.client) == SyncReport()
    assert env.calls == 0 and env.written() == {1: {"goldpan-old"}}


def test_a_failed_write_of_a_few_customers_is_audited_and_stores_nothing(
    tag_env: TagEnv, tag_sandbox: ShopifySandbox
) -> None:
    env = tag_env
    env.seed({1: ["x"]}, {"fans": (True, {1})})
    env.client.max_attempts = 1
    tag_sandbox.faults.fail_next(503, 1)
    with pytest.raises(ShopifyError):
        sync_tags(env.ctx, env.shop.id, [1], client=env.client)
    [entry] = _audit(env, "tags.write")
    assert entry.result == AuditResult.ERROR and entry.detail["changes"] == [
        [1, ["goldpan-fans"], []]
    ]
    assert env.local_tags() == {1: ["x"]} and env.written() == {}
    sync_tags(env.ctx, env.shop.id, [1], client=env.client)
    assert env.local_tags() == env.shopify_tags() == {1: ["x", "goldpan-fans"]}
    assert env.written() == {1: {"goldpan-fans"}}


class _UpdateDuringRequest:
    """An Admin client through which a ``customers/update`` is stored while the request is out
    (the merchant edited the customer in the meantime). On PostgreSQL the claim holds the
    customer's row, so the delivery waits for it and lands after the write (:attr:`landed`)."""

    def __init__(self, env: TagEnv, customer_id: int, tags: list[str]) -> None:
        self.env, self.customer_id, self.tags = env, customer_id, tags
        self.landed = threading.Thread(target=self._deliver)

    def _deliver(self) -> None:
        with self.env.ctx.sessions.begin() as session:
            row = session.get(Customer, (self.env.shop.id, self.customer_id))
            assert row is not None
            row.tags = list(self.tags)

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = self.env.client.execute(document_name, variables)
        self.landed.start()
        if self.env.ctx.engine.dialect.name != "postgresql":
            self.landed.join()  # SQLite: stored before the answer is (the compare-and-set)
        return data


def test_a_customers_update_stored_during_the_request_is_not_overwritten(
    tag_env: TagEnv,
) -> None:
    env = tag_env
    env.seed({1: ["x"]}, {"fans": (True, {1})})
    newer = ["x", "goldpan-fans", "edited"]
    client = _UpdateDuringRequest(env, 1, newer)
    report = sync_tags(env.ctx, env.shop.id, [1], client=client)  # type: ignore[arg-type]
    client.landed.join()
    assert report.changed == 1
    # The newer delivery stays; the ledger still records what Shopify applied.
    assert env.local_tags() == {1: newer} and env.written() == {1: {"goldpan-fans"}}


def test_concurrent_runs_of_a_few_customers_never_write_the_same_change_twice(
    tag_env: TagEnv,
) -> None:
    env = tag_env
    _seed_mixed(env, 40)
    before = env.shopify_tags()
    needed = {cid for cid, tags in before.items() if _goldpan(tags) != _expected(cid)}
    reports: list[SyncReport] = []
    ids = _ids(40)

    def run(offset: int) -> None:
        client = AdminClient(env.ctx, env.shop.id, sleep=lambda s: time.sleep(min(s, 0.02)))
        # Overlapping groups, in different orders: every customer is claimed by several threads.
        for start in range(offset, 40 + offset, 3):
            group = [ids[(start + k) % 40] for k in range(4)]
            reports.append(sync_tags(env.ctx, env.shop.id, group, client=client))

    _at_once(*[(run, (offset,)) for offset in range(4)])
    assert sum(r.changed for r in reports) == len(needed)
    _assert_converged(env, before)


def test_asking_for_running_bulk_jobs_does_not_scan_the_audit_log(tmp_path: Path) -> None:
    """Every tag write asks it, and every tag write adds an audit entry: with only the
    (shop, at) index the question cost a scan of the shop's whole audit log. SQLite's plan is
    checked on a database of its own (PostgreSQL picks its plan from table statistics)."""
    from shopify_app.tagging.writes import _SHOP

    url = f"sqlite:///{tmp_path / 'plan.sqlite3'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    try:
        with engine.connect() as conn:
            event.listen(conn, "before_cursor_execute", capture)
            conn.execute(_SHOP, {"shop": 1})
            event.remove(conn, "before_cursor_execute", capture)
            statement, parameters = sent[-1]
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    finally:
        engine.dispose()
    audit = [str(row[-1]) for row in plan if "audit_log" in str(row[-1])]
    assert audit and all("ix_audit_log_shop_job_status" in step for step in audit), plan
