"""The ledger of tags Goldpan wrote (:class:`~shopify_app.db.models.TagLedger`): what it owns.

Ownership is what the ledger says, never a prefix: a row is added in the transaction that
stores Shopify's answer to a successful ``tagsAdd`` (or bulk add row) and deleted with a
successful ``tagsRemove``. So a prefix change, a rename or "remove all" can only take off tags
Goldpan put on, and a tag the customer had before stays whatever it is called.

Rows for tags neither on the customer any more (removed by hand in the admin) nor wanted are
dropped by each run (:func:`stale`), so the ledger does not claim a tag the merchant adds later.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shopify_app import db
from shopify_app.db.models import TagLedger, utcnow
from shopify_app.tagging.state import Reader, by_customers, execute_chunk, id_chunks
from shopify_app.tagging.tags import tag_key

LEDGER = cast(Table, TagLedger.__table__)

_OWNED = by_customers(
    select(LEDGER.c.customer_id, LEDGER.c.tag_key, LEDGER.c.tag).where(
        LEDGER.c.shop_id == bindparam("shop")
    ),
    LEDGER.c.customer_id,
)

Written = dict[int, dict[str, str]]
"""Customer id → {tag key: the tag as Goldpan wrote it}."""


def owned(where: Reader, shop_id: int, customer_ids: Sequence[int] | None) -> Written:
    """The tags Goldpan wrote on ``customer_ids`` (every customer of the shop when ``None``)."""
    found: Written = defaultdict(dict)
    for chunk in id_chunks(customer_ids):
        for customer_id, key, tag in execute_chunk(where, _OWNED, {"shop": shop_id}, chunk):
            found[int(customer_id)][key] = tag
    return found


# Built once (bound per call): every tag write records what it changed.
_FORGET = delete(LEDGER).where(
    LEDGER.c.shop_id == bindparam("shop"),
    LEDGER.c.customer_id == bindparam("cid"),
    LEDGER.c.tag_key == bindparam("key"),
)


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT of ledger rows that refreshes a row already there (PostgreSQL and SQLite spell
    ON CONFLICT alike)."""
    stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(LEDGER)
    return stmt.on_conflict_do_update(
        index_elements=[LEDGER.c.shop_id, LEDGER.c.customer_id, LEDGER.c.tag_key],
        set_={"tag": stmt.excluded.tag, "written_at": stmt.excluded.written_at},
    )


def record(
    where: Reader,
    shop_id: int,
    added: Iterable[tuple[int, str]] = (),
    removed: Iterable[tuple[int, str]] = (),
) -> None:
    """In the caller's transaction: Goldpan wrote ``added`` and took ``removed`` off.

    Pairs are (customer id, tag). Writing a tag again refreshes its row.
    """
    conn = where if isinstance(where, Connection) else where.connection()
    now = utcnow()
    rows = {
        (cid, tag_key(tag)): {
            "shop_id": shop_id,
            "customer_id": cid,
            "tag_key": tag_key(tag),
            "tag": tag.strip(),
            "written_at": now,
        }
        for cid, tag in added
    }
    gone = sorted({(cid, tag_key(tag)) for cid, tag in removed})
    if gone:
        conn.execute(_FORGET, [{"shop": shop_id, "cid": cid, "key": key} for cid, key in gone])
    if rows:
        conn.execute(_upsert(conn.dialect.name), [rows[k] for k in sorted(rows)])
    if rows or gone:
        # Tag sync's progress on the page moves with the ledger.
        db.bump_data_version(conn, shop_id)


def stale(
    current: Mapping[int, Sequence[str]],
    wanted: Mapping[int, Set[str]],
    written: Written,
) -> list[tuple[int, str]]:
    """Ledger rows of ``current``'s customers whose tag is neither on the customer nor wanted:
    gone from Shopify (the merchant took it off), so Goldpan no longer owns anything there."""
    rows: list[tuple[int, str]] = []
    for customer_id, tags in current.items():
        mine = written.get(customer_id)
        if not mine:
            continue
        keep = {tag_key(t) for t in tags} | {tag_key(t) for t in wanted.get(customer_id, ())}
        rows.extend((customer_id, tag) for key, tag in mine.items() if key not in keep)
    return rows
