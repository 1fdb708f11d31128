"""Background jobs on huey: SQLite-backed in one process by default, Redis-backed to scale out.

Modules declare work with :func:`task` (and :func:`periodic` for schedules); a task is a plain
function ``fn(ctx, **kwargs)`` that receives the :class:`Context` (settings, sessions, cipher)
so it needs no globals. :class:`Runtime` binds the declared tasks to a huey instance chosen by
settings; the web process enqueues through it, ``shopify-app worker`` consumes.

Task names are strings (``"sync.initial"``) so the web process can enqueue without importing
the worker's heavy modules, and a name is stable across deploys for tasks already queued.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.exceptions import TaskLockedException
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.crypto import TokenCipher
from shopify_app.settings import Settings

log = logging.getLogger(__name__)

# Modules whose import declares tasks. A module that defines a task must be listed here.
TASK_MODULES: tuple[str, ...] = (
    "shopify_app.webhooks",
    "shopify_app.tagging",
    "shopify_app.sync",
    "shopify_app.meta.audiences",
    "shopify_app.segments.recompute",
)

TaskFn = Callable[..., Any]


@dataclass(frozen=True)
class _Spec:
    fn: TaskFn
    retries: int
    retry_delay: int
    schedule: dict[str, str] | None = None


_REGISTRY: dict[str, _Spec] = {}


def task(name: str, *, retries: int = 3, retry_delay: int = 5) -> Callable[[TaskFn], TaskFn]:
    """Declare ``fn(ctx, **kwargs)`` as the background task ``name``."""

    def register(fn: TaskFn) -> TaskFn:
        _REGISTRY[name] = _Spec(fn, retries, retry_delay)
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


def run_now(ctx: Context, name: str, **kwargs: Any) -> Any:
    """Run task ``name`` in this thread (the CLI and tests use it for deterministic steps)."""
    load_task_modules()
    return _REGISTRY[name].fn(ctx, **kwargs)


def has_task(name: str) -> bool:
    """Whether task ``name`` is declared (a module not written yet declares nothing)."""
    load_task_modules()
    return name in _REGISTRY


def load_task_modules() -> None:
    """Import every module that declares tasks."""
    for module in TASK_MODULES:
        importlib.import_module(module)


def make_huey(settings: Settings, *, immediate: bool = False) -> Huey:
    """The huey instance settings ask for: Redis when ``REDIS_URL`` is set, else a SQLite file."""
    if immediate:
        return MemoryHuey("goldpan", immediate=True)
    if settings.redis_url:
        return RedisHuey("goldpan", url=settings.redis_url)
    settings.ensure_local_dirs()
    return SqliteHuey("goldpan", filename=settings.huey_path)


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

        def run(**kwargs: Any) -> None:
            # huey keeps every non-None result until someone reads it; nobody does.
            spec.fn(ctx, **kwargs)

        run.__name__ = name.replace(".", "_")
        if spec.schedule is not None:
            return self.huey.periodic_task(crontab(**spec.schedule), name=name)(run)
        return self.huey.task(retries=spec.retries, retry_delay=spec.retry_delay, name=name)(run)

    def enqueue(self, name: str, **kwargs: Any) -> None:
        """Queue task ``name`` with keyword arguments (JSON-able values only)."""
        self._tasks[name](**kwargs)

    def enqueue_in(self, delay: float, name: str, **kwargs: Any) -> None:
        """Queue task ``name`` to run ``delay`` seconds from now (polling, backoff)."""
        self._tasks[name].schedule(kwargs=kwargs, delay=delay)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A cluster-wide lock (per-shop sync/recompute); raises ``TaskLockedException`` if held."""
        with self.huey.lock_task(key):
            yield

    def consumer(self, workers: int = 2, *, scheduler: bool = True) -> Any:
        """A huey consumer for this runtime (``run()`` blocks; ``start()``/``stop()`` don't)."""
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=scheduler, check_worker_health=True
        )


__all__ = [
    "Context",
    "Runtime",
    "TaskLockedException",
    "has_task",
    "load_task_modules",
    "make_huey",
    "periodic",
    "run_now",
    "task",
]
