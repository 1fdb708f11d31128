"""The hold-out split: stable, close to the chosen share, and different per segment."""

import pytest

from shopify_app.actions.holdout import bucket, held_out
from shopify_app.errors import InputError
from shopify_app.segments.config import ShopConfig


def test_split_is_near_the_share_and_stable() -> None:
    config = ShopConfig.from_settings({"holdouts": {"lapsed-tier-1": 0.1}})
    held = [c for c in range(20_000) if held_out(config, "lapsed-tier-1", c)]
    assert 1_850 <= len(held) <= 2_150
    assert held == [c for c in range(20_000) if held_out(config, "lapsed-tier-1", c)]


def test_segments_without_a_holdout_hold_nobody_and_segments_differ() -> None:
    config = ShopConfig.from_settings({"holdouts": {"lapsed-tier-1": 0.5}})
    assert not any(held_out(config, "vip", c) for c in range(1_000))
    same = sum((bucket("a", c) < 0.5) == (bucket("b", c) < 0.5) for c in range(4_000))
    assert 1_800 <= same <= 2_200  # independent splits agree about half the time


def test_bad_holdouts_are_refused_with_the_field() -> None:
    with pytest.raises(InputError) as bad:
        ShopConfig.from_settings({"holdouts": {"vip": 0.9}})
    assert bad.value.field == "holdouts.vip"
    with pytest.raises(InputError):
        ShopConfig.from_settings({"holdouts": {"Not A Handle": 0.1}})
    assert ShopConfig.from_settings({"holdouts": {"vip": 0}}).holdouts == {}
