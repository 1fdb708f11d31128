"""Faults against a real cluster: a worker killed with ``kill -9`` mid-sync, mid-tag-write
(aliased requests and bulk mutation) and mid-Meta-upload (add and replace sessions), lost
database connections, Shopify answering 503 for a while, and token refreshes racing across
processes — each ends in exactly the right state: the store's data in the database, every
customer's tags in Shopify, every audience's members at Meta."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from sqlalchemy import delete, select, text, update

from goldpan_sandbox import control
from goldpan_sandbox.meta import MetaSandbox
from shopify_app.db.models import (
    Customer,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    Segment,
    Shop,
    SyncRun,
)
from shopify_app.meta import graph
from shopify_app.meta.identifiers import Person, hash_row
from shopify_app.server.app import build_context
from shopify_app.shopify import auth
from tests.fixtures_meta import (
    AD_ACCOUNT,
    META_APP_ID,
    META_APP_SECRET,
    MetaStand,
    add_segment,
    connect_shop,
    make_people,
)
from tests.fixtures_scaleout import Cluster, wait_until

pytestmark = pytest.mark.slow


def _runs(cluster: Cluster, shop_id: int) -> list[tuple[str, str, int]]:
    with cluster.ctx.sessions() as session:
        return [
            (r.resource, r.status, r.objects_done)
            for r in session.scalars(select(SyncRun).where(SyncRun.shop_id == shop_id))
        ]


def test_a_worker_killed_mid_sync_is_replaced_and_the_end_state_is_exact(
    cluster: Cluster,
) -> None:
    """Scale-out: a worker dies, another starts. Single machine (SQLite): the one process that
    serves and works dies and is started again on the same port."""
    single = cluster.database_url.startswith("sqlite")
    web = cluster.start_web(inline=single)
    cluster.sandbox.app_url = web
    victim = "web1" if single else cluster.start_worker(scheduler=True)
    store = cluster.add_store(customers=400, seed=5)
    shop_id = cluster.install(store.domain)
    # Kill it while the sync is under way: exports started, maybe ingesting.
    wait_until(lambda: _runs(cluster, shop_id), 20, "the initial sync to start", step=0.02)
    cluster.kill(victim)
    # Orders keep coming meanwhile; Shopify retries deliveries nobody acknowledged.
    for customer_id in sorted(store.customers)[:3]:
        control.place_order(cluster.sandbox, store.domain, {"customer_id": customer_id})
    time.sleep(3.5)  # the dead worker's locks expire (JOB_LOCK_TTL=3)
    if single:
        cluster.start_web(inline=True, port=int(web.rsplit(":", 1)[1]))
    else:
        cluster.start_worker(scheduler=True)
    cluster.wait_converged(store.domain, timeout=60, in_flight_ok=True)


def test_lost_database_connections_are_replaced(cluster: Cluster) -> None:
    web = cluster.start_web()
    cluster.sandbox.app_url = web
    cluster.start_worker(scheduler=True)
    store = cluster.add_store(customers=60, seed=6)
    cluster.install(store.domain)
    cluster.wait_converged(store.domain)
    lost = _drop_connections(cluster)
    for customer_id in sorted(store.customers)[:4]:
        control.place_order(cluster.sandbox, store.domain, {"customer_id": customer_id})
    cluster.wait_converged(store.domain)
    assert lost >= 0


def _drop_connections(cluster: Cluster) -> int:
    """Cut every other connection to the database (PostgreSQL: terminate the backends; SQLite
    has no server, so close this process's pooled connection under the pool instead)."""
    engine = cluster.ctx.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    with engine.connect() as conn:
        conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
    # The next checkout finds the closed connection, discards it and connects again.
    with cluster.ctx.sessions() as session:
        assert session.scalar(select(Shop.id).limit(1)) is not None
    return 1


def test_shopify_failing_for_a_while_converges(cluster: Cluster) -> None:
    web = cluster.start_web()
    cluster.sandbox.app_url = web
    cluster.start_worker(scheduler=True)
    cluster.start_worker()
    store = cluster.add_store(customers=80, seed=8)
    # The Admin API answers 503 to the next requests (retried with backoff by the client).
    cluster.sandbox.faults.fail_next(503, count=4, retry_after=0.2)
    cluster.install(store.domain)
    for customer_id in sorted(store.customers)[:3]:
        control.place_order(cluster.sandbox, store.domain, {"customer_id": customer_id})
    cluster.wait_converged(store.domain, timeout=60)


_REFRESH = """
import sys
from shopify_app.shopify import auth
from shopify_app.server.app import build_context
from shopify_app.server.app import build_context
from shopify_app.settings import Settings
ctx = build_context(Settings.from_env(), queue=False)
print(auth.access_token(ctx, int(sys.argv[1])))
"""


def test_token_refreshes_racing_across_processes_keep_one_valid_pair(cluster: Cluster) -> None:
    store = cluster.add_store(customers=5, seed=9)
    tokens = auth.TokenSet.from_response(cluster.sandbox.install(store.domain))
    # Installed through the queue, with no worker running: only the refreshes run here.
    queued = build_context(cluster.settings)
    shop_id = auth.install(queued, store.domain, tokens)
    # The access token is about to expire: every process wants to refresh it at once.
    with cluster.ctx.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.id == shop_id)
            .values(access_token_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
        )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REFRESH, str(shop_id)],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-800:] for _, err in results]
    with cluster.ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        stored_access = cluster.ctx.cipher.decrypt(shop.access_token or "")
        stored_refresh = cluster.ctx.cipher.decrypt(shop.refresh_token or "")
    # Whoever won, the stored pair works: the access token is accepted and the refresh token
    # can still be used.
    assert cluster.sandbox.oauth.authenticate(store.domain, stored_access)
    assert stored_refresh in cluster.sandbox.oauth.valid_refresh_tokens(store.domain)
    for out, _ in results:
        assert cluster.sandbox.oauth.authenticate(store.domain, out.strip().splitlines()[-1])


