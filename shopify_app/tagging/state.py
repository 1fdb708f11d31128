"""What Goldpan knows about a shop's tags: prefix, threshold, synced segments, current tags.

What Goldpan owns is in :mod:`.ledger`.

"Current" is ``Customer.tags``: what Shopify has now, kept by sync from ``customers/update`` and
bulk imports, and by the writes from Shopify's answers. The ledger of bulk mutations in flight
(``AuditEntry`` rows whose ``job_status`` is running) lives here too, because a run must skip
customers whose tags a running operation is still changing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Exists, and_, bindparam, exists, func, select
from sqlalchemy.orm import Session

from shopify_app.db.models import AuditEntry, Customer, Membership, Segment, Shop, TagLedger
from shopify_app.errors import GoldpanError
from shopify_app.states import JobStatus
from shopify_app.tagging.tags import DEFAULT_PREFIX, segment_tag, tag_key

DEFAULT_BULK_THRESHOLD = 500
"""Changed customers above which a run uses bulk mutations instead of aliased requests."""
BULK_ACTIONS = ("tags.bulk_add", "tags.bulk_remove")
"""``AuditEntry.action`` of the bulk mutations' ledger entries."""


Reader = Session | Connection
"""Where tagging's reads run: an ORM session, or a plain connection on the hot path (a tag
write per webhook group; a session costs more than the few rows it reads)."""


def shop_prefix(shop: Shop) -> str:
    """The shop's tag prefix (merchant setting ``tag_prefix``), default ``goldpan-``."""
    return settings_prefix(shop.settings)


def settings_prefix(settings: Mapping[str, Any] | None) -> str:
    """The tag prefix of a shop whose ``Shop.settings`` are ``settings``."""
    value = (settings or {}).get("tag_prefix")
    return value if isinstance(value, str) and value.strip() else DEFAULT_PREFIX


def bulk_threshold(settings: Mapping[str, Any] | None) -> int:
    """Changed customers above which a run uses bulk mutations (setting ``tag_bulk_threshold``)."""
    value = (settings or {}).get("tag_bulk_threshold")
    return value if isinstance(value, int) and value > 0 else DEFAULT_BULK_THRESHOLD


@dataclass
class ShopTags:
    """What a run needs to know about a shop's tagging: which segments tag, with which tag."""

    shop_id: int
    prefix: str
    threshold: int
    synced: dict[int, str]
    """Segment id → tag, for enabled segments with tag sync on."""

    @classmethod
    def load(cls, db: Reader, shop_id: int) -> ShopTags:
        """Read the shop's prefix, threshold and segments."""
        shop = db.execute(_SETTINGS, {"shop": shop_id}).first()
        if shop is None:
            raise GoldpanError(f"shop {shop_id} does not exist")
        return cls.of(db, shop_id, shop.settings)

    @classmethod
    def of(cls, db: Reader, shop_id: int, settings: Mapping[str, Any] | None) -> ShopTags:
        """Read the shop's segments; ``settings`` are its ``Shop.settings``, already read."""
        segments = db.execute(_SEGMENT_TAGS, {"shop": shop_id}).all()
        return cls._made(shop_id, settings, segments)

    @classmethod
    def with_wanted(
        cls, db: Reader, shop_id: int, settings: Mapping[str, Any] | None, customer_ids: list[int]
    ) -> tuple[ShopTags, dict[int, set[str]]]:
        """:meth:`of` and :meth:`wanted` for a few customers, in one read (the segments joined
        with those customers' memberships)."""
        rows = db.execute(_SEGMENTS_AND_MEMBERS, {"shop": shop_id, "ids": customer_ids}).all()
        state = cls._made(shop_id, settings, rows)
        wanted: dict[int, set[str]] = defaultdict(set)
        for row in rows:
            if row.customer_id is not None and row.id in state.synced:
                wanted[row.customer_id].add(state.synced[row.id])
        return state, wanted

    @classmethod
    def _made(cls, shop_id: int, settings: Mapping[str, Any] | None, segments: Any) -> ShopTags:
        prefix = settings_prefix(settings)
        synced = {
            s.id: segment_tag(s.tag, s.handle, prefix) for s in segments if s.enabled and s.tag_sync
        }
        return cls(shop_id, prefix, bulk_threshold(settings), synced)

    def wanted(self, db: Reader, customer_ids: Sequence[int] | None) -> dict[int, set[str]]:
        """Customer id → the Goldpan tags their memberships call for (only customers with any)."""
        wanted: dict[int, set[str]] = defaultdict(set)
        if not self.synced:
            return wanted
        params = {"shop": self.shop_id, "segments": list(self.synced)}
        for chunk in id_chunks(customer_ids):
            for customer_id, segment_id in execute_chunk(db, _MEMBERS, params, chunk):
                wanted[customer_id].add(self.synced[segment_id])
        return wanted


