"""Shopify's standard "Export orders" CSV → the segment engine's :class:`Dataset`.

The export has one row per line item; the order's own fields (email, dates, totals, billing
address, discount code, cancellation) are filled on the first row of each order and blank on
the others. Customers are identified by email, trimmed and lowercased; orders without an email
(guest checkouts, POS) cannot be marketed to and are counted but left out, as are cancelled
orders and test orders (the Bogus Gateway). Totals are net of the "Refunded Amount", and every
line of a fully refunded order (Financial Status ``refunded``) keeps no units: the export has no
per-line refunded quantity, so a partly refunded order counts its lines as sold.

The file is streamed row by row. Anything that does not look like an orders export — missing
columns, a bad date, a bad amount or quantity — raises :class:`CsvError` naming the row (the
header is row 1) and the column. Only regular files are read, a line at most
:data:`MAX_LINE_CHARS` long: a device, a pipe or a binary file fails at once instead of being
read into memory (``analyze /dev/zero`` once grew to 8 GB looking for the first line's end).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shopify_app.errors import CsvError
from shopify_app.segments.dataset import (
    Dataset,
    DatasetBuilder,
    day_number,
    net_value,
    product_key_for_title,
)

REQUIRED = ("Name", "Email", "Created at", "Total", "Lineitem quantity", "Lineitem name")
OPTIONAL = (
    "Financial Status",
    "Paid at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Discount Code",
    "Lineitem price",
    "Lineitem sku",
    "Billing Name",
    "Billing Company",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Phone",
    "Cancelled at",
    "Payment Method",
    "Refunded Amount",
    "Id",
    "Tags",
)
TEST_GATEWAYS = frozenset({"bogus", "bogus gateway"})
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")

Progress = Callable[[int, int], None]

MAX_LINE_CHARS = 1_000_000
"""The longest line read; an export's lines are a few hundred characters."""


@dataclass
class CsvImport:
    """What an import produced: the dataset and what was left out, for the summary."""

    dataset: Dataset
    rows: int = 0
    orders: int = 0
    skipped_no_email: int = 0
    skipped_cancelled: int = 0
    skipped_test: int = 0
    currency: str | None = None
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    emails: list[str] = field(default_factory=list)


