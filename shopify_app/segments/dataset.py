"""The columnar dataset every segment and metric reads, and the per-customer features over it.

A :class:`Dataset` is a store's customers, their orders and the orders' line items as numpy
columns; cancelled, test and fully refunded orders are left out when it is built, so nothing
downstream has to remember them. It comes from the database (:mod:`.loader`) or from an
orders-export CSV (:mod:`shopify_app.sync.orders_csv`, through :class:`DatasetBuilder`). This
module does no I/O.

Days are integers counted from 1970-01-01 (``date.toordinal() - EPOCH``): comparisons and
differences become integer arithmetic on whole arrays.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

EPOCH = dt.date(1970, 1, 1).toordinal()

# Fields kept for every customer: identity (tags, Meta lists) and address (regions).
CUSTOMER_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "city",
    "province_code",
    "zip",
    "country_code",
    "company",
    "email_marketing_state",
    # Shopify's tags as stored (a JSON list, text or decoded): only custom segments read them.
    "tags",
)


def day_number(value: dt.date) -> int:
    """The integer day of ``value`` (days since 1970-01-01)."""
    return value.toordinal() - EPOCH


def day_date(day: int) -> dt.date:
    """Inverse of :func:`day_number`."""
    return dt.date.fromordinal(int(day) + EPOCH)


def distinct(values: NDArray[Any]) -> NDArray[Any]:
    """The sorted distinct values of a 1-D array: ``np.unique(values)``, by sorting.

    NumPy 2's ``np.unique`` without ``return_*`` flags goes through a hash table, ten times
    slower than a sort on the million-element integer arrays of a big shop.
    """
    ordered = np.sort(values, kind="stable")
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def net_value(total: float, refunded: float, current: float | None = None) -> float:
    """What an order is worth once refunds are given back, never below 0.

    Refunds are not purchases. Shopify's current total (``currentTotalPriceSet``) follows
    edits and returned units but not a money-only refund; the total less the money refunded
    follows every refund but not an edit that removed unpaid units. Each is an upper bound of
    what the customer paid for what they kept, so the lower one is the net value. An orders
    CSV has no current total: its Total less its Refunded Amount.
    """
    net = total - refunded if current is None else min(current, total - refunded)
    return max(net, 0.0)


def is_purchase(net_total: FloatArray, net_units: IntArray) -> NDArray[np.bool_]:
    """Which orders are purchases: a fully refunded order (nothing paid, no units kept) is not.

    A $0 order whose units were kept (a free sample) still is.
    """
    return (net_total > 0) | (net_units > 0)


def product_key_for_title(title: str) -> int:
    """A stable negative id for a line item without a product (custom items, CSV rows)."""
    return -(zlib.crc32(title.strip().lower().encode("utf-8")) + 1)


@dataclass
class Dataset:
    """Customers, their countable orders and line items, as arrays.

    Orders are sorted by (customer index, day). ``order_start[c]:order_start[c + 1]`` are the
    orders of customer ``c`` (a CSR layout), so per-customer reductions need no grouping.
    """

    customer_ids: IntArray
    info: dict[str, list[str | None]]
    order_customer: IntArray
    order_day: IntArray
    order_total: FloatArray
    order_ids: IntArray
    order_discount: list[str]
    order_company: list[str | None]
    line_order: IntArray
    line_product: IntArray
    line_quantity: IntArray
    product_titles: dict[int, str]
    order_start: IntArray = field(init=False)

    def __post_init__(self) -> None:
        self.order_start = np.searchsorted(
            self.order_customer, np.arange(len(self.customer_ids) + 1)
        ).astype(np.int64)

    @property
    def n_customers(self) -> int:
        """Number of customers (with or without countable orders)."""
        return len(self.customer_ids)

    @property
    def n_orders(self) -> int:
        """Number of countable orders."""
        return len(self.order_day)

    def index_of(self, customer_id: int) -> int | None:
        """The index of a customer id, or ``None``."""
        hits = np.nonzero(self.customer_ids == customer_id)[0]
        return int(hits[0]) if len(hits) else None

    def upto(self, as_of: dt.date) -> Dataset:
        """The dataset as it stood at the end of ``as_of``: later orders removed."""
        return self.only_orders(self.order_day <= day_number(as_of))

    def purchases(self) -> Dataset:
        """The dataset without fully refunded orders (see :func:`is_purchase`).

        Both sources, the database (:mod:`.loader`) and the orders CSV (:class:`DatasetBuilder`),
        end here: one rule decides what is a purchase.
        """
        units = np.bincount(
            self.line_order, weights=self.line_quantity, minlength=self.n_orders
        ).astype(np.int64)
        return self.only_orders(is_purchase(self.order_total, units))

    def only_orders(self, keep: NDArray[np.bool_]) -> Dataset:
        """The dataset with only the orders ``keep`` marks (and their lines)."""
        if bool(keep.all()):
            return self
        order_map = np.cumsum(keep) - 1
        line_keep = keep[self.line_order]
        idx = np.nonzero(keep)[0]
        return Dataset(
            customer_ids=self.customer_ids,
            info=self.info,
            order_customer=self.order_customer[keep],
            order_day=self.order_day[keep],
            order_total=self.order_total[keep],
            order_ids=self.order_ids[keep],
            order_discount=[self.order_discount[i] for i in idx],
            order_company=[self.order_company[i] for i in idx],
            line_order=order_map[self.line_order[line_keep]],
            line_product=self.line_product[line_keep],
            line_quantity=self.line_quantity[line_keep],
            product_titles=self.product_titles,
        )

    def line_customer(self) -> IntArray:
        """The customer index of every line item."""
        return self.order_customer[self.line_order]


class DatasetBuilder:
    """Accumulates rows from any source and produces a sorted :class:`Dataset`."""

    def __init__(self) -> None:
        self._customer_ids: list[int] = []
        self._customer_index: dict[int, int] = {}
        self._info: dict[str, list[str | None]] = {name: [] for name in CUSTOMER_FIELDS}
        self._o_customer: list[int] = []
        self._o_day: list[int] = []
        self._o_total: list[float] = []
        self._o_id: list[int] = []
        self._o_discount: list[str] = []
        self._o_company: list[str | None] = []
        self._l_order: list[int] = []
        self._l_product: list[int] = []
        self._l_quantity: list[int] = []
        self.product_titles: dict[int, str] = {}

    def add_customer(self, customer_id: int, **info: str | None) -> int:
        """Add (or update) a customer; returns its index."""
        index = self._customer_index.get(customer_id)
        if index is None:
            index = len(self._customer_ids)
            self._customer_index[customer_id] = index
            self._customer_ids.append(customer_id)
            for name in CUSTOMER_FIELDS:
                self._info[name].append(info.get(name))
        else:
            for name, value in info.items():
                if value not in (None, ""):
                    self._info[name][index] = value
        return index

    def set_info(self, index: int, **info: str | None) -> None:
        """Replace a customer's fields (``None`` clears); callers decide which row is newest."""
        for name, value in info.items():
            self._info[name][index] = value

    def customer_index(self, customer_id: int) -> int | None:
        """The index of a customer already added."""
        return self._customer_index.get(customer_id)

    def add_order(
        self,
        customer_index: int,
        order_id: int,
        day: int,
        total: float,
        discount: str = "",
        company: str | None = None,
    ) -> int:
        """Add a countable order (callers drop cancelled and test orders); returns its index."""
        self._o_customer.append(customer_index)
        self._o_day.append(day)
        self._o_total.append(total)
        self._o_id.append(order_id)
        self._o_discount.append(discount)
        self._o_company.append(company)
        return len(self._o_day) - 1

    def add_line(self, order_index: int, product: int, title: str, quantity: int) -> None:
        """Add a line item of an order added before."""
        self._l_order.append(order_index)
        self._l_product.append(product)
        self._l_quantity.append(quantity)
        if product not in self.product_titles and title:
            self.product_titles[product] = title

    def build(self) -> Dataset:
        """Sort orders by (customer, day) and produce the dataset of purchases."""
        o_customer = np.asarray(self._o_customer, dtype=np.int64)
        o_day = np.asarray(self._o_day, dtype=np.int64)
        o_id = np.asarray(self._o_id, dtype=np.int64)
        perm = np.lexsort((o_id, o_day, o_customer))
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(len(perm))
        l_order = np.asarray(self._l_order, dtype=np.int64)
        return Dataset(
            customer_ids=np.asarray(self._customer_ids, dtype=np.int64),
            info=self._info,
            order_customer=o_customer[perm],
            order_day=o_day[perm],
            order_total=np.asarray(self._o_total, dtype=np.float64)[perm],
            order_ids=o_id[perm],
            order_discount=[self._o_discount[i] for i in perm],
            order_company=[self._o_company[i] for i in perm],
            line_order=inverse[l_order] if len(l_order) else l_order,
            line_product=np.asarray(self._l_product, dtype=np.int64),
            line_quantity=np.asarray(self._l_quantity, dtype=np.int64),
            product_titles=self.product_titles,
        ).purchases()


