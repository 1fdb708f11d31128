"""Tags the merchant already uses in the shop: a new prefix or tag name must not be one of them.

Goldpan's tags must never be mistaken for the merchant's, nor the other way round: a prefix
``vip-`` in a store whose customers carry ``VIP``, or a segment renamed to ``pop-up-2024``, would
mix the two in customer search, Flow and Shopify Email. A tag counts as the merchant's on a
customer unless the ledger says Goldpan wrote it there, so moving back to an earlier prefix is
no collision with Goldpan's own tags.

The customers come from the synced ``customers`` table. Until the first customer import has
finished, they come from the Admin API instead (``customers_tagged``: customers whose tags
match, 250 a page, at most :data:`MAX_PAGES` pages, so a count may read "1,000+").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.db.models import Customer, Segment, SyncRun
from shopify_app.errors import InputError
from shopify_app.shopify.client import AdminClient
from shopify_app.states import SyncRunStatus
from shopify_app.tagging import ledger
from shopify_app.tagging.tags import PREFIX_SEPARATORS, quoted, segment_tag, tag_key

MAX_PAGES = 4
"""Pages of 250 customers read per Admin API query (enough to say "used on 1,000+")."""
_PLAIN = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class TagInUse:
    """A tag the merchant uses: as the store spells it, and on how many customers."""

    tag: str
    customers: int
    at_least: bool = False
    """``True`` when the Admin API had more pages than were read."""

    def message(self) -> str:
        """The refusal the merchant reads."""
        count = f"{self.customers:,}{'+' if self.at_least else ''}"
        noun = "customer" if count == "1" else "customers"
        return f"“{self.tag}” is already a tag in your store (used on {count} {noun})"


def prefix_names(prefix: str, tags: Iterable[str]) -> list[str]:
    """What a new prefix must not collide with: the prefix itself, the prefix without its
    separator (``vip-`` beside the store's ``VIP``), and the tags it would give the segments."""
    stem = prefix.rstrip(PREFIX_SEPARATORS)
    return [prefix, *([stem] if stem and stem != prefix else []), *tags]


def refuse_taken(
    ctx: jobs.Context,
    session: Session,
    shop_id: int,
    names: Iterable[str],
    *,
    field: str,
    starting_with: str | None = None,
) -> None:
    """Raise :class:`InputError` (``field``) naming the most used of ``names`` that the merchant
    already uses in the shop; do nothing if none is.

    ``starting_with`` (a new prefix every name but its stem starts with) lets the Admin API
    answer for all of them in one query.
    """
    found = taken(ctx, session, shop_id, names, starting_with=starting_with)
    if found is not None:
        raise InputError(
            found.message(),
            field=field,
            code="tag_taken_many" if found.at_least else "tag_taken",
            params={"tag": found.tag, "count": found.customers},
        )


def refuse_rename(
    ctx: jobs.Context,
    session: Session,
    shop_id: int,
    segment_id: int,
    tag: str,
    *,
    prefix: str,
) -> None:
    """Raise :class:`InputError` (field ``tag``) if ``tag`` is another segment's tag or a tag
    the merchant uses in the store; a segment may take back a tag Goldpan wrote for it."""
    for other in session.execute(
        select(Segment.id, Segment.handle, Segment.name, Segment.tag).where(
            Segment.shop_id == shop_id, Segment.id != segment_id
        )
    ):
        if tag_key(segment_tag(other.tag, other.handle, prefix)) == tag_key(tag):
            raise InputError(f"“{tag.strip()}” is the tag of “{other.name}” already", field="tag")
    refuse_taken(ctx, session, shop_id, [tag], field="tag")


def taken(
    ctx: jobs.Context,
    session: Session,
    shop_id: int,
    names: Iterable[str],
    *,
    starting_with: str | None = None,
) -> TagInUse | None:
    """The most used of ``names`` among the merchant's tags in the shop, or ``None``."""
    wanted = {tag_key(n) for n in names if n.strip()}
    if not wanted:
        return None
    rows: Iterable[tuple[int, Any]]
    if customers_synced(session, shop_id):
        rows = session.execute(
            select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
        ).tuples()
        ours = ledger.owned(session, shop_id, None)
        more = False
    else:
        rows, more = _from_shopify(ctx, shop_id, wanted, starting_with)
        ours = ledger.owned(session, shop_id, [cid for cid, _ in rows])
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for customer_id, tags in rows:
        mine = ours.get(int(customer_id), {})
        for key, shown in {tag_key(str(t)): str(t).strip() for t in tags or []}.items():
            if key in wanted and key not in mine:
                counts[key] += 1
                spelling.setdefault(key, shown)
    if not counts:
        return None
    key, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return TagInUse(spelling[key], count, at_least=more)


def customers_synced(session: Session, shop_id: int) -> bool:
    """Whether a customer import of the shop has finished (the table holds every customer)."""
    return (
        session.scalar(
            select(SyncRun.id)
            .where(
                SyncRun.shop_id == shop_id,
                SyncRun.resource == "customers",
                SyncRun.status == SyncRunStatus.DONE,
            )
            .limit(1)
        )
        is not None
    )


def _from_shopify(
    ctx: jobs.Context, shop_id: int, wanted: set[str], starting_with: str | None
) -> tuple[list[tuple[int, list[str]]], bool]:
    """Customers carrying any of ``wanted`` by the Admin API: (id, tags) pairs, and whether
    more pages were left unread."""
    queries: list[str] = []
    exact = set(wanted)
    if starting_with and _PLAIN.match(starting_with):
        # Unquoted: Shopify reads a trailing * as "starts with" outside quotes.
        queries.append(f"tag:{starting_with}*")
        exact = {n for n in exact if not n.startswith(tag_key(starting_with))}
    queries.extend(f"tag:{quoted(name)}" for name in sorted(exact))
    found: dict[int, list[str]] = {}
    more = False
    with AdminClient(ctx, shop_id) as client:
        for query in queries:
            after: str | None = None
            for _ in range(MAX_PAGES):
                data = client.execute("customers_tagged", {"query": query, "after": after})
                page = data.get("customers") or {}
                for node in page.get("nodes") or []:
                    customer_id = int(str(node.get("id", "")).rsplit("/", 1)[-1] or 0)
                    found[customer_id] = [str(t) for t in node.get("tags") or []]
                info = page.get("pageInfo") or {}
                after = info.get("endCursor")
                if not info.get("hasNextPage") or not after:
                    break
            else:
                more = True
    return list(found.items()), more