def _store_tags(cluster: Cluster, domain: str) -> dict[int, list[str]]:
    store = cluster.sandbox.store(domain)
    with store.lock:
        return {cid: list(c.tags) for cid, c in store.customers.items()}


def _db_tags(cluster: Cluster, shop_id: int) -> dict[int, list[str]]:
    with cluster.ctx.sessions() as session:
        return {
            int(cid): list(tags or [])
            for cid, tags in session.execute(
                select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
            )
        }


@pytest.mark.parametrize("path", ["requests", "bulk"])
def test_a_worker_killed_mid_tag_write_is_replaced_and_every_customer_ends_exactly_tagged(
    cluster: Cluster, path: str
) -> None:
    """The merchant switches a segment's tag sync on; the worker writing the tags dies mid-way:
    ``requests``, with some customers tagged in Shopify and the rest not; ``bulk`` (above the
    shop's bulk threshold), with the bulk mutation still running in Shopify (whether or not
    Goldpan recorded it before dying). The whole-shop tag diff that the next full recompute
    queues finishes the job: every customer carries exactly their merchant tags plus the
    segment tag if they are a member — nothing lost, nothing doubled."""
    web = cluster.start_web()
    cluster.sandbox.app_url = web
    victim = cluster.start_worker(scheduler=True)
    store = cluster.add_store(customers=200, seed=12)
    shop_id = cluster.install(store.domain)
    cluster.wait_converged(store.domain)

    def biggest_segment() -> int | None:
        # Data converged; the recompute that follows it fills the segments.
        with cluster.ctx.sessions() as session:
            segment = session.scalars(
                select(Segment)
                .where(Segment.shop_id == shop_id, Segment.enabled.is_(True))
                .order_by(Segment.member_count.desc(), Segment.id)
            ).first()
            return segment.id if segment is not None and segment.member_count >= 40 else None

    segment_id = wait_until(biggest_segment, 60, "the segments to be computed")
    with cluster.ctx.sessions() as session:
        members = set(
            session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == segment_id)
            )
        )
    merchant = _store_tags(cluster, store.domain)
    if path == "bulk":
        with cluster.ctx.sessions.begin() as session:
            shop = session.get_one(Shop, shop_id)
            shop.settings = {**(shop.settings or {}), "tag_bulk_threshold": 10}
        # The bulk mutation applies its rows, then stays RUNNING for a while.
        cluster.sandbox.faults.bulk_delay = 3.0
    else:
        # Every Admin API answer now takes 0.4 s: the write (10 customers a request) takes
        # seconds.
        cluster.sandbox.faults.slow_next(0.4, count=None)
    token = cluster.sandbox.oauth.mint_session_token(store.domain)
    answer = requests.post(
        f"{web}/api/segments/{segment_id}/tag-sync",
        json={"enabled": True, "confirm": True},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:500]
    tag = answer.json()["tag"]

    def tagged() -> int:
        return sum(tag in tags for tags in _store_tags(cluster, store.domain).values())

    def bulk_running() -> bool:
        return any(
            op.type == "MUTATION" and op.status in ("CREATED", "RUNNING")
            for op in cluster.sandbox.bulk.operations(store.domain)
        )

    if path == "bulk":
        wait_until(bulk_running, 30, "the bulk mutation to run", step=0.01)
        cluster.kill(victim)
        assert bulk_running()
    else:
        # Mid-write: some customers carry the tag in Shopify, not all yet.
        wait_until(
            lambda: 0 < tagged() < len(members) // 2, 30, "the tag write to start", step=0.02
        )
        cluster.kill(victim)
        assert 0 < tagged() < len(members)
    cluster.sandbox.faults.clear()
    time.sleep(3.5)  # the dead worker's leases expire (JOB_LOCK_TTL=3)
    cluster.start_worker(scheduler=True)
    # The lost task is not retried. What repairs it is the whole-shop tag diff that every full
    # recompute (daily, reconcile, rule edits) queues after it: queue that diff here.
    build_context(cluster.settings).enqueue("tags.sync", shop_id=shop_id, customer_ids=None)
    expected = {
        cid: sorted([*tags, tag] if cid in members else tags) for cid, tags in merchant.items()
    }

    def exact() -> bool:
        now = {cid: sorted(tags) for cid, tags in _store_tags(cluster, store.domain).items()}
        return now == expected

    wait_until(exact, 60, "every customer to carry exactly the wanted tags")
    # The database learns Shopify's tags back (customers/update) and agrees with the store.
    wait_until(
        lambda: {c: sorted(t) for c, t in _db_tags(cluster, shop_id).items()} == expected,
        60,
        "the database to hold the store's tags",
    )
    cluster.wait_converged(store.domain)
    time.sleep(1.0)  # nothing writes again afterwards (no late duplicate)
    assert {c: sorted(t) for c, t in _store_tags(cluster, store.domain).items()} == expected


