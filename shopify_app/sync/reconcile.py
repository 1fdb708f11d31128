"""Reconciliation: repair missed webhooks by paging through what changed since the watermark.

``sync.reconcile`` pages (cost-aware through :class:`AdminClient`) through each resource
updated since its last completed run; ``sync.reconcile_all`` runs it for every installed shop.
Pages are sized under Shopify's 1,000-point query limit, so an order's line items (a product's
variants) may not all fit on one: the rest are paged from that order (product) before the page
commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, update

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import Shop, SyncRun
from shopify_app.db.types import utcnow
from shopify_app.errors import ShopifyError, SyncError, stored_error
from shopify_app.shopify.client import AdminClient, gid_number
from shopify_app.states import SyncRunKind, SyncRunStatus
from shopify_app.sync.ingest import commit_batch
from shopify_app.sync.rows import (
    Batch,
    customer_row,
    line_item_row,
    order_row,
    product_row,
    variant_row,
)
from shopify_app.sync.runs import RESOURCES, active_runs, fail_run
from shopify_app.sync.scopes import check_scopes
from shopify_app.sync.shop import refresh_shop

# Reconciliation page sizes. Shopify refuses a query whose requested cost (2 per connection plus
# its page size times the cost of a node, 1 per object) exceeds 1,000 points, so each page is
# sized to stay below: customers 702, orders 822 (10 orders with room for 15 line items each,
# more than most orders have), products 929 (9 products with 100 variants each); the rest of
# an order's line items 753 a page, of a product's variants 253.
PAGE_SIZES = {"customers": 100, "orders": 10, "products": 9}
ORDER_LINE_ITEMS = 15  # line items per order on an orders page
LINE_ITEMS_PAGE = 150  # line items per page of one order's remainder (order_line_items)
VARIANTS_PAGE = 250  # variants per page of one product's remainder (product_variants)
RECOMPUTE_ONE_BY_ONE = 100  # above this many changed customers, recompute the whole shop
# Reconciliation re-reads a little before its watermark: Shopify's updated_at and our clock
# are not the same clock.
WATERMARK_OVERLAP = dt.timedelta(minutes=5)


def _watermark(ctx: jobs.Context, shop_id: int, resource: str) -> dt.datetime | None:
    with ctx.sessions() as session:
        return session.scalar(
            select(SyncRun.watermark)
            .where(
                SyncRun.shop_id == shop_id,
                SyncRun.resource == resource,
                SyncRun.status == SyncRunStatus.DONE,
            )
            .order_by(SyncRun.watermark.desc())
            .limit(1)
        )


def _page_rows(
    shop_id: int,
    resource: str,
    node: dict[str, Any],
    batch: Batch,
    unfinished: list[tuple[str, str | None]] | None = None,
) -> set[int]:
    """Rows of one page node; returns the customer ids it concerns.

    An order whose line items (a product whose variants) did not fit on the page is appended
    to ``unfinished`` as ``(its GID, cursor after the last child read)``.
    """
    if resource == "customers":
        batch.rows["customers"].append(customer_row(shop_id, node))
        return {gid_number(node["id"]) or 0}
    if resource == "orders":
        order = order_row(shop_id, node)
        batch.rows["orders"].append(order)
        connection = node.get("lineItems") or {}
        for item in connection.get("nodes") or []:
            batch.rows["line_items"].append(line_item_row(shop_id, item, order[1]))
        info = connection.get("pageInfo") or {}
        if info.get("hasNextPage") and unfinished is not None:
            unfinished.append((node["id"], info.get("endCursor")))
        return {order[2]} if order[2] else set()
    batch.rows["products"].append(product_row(shop_id, node))
    product_id = gid_number(node["id"]) or 0
    connection = node.get("variants") or {}
    for variant in connection.get("nodes") or []:
        batch.rows["variants"].append(variant_row(shop_id, variant, product_id))
    info = connection.get("pageInfo") or {}
    if info.get("hasNextPage") and unfinished is not None:
        unfinished.append((node["id"], info.get("endCursor")))
    return set()


def _iter_pages(client: AdminClient, resource: str, query: str) -> Iterator[list[dict[str, Any]]]:
    after: str | None = None
    while True:
        variables: dict[str, Any] = {"first": PAGE_SIZES[resource], "after": after, "query": query}
        if resource == "orders":
            variables["lineItemsFirst"] = ORDER_LINE_ITEMS
        data = client.execute(f"{resource}_page", variables)[resource]
        yield data.get("nodes") or []
        info = data.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return
        after = info.get("endCursor")


# Children a reconciliation page may cut short, by resource: (document, parent field,
# connection field, page size, child table).
CHILD_PAGES: dict[str, tuple[str, str, str, int, str]] = {
    "orders": ("order_line_items", "order", "lineItems", LINE_ITEMS_PAGE, "line_items"),
    "products": ("product_variants", "product", "variants", VARIANTS_PAGE, "variants"),
}


def remaining_children(
    client: AdminClient,
    shop_id: int,
    resource: str,
    parent_gid: str,
    after: str | None,
    batch: Batch,
) -> int:
    """Page the children of ``parent_gid`` (an order's line items, a product's variants) after
    cursor ``after`` into ``batch``; returns how many were read. Each page goes through the
    cost-aware client like any other query."""
    document, parent_field, connection_field, size, table = CHILD_PAGES[resource]
    to_row = line_item_row if table == "line_items" else variant_row
    parent_id = gid_number(parent_gid) or 0
    read = 0
    while True:
        variables = {"id": parent_gid, "first": size, "after": after}
        parent = client.execute(document, variables).get(parent_field)
        if parent is None:
            return read  # deleted since its page was read: the next reconciliation sees it
        connection = parent.get(connection_field) or {}
        for node in connection.get("nodes") or []:
            batch.rows[table].append(to_row(shop_id, node, parent_id))
            read += 1
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return read
        cursor = info.get("endCursor")
        if not cursor or cursor == after:
            # Without a cursor that moves, asking again would read the same page forever.
            raise SyncError(f"{parent_gid}: {connection_field} pagination did not advance")
        after = cursor


@jobs.task("sync.reconcile", retries=2, retry_delay=60)
def reconcile(ctx: jobs.Context, shop_id: int, *, http: Any = None) -> int:
    """Pull what changed since each resource's watermark; returns the number of rows upserted.

    A shop without a completed initial sync gets one instead.
    """
    check_scopes(ctx, shop_id)
    if active_runs(ctx, shop_id):
        return 0
    if all(_watermark(ctx, shop_id, r) is None for r in RESOURCES):
        ctx.enqueue("sync.initial", shop_id=shop_id)
        return 0
    changed: set[int] = set()
    total = 0
    with AdminClient(ctx, shop_id, http=http) as client:
        refresh_shop(ctx, client, shop_id)
        for resource in RESOURCES:
            mark = _watermark(ctx, shop_id, resource)
            if mark is None:
                continue
            started = utcnow()
            since = (mark - WATERMARK_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
            with transaction(ctx.sessions) as session:
                run = SyncRun(
                    shop_id=shop_id,
                    kind=SyncRunKind.RECONCILE,
                    resource=resource,
                    status=SyncRunStatus.RUNNING,
                    attempts=1,
                    started_at=started,
                )
                session.add(run)
                session.flush()
                run_id = run.id
            done = 0
            try:
                for nodes in _iter_pages(client, resource, f"updated_at:>'{since}'"):
                    batch = Batch.empty()
                    unfinished: list[tuple[str, str | None]] = []
                    for node in nodes:
                        changed |= _page_rows(shop_id, resource, node, batch, unfinished)
                    # Orders (products) with more line items (variants) than the page holds:
                    # the rest are read now, to commit with their parent and the checkpoint
                    # that counts it.
                    for parent_gid, cursor in unfinished:
                        remaining_children(client, shop_id, resource, parent_gid, cursor, batch)
                    batch.lines = len(nodes)
                    done = commit_batch(ctx, run_id, batch, done)
            except ShopifyError as exc:
                fail_run(ctx, run_id, stored_error(exc))
                raise
            with transaction(ctx.sessions) as session:
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id)
                    .values(
                        status=SyncRunStatus.DONE,
                        watermark=started,
                        object_count=done,
                        finished_at=utcnow(),
                    )
                )
            total += done
    if len(changed) > RECOMPUTE_ONE_BY_ONE:
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)
    else:
        for customer_id in sorted(changed):
            ctx.enqueue("segments.recompute_customer", shop_id=shop_id, customer_id=customer_id)
    return total


@jobs.periodic("sync.reconcile_all", minute="17", hour="*/6")
def reconcile_all(ctx: jobs.Context) -> None:
    """Every six hours: reconcile each installed shop; resume stalled bulk imports."""
    with ctx.sessions() as session:
        shops = session.scalars(select(Shop.id).where(Shop.is_installed)).all()
    for shop_id in shops:
        if active_runs(ctx, shop_id):
            ctx.enqueue("sync.poll", shop_id=shop_id)
        else:
            ctx.enqueue("sync.reconcile", shop_id=shop_id)
