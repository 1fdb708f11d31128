"""Fixtures for install/auth/app/webhook tests: Shopify's OAuth side on loopback, real signing.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from huey import MemoryHuey
from starlette.applications import Starlette

from goldpan_sandbox.oauth import OAuthServer
from goldpan_sandbox.server import RunningServer, start_server
from shopify_app.jobs import Context, Runtime
from shopify_app.settings import Settings
from tests.conftest import TEST_API_KEY, TEST_API_SECRET


class OAuthSandbox:
    """An :class:`OAuthServer` served on loopback; ``base`` is ``SHOPIFY_BASE_URL``."""

    def __init__(self, server: OAuthServer, running: RunningServer) -> None:
        self.server = server
        self.running = running
        self.base = f"{running.url}/shops/{{shop}}"


@pytest.fixture
def oauth_sandbox() -> Iterator[OAuthSandbox]:
    """Shopify's OAuth endpoints on a loopback port."""
    server = OAuthServer(TEST_API_KEY, TEST_API_SECRET)
    running = start_server(Starlette(routes=server.routes))
    try:
        yield OAuthSandbox(server, running)
    finally:
        running.stop()


@pytest.fixture
def sandbox_settings(settings: Settings, oauth_sandbox: OAuthSandbox) -> Settings:
    """Test settings pointing ``SHOPIFY_BASE_URL`` at the loopback OAuth server."""
    return settings.with_overrides(shopify_base_url=oauth_sandbox.base)


@pytest.fixture
def queued_ctx(sandbox_settings: Settings, ctx: Context) -> Context:
    """A context whose enqueued tasks wait in an in-memory queue instead of running inline."""
    queued = Context(
        settings=sandbox_settings, engine=ctx.engine, sessions=ctx.sessions, cipher=ctx.cipher
    )
    Runtime(queued, MemoryHuey("goldpan-test", immediate=False))
    return queued


def session_token(shop: str, *, secret: str = TEST_API_SECRET, **overrides: Any) -> str:
    """A session token signed like App Bridge's (HS256); ``overrides`` replace claims
    (a value of None removes the claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": TEST_API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now,
        "iat": now,
        "jti": "jti-1",
        "sid": "sid-1",
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def pending_tasks(ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    """(name, kwargs) of the tasks waiting in a :func:`queued_ctx` queue."""
    assert ctx.runtime is not None
    return [(task.name, dict(task.kwargs or {})) for task in ctx.runtime.huey.pending()]
