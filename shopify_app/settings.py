"""Configuration: the only module that reads the environment.

Names follow what the Shopify CLI passes to the backend (``SHOPIFY_API_KEY``,
``SHOPIFY_API_SECRET``, ``SCOPES``, ``SHOPIFY_APP_URL``/``HOST``, ``PORT``) so ``shopify app dev``
works without a translation layer. Everything else is read here once and handed around as an
immutable :class:`Settings`; no other module touches ``os.environ``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from shopify_app.errors import ConfigError

API_VERSION = "2026-10"
"""The Admin API version every request and webhook subscription is pinned to."""

META_GRAPH_VERSION = "v26.0"
"""The Meta Graph / Marketing API version."""

DEFAULT_SCOPES = (
    "read_customers,write_customers,read_orders,read_products,read_discounts,write_discounts"
)

MAX_GATHER_MS = 5000
"""The longest WEBHOOK_GATHER_MS accepted."""

_REQUIRED = ("SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "TOKEN_ENCRYPTION_KEY")


@dataclass(frozen=True)
class Settings:
    """Everything the app is configured with. Build it with :meth:`from_env`."""

    api_key: str
    api_secret: str = field(repr=False)
    token_encryption_keys: tuple[str, ...] = field(repr=False)
    app_url: str = "http://127.0.0.1:8000"
    scopes: tuple[str, ...] = tuple(DEFAULT_SCOPES.split(","))
    port: int = 8000
    database_url: str = "sqlite:///var/goldpan.sqlite3"
    redis_url: str | None = None
    huey_path: str = "var/huey.sqlite3"
    # Where Shopify lives. Production: each shop's own https://{shop} domain. The sandbox points
    # this at a loopback server; "{shop}" is replaced with the shop's domain.
    shopify_base_url: str = "https://{shop}"
    meta_app_id: str | None = None
    meta_app_secret: str | None = field(default=None, repr=False)
    meta_graph_url: str = "https://graph.facebook.com"
    meta_dialog_url: str = "https://www.facebook.com"
    log_level: str = "INFO"
    log_json: bool = True
    # Run the huey consumer inside the web process (the single-machine default).
    inline_worker: bool = True
    # GET /metrics is served only when this is set, to `Authorization: Bearer <METRICS_TOKEN>`;
    # unset, /metrics answers 404.
    metrics_token: str | None = field(default=None, repr=False)
    # Seconds a per-shop job lock outlives a worker that died holding it (JOB_LOCK_TTL).
    job_lock_ttl: float = 60.0
    # Milliseconds a shop's first webhook waits for more of the shop's to handle them as one
    # group (WEBHOOK_GATHER_MS): one recompute and one tag write for all of them. A second
    # makes groups of about three at a shop's 2.5 orders a second (benchmarks/load.py), the
    # workers' CPU per webhook falling with the group's size, while webhook -> tags p95 stays
    # under the 1.2-1.7 s it was before there was a window; 0 handles each at once.
    webhook_gather_ms: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: the process environment).

        Raises :class:`ConfigError` naming the first missing or malformed variable.
        """
        env = dict(os.environ if environ is None else environ)
        for name in _REQUIRED:
            if not env.get(name, "").strip():
                raise ConfigError(f"{name} is required but not set", variable=name)
        keys = tuple(k.strip() for k in env["TOKEN_ENCRYPTION_KEY"].split(",") if k.strip())
        app_url = (
            env.get("SHOPIFY_APP_URL") or env.get("APP_URL") or env.get("HOST") or ""
        ).strip()
        port = _int(env, "PORT", 8000)
        if not app_url:
            app_url = f"http://127.0.0.1:{port}"
        if not re.match(r"^https?://[^\s/]+", app_url):
            raise ConfigError(
                f"SHOPIFY_APP_URL must be an http(s) URL, got {app_url!r}",
                variable="SHOPIFY_APP_URL",
            )
        scopes = tuple(s.strip() for s in env.get("SCOPES", DEFAULT_SCOPES).split(",") if s.strip())
        redis_url = env.get("REDIS_URL", "").strip() or None
        return cls(
            api_key=env["SHOPIFY_API_KEY"].strip(),
            api_secret=env["SHOPIFY_API_SECRET"].strip(),
            token_encryption_keys=keys,
            app_url=app_url.rstrip("/"),
            scopes=scopes,
            port=port,
            database_url=env.get("DATABASE_URL", "").strip() or cls.database_url,
            redis_url=redis_url,
            huey_path=env.get("HUEY_PATH", "").strip() or cls.huey_path,
            shopify_base_url=env.get("SHOPIFY_BASE_URL", "").strip() or cls.shopify_base_url,
            meta_app_id=env.get("META_APP_ID", "").strip() or None,
            meta_app_secret=env.get("META_APP_SECRET", "").strip() or None,
            meta_graph_url=(env.get("META_GRAPH_URL", "").strip() or cls.meta_graph_url).rstrip(
                "/"
            ),
            meta_dialog_url=(env.get("META_DIALOG_URL", "").strip() or cls.meta_dialog_url).rstrip(
                "/"
            ),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_json=_bool(env, "LOG_JSON", True),
            inline_worker=_bool(env, "INLINE_WORKER", redis_url is None),
            metrics_token=env.get("METRICS_TOKEN", "").strip() or None,
            job_lock_ttl=float(max(1, _int(env, "JOB_LOCK_TTL", 60))),
            webhook_gather_ms=_gather_ms(env),
        )

    def shop_url(self, shop: str) -> str:
        """The base URL of ``shop``'s admin (``https://{shop}`` in production)."""
        return self.shopify_base_url.replace("{shop}", shop).rstrip("/")

    def graphql_url(self, shop: str) -> str:
        """The Admin GraphQL endpoint of ``shop`` at the pinned API version."""
        return f"{self.shop_url(shop)}/admin/api/{API_VERSION}/graphql.json"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the demo use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def ensure_local_dirs(self) -> None:
        """Create the SQLite database and huey files (and their folders) if missing, readable
        and writable by their owner only (0600).

        They hold customers' personal data and encrypted tokens; a default umask would make
        them world-readable. SQLite gives the ``-wal`` and ``-shm`` files it creates next to a
        database the database file's mode. Existing files keep theirs.
        """
        local = [self.database_url] if self.redis_url else [self.database_url, self.huey_path]
        for url_or_path in local:
            path = (
                url_or_path.removeprefix("sqlite:///").split("?", 1)[0]
                if url_or_path.startswith("sqlite:///")
                else url_or_path
            )
            if "://" in path or path in ("", ":memory:"):
                continue
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}", variable=name) from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}", variable=name)
    return value


def _gather_ms(env: Mapping[str, str]) -> int:
    value = _int(env, "WEBHOOK_GATHER_MS", Settings.webhook_gather_ms)
    if value > MAX_GATHER_MS:
        raise ConfigError(
            f"WEBHOOK_GATHER_MS must be at most {MAX_GATHER_MS} (tags would lag that long "
            f"behind every order), got {value}",
            variable="WEBHOOK_GATHER_MS",
        )
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}", variable=name)
