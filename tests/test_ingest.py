"""The bulk ingest's write paths and its typed decode, on a real database.

Large batches go in by the thousand rows per statement (SQLite: multi-row ``VALUES``;
PostgreSQL: ``COPY``), small ones through ``executemany``; both must store exactly the same
values, down to SQLite's storage classes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import inspect, text

from shopify_app import db
from shopify_app.db import write_engine
from shopify_app.db.models import Shop, SyncRun
from shopify_app.jobs import Context
from shopify_app.states import SyncRunKind, SyncRunStatus
from shopify_app.sync import ingest, rows
from tests.conftest import fresh_database
from tests.fixtures_scaleout import wait_until
from tests.fixtures_sync import bulk_customer, bulk_store, gid

AWKWARD_NAMES = ['Zoë "Z" O\'Brien', "李小龍", "back\\slash", "tab\there", "emoji 🎉", "", None]


def _awkward_customers(count: int) -> list[dict[str, Any]]:
    customers = []
    for n in range(1, count + 1):
        name = AWKWARD_NAMES[n % len(AWKWARD_NAMES)]
        customers.append(
            bulk_customer(
                n,
                firstName=name,
                tags=["vip", 'quote"d', "ü"] if n % 3 == 0 else [],
                numberOfOrders=str(n % 9),
                amountSpent={"amount": f"{n * 1.37:.2f}", "currencyCode": "EUR"},
            )
        )
    # An id near the largest JSON integer Shopify uses.
    customers.append(bulk_customer(2**53 - 1))
    return customers


def _lines(objects: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(o).encode() for o in objects]


def _stored(ctx: Any, shop_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of the shop, with SQLite's storage class of each column."""
    sqlite = ctx.engine.dialect.name == "sqlite"
    stored = {}
    with ctx.engine.connect() as conn:
        for table, columns in rows.COLUMNS.items():
            picked = [c for c in columns if c != "shop_id"]
            if sqlite:
                picked += [f"typeof({c})" for c in picked]
            found = conn.execute(
                text(f"SELECT {', '.join(picked)} FROM {table} WHERE shop_id = :s ORDER BY id"),
                {"s": shop_id},
            )
            stored[table] = [tuple(r) for r in found]
    return stored


def _write(ctx: Any, shop_id: int, lines: list[bytes], batch_lines: int) -> None:
    for start in range(0, len(lines), batch_lines):
        batch = rows.Batch.empty()
        for line in lines[start : start + batch_lines]:
            rows.parse_line(shop_id, line, batch)
        with write_engine(ctx.engine).begin() as conn:
            ingest.write_batch(conn, batch)


