"""Worker threads keep one Admin client per shop across tasks, against the sandbox on loopback.

A kept client must never outlive the token it holds: a refresh or an uninstall (both bump the
shop's ``token_version``) makes the next task build a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from shopify_app.errors import TokenError
from shopify_app.shopify import auth
from shopify_app.shopify.client import thread_client
from tests.fixtures_sync import SyncEnv


@contextmanager
def statements(engine: Any) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_thread_keeps_its_client_and_reads_no_shop_row_per_request(sync_env: SyncEnv) -> None:
    env = sync_env
    first = thread_client(env.ctx, env.shop.id)
    first.execute("shop")  # the token is read and decrypted here, once
    with statements(env.ctx.engine) as seen:
        for _ in range(3):
            client = thread_client(env.ctx, env.shop.id)
            assert client is first
            assert client.execute("shop")["shop"]["name"] == "Test"
    shop_reads = [s for s in seen if "FROM shops" in s]
    # One two-column read per task (is the client still good?), never the whole row.
    assert len(shop_reads) == 3
    assert not any("shops.settings" in s or "shops.access_token," in s for s in shop_reads)

    other: list[Any] = []
    worker = threading.Thread(target=lambda: other.append(thread_client(env.ctx, env.shop.id)))
    worker.start()
    worker.join()
    assert other[0] is not first and other[0].http is not first.http


def test_a_refreshed_token_or_an_uninstall_retires_the_kept_client(sync_env: SyncEnv) -> None:
    env = sync_env
    kept = thread_client(env.ctx, env.shop.id)
    kept.execute("shop")
    auth.force_refresh(env.ctx, env.shop.id)  # another worker refreshed the token
    renewed = thread_client(env.ctx, env.shop.id)
    assert renewed is not kept
    assert renewed.execute("shop")["shop"]["name"] == "Test"
    assert thread_client(env.ctx, env.shop.id) is renewed

    auth.drop_tokens(env.ctx, env.shop.id)
    after_uninstall = thread_client(env.ctx, env.shop.id)
    assert after_uninstall is not renewed
    with pytest.raises(TokenError) as refused:
        after_uninstall.execute("shop")
    assert refused.value.code == "uninstalled"
