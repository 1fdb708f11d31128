"""Faults against a real cluster: a worker killed with ``kill -9`` mid-sync, lost database
connections, Shopify answering 503 for a while, and token refreshes racing across processes —
each ends in exactly the store's state."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, text, update

from shopify_app import auth
from shopify_app.app import build_context
from shopify_app.models import Shop, SyncRun
from shopify_app.sandbox import control
from tests.fixtures_scaleout import *  # noqa: F403
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
from shopify_app import auth
from shopify_app.app import build_context
from shopify_app.app import build_context
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
