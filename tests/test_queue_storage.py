"""Huey's SQLite queue as Goldpan configures it (``jobs.make_huey``), on a real file."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from huey import MemoryHuey
from huey.constants import EmptyData

from shopify_app import jobs, logs
from shopify_app.settings import Settings


def test_popping_an_absent_key_needs_no_write_lock(settings: Settings) -> None:
    huey = jobs.make_huey(settings.with_overrides(redis_url=None))
    storage = huey.storage
    storage.put_data("flag", b"1")
    other = sqlite3.connect(settings.huey_path, isolation_level=None, timeout=0.1)
    try:
        # Another process holds the queue's write lock (enqueuing, say). Huey pops every
        # task's revoke flag after the task; that flag is nearly always absent.
        other.execute("BEGIN EXCLUSIVE")
        assert storage.pop_data("revoke-flag-never-set") is EmptyData
        other.execute("COMMIT")
        # A present key is still popped once, under the lock.
        assert bytes(storage.pop_data("flag")) == b"1"
        assert storage.pop_data("flag") is EmptyData
    finally:
        other.close()
        storage.close()


def test_the_queue_syncs_to_disk_at_checkpoints_not_on_every_task(settings: Settings) -> None:
    huey = jobs.make_huey(settings.with_overrides(redis_url=None))
    storage = huey.storage
    try:
        storage.enqueue(b"task", 0)
        conn = storage.conn
        # WAL with synchronous=NORMAL (1): durable across process crashes, no fsync per commit.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert bytes(storage.dequeue()) == b"task"
    finally:
        storage.close()


def test_the_log_keeps_task_failures_not_a_line_per_task_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Huey's "Executing …" / "… executed in …" pair per task is left out below DEBUG (at 50
    webhooks a second it was most of the worker's log); a failing task is still logged."""
    root, huey_log = logging.getLogger(), logging.getLogger("huey")
    saved = (root.handlers[:], root.level, huey_log.filters[:])
    queue = MemoryHuey("log-test", immediate=True)

    @queue.task()
    def fine() -> None:
        return None

    @queue.task()
    def broken() -> None:
        raise ValueError("no such thing")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "huey"]

    try:
        logs.configure_logging(settings.with_overrides(log_level="INFO"))
        logs.configure_logging(settings.with_overrides(log_level="INFO"))  # idempotent
        assert sum(isinstance(f, logs.TaskLinesFilter) for f in huey_log.filters) == 1
        caplog.set_level(logging.INFO)
        fine()
        broken()
        assert not [m for m in lines() if m.startswith("Executing") or " executed in " in m]
        assert any("Unhandled exception in task" in m for m in lines())
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        fine()
        assert any(m.startswith("Executing") for m in lines())
        assert any(" executed in " in m for m in lines())
    finally:
        root.handlers[:], huey_log.filters[:] = saved[0], saved[2]
        root.setLevel(saved[1])