def by_customers(query: Any, column: Any) -> tuple[Any, Any]:
    """``query`` for every customer and for those in ``:ids``, built once: tag writes run per
    changed customer, and building a select costs more than running it on a few rows."""
    return query, query.where(column.in_(bindparam("ids", expanding=True)))


def execute_chunk(
    db: Reader, queries: tuple[Any, Any], params: dict[str, Any], chunk: list[int] | None
) -> Any:
    """Run the query of :func:`by_customers` for one chunk of :func:`id_chunks`; the result."""
    if chunk is None:
        return db.execute(queries[0], params)
    return db.execute(queries[1], {**params, "ids": chunk})


def id_chunks(ids: Sequence[int] | None, size: int = 900) -> Iterator[list[int] | None]:
    """``ids`` in chunks SQLite can bind (it caps bound parameters); ``None``: every customer."""
    if ids is None:
        yield None
        return
    unique = sorted(set(ids))
    for i in range(0, len(unique), size):
        yield unique[i : i + size]


def current_tags(
    db: Reader, shop_id: int, customer_ids: Sequence[int] | None
) -> dict[int, list[str]]:
    """Customer id → the tags Shopify has now (as stored), for ``customer_ids`` or everyone."""
    current: dict[int, list[str]] = {}
    for chunk in id_chunks(customer_ids):
        for customer_id, tags in execute_chunk(db, _TAGS, {"shop": shop_id}, chunk):
            current[customer_id] = list(tags or [])
    return current


def in_flight(db: Reader, shop_id: int) -> set[int]:
    """Customers in a bulk mutation still running: their result decides, not a second write."""
    busy: set[int] = set()
    for (detail,) in db.execute(_IN_FLIGHT, {"shop": shop_id}):
        busy.update(int(row[0]) for row in (detail or {}).get("rows", []))
    return busy


# The reads of every tag write, built once (bound per call).
_SETTINGS = select(Shop.settings).where(Shop.id == bindparam("shop"))
_SEGMENT_TAGS = select(
    Segment.id, Segment.handle, Segment.tag, Segment.enabled, Segment.tag_sync
).where(Segment.shop_id == bindparam("shop"))
_SEGMENTS_AND_MEMBERS = _SEGMENT_TAGS.add_columns(Membership.customer_id).outerjoin(
    Membership,
    and_(
        Membership.segment_id == Segment.id,
        Membership.customer_id.in_(bindparam("ids", expanding=True)),
    ),
)
_MEMBERS = by_customers(
    select(Membership.customer_id, Membership.segment_id).where(
        Membership.shop_id == bindparam("shop"),
        Membership.segment_id.in_(bindparam("segments", expanding=True)),
    ),
    Membership.customer_id,
)
_TAGS = by_customers(
    select(Customer.id, Customer.tags).where(Customer.shop_id == bindparam("shop")), Customer.id
)
_RUNNING = and_(AuditEntry.action.in_(BULK_ACTIONS), AuditEntry.job_status == JobStatus.RUNNING)
_IN_FLIGHT = select(AuditEntry.detail).where(AuditEntry.shop_id == bindparam("shop"), _RUNNING)


def bulk_running(shop_id: Any) -> Exists:
    """Whether a tag bulk mutation of ``shop_id`` (a column or a parameter) is still running:
    asked along with another read, so that :func:`in_flight` runs only when one is."""
    return exists().where(AuditEntry.shop_id == shop_id, _RUNNING)


def tag_progress(session: Session, shop_id: int, tags: Mapping[int, str]) -> dict[int, int]:
    """Segment id → how many of its members carry its tag by Goldpan's hand (the ledger), for
    the segments in ``tags`` (segment id → tag): tag sync's progress, "1,200 of 3,400"."""
    done: dict[int, int] = {}
    for segment_id, tag in tags.items():
        done[segment_id] = int(
            session.scalar(
                select(func.count())
                .select_from(Membership)
                .join(
                    TagLedger,
                    and_(
                        TagLedger.shop_id == Membership.shop_id,
                        TagLedger.customer_id == Membership.customer_id,
                        TagLedger.tag_key == tag_key(tag),
                    ),
                )
                .where(Membership.segment_id == segment_id)
            )
            or 0
        )
    return done
