"""Applying store-data webhooks: ``orders/*``, ``refunds/create`` and ``customers/*`` deliveries.

:func:`apply_webhook` upserts the REST-shaped payloads unless what is stored is newer, and asks
the segments engine to recompute the customer concerned. A refund's payload holds that refund
only, so ``refunds/create`` re-reads its order through the Admin API: the row is then the
one ``orders/updated`` (carrying every refund) gives. ``customers/delete`` leaves a tombstone
(:mod:`shopify_app.sync.tombstones`): nothing brings a deleted customer back.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from shopify_app import db, jobs
from shopify_app.db.models import Customer, LineItem, Order
from shopify_app.segments import recompute
from shopify_app.shopify.client import AdminClient
from shopify_app.sync import compliance
from shopify_app.sync.ingest import upsert_sql, write_batch
from shopify_app.sync.reconcile import ORDER_LINE_ITEMS, remaining_children
from shopify_app.sync.rows import (
    Batch,
    Row,
    line_item_row,
    order_row,
    rest_customer_row,
    rest_order_rows,
    utc_text,
)
from shopify_app.sync.tombstones import is_deleted, record_deletion

log = logging.getLogger(__name__)

# Built once: these run for every delivery, and building a statement costs more than running it.
_STORED_CUSTOMER = select(Customer.__table__).where(
    Customer.shop_id == bindparam("shop"), Customer.id == bindparam("customer")
)
_STORED_ORDERS = select(Order.id, Order.updated_at).where(
    Order.shop_id == bindparam("shop"), Order.id.in_(bindparam("orders", expanding=True))
)
_DELETE_CUSTOMER = delete(Customer).where(
    Customer.shop_id == bindparam("shop"), Customer.id == bindparam("customer")
)
_DROP_EDITED_OUT = delete(LineItem).where(
    LineItem.shop_id == bindparam("shop"),
    LineItem.order_id.in_(bindparam("orders", expanding=True)),
    LineItem.id.not_in(bindparam("kept", expanding=True)),
)


def _aware(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _is_stale(stored_updated: dt.datetime | None, incoming: str | None) -> bool:
    if stored_updated is None or incoming is None:
        return False
    return stored_updated > (_aware(incoming) or stored_updated)


ORDER_TOPICS = ("orders/create", "orders/updated", "orders/cancelled", "orders/edited")
STORED_TOPICS = (*ORDER_TOPICS, "customers/create", "customers/update", "customers/delete")
"""Topics whose payload says everything: stored by :func:`store_webhook` in the caller's
transaction (``refunds/create`` needs an Admin request first, see :func:`apply_webhook`)."""


def apply_webhook(ctx: jobs.Context, shop_id: int, topic: str, payload: dict[str, Any]) -> bool:
    """Apply an ``orders/*``, ``refunds/create`` or ``customers/*`` delivery in a transaction of
    its own; True if it changed anything. The customer concerned is then recomputed."""
    if topic == "refunds/create":
        fetched = _fetch_order(ctx, shop_id, int(payload["order_id"]))
        if fetched is None:
            return False  # deleted since: nothing to apply
        order, items = fetched
        customer_id = order[2]
        with db.write_engine(ctx.engine).begin() as conn:
            changed = bool(_store_orders(conn, shop_id, [(order, items)]))
    elif topic in STORED_TOPICS:
        with db.write_engine(ctx.engine).begin() as conn:
            changed, customer_id = store_webhook(conn, shop_id, topic, payload)
    else:
        log.warning("topic %s is not a sync topic", topic)
        return False
    if changed and customer_id is not None:
        ctx.enqueue("segments.recompute_customer", shop_id=shop_id, customer_id=customer_id)
    return changed


def store_webhook(
    conn: Connection, shop_id: int, topic: str, payload: dict[str, Any]
) -> tuple[bool, int | None]:
    """Store a :data:`STORED_TOPICS` delivery on ``conn``; returns (changed, customer concerned).

    A delivery older than the stored row (by ``updated_at``) is ignored: webhooks arrive at
    least once and in any order. The caller recomputes the customer once it has committed.
    """
    if topic in ORDER_TOPICS:
        order, items = rest_order_rows(
            shop_id, compliance.without_forgotten_buyer(conn, shop_id, payload)
        )
        return bool(_store_orders(conn, shop_id, [(order, items)])), order[2]
    customer_id = int(payload["id"])
    db.lock_customers(conn, shop_id, [customer_id])
    if topic == "customers/delete":
        record_deletion(conn, shop_id, "customers", customer_id)
        recompute.forget_customers(conn, shop_id, [customer_id])
        conn.execute(_DELETE_CUSTOMER, {"shop": shop_id, "customer": customer_id})
        return True, customer_id
    if is_deleted(conn, shop_id, "customers", customer_id):
        # Shopify never reuses an id: anything about a deleted customer is stale.
        return False, customer_id
    stored_customer = conn.execute(
        _STORED_CUSTOMER, {"shop": shop_id, "customer": customer_id}
    ).first()
    if stored_customer is not None and _is_stale(
        stored_customer.updated_at, utc_text(payload.get("updated_at"))
    ):
        return False, customer_id
    # The upsert alone, not write_batch: its purge of every deleted customer of the shop is
    # for bulk pages read before a deletion; this one customer was just checked to be alive,
    # under its lock.
    conn.exec_driver_sql(
        upsert_sql(conn.dialect, "customers"),
        [rest_customer_row(shop_id, payload, stored_customer)],
    )
    return True, customer_id


def store_orders(conn: Connection, shop_id: int, payloads: list[dict[str, Any]]) -> set[int]:
    """Store several ``orders/*`` deliveries of a shop (in delivery order) on ``conn``; returns
    the customers of those not older than their stored order, for the caller to recompute.

    What :func:`store_webhook` does for each in turn, with one statement per step for them all
    instead of five per delivery: a group of a busy shop's deliveries is stored this way.
    """
    payloads = compliance.without_forgotten_buyers(conn, shop_id, payloads)
    rows = [rest_order_rows(shop_id, payload) for payload in payloads]
    fresh = {order[1] for order in _store_orders(conn, shop_id, rows)}
    return {order[2] for order, _ in rows if order[1] in fresh and order[2] is not None}


def _store_orders(conn: Connection, shop_id: int, orders: list[tuple[Row, list[Row]]]) -> list[Row]:
    """Upsert order rows and their line items unless the stored order is newer; returns the
    order rows written. Of several rows of one order the newest is written (the later one on a
    tie, as if each were stored in turn)."""
    newest: dict[int, tuple[Row, list[Row]]] = {}
    for order, items in orders:
        kept = newest.get(order[1])
        if kept is None or not _is_stale(_aware(kept[0][7]), order[7]):
            newest[order[1]] = (order, items)
    stored = dict(conn.execute(_STORED_ORDERS, {"shop": shop_id, "orders": list(newest)}).all())
    fresh = [(o, items) for o, items in newest.values() if not _is_stale(stored.get(o[1]), o[7])]
    if not fresh:
        return []
    batch = Batch.empty()
    batch.rows["orders"] = [order for order, _ in fresh]
    batch.rows["line_items"] = [item for _, items in fresh for item in items]
    write_batch(conn, batch)
    # Line items removed by an order edit disappear from the payload: drop them too.
    conn.execute(
        _DROP_EDITED_OUT,
        {
            "shop": shop_id,
            "orders": [order[1] for order, _ in fresh],
            "kept": [item[1] for item in batch.rows["line_items"]] or [-1],
        },
    )
    return batch.rows["orders"]


def _fetch_order(ctx: jobs.Context, shop_id: int, order_id: int) -> tuple[Row, list[Row]] | None:
    """The order as the Admin API has it now (all its line items), or None if it is gone."""
    gid = f"gid://shopify/Order/{order_id}"
    with AdminClient(ctx, shop_id) as client:
        node = client.execute("order", {"id": gid, "lineItemsFirst": ORDER_LINE_ITEMS})["order"]
        if node is None:
            return None
        order = order_row(shop_id, node)
        connection = node.get("lineItems") or {}
        batch = Batch.empty()
        batch.rows["line_items"] = [
            line_item_row(shop_id, item, order_id) for item in connection.get("nodes") or []
        ]
        info = connection.get("pageInfo") or {}
        if info.get("hasNextPage"):
            remaining_children(client, shop_id, "orders", gid, info.get("endCursor"), batch)
    return order, batch.rows["line_items"]
