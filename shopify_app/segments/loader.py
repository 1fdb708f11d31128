"""The database loader: a shop's :class:`~shopify_app.segments.dataset.Dataset` from its tables.

:func:`load` reads customers, countable orders and line items with a few Core selects (no ORM
objects), in bulk and mostly as numbers: per-row Python work is what makes a million-order load
slow. On PostgreSQL a whole shop's lines aggregate on a second connection beside the customers
and orders. With :mod:`.recompute` (the writes; it shares the row helpers :func:`fetch_rows`,
:func:`columns` and :func:`many_rows`) this is the stage's I/O edge: the rest of it is pure.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    BigInteger,
    Date,
    Double,
    Integer,
    Text,
    bindparam,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from shopify_app.db.models import Customer, LineItem, Order
from shopify_app.segments.dataset import (
    CUSTOMER_FIELDS,
    Dataset,
    FloatArray,
    IntArray,
    product_key_for_title,
)


def _day_column(dialect: str, column: Any) -> Any:
    """SQL for the UTC day number of a timestamp column (converting in SQL, not per row)."""
    if dialect == "sqlite":
        # Stored as naive UTC text; julianday counts from 4714 BC, 2440587.5 is 1970-01-01.
        return cast(func.floor(func.julianday(column) - 2440587.5), Integer)
    return cast(func.floor(func.extract("epoch", column) / 86400), BigInteger)


def _first_code(raw: Any) -> str:
    """The first discount code from the stored JSON (text as :func:`load` reads it, or decoded)."""
    if raw is None or raw == "[]" or raw == []:
        return ""
    codes = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(codes, list) and codes:
        first = codes[0]
        if isinstance(first, dict):
            first = first.get("code", "")
        return str(first or "").strip().upper()
    return ""


def dialect_of(source: Session | Connection) -> str:
    """The database's dialect name, from a session or a connection."""
    return (source.dialect if isinstance(source, Connection) else source.get_bind().dialect).name


def fetch_rows(
    session: Session | Connection, query: Any, params: dict[str, Any] | None = None
) -> list[Any]:
    """All rows as the driver returns them, skipping SQLAlchemy's per-row result processing.

    The queries here need no type processing (days are computed in SQL, JSON and money are
    converted by the callers), and at a million rows the processing is most of the load time.
    """
    result = session.execute(query, params)
    cursor = getattr(result, "cursor", None)
    if cursor is None:
        return list(result.all())
    try:
        return list(cursor.fetchall())
    finally:
        result.close()


def columns(rows: list[Any], width: int) -> list[tuple[Any, ...]]:
    """Rows transposed into columns (``zip`` does it in C, unlike a comprehension per column)."""
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


