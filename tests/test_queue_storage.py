"""Huey's SQLite queue as Goldpan configures it (``jobs.make_huey``), on a real file."""

from __future__ import annotations

import sqlite3

from huey.constants import EmptyData

from shopify_app import jobs
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