def _sessions_sent(meta: MetaSandbox) -> list[dict[str, Any]]:
    """The ``session`` of every ``/users`` upload Meta received, in order."""
    return [json.loads(r.params["session"]) for r in meta.requests_to("/users", "POST")]


def _meta_shop(
    cluster: Cluster, meta: MetaSandbox
) -> tuple[int, int, list[int], list[Person], dict[str | None, int]]:
    """A connected shop whose Meta-synced segment has 12,000 members (about 10,800 consenting:
    two upload batches) and 300 customers outside it; every one of them has a Meta account.
    Returns (shop id, segment id, member ids, members, Meta user id by email)."""
    meta.add_ad_account(AD_ACCOUNT)
    with cluster.ctx.sessions.begin() as session:
        shop = Shop(
            domain="meta.myshopify.com",
            access_token=cluster.ctx.cipher.encrypt("shpat_test"),
            scopes="read_customers,write_customers,read_orders",
            installed_at=dt.datetime.now(dt.UTC),
            settings={},
        )
        session.add(shop)
        session.flush()
        shop_id = shop.id
    members = make_people(12_000, seed=41, subscribed=0.9)
    others = make_people(300, seed=42)
    segment_id, member_ids = add_segment(cluster.ctx.sessions, shop_id, members)
    add_segment(cluster.ctx.sessions, shop_id, others, handle="others", meta_sync=False)
    # A fresh sandbox numbers its users 1, 2, ... in the order they are added.
    everyone = [*members, *others]
    meta.add_meta_users(hash_row(p) for p in everyone)
    uid = {p.email: n for n, p in enumerate(everyone, start=1)}
    connect_shop(cluster.ctx, MetaStand(meta, cluster.settings.meta_graph_url), shop_id)
    return shop_id, segment_id, member_ids, members, uid


