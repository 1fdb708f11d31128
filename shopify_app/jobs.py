"""Background jobs on huey: SQLite-backed in one process by default, Redis-backed to scale out.

Modules declare work with :func:`task` (and :func:`periodic` for schedules); a task is a plain
function ``fn(ctx, **kwargs)`` that receives the :class:`Context` (settings, sessions, cipher)
so it needs no globals. :class:`Runtime` binds the declared tasks to a huey instance chosen by
settings; the web process enqueues through it, ``shopify-app worker`` consumes.

Task names are strings (``"sync.initial"``) so the web process can enqueue without importing
the worker's heavy modules, and a name is stable across deploys for tasks already queued.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.constants import EmptyData
from huey.exceptions import TaskLockedException
from huey.storage import SqliteStorage
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app import logs
from shopify_app.crypto import TokenCipher
from shopify_app.settings import Settings

log = logging.getLogger(__name__)

# Modules whose import declares tasks. A module that defines a task must be listed here.
TASK_MODULES: tuple[str, ...] = (
    "shopify_app.shopify.webhooks",
    "shopify_app.sync.inbox",
    "shopify_app.tagging.tasks",
    "shopify_app.sync.bulk",
    "shopify_app.sync.reconcile",
    "shopify_app.meta.audiences",
    "shopify_app.segments.recompute",
    "shopify_app.sync.audit_retention",
    "shopify_app.actions.discounts",
    "shopify_app.actions.scores",
    "shopify_app.actions.entries",
    "shopify_app.actions.flow",
)

# Per-shop exclusion for tasks declared without ``lock=``: two syncs (initial or reconcile) or
# two full recomputes of one shop never overlap, on any number of workers. The value is formatted
# with the task's keyword arguments.
SHOP_LOCKS: dict[str, str] = {
    "sync.initial": "sync:{shop_id}",
    "sync.reconcile": "sync:{shop_id}",
    "segments.recompute_shop": "recompute:{shop_id}",
}

LOCK_TTL = 60.0
"""Default seconds a lock outlives its holder's last heartbeat (``JOB_LOCK_TTL``): a
``kill -9``'d worker's lock expires instead of blocking its shop forever."""

LOCK_RETRY_DELAY = 5.0
"""Seconds before a task that found its lock held runs again."""

POLL_DELAY = 0.05
"""Seconds an idle consumer thread first waits before polling a non-blocking queue again."""

POLL_MAX_DELAY = 0.5
"""The longest wait between polls of a non-blocking queue (huey's SQLite queue)."""

_DEFERRED = "_goldpan_deferred"  # marks the copy of a locked task scheduled to run later

TaskFn = Callable[..., Any]


@dataclass(frozen=True)
class _Spec:
    fn: TaskFn
    retries: int
    retry_delay: int
    schedule: dict[str, str] | None = None
    lock: str | None = None


_REGISTRY: dict[str, _Spec] = {}


def task(
    name: str, *, retries: int = 3, retry_delay: int = 5, lock: str | None = None
) -> Callable[[TaskFn], TaskFn]:
    """Declare ``fn(ctx, **kwargs)`` as the background task ``name``.

    ``lock`` (say ``"recompute:{shop_id}"``, formatted with the task's keyword arguments) makes
    runs with the same key exclusive across the cluster; a run that finds the key held is run
    again later (copies waiting for the same key and arguments coalesce into one), never dropped.
    """

    def register(fn: TaskFn) -> TaskFn:
        _REGISTRY[name] = _Spec(fn, retries, retry_delay, lock=lock or SHOP_LOCKS.get(name))
        return fn

    return register


def periodic(name: str, **schedule: str) -> Callable[[TaskFn], TaskFn]:
    """Declare ``fn(ctx)`` as a periodic task; ``schedule`` takes huey ``crontab`` fields.

    Huey's scheduler enqueues it; with several workers on Redis, only one consumer per cluster
    should run the scheduler (``shopify-app worker --scheduler``), so it runs once, not once per
    worker.
    """

    def register(fn: TaskFn) -> TaskFn:
        _REGISTRY[name] = _Spec(fn, 0, 0, schedule)
        return fn

    return register


@dataclass
class Context:
    """What every task and request handler needs; built once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cipher: TokenCipher
    runtime: Runtime | None = field(default=None, repr=False)

    def enqueue(self, name: str, **kwargs: Any) -> None:
        """Queue task ``name``; runs inline when no runtime is attached (scripts, some tests)."""
        if self.runtime is None:
            run_now(self, name, **kwargs)
        else:
            self.runtime.enqueue(name, **kwargs)


FOLLOW_UPS: frozenset[str] = frozenset(
    {
        "segments.recompute_customer",
        "segments.recompute_customers",
        "tags.sync",
        "meta.sync_customer",
    }
)
"""Tasks a webhook's handling may run in its own worker thread (see :class:`FollowUps`): the
per-customer chain recompute → tag write → Meta update. Queued instead, each would wait for a
worker again (and pay the queue's round trips) three times per webhook; run here, a webhook's
tags are written in the same task that stored its order."""


def _follows_inline(name: str, kwargs: dict[str, Any]) -> bool:
    # Only the one-customer variants: a whole-shop tag sync or anything under a lock is queued.
    if name not in FOLLOW_UPS:
        return False
    if name == "tags.sync" and kwargs.get("customer_ids") is None:
        return False
    spec = _REGISTRY.get(name)
    return spec is not None and spec.lock is None and spec.schedule is None


_MERGED_LISTS: dict[str, str] = {
    "tags.sync": "customer_ids",
    "segments.recompute_customers": "customer_ids",
}
"""Follow-ups that differ only in this list argument run once, for the union of the lists."""

_AS_LIST: dict[str, tuple[str, str, str]] = {
    "segments.recompute_customer": ("segments.recompute_customers", "customer_id", "customer_ids"),
}
"""One-item follow-ups that wait as their list form (name, item argument, list argument), so a
group's items merge: one recompute of a group's customers costs about what one customer does."""


def _except(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != key}


class FollowUps(Context):
    """A context whose cheap per-customer follow-ups (:data:`FOLLOW_UPS`) wait in a list, to be
    run by :meth:`run` in this thread once the caller's own work is committed.

    Everything else goes to ``outer`` as usual. A follow-up that fails is handed to the queue
    (with its retries); without a queue (scripts, tests) the failure propagates, as it would
    have from an inline :meth:`Context.enqueue`.
    """

    def __init__(self, outer: Context) -> None:
        super().__init__(outer.settings, outer.engine, outer.sessions, outer.cipher, outer.runtime)
        self.outer = outer
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, name: str, **kwargs: Any) -> None:
        load_task_modules()
        if not _follows_inline(name, kwargs):
            self.outer.enqueue(name, **kwargs)
            return
        as_list = _AS_LIST.get(name)
        if as_list is not None and _follows_inline(as_list[0], kwargs):
            name, item, plural = as_list
            kwargs = {**_except(kwargs, item), plural: [kwargs[item]]}
        merged = _MERGED_LISTS.get(name)
        for waiting_name, waiting in self.pending:
            if waiting_name != name:
                continue
            if waiting == kwargs:
                return  # the same request twice (two deliveries of one customer) runs once
            if merged is not None and _except(waiting, merged) == _except(kwargs, merged):
                # One run for the group: a tag write for several customers is one request.
                waiting[merged] = sorted({*waiting[merged], *kwargs[merged]})
                return
        self.pending.append((name, dict(kwargs)))

    def run(self) -> int:
        """Run the waiting follow-ups (and theirs) in order; returns how many ran here."""
        done = 0
        while self.pending:
            name, kwargs = self.pending.pop(0)
            try:
                _REGISTRY[name].fn(self, **kwargs)
                done += 1
            except Exception:
                if self.runtime is None:
                    raise
                log.warning("follow-up %s failed here; queued for retries", name, exc_info=True)
                self.outer.enqueue(name, **kwargs)
        return done


def run_now(ctx: Context, name: str, **kwargs: Any) -> Any:
    """Run task ``name`` in this thread (the CLI and tests use it for deterministic steps).

    A task declared with a lock waits for it (a process-local lock: inline runs have no queue to
    come back through).
    """
    load_task_modules()
    spec = _REGISTRY[name]
    if spec.lock is None:
        return spec.fn(ctx, **kwargs)
    with _local_lock(spec.lock.format(**kwargs)):
        return spec.fn(ctx, **kwargs)


_LOCAL_LOCKS: dict[str, threading.RLock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


@contextmanager
def _local_lock(key: str) -> Iterator[None]:
    # Re-entrant: an inline reconcile may run an inline initial sync of the same shop.
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.setdefault(key, threading.RLock())
    with lock:
        yield


@contextmanager
def shop_lock(ctx: Context, kind: str, shop_id: int) -> Iterator[None]:
    """Hold ``{kind}:{shop_id}`` for the block: cluster-wide through the queue's storage (raises
    ``TaskLockedException`` when another worker holds it), process-local and waiting when inline.
    """
    key = f"{kind}:{shop_id}"
    if ctx.runtime is None:
        with _local_lock(key):
            yield
    else:
        with ctx.runtime.lease(key):
            yield


class LeaseLock:
    """A lock in huey's key/value storage that expires unless its holder keeps renewing it.

    Huey's own ``lock_task`` never expires, so a worker killed mid-task would hold its shop's lock
    forever. Here the value names the owner and a deadline; a heartbeat thread pushes the deadline
    on while the holder lives, and a later taker may remove a lock whose deadline passed.
    """

    def __init__(self, huey: Huey, key: str, ttl: float = LOCK_TTL) -> None:
        self.huey = huey
        self.key = f"{huey.name}.lease.{key}"
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _value(self) -> bytes:
        return json.dumps({"owner": self.owner, "until": time.time() + self.ttl}).encode()

    def acquire(self) -> None:
        storage = self.huey.storage
        if storage.put_if_empty(self.key, self._value()):
            self._start_heartbeat()
            return
        held = storage.peek_data(self.key)
        if held is not EmptyData and _deadline(held) < time.time():
            # The holder stopped renewing (killed): take the lock over, unless someone else
            # already did between our read and this pop.
            popped = storage.pop_data(self.key)
            if popped is not EmptyData and bytes(popped) != bytes(held):
                storage.put_if_empty(self.key, popped)
            elif storage.put_if_empty(self.key, self._value()):
                log.warning("took over expired lock %s", self.key)
                self._start_heartbeat()
                return
        raise TaskLockedException(f"unable to acquire lock {self.key}")

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease:{self.key}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.huey.storage.put_data(self.key, self._value())
            except Exception:  # a blip of the queue storage; the next beat tries again
                log.warning("could not renew lock %s", self.key, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = self.huey.storage.peek_data(self.key)
        if held is not EmptyData and _owner(held) == self.owner:
            self.huey.storage.delete_data(self.key)

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _decode(value: Any) -> dict[str, Any]:
    try:
        raw = bytes(value).decode() if isinstance(value, bytes | memoryview) else str(value)
        data = json.loads(raw)
        return data if isinstance(data, dict) else {}
    except (ValueError, UnicodeDecodeError):
        return {}


def _deadline(value: Any) -> float:
    # A value we cannot read (say huey's own lock value "1") never expires by itself.
    return float(_decode(value).get("until", float("inf")))


def _owner(value: Any) -> str | None:
    owner = _decode(value).get("owner")
    return str(owner) if owner is not None else None


_shop_domains: dict[int, str] = {}


def _shop_domain(ctx: Context, shop_id: Any) -> str | None:
    """The domain of ``shop_id`` for log lines (cached: a shop's id never changes domain)."""
    try:
        key = int(shop_id)
    except (TypeError, ValueError):
        return None
    if key not in _shop_domains:
        from shopify_app.db.models import Shop

        try:
            with ctx.sessions() as session:
                domain = session.scalar(select(Shop.domain).where(Shop.id == key))
        except Exception:
            return None
        if domain is None:
            return None
        _shop_domains[key] = domain
    return _shop_domains[key]


def load_task_modules() -> None:
    """Import every module that declares tasks."""
    for module in TASK_MODULES:
        importlib.import_module(module)


class _SqliteStorage(SqliteStorage):
    """Huey's SQLite queue, with a plain read before taking the lock to pop a key, and
    ``synchronous=NORMAL``.

    Huey pops a task's revoke flag after every task; flags are almost never there (Goldpan
    revokes nothing), yet each pop took the queue's exclusive lock and committed. The read
    answers "nothing" without it, as huey's own ``dequeue`` does for an empty queue.

    Huey leaves SQLite's default ``synchronous=FULL``: an fsync on every enqueue and dequeue
    (two per webhook). In WAL mode NORMAL still survives any crash of the processes; only a
    power cut may lose the last tasks queued, and what they pointed at is durable in the app's
    database and queued again from there (``webhooks.requeue_stale``, the daily recompute,
    ``resume_syncs`` at start) — the app's own database runs NORMAL for the same reason.
    """

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def pop_data(self, key: str) -> Any:
        if not self.has_data_for_key(key):
            return EmptyData
        return super().pop_data(key)


def make_huey(settings: Settings, *, immediate: bool = False) -> Huey:
    """The huey instance settings ask for: Redis when ``REDIS_URL`` is set, else a SQLite file."""
    if immediate:
        return MemoryHuey("goldpan", immediate=True)
    if settings.redis_url:
        return RedisHuey("goldpan", url=settings.redis_url)
    settings.ensure_local_dirs()
    return SqliteHuey("goldpan", filename=settings.huey_path, storage_class=_SqliteStorage)


class Runtime:
    """Declared tasks bound to one huey instance."""

    def __init__(self, ctx: Context, huey: Huey) -> None:
        load_task_modules()
        self.ctx = ctx
        self.huey = huey
        self._tasks: dict[str, Any] = {}
        ctx.runtime = self
        for name, spec in _REGISTRY.items():
            self._tasks[name] = self._bind(name, spec)

    def _bind(self, name: str, spec: _Spec) -> Any:
        ctx = self.ctx

        def run(task: Any = None, **kwargs: Any) -> None:
            # huey keeps every non-None result until someone reads it; nobody does.
            job = f"{name}#{getattr(task, 'id', '?')}"
            shop = _shop_domain(ctx, kwargs["shop_id"]) if "shop_id" in kwargs else None
            with logs.bind(shop=shop, job=job):
                if spec.schedule is not None:
                    if self._claim_periodic(name):
                        spec.fn(ctx, **kwargs)
                elif spec.lock is None:
                    spec.fn(ctx, **kwargs)
                else:
                    self._run_locked(name, spec, spec.lock.format(**kwargs), kwargs)

        run.__name__ = name.replace(".", "_")
        if spec.schedule is not None:
            return self.huey.periodic_task(crontab(**spec.schedule), name=name, context=True)(run)
        return self.huey.task(
            retries=spec.retries, retry_delay=spec.retry_delay, name=name, context=True
        )(run)

    def _run_locked(self, name: str, spec: _Spec, key: str, kwargs: dict[str, Any]) -> None:
        """Run under lease ``key``; when it is held, come back later (once per arguments).

        The marker ``waiting`` says a copy with these arguments is already scheduled to run after
        the holder; that copy clears it before it tries the lock, so a request arriving at any
        moment is always followed by a run that starts after it, and requests arriving while one
        copy waits coalesce into it.
        """
        deferred = bool(kwargs.pop(_DEFERRED, False))
        digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:16]
        waiting = f"{self.huey.name}.waiting.{name}.{digest}"
        storage = self.huey.storage
        if deferred:
            storage.delete_data(waiting)
        try:
            lease = LeaseLock(self.huey, key, self.ctx.settings.job_lock_ttl)
            lease.acquire()
        except TaskLockedException:
            if storage.put_if_empty(waiting, b"1"):
                log.info("%s is busy; %s runs again in %.0f s", key, name, LOCK_RETRY_DELAY)
                self._tasks[name].schedule(
                    kwargs={**kwargs, _DEFERRED: True}, delay=LOCK_RETRY_DELAY
                )
            return
        try:
            spec.fn(self.ctx, **kwargs)
        finally:
            lease.release()

    def _claim_periodic(self, name: str) -> bool:
        """Whether this run of periodic ``name`` is the cluster's one for this minute.

        Only a worker started with ``--scheduler`` enqueues periodic tasks; should two run the
        scheduler by mistake, the first claim of the minute wins and the other copy does nothing.
        """
        slot = int(time.time() // 60)
        storage = self.huey.storage
        if not storage.put_if_empty(f"{self.huey.name}.periodic.{name}.{slot}", b"1"):
            log.info("periodic %s already ran this minute elsewhere", name)
            return False
        for old in (slot - 2, slot - 3):  # claims older than the scheduler's tick are dead
            storage.delete_data(f"{self.huey.name}.periodic.{name}.{old}")
        return True

    def enqueue(self, name: str, **kwargs: Any) -> None:
        """Queue task ``name`` with keyword arguments (JSON-able values only)."""
        self._tasks[name](**kwargs)

    def enqueue_in(self, delay: float, name: str, **kwargs: Any) -> None:
        """Queue task ``name`` to run ``delay`` seconds from now (polling, backoff)."""
        self._tasks[name].schedule(kwargs=kwargs, delay=delay)

    def enqueue_soon(self, delay: float, name: str, **kwargs: Any) -> None:
        """Queue task ``name`` in ``delay`` seconds, from a timer in this process.

        For waits under a second: huey's schedule (:meth:`enqueue_in`) is durable but looked
        at once a second. This one is lost with the process, so only for work that is queued
        again from elsewhere anyway.
        """
        timer = threading.Timer(delay, self.enqueue, (name,), kwargs)
        timer.daemon = True
        timer.start()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A cluster-wide lock (per-shop sync/recompute); raises ``TaskLockedException`` if held.

        A lease (:class:`LeaseLock`): a holder killed with ``kill -9`` loses it after
        :data:`LOCK_TTL` seconds instead of blocking its shop forever.
        """
        with LeaseLock(self.huey, key, self.ctx.settings.job_lock_ttl):
            yield

    lease = lock

    def consumer(self, workers: int = 2, *, scheduler: bool = True) -> Any:
        """A huey consumer for this runtime (``run()`` blocks; ``start()``/``stop()`` don't).

        ``scheduler``: this consumer enqueues the periodic tasks. Exactly one process per cluster
        should (``shopify-app worker --scheduler``, or the single-process ``serve``).
        """
        # Everything loaded so far (modules, the Admin schema, compiled SQL) lives as long as
        # the process: out of the collector's sight, a full collection no longer walks those
        # ~150k objects (~50 ms each time, several times a minute under webhook load).
        gc.collect()
        gc.freeze()
        return self.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=scheduler,
            check_worker_health=True,
            # Redis blocks in BRPOP until a task arrives. Huey's SQLite queue is polled, and by
            # default an idle thread backs off to 10 s between polls: a webhook arriving then
            # would wait that long. Polling at most every POLL_MAX_DELAY costs a few cheap reads.
            initial_delay=POLL_DELAY,
            max_delay=POLL_MAX_DELAY,
        )


__all__ = [
    "FOLLOW_UPS",
    "LOCK_TTL",
    "SHOP_LOCKS",
    "Context",
    "FollowUps",
    "LeaseLock",
    "Runtime",
    "TaskLockedException",
    "load_task_modules",
    "make_huey",
    "periodic",
    "run_now",
    "shop_lock",
    "task",
]
