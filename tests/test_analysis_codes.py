"""``shopify-app analyze --codes``: win-back results from an export, the page's numbers.

The fixture is a small export built for this: lapses and comebacks on known days (as of
2025-06-30, tiers 60 days at 10% and 90 days at 15%):
a lapses into tier 1 on 03-11 and comes back with COMEBACK10-ABCD on 04-01 (45.00);
b lapses into tiers 1 and 2 and comes back without a code on 04-20 (30.00);
c lapses into both and never comes back; d comes back with COMEBACK15-WXYZ on 05-15 (25.00);
e and f lapse late; g's SPRING5 order is not a win-back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopify_app.cli import main

WINBACK = Path(__file__).parent / "fixtures" / "orders_export_winback.csv"
ARGS = ["analyze", str(WINBACK), "--as-of", "2025-06-30"]


def test_codes_give_redemptions_recoveries_and_cohorts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--json", "--codes", "comeback10-abcd,COMEBACK15-WXYZ"]) == 0
    report = json.loads(capsys.readouterr().out)["results"]
    tiers = {t["segment"]: t for t in report["tiers"]}
    one, two = tiers["lapsed-tier-1"], tiers["lapsed-tier-2"]
    assert (one["codes"], one["redemptions"], one["redemption_revenue"]) == (
        ["COMEBACK10-ABCD"],
        1,
        45.0,
    )
    assert (one["entered"], one["recovered"], one["recovered_revenue"]) == (6, 3, 100.0)
    assert (two["redemptions"], two["redemption_revenue"]) == (1, 25.0)
    assert (two["recovered"], two["recovered_revenue"]) == (2, 55.0)
    march = next(
        c for c in report["cohorts"] if (c["segment"], c["month"]) == ("lapsed-tier-1", "2025-03")
    )
    assert march["open"] is False
    assert (march["treated"]["customers"], march["treated"]["repurchased"]) == (3, 2)
    assert march["treated"]["revenue_per_customer"] == pytest.approx(75 / 3)
    assert march["held_out"]["customers"] == 0  # an export does not say who was held out


def test_readable_results_and_a_foreign_code_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*ARGS, "--codes", "COMEBACK10-ABCD"]) == 0
    out = capsys.readouterr().out
    assert (
        "lapsed-tier-1  COMEBACK10-ABCD       1  USD 45.00       6          3     USD 100.00" in out
    )
    assert "not enough customers yet" in out
    assert main([*ARGS]) == 0
    assert "Win-back codes" not in capsys.readouterr().out  # only when asked for
    assert main([*ARGS, "--codes", "SPRING5"]) == 2
    assert "'SPRING5' is not a win-back code of a lapsed tier" in capsys.readouterr().err