def test_a_worker_killed_mid_meta_upload_is_replaced_and_the_audience_is_exact(
    cluster: Cluster,
) -> None:
    """A segment of 12,000 goes to Meta in two batches; the worker dies after batch 1 of 2
    reached Meta and before Goldpan recorded the upload. The hourly refresh re-diffs it: the
    audience ends with exactly the consenting members — one audience, nobody missing, nobody
    who did not consent, no Meta account counted twice."""
    meta = cluster.start_meta(META_APP_ID, META_APP_SECRET)
    victim = cluster.start_worker()
    shop_id, segment_id, member_ids, members, uid = _meta_shop(cluster, meta)
    consenting = {
        cid
        for cid, p in zip(member_ids, members, strict=True)
        if p.email_marketing_state == "SUBSCRIBED"
    }
    assert len(consenting) > graph.MAX_BATCH  # two batches
    wanted_uids = {
        uid[p.email] for cid, p in zip(member_ids, members, strict=True) if cid in consenting
    }
    meta.delay = 1.0  # every Graph answer takes a second: the upload is observable mid-way
    build_context(cluster.settings).enqueue(
        "meta.sync_segment", shop_id=shop_id, segment_id=segment_id
    )
    wait_until(lambda: _sessions_sent(meta), 60, "batch 1 to reach Meta", step=0.02)
    cluster.kill(victim)
    sent = _sessions_sent(meta)
    assert len(sent) == 1 and sent[0]["batch_seq"] == 1 and not sent[0]["last_batch_flag"]
    with cluster.ctx.sessions() as session:
        aud = session.scalars(
            select(MetaAudience).where(MetaAudience.segment_id == segment_id)
        ).one()
        audience_id, aud_pk = aud.audience_id, aud.id
        assert aud.last_synced_at is None
        # Goldpan never recorded the upload it was in the middle of.
        assert not session.scalars(
            select(MetaAudienceMember.customer_id).where(MetaAudienceMember.audience_id == aud_pk)
        ).first()
    assert audience_id is not None
    meta.delay = 0.0
    time.sleep(3.5)  # the dead worker's lease on the segment expires (JOB_LOCK_TTL=3)
    cluster.start_worker(scheduler=True)
    # The lost task is not retried; the hourly refresh (meta.refresh_all) re-diffs the shop.
    build_context(cluster.settings).enqueue("meta.refresh_shop", shop_id=shop_id)

    def synced() -> bool:
        with cluster.ctx.sessions() as session:
            row = session.get(MetaAudience, aud_pk)
            return row is not None and row.last_synced_at is not None

    wait_until(synced, 60, "the audience to be synced again")
    with cluster.ctx.sessions() as session:
        stored = set(
            session.scalars(
                select(MetaAudienceMember.customer_id).where(
                    MetaAudienceMember.audience_id == aud_pk
                )
            )
        )
        audiences = session.scalars(
            select(MetaAudience.audience_id).where(MetaAudience.shop_id == shop_id)
        ).all()
    assert stored == consenting
    assert audiences == [audience_id]
    assert meta.members(audience_id) == wanted_uids
    assert [a.id for a in meta.audiences.values() if not a.deleted] == [audience_id]
    # The replacement's upload was one complete session of its own.
    last = _sessions_sent(meta)[-1]
    assert last["last_batch_flag"] and last["session_id"] != sent[0]["session_id"]


