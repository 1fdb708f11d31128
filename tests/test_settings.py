from __future__ import annotations

import pytest

from shopify_app.errors import ConfigError
from shopify_app.settings import Settings

BASE = {"SHOPIFY_API_KEY": "k", "SHOPIFY_API_SECRET": "s", "TOKEN_ENCRYPTION_KEY": "x"}


@pytest.mark.parametrize(
    "missing", ["SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "TOKEN_ENCRYPTION_KEY"]
)
def test_missing_required_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == missing
    assert missing in str(info.value)


def test_cli_names_are_read() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "SCOPES": "read_orders, read_customers",
            "PORT": "4321",
            "HOST": "https://x.trycloudflare.com/",
        }
    )
    assert s.scopes == ("read_orders", "read_customers")
    assert s.port == 4321
    assert s.app_url == "https://x.trycloudflare.com"
    assert s.database_url.startswith("sqlite:///")
    assert s.redis_url is None and s.inline_worker


def test_shopify_app_url_wins_over_host() -> None:
    s = Settings.from_env(
        {**BASE, "SHOPIFY_APP_URL": "https://a.example", "HOST": "https://b.example"}
    )
    assert s.app_url == "https://a.example"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "-1"),
        ("LOG_JSON", "maybe"),
        ("SHOPIFY_APP_URL", "ftp://x"),
        ("WEBHOOK_GATHER_MS", "-5"),
        ("WEBHOOK_GATHER_MS", "60000"),
    ],
)
def test_malformed_values_are_refused_with_the_reason(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, name: value})
    assert info.value.variable == name
    assert value in str(info.value)


def test_webhook_gathering_is_read_in_milliseconds() -> None:
    assert Settings.from_env({**BASE, "WEBHOOK_GATHER_MS": "250"}).webhook_gather_ms == 250
    assert Settings.from_env({**BASE, "WEBHOOK_GATHER_MS": "0"}).webhook_gather_ms == 0


def test_secret_never_in_repr() -> None:
    s = Settings.from_env({**BASE, "SHOPIFY_API_SECRET": "very-secret-value"})
    assert "very-secret-value" not in repr(s)


def test_redis_url_turns_off_inline_worker() -> None:
    s = Settings.from_env({**BASE, "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert not s.inline_worker
