"""Hold-out groups as segments: the members of a segment the stable hash holds out, each with
a tag of their own (``<prefix>holdout-<handle>``) that a discount's segment can leave out."""

from __future__ import annotations

import datetime as dt

from shopify_app.actions.holdout import held_out
from shopify_app.segments import library
from shopify_app.segments.config import ShopConfig
from tests.test_segments_library import AS_OF, members, store


def test_holdout_segment_is_the_hashed_share_of_its_segment_only() -> None:
    day = dt.date(2025, 5, 1)  # 60 days before AS_OF: lapsed tier 1
    ds = store([(f"c{i}@x.io", day, 10.0, []) for i in range(200)] + [("new@x.io", AS_OF, 5.0, [])])
    cfg = ShopConfig.from_settings({"holdouts": {"lapsed-tier-1": 0.2}})
    ev = library.evaluate(ds, cfg, AS_OF)
    tier = ev.segments["lapsed-tier-1"]
    ids = ds.customer_ids.tolist()
    emails = ds.info["email"]
    expected = {emails[i] for i in tier.members if held_out(cfg, "lapsed-tier-1", ids[i])}
    assert members(ev, "holdout-lapsed-tier-1") == expected
    assert 20 <= len(expected) <= 60  # about a fifth of 200
    assert members(ev, "holdout-lapsed-tier-1") <= members(ev, "lapsed-tier-1")
    held = ev.segments["holdout-lapsed-tier-1"]
    assert held.definition.name == "Hold-out: Lapsed 60–89 days"
    assert "held out of Lapsed 60–89 days" in library.reasons.render(held.reasons[0])

    # Without a hold-out there is no hold-out segment at all.
    plain = library.evaluate(ds, ShopConfig(), AS_OF)
    assert not [h for h in plain.segments if h.startswith("holdout-")]