@dataclass
class Features:
    """Per-customer quantities every segment draws on, as of one day."""

    as_of: int
    n_orders: IntArray
    spend: FloatArray
    first_day: IntArray  # -1 without orders
    last_day: IntArray  # -1 without orders
    occasions: IntArray  # distinct order days
    repeat_value: FloatArray  # mean value of repeat occasions (0 when none)
    max_line_units: IntArray
    max_line_product: IntArray
    max_line_day: IntArray
    window_units: IntArray  # units in the business-buyer window

    # Every segment family reads these two: computed once per evaluation, and read-only
    # since they are shared.
    @functools.cached_property
    def has_orders(self) -> NDArray[np.bool_]:
        """Customers with at least one countable order."""
        return _read_only(self.n_orders > 0)

    @functools.cached_property
    def days_since_last(self) -> IntArray:
        """Days from the last order to ``as_of`` (large for customers without orders)."""
        return _read_only(np.where(self.n_orders > 0, self.as_of - self.last_day, 10**6))

    @property
    def mean_interval(self) -> FloatArray:
        """Average days between orders (NaN below two orders)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.n_orders > 1,
                (self.last_day - self.first_day) / np.maximum(self.n_orders - 1, 1),
                np.nan,
            )

    def bgnbd_inputs(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(x, t_x, T)`` in weeks for customers with orders (same-day orders merged)."""
        mask = self.has_orders
        x = (self.occasions[mask] - 1).astype(np.float64)
        t_x = (self.last_day[mask] - self.first_day[mask]) / 7.0
        T = (self.as_of - self.first_day[mask]) / 7.0
        return x, t_x, T


