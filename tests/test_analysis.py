"""``shopify-app analyze``: JSON shape, readable tables, Meta lists, errors and exit codes."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from shopify_app.cli import main
from shopify_app.segments import metrics

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "orders_export_sample.csv"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(SAMPLE), "--as-of", "2025-06-30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_of"] == "2025-06-30"
    assert set(report["model"]["bgnbd"]) >= {"r", "alpha", "a", "b", "time_unit"}
    assert report["model"]["bgnbd"]["time_unit"] in ("day", "week")
    assert set(report["model"]["gamma_gamma"]) >= {"p", "q", "gamma"}
    assert report["model"]["status"] == "fallback"  # nine customers: too few for the model
    m = report["metrics"]
    assert m["version"] == metrics.VERSION
    assert list(m["headline"]) == list(metrics.DEFINITIONS)
    assert set(m["year_before"]) == {"as_of", *metrics.DEFINITIONS}
    for key in (
        "clv",
        "cohorts",
        "first_product",
        "discount_codes",
        "days_between_orders_histogram",
        "rfm",
        "repeat_rate_trend",
        "previous_period",
        "backtest",
    ):
        assert key in m, key
    assert (
        m["headline"]["customers"] == 9
    )  # judy ordered after --as-of; grace cancelled; heidi a test
    segments = report["segments"]
    assert set(segments["business-buyers"]["customers"]) == {
        "alice@hotellux.com",
        "bob@hotellux.com",
        "frank@acme-events.com",
    }
    for handle, seg in segments.items():
        assert seg["count"] == len(seg["customers"]), handle
    assert "judy@gmail.com" not in json.dumps(segments)
    assert segments["lapsed-tier-2"]["customers"]
    assert "cross_sell_suggestions" in report


def test_readable_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(SAMPLE), "--as-of", "2025-06-30"]) == 0
    out = capsys.readouterr().out
    assert "business-buyers" in out
    assert "fallback" in out
    # Every headline figure, with its definition; amounts in the export's currency.
    for key, name in metrics.NAMES.items():
        assert name in out, key
        assert " ".join(metrics.DEFINITIONS[key].split()[:6]) in out.replace("\n  ", " "), key
    assert "Revenue                          USD 1,011.00" in out
    assert "16 orders from 9 customers counted (20 orders in the file" in out


def test_one_order_is_one_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """English plurals: a shop with one order and one customer says so."""
    one = tmp_path / "one.csv"
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, first = rows[0], next(r for r in rows[1:] if r[0] == "#1009")
    with open(one, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, first])
    assert main(["analyze", str(one), "--as-of", "2025-06-30"]) == 0
    out = capsys.readouterr().out
    assert "1 order from 1 customer counted (1 order in the file" in out
    assert "1 orders" not in out and "1 customers" not in out


def test_meta_dir_writes_hashed_lists_of_subscribed_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "meta"
    assert (
        main(["analyze", str(SAMPLE), "--as-of", "2025-06-30", "--json", "--meta-dir", str(target)])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    files = sorted(p.name for p in target.iterdir())
    assert files == sorted(f"{h}.csv" for h in report["segments"])
    with open(target / "business-buyers.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["email", "phone", "fn", "ln", "ct", "st", "zip", "country"]
    emails = {r[0] for r in rows[1:]}
    assert sha("alice@hotellux.com") in emails
    assert all(len(v) in (0, 64) for r in rows[1:] for v in r)
    with open(target / "lapsed-tier-1.csv", newline="") as fh:
        lapsed = list(csv.reader(fh))
    # erin is in the first lapsed tier (60 days) but did not accept marketing: header only.
    assert report["segments"]["lapsed-tier-1"]["customers"] == ["erin@yahoo.com"]
    assert lapsed == [["email", "phone", "fn", "ln", "ct", "st", "zip", "country"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".meta-")]  # staging removed


def test_bad_input_exits_2_naming_row_and_column_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    text = SAMPLE.read_text(encoding="utf-8").splitlines()
    fields = next(csv.reader([text[3]]))
    fields[15] = "not a date"  # "Created at"
    with open(bad, "w", newline="", encoding="utf-8") as fh:
        fh.write("\n".join(text[:3]) + "\n")
        csv.writer(fh).writerow(fields)
        fh.write("\n".join(text[4:]) + "\n")
    target = tmp_path / "meta"
    assert main(["analyze", str(bad), "--json", "--meta-dir", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "row 4" in captured.err and "'Created at'" in captured.err
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_cdnow_export_reproduces_the_published_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CDNOW sample as an orders export; --as-of the calibration end (week 39)."""
    path = tmp_path / "cdnow_orders.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["Name", "Email", "Created at", "Total", "Lineitem quantity", "Lineitem name"]
        )
        for n, line in enumerate((FIXTURES / "CDNOW_sample.txt").read_text().splitlines()):
            cid, _, ymd, cds, amount = line.split()
            day = dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
            writer.writerow(
                [f"#{n + 1}", f"c{int(cid)}@cdnow.test", f"{day} 12:00:00 -0500", amount, cds, "CD"]
            )
    assert main(["analyze", str(path), "--as-of", "1997-09-30", "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["status"] == "fitted"
    bg, gg = model["bgnbd"], model["gamma_gamma"]
    for got, published in (
        (bg["r"], 0.243),
        (bg["alpha"], 4.414),
        (bg["a"], 0.793),
        (bg["b"], 2.426),
        (bg["log_likelihood"], -9582.4),
        (gg["p"], 6.25),
        (gg["q"], 3.74),
        (gg["gamma"], 15.44),
    ):
        assert abs(got - published) <= 0.01 * abs(published), (got, published)
