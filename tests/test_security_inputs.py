"""Bounded input (issue 16): request bodies, JSON, ids and settings over real HTTP through
``create_app``, a property test throwing random and oversized settings at the API, and the
files ``analyze`` reads."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.cli import main
from shopify_app.db.models import Shop
from shopify_app.errors import CsvError, InputError
from shopify_app.jobs import Context
from shopify_app.segments import crosssell, library, limits, rules
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import DatasetBuilder, day_number, product_key_for_title
from shopify_app.segments.library.reasons import Reason
from shopify_app.server.api.request import MAX_JSON_DEPTH
from shopify_app.server.middleware import MAX_API_BODY
from shopify_app.sync.orders_csv import MAX_LINE_CHARS, read_orders
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

    # Under the cap the endpoint answers as usual, here about the list itself.
    small = json.dumps({"settings": {"custom_segments": [rule_segment("s", emails[:101])]}})
    answer = put_raw(server, shop, small.encode())
    assert answer.status_code == 400
    assert answer.json()["field"] == "custom_segments[0].rules[0].value"


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


# --- settings limits -------------------------------------------------------------------------


def test_the_reported_huge_not_in_list_is_refused_with_its_path_and_limit(
    server: str, shop: Shop, sessions: sessionmaker[Session]
) -> None:
    before = stored_settings(sessions, shop.id)
    client = ApiClient(server, shop.domain)
    values = [f"x{i}@example.com" for i in range(limits.MAX_LIST_ITEMS + 1)]
    r = client.put("/settings", {"settings": {"custom_segments": [rule_segment("h", values)]}})
    assert r.status_code == 400
    assert r.json() == {
        "error": (
            f"custom_segments[0].rules[0].value has {len(values)} items; "
            f"at most {limits.MAX_LIST_ITEMS} are allowed"
        ),
        "field": "custom_segments[0].rules[0].value",
    }
    long_name = {"handle": "long", "name": "n" * 300, "bought": ["a"], "never": ["b"]}
    r = client.put("/settings", {"settings": {"cross_sell": [long_name]}})
    assert r.status_code == 400 and r.json()["field"] == "cross_sell[0].name"
    assert str(limits.MAX_TEXT_CHARS) in r.json()["error"]
    assert stored_settings(sessions, shop.id) == before


def test_total_settings_size_is_capped(
    server: str, shop: Shop, sessions: sessionmaker[Session]
) -> None:
    before = stored_settings(sessions, shop.id)
    values = [f"{i:03d}-" + "v" * 36 for i in range(limits.MAX_LIST_ITEMS)]  # 4 KB a list
    segments = [rule_segment(f"s{n}", values) for n in range(20)]
    r = ApiClient(server, shop.domain).put("/settings", {"settings": {"custom_segments": segments}})
    assert r.status_code == 400
    assert r.json()["field"] == "settings" and "at most 64 KB" in r.json()["error"]
    assert stored_settings(sessions, shop.id) == before
    # Half of it fits.
    fits = {"settings": {"custom_segments": segments[:10]}}
    assert ApiClient(server, shop.domain).put("/settings", fits).status_code == 200


def test_a_rule_field_that_is_not_text_is_refused() -> None:
    with pytest.raises(InputError) as refused:
        rules.parse_custom_segment(rule_segment("t", 1, op="=", field=["city"]))  # type: ignore[arg-type]
    assert refused.value.field == "segment.rules[0].field"


def test_custom_rule_reasons_are_bounded_whatever_the_rule_holds() -> None:
    values = [f"{i:03d}" + "d" * 250 for i in range(limits.MAX_LIST_ITEMS)]
    spec = {
        "handle": "wide",
        "rules": [
            {"field": "email_domain", "op": "not_in", "value": values},
            *({"field": "city", "op": "!=", "value": "c" * 250} for _ in range(40)),
        ],
    }
    said = rules.describe(rules.parse_custom_segment(spec).root)
    assert len(said) == rules.DESCRIBE_CHARS and said.endswith("…")
    assert said.startswith("(email domain not in 000ddd")
    assert f"and {limits.MAX_LIST_ITEMS - rules.DESCRIBE_VALUES} more and city != ccc" in said

    builder = DatasetBuilder()
    index = builder.add_customer(1, email="a@shop.io", city="Athens")
    order = builder.add_order(index, 1, day_number(dt.date(2025, 6, 1)), 10.0)
    builder.add_line(order, product_key_for_title("Napkins"), "Napkins", 1)
    ev = library.evaluate(
        builder.build(), ShopConfig.from_settings({"custom_segments": [spec]}), dt.date(2025, 7, 1)
    )
    stored = ev.segments["custom-wide"].reasons[0]
    assert len(stored) < 300
    assert Reason.parse(stored) == Reason("custom", {"rule": said})


# --- the property ----------------------------------------------------------------------------

SETTING_KEYS = sorted(ShopConfig().to_settings())
UNICODE_DIGITS = st.sampled_from(["²", "٣", "߄", "௫", "１２", "Ⅻ", "½", "𝟗"])
HUGE = "__1e400__"  # written as the bare number 1e400, which json.dumps cannot produce

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(HUGE),
    st.text(max_size=20),
    UNICODE_DIGITS,
)
random_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
oversized = st.one_of(
    st.integers(limits.MAX_LIST_ITEMS + 1, 30_000).map(lambda n: ["v"] * n),
    st.integers(limits.MAX_TEXT_CHARS + 1, 300_000).map(lambda n: "t" * n),
    st.integers(MAX_JSON_DEPTH - 4, 60_000).map(lambda n: f"__deep_{n}__"),
)
text_values = st.one_of(st.text(max_size=30), UNICODE_DIGITS, st.just("a" * 400))
rule = st.fixed_dictionaries(
    {
        "field": st.one_of(st.sampled_from([*rules.NUMERIC_FIELDS, *rules.TEXT_FIELDS]), scalars),
        "op": st.one_of(st.sampled_from([*rules.NUMERIC_OPS, *rules.TEXT_OPS]), scalars),
        "value": st.one_of(scalars, st.lists(text_values, max_size=5), oversized),
    }
)
custom_segment = st.fixed_dictionaries(
    {"handle": st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), scalars)},
    optional={"name": st.one_of(text_values, scalars), "match": st.sampled_from(["all", "any"])},
).flatmap(lambda seg: st.lists(rule, min_size=0, max_size=4).map(lambda rs: {**seg, "rules": rs}))
cross_sell_rule = st.fixed_dictionaries(
    {
        "handle": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
        "bought": st.one_of(st.lists(text_values | st.integers(), max_size=3), scalars),
        "never": st.one_of(st.lists(text_values | st.integers(), max_size=3), scalars),
    },
    optional={"name": st.one_of(text_values, scalars)},
)
known_value = st.one_of(
    scalars,
    random_json,
    oversized,
    st.lists(st.one_of(st.integers(0, 13), UNICODE_DIGITS, st.just(HUGE), scalars), max_size=4),
    st.lists(custom_segment, max_size=3),
    st.lists(cross_sell_rule, max_size=3),
    st.lists(st.fixed_dictionaries({"days": scalars, "discount_percent": scalars}), max_size=6),
)
changes = st.dictionaries(
    st.one_of(st.sampled_from(SETTING_KEYS), st.text(max_size=10)), known_value, max_size=4
)
# Mostly valid changes too, so that accepted settings are read back as often as refusals.
handles = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
valid_rule = st.one_of(
    st.builds(
        lambda field, op, value: {"field": field, "op": op, "value": value},
        st.sampled_from(sorted(rules.NUMERIC_FIELDS)),
        st.sampled_from(rules.NUMERIC_OPS),
        st.floats(-1e12, 1e12) | st.integers(-(10**12), 10**12),
    ),
    st.builds(
        lambda field, op, value: {"field": field, "op": op, "value": value},
        st.sampled_from(sorted(rules.TEXT_FIELDS)),
        st.sampled_from(["in", "not_in"]),
        st.lists(text_values, min_size=0, max_size=limits.MAX_LIST_ITEMS + 5),
    ),
    st.builds(
        lambda op, value: {"field": "products", "op": op, "value": value},
        st.sampled_from(rules.PRODUCT_OPS),
        st.one_of(UNICODE_DIGITS, st.integers(-5, 2**40), st.text(min_size=1, max_size=20)),
    ),
)
valid_changes = st.fixed_dictionaries(
    {},
    optional={
        "vip_share": st.floats(0.001, 0.5),
        "region_top": st.integers(0, 20),
        "season_months": st.lists(st.integers(1, 12), min_size=1, max_size=12),
        "custom_segments": st.lists(
            st.builds(
                lambda handle, rs: {"handle": handle, "rules": rs},
                handles,
                st.lists(valid_rule, min_size=1, max_size=5),
            ),
            max_size=4,
            unique_by=lambda seg: seg["handle"],
        ),
        "cross_sell": st.lists(
            st.builds(
                lambda handle, bought, never: {"handle": handle, "bought": bought, "never": never},
                handles,
                st.lists(UNICODE_DIGITS | st.integers(0, 2**62), min_size=1, max_size=3),
                st.lists(UNICODE_DIGITS | st.text(min_size=1, max_size=9), min_size=1, max_size=3),
            ),
            max_size=3,
            unique_by=lambda rule: rule["handle"],
        ),
    },
)
payloads = st.one_of(
    valid_changes.map(lambda c: {"settings": c}),
    changes.map(lambda c: {"settings": c}),
    changes,
    random_json,
)


def encode(payload: Any) -> bytes:
    """The payload as JSON text, with the markers for 1e400 and deep nesting written out."""
    text = json.dumps(payload, allow_nan=True, ensure_ascii=False)
    text = text.replace(json.dumps(HUGE), "1e400")
    text = re.sub(r'"__deep_(\d+)__"', lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return text.encode()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=payloads)
def test_random_and_oversized_settings_never_fail_and_refusals_change_nothing(
    server: str, shop: Shop, sessions: sessionmaker[Session], payload: Any
) -> None:
    before = stored_settings(sessions, shop.id)
    r = put_raw(server, shop, encode(payload))
    assert r.status_code in (200, 400, 413), r.text
    event(f"answered {r.status_code}")
    body = r.json()
    if r.status_code == 200:
        assert ApiClient(server, shop.domain).get("/settings").status_code == 200
        with sessions.begin() as session:  # the next example starts from the defaults again
            row = session.get(Shop, shop.id)
            assert row is not None
            row.settings = before
        return
    assert isinstance(body["error"], str) and body["error"]
    assert stored_settings(sessions, shop.id) == before


# --- analyze reads regular files, line by bounded line ---------------------------------------

SAMPLE = Path(__file__).parent / "fixtures" / "orders_export_sample.csv"


def test_analyze_reads_regular_files_only(capsys: pytest.CaptureFixture[str]) -> None:
    # /dev/zero was read until the machine ran out of memory; /dev/null shows the refusal
    # without that risk (it used to be read as an empty file).
    assert main(["analyze", "/dev/null", "--json"]) == 2
    assert "/dev/null is not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("row", [1, 3])
def test_a_line_over_the_limit_is_a_clear_error_naming_its_row(tmp_path: Path, row: int) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    long_line = "a," * (MAX_LINE_CHARS // 2 + 1) + "\n"  # short fields: the csv module takes it
    export = tmp_path / "orders.csv"
    export.write_text("".join([*lines[: row - 1], long_line, *lines[row - 1 :]]), encoding="utf-8")
    with pytest.raises(CsvError) as refused:
        read_orders(export)
    assert refused.value.row == row
    assert f"row {row}: the line is longer than 1,000,000 characters" in str(refused.value)