def _read_only(values: NDArray[Any]) -> NDArray[Any]:
    values.flags.writeable = False
    return values


def compute_features(ds: Dataset, as_of: dt.date, window_days: int = 365) -> Features:
    """Per-customer features over a dataset already cut at ``as_of`` (see :meth:`Dataset.upto`)."""
    today = day_number(as_of)
    n_c = ds.n_customers
    cust = ds.order_customer
    n_orders = np.bincount(cust, minlength=n_c).astype(np.int64)
    spend = np.bincount(cust, weights=ds.order_total, minlength=n_c).astype(np.float64)
    has = n_orders > 0
    first_day = np.full(n_c, -1, dtype=np.int64)
    last_day = np.full(n_c, -1, dtype=np.int64)
    starts = ds.order_start[:-1]
    ends = ds.order_start[1:]
    first_day[has] = ds.order_day[starts[has]]
    last_day[has] = ds.order_day[ends[has] - 1]

    # Occasions: runs of the same (customer, day) in the sorted order list.
    if len(cust):
        new_occ = np.empty(len(cust), dtype=bool)
        new_occ[0] = True
        new_occ[1:] = (cust[1:] != cust[:-1]) | (ds.order_day[1:] != ds.order_day[:-1])
    else:
        new_occ = np.zeros(0, dtype=bool)
    occasions = np.bincount(cust[new_occ], minlength=n_c).astype(np.int64)
    first_value = np.zeros(n_c)
    if len(cust):
        first_day_of_order = first_day[cust]
        first_value = np.bincount(
            cust,
            weights=np.where(ds.order_day == first_day_of_order, ds.order_total, 0.0),
            minlength=n_c,
        ).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        repeat_value = np.where(
            occasions > 1, (spend - first_value) / np.maximum(occasions - 1, 1), 0.0
        )

    line_cust = ds.line_customer()
    max_units = np.zeros(n_c, dtype=np.int64)
    max_product = np.zeros(n_c, dtype=np.int64)
    max_day = np.full(n_c, -1, dtype=np.int64)
    window_units = np.zeros(n_c, dtype=np.int64)
    if len(line_cust):
        # Units of one product in one order: sum split lines of the same product first.
        key_order = ds.line_order
        perm = np.lexsort((ds.line_product, key_order))
        lo = key_order[perm]
        lp = ds.line_product[perm]
        boundary = np.empty(len(perm), dtype=bool)
        boundary[0] = True
        boundary[1:] = (lo[1:] != lo[:-1]) | (lp[1:] != lp[:-1])
        group = np.cumsum(boundary) - 1
        units = np.bincount(group, weights=ds.line_quantity[perm]).astype(np.int64)
        g_order = lo[boundary]
        g_product = lp[boundary]
        g_cust = cust[g_order]
        best = np.lexsort((units, g_cust))
        last_of_customer = np.empty(len(best), dtype=bool)
        last_of_customer[-1] = True
        last_of_customer[:-1] = g_cust[best][1:] != g_cust[best][:-1]
        pick = best[last_of_customer]
        max_units[g_cust[pick]] = units[pick]
        max_product[g_cust[pick]] = g_product[pick]
        max_day[g_cust[pick]] = ds.order_day[g_order[pick]]
        recent = ds.order_day[ds.line_order] > today - window_days
        window_units = np.bincount(
            line_cust[recent], weights=ds.line_quantity[recent], minlength=n_c
        ).astype(np.int64)
    return Features(
        as_of=today,
        n_orders=n_orders,
        spend=spend,
        first_day=first_day,
        last_day=last_day,
        occasions=occasions,
        repeat_value=repeat_value,
        max_line_units=max_units,
        max_line_product=max_product,
        max_line_day=max_day,
        window_units=window_units,
    )


def email_domain(email: str | None) -> str:
    """The lowercased domain of an email address ('' when there is none)."""
    if not email or "@" not in email:
        return ""
    return email.rsplit("@", 1)[1].strip().lower()


def iter_members(indices: Iterable[int]) -> list[int]:
    """Plain ints from a numpy index array (for JSON and SQL parameters)."""
    return [int(i) for i in indices]
