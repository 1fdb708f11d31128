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
import requests
from sqlalchemy import event

from shopify_app.errors import TokenError
from shopify_app.shopify import auth
from shopify_app.shopify.client import ThreadSession, thread_client
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


def test_what_the_caller_just_read_of_the_shop_saves_the_read(sync_env: SyncEnv) -> None:
    env = sync_env
    kept = thread_client(env.ctx, env.shop.id)
    kept.execute("shop")
    with statements(env.ctx.engine) as seen:
        same = thread_client(env.ctx, env.shop.id, seen=(kept.shop, kept.token_version))
    assert same is kept and not [s for s in seen if "FROM shops" in s]
    # A version the kept client did not start with (a refresh, an uninstall): a new client.
    renewed = thread_client(env.ctx, env.shop.id, seen=(kept.shop, kept.token_version + 1))
    assert renewed is not kept


def test_the_thread_session_reads_the_environment_once_per_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session, plain = ThreadSession(), requests.Session()
    urls = [
        "https://a.myshopify.com/admin/api/2026-10/graphql.json",
        "https://direct.example/file.jsonl",
        "https://a.myshopify.com/admin/api/2026-10/graphql.json?x=1",
    ]
    for url in urls:
        expected = plain.merge_environment_settings(url, {}, None, None, None)
        assert session.merge_environment_settings(url, {}, None, None, None) == expected
    # Read once: the process's environment is taken as it was.
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example:3128")
    again = session.merge_environment_settings(urls[0], {}, None, None, None)
    assert again["proxies"]["https"] == "http://proxy.example:3128"
    assert again["verify"] == "/etc/ssl/certs/ca-certificates.crt"
    # Proxies given with a request still win, as with requests.
    given = {"https": "http://given.example:1"}
    assert (
        session.merge_environment_settings(urls[0], dict(given), None, None, None)["proxies"][
            "https"
        ]
        == given["https"]
    )


def _as_sent(prepared: requests.PreparedRequest) -> tuple[Any, ...]:
    """What goes on the wire, a multipart body's random boundary aside."""
    boundary = str(prepared.headers.get("Content-Type", "")).partition("boundary=")[2]
    text = str(prepared.body)
    headers = {k: str(v) for k, v in prepared.headers.items()}
    if boundary:
        text = text.replace(boundary, "B")
        headers = {k: v.replace(boundary, "B") for k, v in headers.items()}
    return prepared.method, prepared.url, headers, text


def test_the_thread_session_prepares_requests_as_requests_does() -> None:
    session, plain = ThreadSession(), requests.Session()
    url = "https://a.myshopify.com/admin/api/2026-10/graphql.json"
    graphql = requests.Request(
        "post", url, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": "t"}
    )
    upload = requests.Request(
        "POST", "https://uploads.example/", data=[("key", "k")], files={"file": ("f", b"{}\n")}
    )
    for request in (graphql, upload):
        ours, theirs = session.prepare_request(request), plain.prepare_request(request)
        assert _as_sent(ours) == _as_sent(theirs)
    # A cookie a response set is sent back, as requests does.
    session.cookies.set("seen", "1", domain="a.myshopify.com")
    assert session.prepare_request(graphql).headers["Cookie"] == "seen=1"
