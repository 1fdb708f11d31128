"""A real multi-process Goldpan cluster on loopback, for the scale-out and fault tests.

:class:`Cluster` starts a :class:`ShopifySandbox` in the test process and Goldpan processes as
subprocesses of the real ``shopify-app`` command: web processes (``serve``, without an in-process
worker) and workers (``worker``, one with ``--scheduler``). They share one database (PostgreSQL
when ``GOLDPAN_TEST_DATABASE_URL`` is set, else a SQLite file) and one queue (Redis when
``GOLDPAN_TEST_REDIS_URL`` is set, else huey's SQLite file). Process output goes to log files in
the test's temporary folder (JSON lines), which tests may read.

A pytest plugin (registered in ``tests/conftest.py``): the ``cluster`` fixture needs no import.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from goldpan_sandbox.generator import generate_store
from goldpan_sandbox.meta import MetaSandbox
from goldpan_sandbox.oauth import host_param
from goldpan_sandbox.server import RunningServer, start_server
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Store
from shopify_app import db
from shopify_app.db.models import Customer, Order, Shop, WebhookEvent
from shopify_app.jobs import Context
from shopify_app.server.app import build_context
from shopify_app.settings import Settings
from shopify_app.sync import runs
from tests.conftest import TEST_API_KEY, TEST_API_SECRET, fresh_database
from tests.fixtures_sandbox import SANDBOX_TOPICS

__all__ = ["CLUSTER_METRICS_TOKEN", "Cluster", "cluster", "free_port", "wait_until"]

AS_OF = dt.date(2026, 11, 1)
CLUSTER_METRICS_TOKEN = "cluster-metrics-token"
"""The cluster's ``METRICS_TOKEN``: /metrics is served only with one."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], Any], timeout: float = 45.0, what: str = "the condition", step: float = 0.2
) -> Any:
    """Call ``check`` until it returns something truthy (and return it); fail with ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def _redis_url(db_index: int) -> str | None:
    """``GOLDPAN_TEST_REDIS_URL`` with its database number replaced (one per cluster)."""
    base = os.environ.get("GOLDPAN_TEST_REDIS_URL")
    if not base:
        return None
    parsed = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parsed._replace(path=f"/{db_index}"))


class Cluster:
    """Goldpan web and worker processes, a sandbox, one database and one queue."""

    def __init__(self, tmp: Path, database_url: str, encryption_key: str, redis_db: int) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.redis_url = _redis_url(redis_db)
        if self.redis_url:
            from redis import Redis

            Redis.from_url(self.redis_url).flushdb()
        self.sandbox = ShopifySandbox(
            TEST_API_KEY,
            TEST_API_SECRET,
            webhook_topics=SANDBOX_TOPICS,
            retry_backoff=0.2,
            max_attempts=20,
            workdir=tmp / "sandbox",
        )
        self.sandbox.start()
        self.web_urls: list[str] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GOLDPAN_TEST")},
            "SHOPIFY_API_KEY": TEST_API_KEY,
            "SHOPIFY_API_SECRET": TEST_API_SECRET,
            "TOKEN_ENCRYPTION_KEY": encryption_key,
            "DATABASE_URL": database_url,
            "HUEY_PATH": str(tmp / "huey.sqlite3"),
            "REDIS_URL": self.redis_url or "",
            "INLINE_WORKER": "false",
            "SHOPIFY_BASE_URL": self.sandbox.shop_base("{shop}"),
            "LOG_JSON": "true",
            "LOG_LEVEL": "INFO",
            "JOB_LOCK_TTL": "3",
            "METRICS_TOKEN": CLUSTER_METRICS_TOKEN,
        }
        self.env.pop("PORT", None)
        self.settings = Settings.from_env(self.env)
        self.ctx: Context = build_context(self.settings, queue=False)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._counter = 0
        self.meta: MetaSandbox | None = None
        self._meta_server: RunningServer | None = None

    def start_meta(self, app_id: str, app_secret: str) -> MetaSandbox:
        """Serve a Graph API stand-in on loopback and point the cluster's settings at it.

        Call before starting processes: they read ``META_*`` from their environment.
        """
        self.meta = MetaSandbox(app_id, app_secret)
        self._meta_server = start_server(self.meta.app())
        self.env.update(
            {
                "META_APP_ID": app_id,
                "META_APP_SECRET": app_secret,
                "META_GRAPH_URL": self._meta_server.url,
                "META_DIALOG_URL": self._meta_server.url,
            }
        )
        self.settings = Settings.from_env(self.env)
        self.ctx.settings = self.settings
        return self.meta

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shopify_app.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        self.procs[name] = proc
        return proc

    def start_web(self, *, inline: bool = False, port: int | None = None) -> str:
        """Start ``shopify-app serve`` (on ``port``, else a free one); returns its URL once it
        answers. ``inline``: with its own job consumer and scheduler (the single-machine setup).
        """
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        name = f"web{len(self.web_urls) + 1}"
        env = {
            **self.env,
            "SHOPIFY_APP_URL": url,
            "PORT": str(port),
            "INLINE_WORKER": "true" if inline else "false",
        }
        self._spawn(name, ["serve", "--port", str(port)], env)
        wait_until(lambda: self._answers(url), 30, f"{name} to answer /healthz")
        self.web_urls.append(url)
        return url

    def start_worker(self, *, scheduler: bool = False, threads: int = 4) -> str:
        """Start ``shopify-app worker``; returns its name (``worker1``...)."""
        self._counter += 1
        name = f"worker{self._counter}"
        args = ["worker", "--threads", str(threads), *(["--scheduler"] if scheduler else [])]
        self._spawn(name, args, dict(self.env))
        return name

    def kill(self, name: str) -> None:
        """``kill -9`` a process (no clean-up of any kind)."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log_of(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.sandbox.close()
        if self._meta_server is not None:
            self._meta_server.stop()
        self.ctx.engine.dispose()

    # -- shops --------------------------------------------------------------------------------
    def add_store(self, customers: int, seed: int = 11) -> Store:
        domain = f"scale-{len(self.sandbox.domains()) + 1}.myshopify.com"
        return self.sandbox.add_shop(
            domain, generate_store(domain, customers=customers, seed=seed, as_of=AS_OF)
        )

    def install(self, domain: str, web: str | None = None) -> int:
        """Open the app's page with a fresh ID token, as the admin does on first launch."""
        query = urllib.parse.urlencode(
            {
                "shop": domain,
                "host": host_param(domain),
                "embedded": "1",
                "id_token": self.sandbox.oauth.mint_session_token(domain),
            }
        )
        response = requests.get(
            f"{web or self.web_urls[0]}/?{query}", timeout=60, allow_redirects=False
        )
        assert response.status_code == 200, response.text[:500]
        return int(self.shop_id(domain))

    def shop_id(self, domain: str) -> int | None:
        with self.ctx.sessions() as session:
            return session.scalar(select(Shop.id).where(Shop.domain == domain))

    # -- end state ----------------------------------------------------------------------------
    def difference(self, domain: str, *, in_flight_ok: bool = False) -> dict[str, Any]:
        """What still differs between the store and the database (empty when converged).

        ``in_flight_ok``: a delivery a killed worker was handling stays ``processing`` until it
        is stale (it is then queued again); it does not count while the data matches.
        """
        store = self.sandbox.store(domain)
        shop_id = self.shop_id(domain)
        if shop_id is None:
            return {"shop": "not installed"}
        with self.ctx.sessions() as session:
            orders = set(session.scalars(select(Order.id).where(Order.shop_id == shop_id)))
            customers = set(session.scalars(select(Customer.id).where(Customer.shop_id == shop_id)))
            pending = session.scalar(
                select(func.count()).where(
                    WebhookEvent.shop_domain == domain,
                    WebhookEvent.status.in_(
                        ("queued", "failed") if in_flight_ok else ("queued", "processing", "failed")
                    ),
                )
            )
        progress = runs.progress(self.ctx, shop_id)
        out: dict[str, Any] = {}
        unfinished = {k: v.get("status") for k, v in progress.items() if v.get("status") != "done"}
        if len(progress) < len(runs.RESOURCES) or unfinished:
            out["sync"] = unfinished or sorted(progress)
        if orders != set(store.orders):
            out["orders"] = {
                "missing": len(set(store.orders) - orders),
                "extra": len(orders - set(store.orders)),
            }
        if customers != set(store.customers):
            out["customers"] = {
                "missing": len(set(store.customers) - customers),
                "extra": len(customers - set(store.customers)),
            }
        if pending:
            out["webhooks_pending"] = pending
        return out

    def wait_converged(self, domain: str, timeout: float = 45, in_flight_ok: bool = False) -> None:
        """Wait until the database holds exactly the store's data and every delivery is done.

        On SQLite the processes contend for one file, and a task that met a locked database is
        retried after its delay: give that time.
        """
        if self.database_url.startswith("sqlite"):
            timeout += 60

        def converged() -> bool:
            # The sandbox's own deliveries (say, customers/update echoes of tag writes) must have
            # arrived too: between two of them the inbox can look drained.
            return self.sandbox.delivery.drain(0) and not self.difference(
                domain, in_flight_ok=in_flight_ok
            )

        try:
            wait_until(converged, timeout, f"{domain} to converge")
        except AssertionError as exc:
            still = self.difference(domain, in_flight_ok=in_flight_ok)
            raise AssertionError(f"{exc}; still different: {still}") from None
        # Hold still briefly: nothing may change after convergence (no late duplicate effect).
        time.sleep(0.5)
        late = self.difference(domain, in_flight_ok=in_flight_ok)
        assert late == {}, f"{domain} changed after converging: {late}"


@pytest.fixture
def cluster(
    tmp_path: Path, encryption_key: str, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A fresh database and queue, a sandbox, no processes yet (the test starts them)."""
    redis_db = 10 + (abs(hash(request.node.nodeid)) % 5)
    with fresh_database(tmp_path) as url:
        db.upgrade(url)
        running = Cluster(tmp_path, url, encryption_key, redis_db)
        try:
            yield running
        finally:
            running.stop()
