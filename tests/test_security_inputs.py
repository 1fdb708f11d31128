"""Bounded input (issue 16): request bodies, JSON and ids, over real HTTP through
``create_app``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Shop
from shopify_app.jobs import Context
from shopify_app.segments import crosssell
from shopify_app.segments.dataset import DatasetBuilder, day_number
from shopify_app.server.api.request import MAX_JSON_DEPTH
from shopify_app.server.middleware import MAX_API_BODY
from tests.fixtures_api import ApiClient, seed_shop, serving
from tests.fixtures_auth import session_token
from tests.test_api import RecordingRuntime


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    """The app on loopback; what the API queues is recorded, not run."""
    app_ctx = Context(ctx.settings, ctx.engine, ctx.sessions, ctx.cipher)
    app_ctx.runtime = RecordingRuntime()  # type: ignore[assignment]
    with serving(app_ctx) as url:
        yield url


@pytest.fixture
def shop(make_shop: Any) -> Shop:
    shop: Shop = make_shop()
    return shop


def stored_settings(sessions: sessionmaker[Session], shop_id: int) -> Any:
    with sessions() as session:
        row = session.get(Shop, shop_id)
        assert row is not None
        return row.settings


def put_raw(server: str, shop: Shop, body: Any, **headers: str) -> requests.Response:
    """``PUT /api/settings`` with exactly ``body`` (bytes, or a generator: sent chunked)."""
    return requests.put(
        f"{server}/api/settings",
        data=body,
        headers={
            "Authorization": f"Bearer {session_token(shop.domain)}",
            "Content-Type": "application/json",
            **headers,
        },
        timeout=30,
    )


def rule_segment(handle: str, value: Any, op: str = "not_in", field: str = "email") -> dict:
    return {"handle": handle, "rules": [{"field": field, "op": op, "value": value}]}


# --- request bodies --------------------------------------------------------------------------


def test_api_bodies_over_the_cap_are_refused_before_they_are_read(
    server: str, shop: Shop, sessions: sessionmaker[Session]
) -> None:
    before = stored_settings(sessions, shop.id)
    emails = [f"customer{i}@example.com" for i in range(20_000)]
    big = json.dumps({"settings": {"custom_segments": [rule_segment("big", emails)]}}).encode()
    assert len(big) > MAX_API_BODY

    by_length = put_raw(server, shop, big)
    assert by_length.status_code == 413
    assert by_length.json() == {
        "error": "the request body is larger than 256 KB",
        "field": "body",
        "limit": MAX_API_BODY,
    }
    # Sent chunked, without a Content-Length: counted while it streams.
    chunked = put_raw(server, shop, (big[i : i + 16_384] for i in range(0, len(big), 16_384)))
    assert "Content-Length" not in chunked.request.headers
    assert chunked.status_code == 413 and chunked.json()["field"] == "body"
    assert stored_settings(sessions, shop.id) == before

    # Under the cap the endpoint answers as usual.
    small = json.dumps({"settings": {"custom_segments": [rule_segment("s", emails[:101])]}})
    assert put_raw(server, shop, small.encode()).status_code == 200


# --- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_and_settings_stay_readable(
    server: str, shop: Shop, sessions: sessionmaker[Session], literal: str
) -> None:
    before = stored_settings(sessions, shop.id)
    rule = '{"handle": "spenders", "rules": [{"field": "total_spent", "op": ">", "value": %s}]}'
    body = '{"settings": {"custom_segments": [%s]}}' % (rule % literal)
    r = put_raw(server, shop, body.encode())
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body" and "finite" in r.json()["error"]
    assert stored_settings(sessions, shop.id) == before
    assert ApiClient(server, shop.domain).get("/settings").status_code == 200


def test_season_months_beyond_float_range_are_refused(server: str, shop: Shop) -> None:
    r = put_raw(server, shop, b'{"settings": {"season_months": [1e309]}}')
    assert r.status_code == 400 and r.json()["field"] == "body"


def test_integers_beyond_64_bits_are_refused(server: str, shop: Shop) -> None:
    r = put_raw(server, shop, b'{"settings": {"milestone_amount": %d}}' % 10**400)
    assert r.status_code == 400 and "64 bits" in r.json()["error"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 50_000])
def test_deeply_nested_json_is_refused_with_a_message(server: str, shop: Shop, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    r = put_raw(server, shop, b'{"settings": {"season_months": ' + nested.encode() + b"}}")
    assert r.status_code == 400
    assert r.json() == {
        "error": f"request body nests deeper than {MAX_JSON_DEPTH} levels",
        "field": "body",
    }


def test_nesting_up_to_the_limit_reaches_the_endpoint(server: str, shop: Shop) -> None:
    depth = MAX_JSON_DEPTH - 2  # the body object and "settings" take two levels
    nested = "[" * depth + "]" * depth
    r = put_raw(server, shop, b'{"settings": {"season_months": ' + nested.encode() + b"}}")
    assert r.status_code == 400 and r.json()["field"].startswith("season_months")


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/data-requests/%C2%B2", "request_id"),  # superscript two: int() raises
        ("/data-requests/%D9%A3", "request_id"),  # Arabic-Indic three: int() says 3
        ("/segments/%D9%A3", "segment_id"),
        ("/segments/1_0", "segment_id"),  # int() takes underscores
        ("/audit?before=%D9%A3", "before"),
        ("/audit?before=99999999999999999999999999", "before"),
    ],
)
def test_ids_are_ascii_digits(server: str, shop: Shop, path: str, field: str) -> None:
    r = ApiClient(server, shop.domain).get(path)
    assert r.status_code == 400 and r.json()["field"] == field


def test_a_member_cursor_beyond_64_bits_is_refused(
    server: str, shop: Shop, sessions: sessionmaker[Session]
) -> None:
    ids = seed_shop(sessions, shop.id, customers=20, history=False)
    r = ApiClient(server, shop.domain).get(
        f"/segments/{ids['vip']}/members", after="99999999999999999999999"
    )
    assert r.status_code == 400 and r.json()["field"] == "after"


def test_unicode_digit_product_references_keep_settings_readable(server: str, shop: Shop) -> None:
    client = ApiClient(server, shop.domain)
    rule = {"handle": "sq", "name": "Squares", "bought": ["²"], "never": ["٣"]}
    assert client.put("/settings", {"settings": {"cross_sell": [rule]}}).status_code == 200
    r = client.get("/settings")
    assert r.status_code == 200 and r.json()["products"] == {}


def test_product_references_are_ids_only_in_ascii_digits() -> None:
    builder = DatasetBuilder()
    index = builder.add_customer(1, email="a@x.io")
    order = builder.add_order(index, 1, day_number(dt.date(2025, 6, 1)), 10.0)
    builder.add_line(order, 3, "Gift Box ²", 1)
    ds = builder.build()
    assert crosssell.products_matching(ds, "3") == {3}
    assert crosssell.products_matching(ds, "٣") == set()  # not product 3
    assert crosssell.products_matching(ds, "²") == {3}  # title words
    assert crosssell.products_matching(ds, "--3") == set()