def test_a_worker_killed_mid_meta_replace_leaves_the_old_list_until_meta_lets_go(
    cluster: Cluster,
) -> None:
    """The weekly full refresh (``/usersreplace``) dies after batch 1 of 2. Meta keeps the old
    list and refuses any other replace on the audience until the abandoned session times out
    (90 minutes); the audience shows ``replacing`` meanwhile. After that the next refresh
    replaces the list: exactly the consenting members, without those who left the segment."""
    meta = cluster.start_meta(META_APP_ID, META_APP_SECRET)
    victim = cluster.start_worker()
    shop_id, segment_id, member_ids, members, uid = _meta_shop(cluster, meta)
    queue = build_context(cluster.settings)
    queue.enqueue("meta.sync_segment", shop_id=shop_id, segment_id=segment_id)

    def audience() -> MetaAudience | None:
        with cluster.ctx.sessions() as session:
            return session.scalars(
                select(MetaAudience).where(MetaAudience.segment_id == segment_id)
            ).first()

    first = wait_until(
        lambda: (aud := audience()) is not None and aud.last_synced_at is not None and aud,
        60,
        "the first sync",
    )
    audience_id, aud_pk = first.audience_id, first.id
    assert audience_id is not None
    old_list = meta.members(audience_id)
    # 500 members leave the segment; the refresh is due.
    leavers = set(member_ids[:500])
    with cluster.ctx.sessions.begin() as session:
        session.execute(
            delete(Membership).where(
                Membership.segment_id == segment_id, Membership.customer_id.in_(sorted(leavers))
            )
        )
        row = session.get_one(MetaAudience, aud_pk)
        row.last_full_refresh_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    meta.delay = 1.0
    queue.enqueue("meta.refresh_shop", shop_id=shop_id)

    def replace_requests() -> int:
        return len(meta.requests_to("/usersreplace", "POST"))

    wait_until(replace_requests, 60, "batch 1 of the replace to reach Meta", step=0.02)
    # Batch 2 (and its retry) fail: the session stays open on Meta's side.
    meta.fail_next(times=2, status=500)
    wait_until(lambda: replace_requests() >= 3, 30, "batch 2 to fail twice", step=0.02)
    cluster.kill(victim)
    meta.delay = 0.0
    remote = meta.audiences[audience_id]
    assert remote.replace is not None and not remote.replace.finished
    assert meta.members(audience_id) == old_list  # Meta keeps the old list
    time.sleep(3.5)  # the dead worker's lease on the segment expires (JOB_LOCK_TTL=3)
    cluster.start_worker(scheduler=True)
    queue.enqueue("meta.refresh_shop", shop_id=shop_id)
    wait_until(
        lambda: (aud := audience()) is not None and aud.status == "replacing",
        60,
        "Meta to refuse a second replace while the first is open",
    )
    assert meta.members(audience_id) == old_list
    meta.advance(91 * 60)  # Meta gives up on the abandoned session
    queue.enqueue("meta.refresh_shop", shop_id=shop_id)
    wait_until(
        lambda: (aud := audience()) is not None and aud.status == "ready",
        60,
        "the replace to go through",
    )
    consenting = {
        cid
        for cid, p in zip(member_ids, members, strict=True)
        if p.email_marketing_state == "SUBSCRIBED" and cid not in leavers
    }
    wanted_uids = {
        uid[p.email] for cid, p in zip(member_ids, members, strict=True) if cid in consenting
    }
    with cluster.ctx.sessions() as session:
        stored = set(
            session.scalars(
                select(MetaAudienceMember.customer_id).where(
                    MetaAudienceMember.audience_id == aud_pk
                )
            )
        )
    assert stored == consenting
    assert meta.members(audience_id) == wanted_uids
    assert [a.id for a in meta.audiences.values() if not a.deleted] == [audience_id]