def test_bulk_statements_store_what_executemany_stores(ctx, make_shop) -> None:
    store = bulk_store(customers=20, orders=300)
    lines = _lines(_awkward_customers(300) + store["orders"] + store["products"])
    one_statement, row_by_row = make_shop(), make_shop()
    _write(ctx, one_statement.id, lines, batch_lines=len(lines))  # every table >= threshold
    _write(ctx, row_by_row.id, lines, batch_lines=ingest.BULK_ROWS // 4)
    big = _stored(ctx, one_statement.id)
    assert len(big["customers"]) == 301 and len(big["line_items"]) == 600
    assert big == _stored(ctx, row_by_row.id)
    names = {r[1] for r in big["customers"]}
    assert set(AWKWARD_NAMES) <= names
    # Written again, every row is an update of itself: nothing changes.
    _write(ctx, one_statement.id, lines, batch_lines=len(lines))
    assert _stored(ctx, one_statement.id) == big


def test_a_batch_repeating_an_older_copy_keeps_the_newer_row(ctx, make_shop) -> None:
    shop = make_shop()
    newer = bulk_customer(9, updated="2026-10-02T00:00:00Z", firstName="New")
    older = bulk_customer(9, updated="2026-10-01T00:00:00Z", firstName="Old")
    filler = _awkward_customers(ingest.BULK_ROWS)[10:]
    _write(ctx, shop.id, _lines([newer, *filler, older]), batch_lines=10_000)
    with ctx.engine.connect() as conn:
        name = conn.scalar(
            text("SELECT first_name FROM customers WHERE shop_id = :s AND id = 9"), {"s": shop.id}
        )
    assert name == "New"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"id": 7}, "$.id"),
        ({"quantity": "two"}, "$.quantity"),
        ({"discountedTotalSet": {"shopMoney": {"amount": "a lot"}}}, "$.discountedTotalSet"),
        ({"product": {"id": None}}, "$.product.id"),
    ],
)
def test_a_line_not_shaped_like_the_document_is_refused(change: dict, where: str) -> None:
    line = {
        "id": gid("LineItem", 1),
        "quantity": 1,
        "__parentId": gid("Order", 1),
        **change,
    }
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `{where}")):
        rows.parse_line(1, json.dumps(line), rows.Batch.empty())


def test_decimal_and_counter_strings_are_numbers() -> None:
    batch = rows.Batch.empty()
    rows.parse_line(1, json.dumps(bulk_customer(3, numberOfOrders="12")), batch)
    rows.parse_line(1, json.dumps(bulk_store(customers=1, orders=1)["orders"][0]), batch)
    [customer] = batch.rows["customers"]
    assert customer[14:16] == (12, 120.5)
    assert batch.rows["orders"][0][10:12] == (59.9, "EUR")


def _secondary_indexes(engine: Any) -> set[str]:
    inspector = inspect(engine)
    return {ix["name"] for table in rows.COLUMNS for ix in inspector.get_indexes(table)}


def test_a_first_import_builds_secondary_indexes_at_the_end(ctx, tmp_path: Path) -> None:
    expected = {ix.name for table in ingest.TABLES.values() for ix in table.indexes}
    with fresh_database(tmp_path) as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        try:
            fresh = Context(ctx.settings, engine, db.make_sessionmaker(engine), ctx.cipher)
            assert _secondary_indexes(engine) == expected
            with fresh.sessions.begin() as session:
                shop = Shop(domain="first.myshopify.com", settings={})
                session.add(shop)
                session.flush()
                run = SyncRun(
                    shop_id=shop.id,
                    kind=SyncRunKind.INITIAL,
                    resource="orders",
                    status=SyncRunStatus.INGESTING,
                )
                session.add(run)
            store = bulk_store(customers=20, orders=300)
            lines = _lines(store["orders"])
            during: list[set[str]] = []

            def checkpoint() -> int:
                with fresh.sessions() as session:
                    return session.get(SyncRun, run.id).checkpoint

            def dies_after(n: int) -> Iterator[bytes]:
                for i, line in enumerate(lines):
                    if i == n:
                        wait_until(lambda: checkpoint() > 0, 30, "the first batch")
                        during.append(_secondary_indexes(engine))
                        raise KeyboardInterrupt("worker killed")
                    yield line

            with pytest.raises(KeyboardInterrupt):
                ingest.ingest_lines(fresh, run.id, shop.id, dies_after(400), batch_lines=100)
            # Not there while the first batches were written; built again after the failure.
            deferred = {"ix_orders_shop_customer", "ix_line_items_shop_order"}
            assert during == [expected - deferred]
            assert _secondary_indexes(engine) == expected
            # A worker killed with no chance to build them: the resumed ingest does.
            with engine.begin() as conn:
                for name in deferred:
                    conn.exec_driver_sql(f"DROP INDEX {name}")
            start = checkpoint()
            assert start == 400  # the batches read before the kill, all committed
            # The resumed part holds line items only: the run's resource says orders are filled.
            lines = lines[:start] + [line for line in lines[start:] if b"LineItem" in line]
            done = ingest.ingest_lines(
                fresh, run.id, shop.id, lines[start:], start=start, batch_lines=100
            )
            assert done == len(lines)
            assert _secondary_indexes(engine) == expected
            stored = {k: len(v) for k, v in _stored(fresh, shop.id).items()}
            assert stored["line_items"] == 600 and stored["customers"] == 0
        finally:
            engine.dispose()


def test_a_first_import_repeating_rows_across_batches_still_upserts(ctx, tmp_path: Path) -> None:
    # On PostgreSQL a first import COPYs straight into the empty tables; a row seen again in a
    # later batch collides, and that batch (and the rest) must merge instead.
    store = bulk_store(customers=20, orders=120)
    lines = _lines(store["orders"])
    changed = [
        json.dumps({**json.loads(line), "title": "Renamed"}).encode()
        for line in lines[:50]
        if b"LineItem" in line
    ]
    with fresh_database(tmp_path) as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        try:
            fresh = Context(ctx.settings, engine, db.make_sessionmaker(engine), ctx.cipher)
            with fresh.sessions.begin() as session:
                shop = Shop(domain="again.myshopify.com", settings={})
                session.add(shop)
                session.flush()
                run = SyncRun(
                    shop_id=shop.id,
                    kind=SyncRunKind.INITIAL,
                    resource="orders",
                    status=SyncRunStatus.INGESTING,
                )
                session.add(run)
            done = ingest.ingest_lines(
                fresh, run.id, shop.id, [*lines, *changed, *lines[-30:]], batch_lines=100
            )
            assert done == len(lines) + len(changed) + 30
            stored = _stored(fresh, shop.id)
            assert len(stored["orders"]) == 120 and len(stored["line_items"]) == 240
            titles = [r[5] for r in stored["line_items"]]  # id, order_id, ..., sku, title
            assert titles.count("Renamed") == len(changed) > 0
        finally:
            engine.dispose()
