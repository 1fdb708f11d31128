"""Shopify orders-export CSV import: parsing, customers by email, errors naming row and column."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from shopify_app.errors import CsvError, InputError
from shopify_app.segments.dataset import day_date
from shopify_app.sync.orders_csv import parse_datetime, read_orders

SAMPLE = Path(__file__).parent / "fixtures" / "orders_export_sample.csv"
HEADER = [
    "Name",
    "Email",
    "Financial Status",
    "Accepts Marketing",
    "Total",
    "Discount Code",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Billing Name",
    "Billing Company",
    "Billing Country",
    "Cancelled at",
    "Payment Method",
    "Refunded Amount",
]


def write(tmp_path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    path = tmp_path / "orders_export.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


def order(
    name: str, email: str = "a@x.io", created: str = "2025-03-03 10:00:00 -0500", **extra: str
) -> dict[str, str]:
    return {
        "Name": name,
        "Email": email,
        "Created at": created,
        "Total": "10.00",
        "Lineitem quantity": "1",
        "Lineitem name": "Napkins",
        **extra,
    }


def test_sample_export() -> None:
    imported = read_orders(SAMPLE)
    ds = imported.dataset
    assert imported.orders == 20
    assert imported.skipped_no_email == 1
    assert imported.currency == "USD"
    emails = ds.info["email"]
    # Trimmed and lowercased: " Alice@HotelLux.com " is alice@hotellux.com.
    assert "alice@hotellux.com" in emails
    alice = emails.index("alice@hotellux.com")
    assert ds.info["zip"][alice] == "02134"  # the export's leading apostrophe is dropped
    assert ds.info["province_code"][alice] == "MA"
    assert ds.info["email_marketing_state"][alice] == "SUBSCRIBED"
    erin = emails.index("erin@yahoo.com")
    assert ds.info["email_marketing_state"][erin] == "NOT_SUBSCRIBED"
    kostas = emails.index("kostas@example.gr")
    assert ds.info["first_name"][kostas] == "Κώστας"
    # Net of refunds: 60.00 - 10.00.
    k_orders = ds.order_total[ds.order_customer == kostas]
    assert k_orders.tolist() == [50.0]
    carol = emails.index("carol@gmail.com")
    assert (ds.order_customer == carol).sum() == 4
    # Multi-line order: both lines belong to carol's first order.
    first = int(ds.order_start[carol])
    titles = sorted(ds.product_titles[int(p)] for p in ds.line_product[ds.line_order == first])
    assert titles == ["Dinner Napkins", "Linen Tablecloth"]
    # The order date is the merchant's local date from the export's offset.
    assert day_date(int(ds.order_day[first])) == dt.date(2025, 3, 1)


def test_parse_datetime_formats() -> None:
    assert parse_datetime("2024-03-03 23:30:00 -0500").date() == dt.date(2024, 3, 3)
    assert parse_datetime("2024-03-03T23:30:00Z").tzinfo is not None
    assert parse_datetime("2024-03-03") == dt.datetime(2024, 3, 3)


def test_not_an_orders_export(tmp_path: Path) -> None:
    path = write(tmp_path, [{"Handle": "napkins"}], header=["Handle", "Title", "Variant SKU"])
    with pytest.raises(CsvError) as info:
        read_orders(path)
    assert info.value.row == 1 and info.value.column == "Name"
    assert "not a Shopify orders export" in str(info.value)


def test_missing_column(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "Lineitem quantity"]
    path = write(tmp_path, [order("#1")], header=header)
    with pytest.raises(CsvError) as info:
        read_orders(path)
    assert (info.value.row, info.value.column) == (1, "Lineitem quantity")


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        ({"Created at": "03/03/2025 10am"}, "Created at"),
        ({"Total": "ten dollars"}, "Total"),
        ({"Lineitem quantity": "2.5"}, "Lineitem quantity"),
        ({"Lineitem price": "abc"}, "Lineitem price"),
        ({"Refunded Amount": "n/a"}, "Refunded Amount"),
        ({"Cancelled at": "yesterday"}, "Cancelled at"),
        ({"Name": ""}, "Name"),
    ],
)
def test_bad_values_name_row_and_column(tmp_path: Path, bad: dict[str, str], column: str) -> None:
    rows = [order("#1"), order("#2"), {**order("#3"), **bad}]
    path = write(tmp_path, rows)
    with pytest.raises(CsvError) as info:
        read_orders(path)
    assert info.value.row == 4  # header is row 1
    assert info.value.column == column
    assert f"row 4, column {column!r}" in str(info.value)
    assert isinstance(info.value, InputError)


def test_continuation_rows_and_guest_orders(tmp_path: Path) -> None:
    rows = [
        order("#1", "A@X.io "),
        {"Name": "#1", "Lineitem quantity": "3", "Lineitem name": "Placemats"},
        order("#2", ""),
        order("#3", "b@x.io", **{"Cancelled at": "2025-03-04 10:00:00 -0500"}),
        order("#4", "c@x.io", **{"Payment Method": "bogus"}),
        order("#5", "a@x.io", created="2025-04-03 10:00:00 -0500"),
    ]
    imported = read_orders(write(tmp_path, rows))
    ds = imported.dataset
    assert ds.info["email"] == ["a@x.io"]
    assert ds.n_orders == 2
    assert sorted(ds.line_quantity.tolist()) == [1, 1, 3]
    assert (imported.skipped_no_email, imported.skipped_cancelled, imported.skipped_test) == (
        1,
        1,
        1,
    )


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CsvError) as info:
        read_orders(empty)
    assert info.value.row == 1
    only_header = write(tmp_path, [])
    with pytest.raises(CsvError, match="no orders"):
        read_orders(only_header)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"Name,Email\n\xff\xfe\x00bad")
    with pytest.raises(CsvError):
        read_orders(binary)
    with pytest.raises(CsvError, match="cannot read"):
        read_orders(tmp_path / "missing.csv")


def test_progress_callback(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    read_orders(SAMPLE, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]
