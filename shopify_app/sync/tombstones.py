"""Deleted stays deleted: a :class:`Tombstone` per customer Shopify deleted.

Shopify never reuses an id, so whatever arrives about a deleted customer afterwards — a late
webhook, a bulk export or reconciliation page read before the deletion — is stale and kept out:
webhooks check :func:`is_deleted`, and every batch that writes customers purges the deleted ones
again in its own transaction (:func:`purge_deleted_customers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from shopify_app.db.models import Customer, Tombstone
from shopify_app.db.types import utcnow
from shopify_app.segments import recompute

_TOMBSTONES = select(Tombstone.id).where(
    Tombstone.shop_id == bindparam("shop"),
    Tombstone.resource == bindparam("resource"),
    Tombstone.id.in_(bindparam("objects", expanding=True)),
)
"""Built once: every order and customer delivery asks it."""


def deleted_among(
    conn: Connection, shop_id: int, resource: str, object_ids: Iterable[int]
) -> set[int]:
    """Those of ``object_ids`` of ``resource`` that Shopify deleted (one read for them all)."""
    ids = sorted(set(object_ids))
    if not ids:
        return set()
    found = conn.scalars(_TOMBSTONES, {"shop": shop_id, "resource": resource, "objects": ids})
    return set(found)


def is_deleted(conn: Connection, shop_id: int, resource: str, object_id: int) -> bool:
    """True if Shopify deleted ``object_id`` of ``resource`` (a :class:`Tombstone` exists)."""
    return bool(deleted_among(conn, shop_id, resource, [object_id]))


def record_deletion(conn: Connection, shop_id: int, resource: str, object_id: int) -> None:
    """Remember that Shopify deleted ``object_id`` (idempotent: a redelivery changes nothing)."""
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        module.insert(Tombstone)
        .values(shop_id=shop_id, resource=resource, id=object_id, deleted_at=utcnow())
        .on_conflict_do_nothing(index_elements=["shop_id", "resource", "id"])
    )


def purge_deleted_customers(conn: Connection, shop_id: int) -> None:
    """Delete the shop's customers that have a tombstone (and their memberships)."""
    # Tombstones are few; the primary keys of both tables make this a handful of index probes.
    deleted = select(Tombstone.id).where(
        Tombstone.shop_id == shop_id, Tombstone.resource == "customers"
    )
    recompute.forget_customers(conn, shop_id, deleted)
    conn.execute(delete(Customer).where(Customer.shop_id == shop_id, Customer.id.in_(deleted)))
