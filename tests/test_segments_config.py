"""Shop config and custom-segment rules: round trips, defaults, errors that name the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from shopify_app.errors import InputError
from shopify_app.segments import library, rules
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import DatasetBuilder, day_number, product_key_for_title
from shopify_app.segments.library import reasons


def test_defaults_follow_the_playbook() -> None:
    cfg = ShopConfig.from_settings({})
    assert cfg.tag_prefix == "goldpan-"
    assert cfg.consent_policy == "subscribed"
    assert (cfg.business_units_per_order, cfg.business_units_per_window) == (36, 72)
    assert [t.days for t in cfg.lapsed_tiers] == [60, 90]
    assert cfg.vip_share == 0.10
    assert cfg.season_months == (11, 12)


def test_round_trip_keeps_unknown_keys_out() -> None:
    settings = {
        "tag_prefix": "gp:",
        "lapsed_tiers": [
            {"days": 45, "discount_percent": 5},
            {"days": 120, "discount_percent": 20},
        ],
        "season_months": [12, 11, 12],
        "cross_sell": [{"handle": "mats", "name": "Mats", "bought": ["placemat"], "never": [123]}],
        "custom_segments": [
            {"handle": "big", "rules": [{"field": "total_spent", "op": ">=", "value": 100}]}
        ],
        "someone_elses_key": True,
    }
    cfg = ShopConfig.from_settings(settings)
    assert cfg.season_months == (11, 12)
    assert cfg.cross_sell[0].never == ("123",)
    again = ShopConfig.from_settings(cfg.to_settings())
    assert again == cfg
    assert "someone_elses_key" not in cfg.to_settings()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"tag_prefix": ""}, "tag_prefix"),
        ({"tag_prefix": "has space"}, "tag_prefix"),
        ({"consent_policy": "everyone"}, "consent_policy"),
        ({"vip_share": 2}, "vip_share"),
        ({"vip_share": "10%"}, "vip_share"),
        ({"business_units_per_order": 0}, "business_units_per_order"),
        ({"business_units_per_order": True}, "business_units_per_order"),
        ({"lapsed_tiers": []}, "lapsed_tiers"),
        ({"lapsed_tiers": [{"days": 60}, {"days": "ninety"}]}, "lapsed_tiers[1].days"),
        ({"lapsed_tiers": [{"days": 90}, {"days": 60}]}, "lapsed_tiers[1].days"),
        (
            {"lapsed_tiers": [{"days": 60, "discount_percent": 95}]},
            "lapsed_tiers[0].discount_percent",
        ),
        ({"season_months": [13]}, "season_months[0]"),
        (
            {"cross_sell": [{"handle": "Bad Handle", "bought": ["a"], "never": ["b"]}]},
            "cross_sell[0].handle",
        ),
        ({"cross_sell": [{"handle": "x", "bought": [], "never": ["b"]}]}, "cross_sell[0].bought"),
        (
            {"cross_sell": [{"handle": "x", "bought": ["a"], "never": ["b"]}] * 2},
            "cross_sell[1].handle",
        ),
        # The rule that is wrong is named, not the first one.
        (
            {
                "cross_sell": [
                    {"handle": "ok", "bought": ["a"], "never": ["b"]},
                    {"handle": "bad", "bought": [], "never": ["b"]},
                ]
            },
            "cross_sell[1].bought",
        ),
        (
            {"cross_sell": [{"handle": "x", "bought": ["a", "123"], "never": ["b", "123"]}]},
            "cross_sell[0].never[1]",
        ),
        ({"repeat_min_orders": 4, "true_fan_min_orders": 3}, "true_fan_min_orders"),
        ({"custom_segments": [{"handle": "x", "rules": []}]}, "custom_segments[0].rules"),
        (
            {
                "custom_segments": [
                    {"handle": "x", "rules": [{"field": "shoe_size", "op": "=", "value": 1}]}
                ]
            },
            "custom_segments[0].rules[0].field",
        ),
        (
            {
                "custom_segments": [
                    {"handle": "x", "rules": [{"field": "total_spent", "op": "~", "value": 1}]}
                ]
            },
            "custom_segments[0].rules[0].op",
        ),
        (
            {
                "custom_segments": [
                    {"handle": "x", "rules": [{"field": "total_spent", "op": ">", "value": "a"}]}
                ]
            },
            "custom_segments[0].rules[0].value",
        ),
        (
            {
                "custom_segments": [
                    {
                        "handle": "x",
                        "match": "some",
                        "rules": [{"field": "city", "op": "=", "value": "a"}],
                    }
                ]
            },
            "custom_segments[0].match",
        ),
        (
            {
                "custom_segments": [
                    {
                        "handle": "x",
                        "rules": [
                            {"match": "any", "rules": [{"field": "city", "op": "in", "value": "a"}]}
                        ],
                    }
                ]
            },
            "custom_segments[0].rules[0].rules[0].value",
        ),
        (
            {
                "custom_segments": [
                    {"handle": "x", "rules": [{"field": "city", "op": "=", "value": "a"}]}
                ]
                * 2
            },
            "custom_segments[1].handle",
        ),
    ],
)
def test_validation_names_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings(settings)
    assert info.value.field == field


def test_a_change_holds_a_new_prefix_to_the_rules_but_keeps_an_old_one() -> None:
    # Saved before prefixes had to be 3+ characters ending in a separator: still readable, and
    # other settings can change without touching it.
    legacy = ShopConfig.from_settings({"tag_prefix": "gp"})
    assert legacy.tag_prefix == "gp"
    assert legacy.changed({"vip_share": 0.2}).tag_prefix == "gp"
    assert legacy.changed({"tag_prefix": "gp-"}).tag_prefix == "gp-"
    for prefix in ("VIP", "s", "gp:", "gp"):
        with pytest.raises(InputError) as info:
            ShopConfig().changed({"tag_prefix": prefix})
        assert info.value.field == "tag_prefix", prefix
    with pytest.raises(InputError) as info:
        ShopConfig().changed({"no_such_setting": 1})
    assert info.value.field == "no_such_setting"


def test_rules_nesting_limit() -> None:
    spec: dict[str, Any] = {"field": "city", "op": "=", "value": "a"}
    for _ in range(6):
        spec = {"match": "any", "rules": [spec]}
    with pytest.raises(InputError, match="nest"):
        rules.parse_custom_segment({"handle": "deep", **spec})


def test_custom_segment_and_or_over_fields_metrics_and_products() -> None:
    as_of = dt.date(2025, 6, 30)
    builder = DatasetBuilder()
    people = [
        ("ny-big@x.io", "NY", "New York", 300.0, "Dinner Napkins"),
        ("ny-small@x.io", "NY", "Buffalo", 20.0, "Tea Napkins"),
        ("ca-big@x.io", "CA", "Los Angeles", 500.0, "Dinner Napkins"),
        ("nyc-small@x.io", "NY", "New York", 30.0, "Placemats"),
    ]
    for n, (email, province, city, total, title) in enumerate(people):
        index = builder.add_customer(
            n + 1, email=email, province_code=province, city=city, country_code="US"
        )
        oi = builder.add_order(index, n + 1, day_number(dt.date(2025, 6, 1)), total)
        builder.add_line(oi, product_key_for_title(title), title, 1)
    ds = builder.build()
    spec = {
        "handle": "ny-vip",
        "name": "New York big spenders or napkin buyers",
        "match": "all",
        "rules": [
            {"field": "province", "op": "=", "value": "ny"},
            {
                "match": "any",
                "rules": [
                    {"field": "total_spent", "op": ">=", "value": 100},
                    {"field": "products", "op": "includes", "value": "placemat"},
                ],
            },
        ],
    }
    cfg = ShopConfig.from_settings({"custom_segments": [spec]})
    ev = library.evaluate(ds, cfg, as_of)
    seg = ev.segments["custom-ny-vip"]
    assert [ds.info["email"][i] for i in seg.members] == ["ny-big@x.io", "nyc-small@x.io"]
    assert seg.definition.kind == "custom"
    said = reasons.render(seg.reasons[0])
    assert said.startswith("matches ")
    assert "province code = ny" in said and "net spend >= 100" in said


def test_rule_operators() -> None:
    columns = {"total_spent": np.array([10.0, 50.0, np.nan]), "city": ["paris", "lyon", ""]}

    def run(rule: dict[str, Any]) -> list[bool]:
        seg = rules.parse_custom_segment({"handle": "t", "rules": [rule]})
        return rules.evaluate(seg.root, columns, lambda ref: np.zeros(3, bool)).tolist()

    assert run({"field": "total_spent", "op": "<", "value": 20}) == [True, False, False]
    assert run({"field": "total_spent", "op": "!=", "value": 10}) == [False, True, False]
    assert run({"field": "city", "op": "in", "value": ["Paris", "Nice"]}) == [True, False, False]
    assert run({"field": "city", "op": "not_contains", "value": "y"}) == [True, False, True]
    assert run({"field": "products", "op": "excludes", "value": "x"}) == [True, True, True]


def test_errors_carry_a_code_and_the_limits_the_page_words_them_with() -> None:
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings({"vip_share": 0.9})
    assert (info.value.field, info.value.code) == ("vip_share", "range")
    assert info.value.params == {"min": 0.001, "max": 0.5}
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings({"lapsed_tiers": [{"days": 60, "discount_percent": 95}]})
    assert (info.value.code, info.value.params) == ("range", {"min": 0, "max": 90})
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings({"repeat_min_orders": 5, "true_fan_min_orders": 4})
    assert (info.value.code, info.value.params) == ("true_fan_below_repeat", {"repeat": 5})
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings(
            {"cross_sell": [{"handle": "x", "bought": ["Tea Towel"], "never": ["tea towel"]}]}
        )
    assert (info.value.code, info.value.params) == ("same_product", {"product": "tea towel"})
    # Equal bars are fine: a true fan is a repeat customer with at least as many orders.
    assert ShopConfig.from_settings({"repeat_min_orders": 3}).true_fan_min_orders == 3


@pytest.mark.parametrize(
    ("name", "bought", "handle"),
    [
        ("생일 선물", ["123"], "saengil-seonmul"),
        ("Ελληνικά δώρα", ["a"], "ellinika-dora"),
        ("Napkins → placemats!", ["a"], "napkins-placemats"),
        ("🎁", ["a"], "gift"),
        # No name: the bought product words name it.
        ("", ["123", "Linen Napkin"], "linen-napkin"),
        ("", ["123"], "rule"),
    ],
)
def test_a_new_rule_gets_a_handle_from_its_name_in_any_script(
    name: str, bought: list[str], handle: str
) -> None:
    cfg = ShopConfig.from_settings(
        {"cross_sell": [{"handle": "", "name": name, "bought": bought, "never": ["b"]}]}
    )
    assert cfg.cross_sell[0].handle == handle
    assert cfg.cross_sell[0].name == (name or handle)


def test_a_new_rule_handle_steps_around_the_rules_already_there() -> None:
    cfg = ShopConfig.from_settings(
        {
            "cross_sell": [
                {"name": "생일 선물", "bought": ["a"], "never": ["b"]},
                {"handle": "saengil-seonmul", "bought": ["a"], "never": ["b"]},
                {"name": "생일 선물", "bought": ["c"], "never": ["b"]},
            ]
        }
    )
    assert [r.handle for r in cfg.cross_sell] == [
        "saengil-seonmul-2",
        "saengil-seonmul",
        "saengil-seonmul-3",
    ]


def test_a_cross_sell_reason_names_picked_products_by_title_not_id() -> None:
    builder = DatasetBuilder()
    day = day_number(dt.date(2025, 6, 1))
    for n, title in enumerate(["Dinner Napkins", "Placemats"]):
        index = builder.add_customer(n + 1, email=f"c{n}@x.io")
        builder.add_line(builder.add_order(index, n + 1, day, 20.0), n + 101, title, 1)
    ds = builder.build()
    rule = {"handle": "mats", "name": "Mats", "bought": ["101"], "never": ["102", "tea towel"]}
    cfg = ShopConfig.from_settings({"cross_sell": [rule]})
    seg = library.evaluate(ds, cfg, dt.date(2025, 6, 30)).segments["cross-sell-mats"]
    said = reasons.render(seg.reasons[0])
    assert "Placemats" in said and "tea towel" in said and "102" not in said
    # A custom segment's product conditions too.
    spec = {
        "handle": "napkins",
        "rules": [
            {"field": "products", "op": "includes", "value": "101"},
            {"field": "products", "op": "excludes", "value": "tea towel"},
        ],
    }
    cfg = ShopConfig.from_settings({"custom_segments": [spec]})
    seg = library.evaluate(ds, cfg, dt.date(2025, 6, 30)).segments["custom-napkins"]
    said = reasons.render(seg.reasons[0])
    assert said == "matches (bought Dinner Napkins and never bought tea towel)"


def test_a_tags_condition_tests_the_customers_shopify_tags_as_shopify_compares_them() -> None:
    builder = DatasetBuilder()
    day = day_number(dt.date(2025, 6, 1))
    # Tags arrive as the loader reads them: JSON text (SQLite), a decoded list, or nothing.
    for n, tags in enumerate(['["Wholesale", "staff"]', ["wholesale "], None, "[]"]):
        index = builder.add_customer(n + 1, email=f"t{n}@x.io", tags=tags)
        builder.add_line(builder.add_order(index, n + 1, day, 20.0), 1, "Napkins", 1)
    ds = builder.build()
    specs = [
        {"handle": "trade", "rules": [{"field": "tags", "op": "has", "value": "WHOLESALE"}]},
        {"handle": "retail", "rules": [{"field": "tags", "op": "has_not", "value": "wholesale"}]},
    ]
    ev = library.evaluate(
        ds, ShopConfig.from_settings({"custom_segments": specs}), dt.date(2025, 6, 30)
    )
    assert [ds.info["email"][i] for i in ev.segments["custom-trade"].members] == [
        "t0@x.io",
        "t1@x.io",
    ]
    assert [ds.info["email"][i] for i in ev.segments["custom-retail"].members] == [
        "t2@x.io",
        "t3@x.io",
    ]
    assert reasons.render(ev.segments["custom-trade"].reasons[0]) == "matches tagged wholesale"


def test_a_tags_condition_on_a_goldpan_tag_is_refused() -> None:
    spec = {"handle": "loop", "rules": [{"field": "tags", "op": "has", "value": "Goldpan-VIP"}]}
    with pytest.raises(InputError) as info:
        ShopConfig.from_settings({"custom_segments": [spec]})
    assert (info.value.field, info.value.code) == ("custom_segments[0].rules[0].value", "own_tag")
    # Under another prefix the same words are the merchant's own tag.
    ShopConfig.from_settings({"tag_prefix": "gp-", "custom_segments": [spec]})
    seg = rules.parse_custom_segment(spec, "segment")
    with pytest.raises(InputError, match="Goldpan writes"):
        rules.own_tag_problem(seg, "segment", "gp-", ["First order", "goldpan-vip "])
    for bad in ({"op": "=", "value": "x"}, {"op": "has", "value": "  "}):
        with pytest.raises(InputError):
            rules.parse_custom_segment({"handle": "t", "rules": [{"field": "tags", **bad}]})


def test_a_new_custom_segment_gets_its_handle_from_its_name_in_any_script() -> None:
    rule = [{"field": "total_spent", "op": ">=", "value": 1}]
    cfg = ShopConfig.from_settings(
        {
            "custom_segments": [
                {"handle": "segment", "name": "Old", "rules": rule},
                {"name": "Πιστοί πελάτες", "rules": rule},
                {"handle": "", "name": "", "rules": rule},
            ]
        }
    )
    assert [c["handle"] for c in cfg.custom_segments] == ["segment", "pistoi-pelates", "segment-2"]