def parse_datetime(text: str) -> dt.datetime:
    """A timestamp as the export writes it (``2024-03-03 14:22:10 -0500``), or ISO 8601."""
    text = text.strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _amount(text: str, row: int, column: str) -> float:
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return 0.0
    try:
        value = float(cleaned)
    except ValueError:
        raise CsvError(
            f"expected an amount like 12.50, got {text!r}", row=row, column=column
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CsvError(f"expected an amount, got {text!r}", row=row, column=column)
    return value


def _split_name(name: str) -> tuple[str | None, str | None]:
    parts = name.strip().split()
    if not parts:
        return None, None
    if len(parts) == 1:
        return parts[0], None
    return " ".join(parts[:-1]), parts[-1]


def _counting_lines(handle: io.TextIOBase, counter: list[int]) -> Iterator[str]:
    """The file's lines, at most :data:`MAX_LINE_CHARS` each; counts bytes for the progress."""
    number = 0
    while line := handle.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise CsvError(
                f"the line is longer than {MAX_LINE_CHARS:,} characters: "
                "not an orders export (export it again from Shopify)",
                row=number,
            )
        counter[0] += len(line.encode("utf-8", "replace"))
        yield line


def read_orders(path: str | Path, *, progress: Progress | None = None) -> CsvImport:
    """Stream an orders-export CSV into a :class:`CsvImport`; raises :class:`CsvError`."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise CsvError(f"{path} is not a regular file: give the path of the exported CSV")
        total_bytes = info.st_size
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CsvError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        counter = [0]
        reader = csv.reader(_counting_lines(handle, counter))
        try:
            return _read(reader, counter, total_bytes, progress)
        except UnicodeDecodeError:
            raise CsvError("the file is not UTF-8 text (export it again from Shopify)") from None
        except csv.Error as exc:
            raise CsvError(f"malformed CSV: {exc}", row=reader.line_num or None) from None


def _read(
    reader: Iterator[list[str]], counter: list[int], total_bytes: int, progress: Progress | None
) -> CsvImport:
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise CsvError("the file is empty; expected Shopify's orders export", row=1)
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CsvError(
            "not a Shopify orders export (Shopify admin → Orders → Export): "
            f"missing column {', '.join(repr(m) for m in missing)}",
            row=1,
            column=missing[0],
        )

    def get(values: list[str], name: str) -> str:
        i = columns.get(name)
        return values[i].strip() if i is not None and i < len(values) else ""

    builder = DatasetBuilder()
    result_stats = CsvImport(dataset=None)  # type: ignore[arg-type]  # filled in at the end
    emails: dict[str, int] = {}
    info_day: dict[int, int] = {}
    order_index: dict[str, int | None] = {}  # order name -> dataset order index (None: skipped)
    refunded_orders: set[str] = set()  # names of fully refunded orders: their lines keep no units
    current: str | None = None
    next_order_id = 1
    row = 1
    for values in reader:
        row += 1
        result_stats.rows += 1
        if progress is not None and row % 5000 == 0:
            progress(counter[0], total_bytes)
        if not any(v.strip() for v in values):
            continue
        name = get(values, "Name")
        if not name:
            raise CsvError("every row needs the order name", row=row, column="Name")
        first_row = name not in order_index
        if first_row:
            current = name
            created_text = get(values, "Created at")
            if not created_text:
                raise CsvError(
                    "the first row of an order needs its date", row=row, column="Created at"
                )
            try:
                created = parse_datetime(created_text)
            except ValueError:
                raise CsvError(
                    f"expected a date like 2024-03-03 14:22:10 -0500, got {created_text!r}",
                    row=row,
                    column="Created at",
                ) from None
            total = _amount(get(values, "Total"), row, "Total")
            refunded = _amount(get(values, "Refunded Amount"), row, "Refunded Amount")
            cancelled = get(values, "Cancelled at")
            if cancelled:
                try:
                    parse_datetime(cancelled)
                except ValueError:
                    raise CsvError(
                        f"expected a date, got {cancelled!r}", row=row, column="Cancelled at"
                    ) from None
            email = get(values, "Email").lower()
            if get(values, "Financial Status").lower() == "refunded":
                refunded_orders.add(name)
            day = day_number(created.date())
            result_stats.orders += 1
            if result_stats.currency is None and get(values, "Currency"):
                result_stats.currency = get(values, "Currency")
            if cancelled:
                result_stats.skipped_cancelled += 1
                order_index[name] = None
            elif get(values, "Payment Method").lower() in TEST_GATEWAYS:
                result_stats.skipped_test += 1
                order_index[name] = None
            elif not email or "@" not in email:
                result_stats.skipped_no_email += 1
                order_index[name] = None
            else:
                cid = emails.get(email)
                if cid is None:
                    cid = len(emails) + 1
                    emails[email] = cid
                    result_stats.emails.append(email)
                index = builder.add_customer(cid, email=email)
                if day >= info_day.get(cid, -(10**9)):
                    # The newest order's address and consent describe the customer now.
                    info_day[cid] = day
                    first, last = _split_name(get(values, "Billing Name"))
                    marketing = get(values, "Accepts Marketing").lower()
                    builder.set_info(
                        index,
                        first_name=first,
                        last_name=last,
                        phone=get(values, "Billing Phone") or get(values, "Phone") or None,
                        city=get(values, "Billing City") or None,
                        province_code=get(values, "Billing Province") or None,
                        zip=get(values, "Billing Zip").lstrip("'") or None,
                        country_code=get(values, "Billing Country") or None,
                        company=get(values, "Billing Company") or None,
                        email_marketing_state="SUBSCRIBED"
                        if marketing == "yes"
                        else "NOT_SUBSCRIBED",
                    )
                id_text = get(values, "Id")
                order_id = int(id_text) if id_text.isdigit() else next_order_id
                next_order_id += 1
                order_index[name] = builder.add_order(
                    index,
                    order_id,
                    day,
                    net_value(total, refunded),
                    get(values, "Discount Code").split(",")[0].strip().upper(),
                    get(values, "Billing Company") or None,
                )
                first_day = created.date()
                if result_stats.first_day is None or first_day < result_stats.first_day:
                    result_stats.first_day = first_day
                if result_stats.last_day is None or first_day > result_stats.last_day:
                    result_stats.last_day = first_day
        elif name != current:
            current = name  # rows of one order are normally adjacent; tolerate them not being
        qty_text = get(values, "Lineitem quantity")
        title = get(values, "Lineitem name")
        if not qty_text and not title:
            continue
        try:
            quantity = int(qty_text)
        except ValueError:
            raise CsvError(
                f"expected a whole number, got {qty_text!r}", row=row, column="Lineitem quantity"
            ) from None
        if quantity < 0:
            raise CsvError("quantity cannot be negative", row=row, column="Lineitem quantity")
        _amount(get(values, "Lineitem price"), row, "Lineitem price")
        oi = order_index[name]
        if oi is not None:
            kept = 0 if name in refunded_orders else quantity
            builder.add_line(oi, product_key_for_title(title), title, kept)
    if result_stats.orders == 0:
        raise CsvError("the export holds no orders", row=2)
    if progress is not None:
        progress(total_bytes, total_bytes)
    result_stats.dataset = builder.build()
    return result_stats