@contextmanager
def many_rows() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of row tuples are built.

    Every few hundred new tuples trigger a collection that traverses the rows built so far:
    on a million-order shop that is most of the load time. Rows hold no reference cycles, and
    the collector resumes (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# How PostgreSQL's ``*send`` functions pack each kind of number (big-endian).
_PACKED = {"q": ("int8send", BigInteger, ">i8"), "i": ("int4send", Integer, ">i4"),
           "d": ("float8send", Double, ">f8")}  # fmt: skip


def fetch_number_columns(
    session: Session | Connection, columns: Sequence[tuple[Any, str]], *where: Any
) -> list[NDArray[Any]]:
    """Columns of numbers as numpy arrays, aggregated in the database into one value per column.

    ``columns`` pairs an expression with its kind: ``q`` (bigint), ``i`` (integer) or ``d``
    (double precision); none may be NULL (coalesce in SQL). Fetching millions of rows as
    tuples builds a Python object per value, which is most of a big shop's load time (COPY is
    no better: a message per row). Instead PostgreSQL packs every row into a fixed-size binary
    record (``int8send(a) || int4send(b) || ...``) and ``string_agg`` joins them into one bytea
    that numpy reads in place; SQLite joins each column's values with ``group_concat`` (one
    aggregate query, so every column sees the rows in the same order) and numpy parses the
    text. SQLite prints a REAL with 15 significant digits: amounts of 2 decimals come back as
    the same doubles.
    """
    dialect = dialect_of(session)
    if dialect != "postgresql":
        texts = session.execute(
            select(*(func.group_concat(expr) for expr, _ in columns)).where(*where)
        ).one()
        return [
            np.fromstring(text or "", dtype=np.float64 if kind == "d" else np.int64, sep=",")
            for text, (_, kind) in zip(texts, columns, strict=True)
        ]
    parts = [
        getattr(func, _PACKED[kind][0])(cast(expr, _PACKED[kind][1])) for expr, kind in columns
    ]
    record = parts[0]
    for part in parts[1:]:
        record = record.op("||")(part)
    query = select(func.string_agg(record, literal_column("''::bytea"))).where(*where)
    data = session.execute(query).scalar()
    dtype = np.dtype([(f"v{k}", _PACKED[kind][2]) for k, (_, kind) in enumerate(columns)])
    rows = np.frombuffer(bytes(data) if data is not None else b"", dtype=dtype)
    return [
        rows[f"v{k}"].astype(np.float64 if kind == "d" else np.int64)
        for k, (_, kind) in enumerate(columns)
    ]


def _line_numbers(session: Session | Connection, shop_id: int) -> list[NDArray[Any]]:
    """A whole shop's lines of products as numbers: ids, order ids, product ids, quantities."""
    li = LineItem.__table__.c
    return fetch_number_columns(
        session,
        [
            (li.id, "q"),
            (li.order_id, "q"),
            (li.product_id, "q"),
            (func.coalesce(li.quantity, 0), "i"),
        ],
        li.shop_id == shop_id,
        li.product_id.is_not(None),
    )


def _line_numbers_apart(session: Session, shop_id: int) -> Future[list[NDArray[Any]]]:
    """:func:`_line_numbers` on a connection of its own, on a thread, beside the other queries.

    PostgreSQL aggregates the lines on a second backend (a second core) while this one serves
    the customers and orders. Each statement reads its own snapshot either way (READ
    COMMITTED), and :func:`_load` drops lines whose order it did not load.
    """
    engine = session.get_bind()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-lines")

    def run() -> list[NDArray[Any]]:
        with Session(engine) as own:
            return _line_numbers(own, shop_id)

    try:
        return pool.submit(run)
    finally:
        pool.shutdown(wait=False)


def _countable(o: Any, *where: Any) -> tuple[Any, ...]:
    """The orders a dataset counts (:meth:`Dataset.purchases` drops refunded ones after)."""
    return (*where, o.customer_id.is_not(None), o.cancelled_at.is_(None), o.test == false())


def json_text(dialect: str, column: Any) -> Any:
    """A JSON column as its stored text, which the driver returns undecoded (psycopg decodes
    a JSON column itself: cast there)."""
    return type_coerce(column, Text) if dialect == "sqlite" else cast(column, Text)


def _codes_text(dialect: str, o: Any) -> Any:
    """The discount codes as text, and NULL for the usual empty list: no JSON decoding per
    order in the driver."""
    return func.nullif(json_text(dialect, o.discount_codes), "[]")


@dataclass(frozen=True)
class _SubsetQueries:
    customers: Any
    orders: Any
    lines: Any


@functools.cache
def _subset_queries(dialect: str) -> _SubsetQueries:
    """The selects of a few customers' rows, built once per dialect and bound per call
    (``shop``, ``ids``): every webhook loads a few customers, and building the statements
    cost more than running them."""
    shop: BindParameter[Any] = bindparam("shop")
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    c = Customer.__table__.c
    o = Order.__table__.c
    li = LineItem.__table__.c
    return _SubsetQueries(
        customers=select(
            c.id,
            *(c[name] for name in CUSTOMER_FIELDS),
            func.coalesce(c.number_of_orders, -1),
            func.coalesce(c.amount_spent, -1),
        )
        .where(c.shop_id == shop, c.id.in_(ids))
        .order_by(c.id),
        orders=select(
            o.id,
            o.customer_id,
            _day_column(dialect, o.processed_at),
            func.coalesce(o.total, 0),
            _codes_text(dialect, o),
            o.billing_company,
        ).where(*_countable(o, o.shop_id == shop), o.customer_id.in_(ids)),
        # By the customers' order ids: an index lookup, not a join the planner may scan.
        lines=select(
            li.order_id,
            func.coalesce(li.product_id, 0),
            func.coalesce(li.quantity, 0),
            li.product_id.is_(None),
            func.coalesce(li.title, ""),
        ).where(li.shop_id == shop, li.order_id.in_(ids)),
    )


@dataclass(frozen=True)
class StoredFigures:
    """The orders and net spend stored on loaded customers (-1 where none is), in id order."""

    customer_ids: IntArray
    orders: IntArray
    spent: FloatArray


def load(session: Session, shop_id: int, customer_ids: Sequence[int] | None = None) -> Dataset:
    """Load a shop's dataset from the database (all customers, or only ``customer_ids``).

    See :func:`_load`; the garbage collector is paused meanwhile (:func:`many_rows`).
    """
    with many_rows():
        return _load(session, shop_id, customer_ids)[0]


def load_customers(
    session: Session | Connection, shop_id: int, customer_ids: Sequence[int]
) -> tuple[Dataset, StoredFigures]:
    """Some customers' dataset, and the figures stored on them (read with them, so that
    storing the engine's figures needs no second read). On a connection the reads skip the
    ORM session's execution step."""
    ds, stored = _load(session, shop_id, customer_ids)
    assert stored is not None  # read with any subset of customers
    return ds, stored


def _load(
    session: Session | Connection, shop_id: int, customer_ids: Sequence[int] | None
) -> tuple[Dataset, StoredFigures | None]:
    """Load a shop's dataset from the database (all customers, or only ``customer_ids``).

    Orders without a customer (guest checkouts) cannot be marketed to and are left out, as are
    cancelled, test and fully refunded orders (:meth:`Dataset.purchases`). Days are UTC days.
    Rows are fetched in bulk as plain tuples (day
    numbers computed in SQL, NULLs replaced in SQL, JSON left undecoded when empty), transposed
    and turned into arrays at once: per-row Python work is what makes a million-order load slow.
    """
    dialect = dialect_of(session)
    only = list(customer_ids) if customer_ids is not None else None
    subset = _subset_queries(dialect)
    lines_apart = (
        _line_numbers_apart(session, shop_id)
        if only is None
        and dialect == "postgresql"
        and isinstance(session, Session)
        and isinstance(session.get_bind(), Engine)
        else None
    )
    c = Customer.__table__.c
    if only is None:
        cust_q = select(c.id, *(c[name] for name in CUSTOMER_FIELDS)).where(c.shop_id == shop_id)
        cust_rows = fetch_rows(session, cust_q.order_by(c.id))
    else:
        cust_rows = fetch_rows(session, subset.customers, {"shop": shop_id, "ids": only})
    cust_cols = columns(cust_rows, len(CUSTOMER_FIELDS) + (1 if only is None else 3))
    ids = np.array(cust_cols[0], dtype=np.int64)
    stored = (
        None
        if only is None
        else StoredFigures(
            ids,
            np.array(cust_cols[-2], dtype=np.int64),
            np.array(cust_cols[-1], dtype=np.float64),
        )
    )
    info: dict[str, list[str | None]] = {
        name: list(cust_cols[i + 1]) for i, name in enumerate(CUSTOMER_FIELDS)
    }

    o = Order.__table__.c
    raw_codes: Sequence[Any]
    order_companies: Sequence[str | None]
    if only is None:
        countable = _countable(o, o.shop_id == shop_id)
        codes_text = _codes_text(dialect, o)
        # A whole shop: numbers aggregated in SQL, then the few orders with a code or company.
        o_id, o_cid, o_day, o_total = fetch_number_columns(
            session,
            [
                (o.id, "q"),
                (o.customer_id, "q"),
                # The UTC day (timestamps are stored as naive UTC): date arithmetic, no numeric.
                (
                    cast(o.processed_at, Date) - cast(literal("1970-01-01"), Date)
                    if dialect == "postgresql"
                    else _day_column(dialect, o.processed_at),
                    "i",
                ),
                (func.coalesce(o.total, 0), "d"),
            ],
            *countable,
        )
        extra = fetch_rows(
            session,
            select(o.id, codes_text, o.billing_company).where(
                *countable, or_(codes_text.is_not(None), o.billing_company.is_not(None))
            ),
        )
        codes_list: list[Any] = [None] * len(o_id)
        companies_list: list[str | None] = [None] * len(o_id)
        if extra:
            extra_ids, extra_codes, extra_companies = columns(extra, 3)
            by_id = np.argsort(o_id)
            at = by_id[np.searchsorted(o_id, np.array(extra_ids, dtype=np.int64), sorter=by_id)]
            for k, row in enumerate(at.tolist()):
                codes_list[row] = extra_codes[k]
                companies_list[row] = extra_companies[k]
        raw_codes, order_companies = codes_list, companies_list
    else:
        order_rows = fetch_rows(session, subset.orders, {"shop": shop_id, "ids": only})
        order_cols = columns(order_rows, 6)
        o_id = np.array(order_cols[0], dtype=np.int64)
        o_cid = np.array(order_cols[1], dtype=np.int64)
        o_day = np.array(order_cols[2], dtype=np.int64)
        o_total = np.array(order_cols[3], dtype=np.float64)
        raw_codes, order_companies = order_cols[4], order_cols[5]
    n_o = len(o_id)
    # Orders of customers not (yet) synced cannot be attributed: drop them.
    pos = np.searchsorted(ids, o_cid)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    known = (ids[pos] == o_cid) if len(ids) else np.zeros(n_o, dtype=bool)
    keep = np.nonzero(known)[0]
    perm = keep[np.lexsort((o_id[keep], o_day[keep], pos[keep]))]
    order_ids = o_id[perm]
    perm_l = perm.tolist()
    # Most orders carry no code and the rest share a few: decode each distinct text once.
    decoded: dict[str, str] = {"[]": ""}
    discounts: list[str] = []
    for raw in (raw_codes[i] for i in perm_l):
        if raw is None:
            discounts.append("")
        elif isinstance(raw, str):
            code = decoded.get(raw)
            if code is None:
                code = decoded[raw] = _first_code(raw)
            discounts.append(code)
        else:
            discounts.append(_first_code(raw))
    companies = [order_companies[i] for i in perm_l]

    li = LineItem.__table__.c
    titles: dict[int, str] = {}
    if only is None:
        # Lines of products as numbers; custom items (no product, keyed by their title) apart,
        # and the title of each product's first line by its id: no title text fetched per line.
        l_id, l_oid, products, quantities = (
            lines_apart.result() if lines_apart is not None else _line_numbers(session, shop_id)
        )
        _, first_line = np.unique(products, return_index=True)
        first_ids = [int(v) for v in l_id[first_line]]
        for lo in range(0, len(first_ids), 10_000):
            for product, title in fetch_rows(
                session,
                select(li.product_id, li.title).where(
                    li.shop_id == shop_id, li.id.in_(first_ids[lo : lo + 10_000])
                ),
            ):
                if title:
                    titles[int(product)] = title
        custom = fetch_rows(
            session,
            select(li.order_id, func.coalesce(li.quantity, 0), func.coalesce(li.title, "")).where(
                li.shop_id == shop_id, li.product_id.is_(None)
            ),
        )
        if custom:
            c_oid, c_qty, c_title = columns(custom, 3)
            keys = [product_key_for_title(t) for t in c_title]
            for key, title in zip(keys, c_title, strict=True):
                if title and key not in titles:
                    titles[key] = title
            l_oid = np.concatenate([l_oid, np.array(c_oid, dtype=np.int64)])
            products = np.concatenate([products, np.array(keys, dtype=np.int64)])
            quantities = np.concatenate([quantities, np.array(c_qty, dtype=np.int64)])
    else:
        line_rows = (
            fetch_rows(session, subset.lines, {"shop": shop_id, "ids": order_ids.tolist()})
            if len(order_ids)
            else []
        )
        line_cols = columns(line_rows, 5)
        l_oid = np.array(line_cols[0], dtype=np.int64)
        products = np.array(line_cols[1], dtype=np.int64)
        quantities = np.array(line_cols[2], dtype=np.int64)
        line_titles = line_cols[4]
        # A line without a product (custom item) stands for a product keyed by its title.
        for k in np.nonzero(np.array(line_cols[3], dtype=bool))[0].tolist():
            products[k] = product_key_for_title(line_titles[k])
        # A product's title is the one on its first line: one per distinct product, not per line.
        _, first_line = np.unique(products, return_index=True)
        for k in first_line.tolist():
            if line_titles[k]:
                titles[int(products[k])] = line_titles[k]
    n_l = len(l_oid)
    sorted_ids = np.argsort(order_ids)
    at = (
        np.searchsorted(order_ids, l_oid, sorter=sorted_ids)
        if len(order_ids)
        else np.zeros(n_l, np.int64)
    )
    at = np.minimum(at, max(len(order_ids) - 1, 0))
    line_index = sorted_ids[at] if len(order_ids) else at
    l_keep = (order_ids[line_index] == l_oid) if len(order_ids) else np.zeros(n_l, dtype=bool)
    ds = Dataset(
        customer_ids=ids,
        info=info,
        order_customer=pos[perm].astype(np.int64),
        order_day=o_day[perm],
        order_total=o_total[perm],
        order_ids=order_ids,
        order_discount=discounts,
        order_company=companies,
        line_order=line_index[l_keep].astype(np.int64),
        line_product=products[l_keep],
        line_quantity=quantities[l_keep],
        product_titles=titles,
    ).purchases()
    return ds, stored
