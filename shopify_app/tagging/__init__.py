"""Segment memberships written back to Shopify as customer tags: only the difference.

The core is pure: :func:`diff` takes the tags a customer has in Shopify now, the Goldpan tags
they should have, and what Goldpan owns, and returns what to add and remove. Goldpan owns its
namespace (the shop's prefix, default ``goldpan-``, plus every segment's own tag, which the
merchant may rename to anything) and never adds, removes or reorders any other tag.

The writes:

* **Small diffs** go out as ``tagsRemove``/``tagsAdd`` fields, up to :data:`BATCH_SLOTS` of each
  per request, through static aliased documents (``tags_batch_<n>.graphql``, n = 1, 4, 10)
  whose slots are switched on with ``@include``. Static files keep the rule "every document the
  app sends is a file validated against the schema" (runtime-generated alias documents would
  escape that check); ``@include`` lets one file serve several batch sizes, and a batch takes
  the smallest file it fits so skipped slots stay few even if Shopify prices them. A single
  field uses the plain one-field documents (``tags_add``/``tags_remove``).
* **Above the bulk threshold** (default 500 changed customers) the rows go out as bulk
  mutations (``tags_remove`` and ``tags_add`` over a staged JSONL upload). Completion comes via
  the ``bulk_operations/finish`` webhook (:func:`on_bulk_finish`) or polling
  (:func:`poll_bulk`); rows that answered ``userErrors`` or never ran are diffed and written
  again.

"Current" is ``Customer.tags``: what Shopify has now, kept by sync from ``customers/update`` and
bulk imports. After a write, Goldpan stores the tags Shopify answered with (the mutation selects
the customer's resulting ``tags``), so the echoed ``customers/update`` computes an empty diff:
no loops, no second write.

Concurrent writers for the same customer (50 webhooks/s on several workers) must not write the
same diff twice. On PostgreSQL the batch holds ``SELECT ... FOR UPDATE`` on its customer rows
across the request; on SQLite (one process by design) process-local customer locks serialise
writers of the same customer and the stored tags are updated compare-and-set, so a newer
``customers/update`` that landed during the request is never overwritten by an older answer.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import requests
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, Customer, Membership, Segment, Shop, utcnow
from shopify_app.errors import GoldpanError, InputError, ShopifyError, stored_error

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "goldpan-"
MAX_TAGS_PER_CUSTOMER = 250
"""Shopify's limit of tags on one customer."""
MAX_TAG_LENGTH = 255
"""Shopify's limit on one tag's length (characters)."""
BATCH_SIZES = (1, 4, 10)
"""Slot counts of the static aliased documents ``tags_batch_<n>.graphql`` (see
:func:`batch_document`). Whether Shopify prices a field skipped by ``@include`` is not
documented, so a batch uses the smallest document it fits: at most 2.5x the fields it needs are
ever priced, and never more than 200 requested points (well under the 1,000 single-query cap)."""
BATCH_SLOTS = BATCH_SIZES[-1]
"""tagsRemove and tagsAdd slots in the largest batch document."""
DEFAULT_BULK_THRESHOLD = 500
"""Changed customers above which a run uses bulk mutations instead of aliased requests."""
MAX_BULK_ATTEMPTS = 3
"""After this many bulk attempts the leftovers go out as small requests (which never loop)."""
RUNNING = "running"
"""``AuditEntry.result`` of a bulk mutation still in flight."""


def batch_document_name(slots: int) -> str:
    """``tags_batch_<slots>``: the file stem of the aliased document with ``slots`` slots."""
    return f"tags_batch_{slots}"


ADD_DOCUMENT = "tags_add"
REMOVE_DOCUMENT = "tags_remove"
_BULK_ACTIONS = ("tags.bulk_add", "tags.bulk_remove")
_PLACEHOLDER_ID = "gid://shopify/Customer/0"


# --------------------------------------------------------------------------------------------
# Pure core
# --------------------------------------------------------------------------------------------


def tag_key(tag: str) -> str:
    """How Shopify compares tags: trimmed, case-insensitive (``VIP`` and ``vip `` are one tag)."""
    return tag.strip().lower()


def tag_problem(tag: str) -> str | None:
    """Why Shopify would refuse ``tag`` as one customer tag, or ``None`` if it is fine."""
    cleaned = tag.strip()
    if not cleaned:
        return "a tag cannot be empty"
    if len(cleaned) > MAX_TAG_LENGTH:
        return f"a tag can have at most {MAX_TAG_LENGTH} characters"
    if "," in cleaned:
        # tagsAdd splits comma-separated strings, so "a,b" would become two tags.
        return "a tag cannot contain a comma"
    return None


def validate_tag(tag: str) -> str:
    """The trimmed tag, or :class:`InputError` (``field="tag"``) saying why Shopify refuses it."""
    problem = tag_problem(tag)
    if problem is not None:
        raise InputError(f"{problem}: {tag!r}", field="tag")
    return tag.strip()


Ownership = Callable[[str], bool]


def ownership(prefix: str = DEFAULT_PREFIX, tags: Iterable[str] = ()) -> Ownership:
    """A predicate for "Goldpan owns this tag": it starts with ``prefix`` or is one of ``tags``.

    ``tags`` are segment tags the merchant renamed outside the prefix (and old names still being
    migrated away). Both comparisons follow Shopify's case-insensitive rule.
    """
    prefix_key = tag_key(prefix) if prefix.strip() else ""
    explicit = {tag_key(t) for t in tags if t.strip()}

    def owned(tag: str) -> bool:
        key = tag_key(tag)
        return (bool(prefix_key) and key.startswith(prefix_key)) or key in explicit

    return owned


@dataclass(frozen=True)
class TagDiff:
    """What to send for one customer. ``dropped``: wanted tags with no room under the limit."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not self.add and not self.remove


def diff(
    current: Sequence[str],
    wanted: Iterable[str],
    owned: Ownership | str = DEFAULT_PREFIX,
    *,
    limit: int = MAX_TAGS_PER_CUSTOMER,
) -> TagDiff:
    """The tag changes that turn ``current`` into "``current``'s other tags plus ``wanted``".

    * Removes only owned tags that are not wanted, spelled exactly as Shopify has them.
    * Adds wanted tags missing from ``current`` (compared as Shopify does: trimmed,
      case-insensitive), in sorted order so runs are deterministic.
    * Never makes room by removing a tag Goldpan does not own: when the result would exceed
      ``limit`` tags, the adds that do not fit are reported in ``dropped`` instead.
    * Wanted tags Shopify would refuse (empty, too long, with a comma) go to ``invalid``.
    """
    is_owned = ownership(owned) if isinstance(owned, str) else owned
    wanted_by_key: dict[str, str] = {}
    invalid: list[str] = []
    for tag in wanted:
        if tag_problem(tag) is not None:
            invalid.append(tag)
            continue
        wanted_by_key.setdefault(tag_key(tag), tag.strip())
    current_keys = {tag_key(t) for t in current}
    remove = tuple(t for t in current if is_owned(t) and tag_key(t) not in wanted_by_key)
    add = sorted(tag for key, tag in wanted_by_key.items() if key not in current_keys)
    removed_keys = {tag_key(t) for t in remove}
    kept = len({tag_key(t) for t in current} - removed_keys)
    room = max(limit - kept, 0)
    return TagDiff(
        add=tuple(add[:room]),
        remove=remove,
        dropped=tuple(add[room:]),
        invalid=tuple(sorted(invalid)),
    )


def apply(current: Sequence[str], change: TagDiff) -> list[str]:
    """The tags Shopify ends up with after ``change``: removes drop every spelling, adds append."""
    removed = {tag_key(t) for t in change.remove}
    result = [t for t in current if tag_key(t) not in removed]
    present = {tag_key(t) for t in result}
    for tag in change.add:
        if tag_key(tag) not in present:
            result.append(tag.strip())
            present.add(tag_key(tag))
    return result


def batch_document(slots: int = BATCH_SLOTS) -> str:
    """The text of ``tags_batch.graphql``: ``slots`` removes then ``slots`` adds, each optional.

    Kept as a generator so the static files and the slot counts cannot drift (a test compares).
    """
    header = [
        f"# Up to {slots} tagsRemove and {slots} tagsAdd in one request (aliases r0.., a0..). Each",
        "# slot is switched on by @include, so one static, schema-validated document serves many",
        "# batch sizes. Removes come first (top-level mutation fields run in order), so a customer",
        "# near the 250-tag limit frees room before gaining.",
        f"# Generated by shopify_app.tagging.batch_document({slots}); a test keeps the two equal.",
    ]
    params: list[str] = []
    fields: list[str] = []
    selection = [
        "    node {",
        "      id",
        "      ... on Customer {",
        "        tags",
        "        updatedAt",
        "      }",
        "    }",
        "    userErrors {",
        "      field",
        "      message",
        "    }",
        "  }",
    ]
    for kind, mutation in (("r", "tagsRemove"), ("a", "tagsAdd")):
        for i in range(slots):
            params.append(f"  ${kind}{i}: ID!")
            params.append(f"  ${kind}{i}Tags: [String!]!")
            params.append(f"  ${kind}{i}On: Boolean!")
            fields.append(
                f"  {kind}{i}: {mutation}(id: ${kind}{i}, tags: ${kind}{i}Tags)"
                f" @include(if: ${kind}{i}On) {{"
            )
            fields.extend(selection)
    lines = [*header, "mutation TagsBatch(", *params, ") {", *fields, "}"]
    return "\n".join(lines) + "\n"


def customer_gid(customer_id: int) -> str:
    """``gid://shopify/Customer/<id>``."""
    return f"gid://shopify/Customer/{customer_id}"


def _customer_id(gid: str) -> int:
    return int(gid.rsplit("/", 1)[-1].split("?")[0])


def native_segment_query(tag: str) -> str:
    """The ShopifyQL query of a native segment holding the customers tagged ``tag``."""
    escaped = tag.replace("\\", "\\\\").replace("'", "\\'")
    return f"customer_tags CONTAINS '{escaped}'"


# --------------------------------------------------------------------------------------------
# Shop state
# --------------------------------------------------------------------------------------------


class AdminAPI(Protocol):
    """The part of :class:`~shopify_app.shopify.client.AdminClient` tagging uses."""

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...

    def run_bulk_mutation(self, document_name: str, rows: Iterable[dict[str, Any]]) -> str: ...

    def bulk_operation(self, gid: str) -> dict[str, Any]: ...

    def stream_jsonl(self, url: str) -> Iterator[dict[str, Any]]: ...


def admin_client(ctx: jobs.Context, shop_id: int) -> AdminAPI:
    """The Admin API client of ``shop_id`` (imported late: tagging's pure core needs no HTTP)."""
    from shopify_app.shopify.client import AdminClient

    client: AdminAPI = AdminClient(ctx, shop_id)
    return client


def shop_prefix(shop: Shop) -> str:
    """The shop's tag prefix (merchant setting ``tag_prefix``), default ``goldpan-``."""
    value = (shop.settings or {}).get("tag_prefix")
    return value if isinstance(value, str) and value.strip() else DEFAULT_PREFIX


def bulk_threshold(shop: Shop) -> int:
    """Changed customers above which a run uses bulk mutations (setting ``tag_bulk_threshold``)."""
    value = (shop.settings or {}).get("tag_bulk_threshold")
    return value if isinstance(value, int) and value > 0 else DEFAULT_BULK_THRESHOLD


def segment_tag(segment: Segment, prefix: str) -> str:
    """The tag of ``segment``: its own (renamed) tag, else prefix + handle."""
    return (segment.tag or "").strip() or f"{prefix}{segment.handle}"


@dataclass
class ShopTags:
    """What a run needs to know about a shop's tagging: which segments tag, and what is owned."""

    shop_id: int
    prefix: str
    threshold: int
    synced: dict[int, str]
    """Segment id → tag, for enabled segments with tag sync on."""
    owned_tags: frozenset[str]
    """Explicitly owned tags (every segment's tag, and old tags being migrated away)."""

    @property
    def owned(self) -> Ownership:
        """The ownership predicate for :func:`diff`."""
        return ownership(self.prefix, self.owned_tags)

    @classmethod
    def load(cls, session: Session, shop_id: int, extra_owned: Iterable[str] = ()) -> ShopTags:
        """Read the shop's prefix, threshold and segments."""
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise GoldpanError(f"shop {shop_id} does not exist")
        prefix = shop_prefix(shop)
        # Columns, not ORM objects: this runs for every tag write (once per changed customer).
        segments = session.execute(
            select(
                Segment.id, Segment.handle, Segment.tag, Segment.enabled, Segment.tag_sync
            ).where(Segment.shop_id == shop_id)
        ).all()
        tags = {s.id: (s.tag or "").strip() or f"{prefix}{s.handle}" for s in segments}
        synced = {s.id: tags[s.id] for s in segments if s.enabled and s.tag_sync}
        owned = set(tags.values()) | {t for t in extra_owned if t}
        return cls(shop_id, prefix, bulk_threshold(shop), synced, frozenset(owned))

    def wanted(self, session: Session, customer_ids: Sequence[int] | None) -> dict[int, set[str]]:
        """Customer id → the Goldpan tags their memberships call for (only customers with any)."""
        wanted: dict[int, set[str]] = defaultdict(set)
        if not self.synced:
            return wanted
        query = select(Membership.customer_id, Membership.segment_id).where(
            Membership.shop_id == self.shop_id, Membership.segment_id.in_(list(self.synced))
        )
        for chunk in _chunks(customer_ids):
            q = query if chunk is None else query.where(Membership.customer_id.in_(chunk))
            for customer_id, segment_id in session.execute(q):
                wanted[customer_id].add(self.synced[segment_id])
        return wanted


def _chunks(ids: Sequence[int] | None, size: int = 900) -> Iterator[list[int] | None]:
    # SQLite caps bound parameters; None means "every customer".
    if ids is None:
        yield None
        return
    unique = sorted(set(ids))
    for i in range(0, len(unique), size):
        yield unique[i : i + size]


def _current_tags(
    session: Session, shop_id: int, customer_ids: Sequence[int] | None
) -> dict[int, list[str]]:
    current: dict[int, list[str]] = {}
    query = select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
    for chunk in _chunks(customer_ids):
        q = query if chunk is None else query.where(Customer.id.in_(chunk))
        for customer_id, tags in session.execute(q):
            current[customer_id] = list(tags or [])
    return current


def _in_flight(session: Session, shop_id: int) -> set[int]:
    """Customers in a bulk mutation still running: their result decides, not a second write."""
    busy: set[int] = set()
    entries = session.scalars(
        select(AuditEntry).where(
            AuditEntry.shop_id == shop_id,
            AuditEntry.action.in_(_BULK_ACTIONS),
            AuditEntry.result == RUNNING,
        )
    ).all()
    for entry in entries:
        busy.update(int(row[0]) for row in entry.detail.get("rows", []))
    return busy


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """The outcome of one run (the task returns :meth:`summary`)."""

    checked: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    requests: int = 0
    bulk_operations: list[str] = field(default_factory=list)
    in_flight: int = 0
    limited: dict[int, tuple[str, ...]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts only (safe to store as a task result)."""
        return {
            "checked": self.checked,
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "requests": self.requests,
            "bulk_operations": list(self.bulk_operations),
            "in_flight": self.in_flight,
            "limited": len(self.limited),
            "failed": len(self.failed),
        }


def plan(
    session: Session,
    state: ShopTags,
    customer_ids: Sequence[int] | None,
    *,
    wanted_override: Mapping[int, set[str]] | None = None,
) -> tuple[dict[int, TagDiff], dict[int, tuple[str, ...]], dict[int, set[str]]]:
    """Diff every customer in scope: (changes, limit-hit customers, wanted tags per customer)."""
    current = _current_tags(session, state.shop_id, customer_ids)
    wanted = (
        dict(wanted_override)
        if wanted_override is not None
        else state.wanted(session, list(current) if customer_ids is not None else None)
    )
    owned = state.owned
    changes: dict[int, TagDiff] = {}
    limited: dict[int, tuple[str, ...]] = {}
    for customer_id, tags in current.items():
        change = diff(tags, wanted.get(customer_id, set()), owned)
        if change.dropped:
            limited[customer_id] = change.dropped
        if not change.empty:
            changes[customer_id] = change
    return changes, limited, {cid: set(wanted.get(cid, set())) for cid in current}


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------


_STRIPES = tuple(threading.Lock() for _ in range(256))
"""Process-local customer locks for SQLite, striped: writes for different customers of one
shop run in parallel (50 webhooks/s need that), writes for the same customer never do."""


@contextmanager
def _local_locks(shop_id: int, customer_ids: Sequence[int]) -> Iterator[None]:
    # Sorted acquisition: two batches sharing stripes cannot deadlock.
    stripes = sorted({hash((shop_id, cid)) % len(_STRIPES) for cid in customer_ids})
    with ExitStack() as stack:
        for stripe in stripes:
            stack.enter_context(_STRIPES[stripe])
        yield


@dataclass
class _Claim:
    """Customers held for one write: their tags as read, and what to store afterwards."""

    current: dict[int, list[str]]
    results: dict[int, list[str]] = field(default_factory=dict)
    updated_at: dict[int, dt.datetime] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)

    def answer(self, customer_id: int, node: Mapping[str, Any]) -> bool:
        """Take Shopify's answer for a customer (its tags, updatedAt); False if it had none."""
        tags = node.get("tags")
        if not isinstance(tags, list):
            return False
        self.results[customer_id] = [str(t) for t in tags]
        stamp = _timestamp(node.get("updatedAt"))
        if stamp is not None:
            self.updated_at[customer_id] = stamp
        return True


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _later(stored: dt.datetime | None, answered: dt.datetime | None) -> dt.datetime | None:
    """``updated_at`` after a write: Shopify's answer if newer, else what was stored (see
    :func:`_store_answer`)."""
    if answered is not None and (stored is None or answered > stored):
        return answered
    return stored


def _store_answer(row: Customer, tags: list[str], updated_at: dt.datetime | None) -> None:
    """Store Shopify's answer. ``updated_at`` moves forward only, so an older customers/update
    arriving late (say, the merchant's edit from before our write) is seen as stale by sync
    and cannot bring back tags Shopify no longer has."""
    row.tags = list(tags)
    if updated_at is not None and (row.updated_at is None or updated_at > row.updated_at):
        row.updated_at = updated_at


@contextmanager
def _claim(ctx: jobs.Context, shop_id: int, customer_ids: Sequence[int]) -> Iterator[_Claim]:
    """Hold ``customer_ids`` against other tag writers for one request (see module docstring)."""
    ids = sorted(set(customer_ids))
    if ctx.engine.dialect.name == "postgresql":
        with transaction(ctx.sessions) as session:
            rows = session.execute(
                select(Customer.id, Customer.tags, Customer.updated_at)
                .where(Customer.shop_id == shop_id, Customer.id.in_(ids))
                .order_by(Customer.id)
                .with_for_update()
            ).all()
            claim = _Claim({r.id: list(r.tags or []) for r in rows})
            yield claim
            stored_at = {r.id: r.updated_at for r in rows}
            if claim.results:
                # One statement for the batch's customers (executemany), not one per customer.
                table = cast(Table, Customer.__table__)
                c = table.c
                session.connection().execute(
                    update(table)
                    .where(c.shop_id == shop_id, c.id == bindparam("customer_id"))
                    .values(tags=bindparam("new_tags"), updated_at=bindparam("new_updated_at")),
                    [
                        {
                            "customer_id": customer_id,
                            "new_tags": list(tags),
                            "new_updated_at": _later(
                                stored_at.get(customer_id), claim.updated_at.get(customer_id)
                            ),
                        }
                        for customer_id, tags in claim.results.items()
                    ],
                )
            session.add_all(claim.audit)
        return
    with _local_locks(shop_id, ids):
        with transaction(ctx.sessions) as session:
            claim = _Claim(_current_tags(session, shop_id, ids))
        yield claim
        with transaction(ctx.sessions) as session:
            for customer_id, tags in claim.results.items():
                row = session.get(Customer, (shop_id, customer_id))
                # Compare-and-set: a customers/update stored during the request is newer.
                if row is not None and list(row.tags or []) == claim.current.get(customer_id):
                    _store_answer(row, tags, claim.updated_at.get(customer_id))
            session.add_all(claim.audit)


# Every tag write's audit-log entry (target "shopify").
_audit = functools.partial(AuditEntry.of, target="shopify")


def _record(ctx: jobs.Context, *entries: AuditEntry) -> None:
    with transaction(ctx.sessions) as session:
        session.add_all(entries)


def _batches(changes: Mapping[int, TagDiff], slots: int = BATCH_SLOTS) -> Iterator[list[int]]:
    """Customer ids packed so each request has at most ``slots`` removes and ``slots`` adds."""
    batch: list[int] = []
    adds = removes = 0
    for customer_id in sorted(changes):
        change = changes[customer_id]
        a, r = int(bool(change.add)), int(bool(change.remove))
        if batch and (adds + a > slots or removes + r > slots):
            yield batch
            batch, adds, removes = [], 0, 0
        batch.append(customer_id)
        adds += a
        removes += r
    if batch:
        yield batch


def _request(changes: Mapping[int, TagDiff]) -> tuple[str, dict[str, Any], list[tuple[str, int]]]:
    """The document, variables and (response key, customer id) pairs for one batch."""
    items = [(cid, c) for cid, c in sorted(changes.items())]
    ops = sum(bool(c.add) + bool(c.remove) for _, c in items)
    if ops == 1:
        customer_id, change = items[0]
        if change.add:
            return ADD_DOCUMENT, _one(customer_id, change.add), [("tagsAdd", customer_id)]
        return REMOVE_DOCUMENT, _one(customer_id, change.remove), [("tagsRemove", customer_id)]
    variables: dict[str, Any] = {}
    keys: list[tuple[str, int]] = []
    removes = [(cid, c.remove) for cid, c in items if c.remove]
    adds = [(cid, c.add) for cid, c in items if c.add]
    slots = next(n for n in BATCH_SIZES if n >= max(len(removes), len(adds)))
    for kind, rows in (("r", removes), ("a", adds)):
        for i in range(slots):
            if i < len(rows):
                customer_id, tags = rows[i]
                variables.update(
                    {
                        f"{kind}{i}": customer_gid(customer_id),
                        f"{kind}{i}Tags": list(tags),
                        f"{kind}{i}On": True,
                    }
                )
                keys.append((f"{kind}{i}", customer_id))
            else:
                variables.update(
                    {f"{kind}{i}": _PLACEHOLDER_ID, f"{kind}{i}Tags": [], f"{kind}{i}On": False}
                )
    return batch_document_name(slots), variables, keys


def _one(customer_id: int, tags: Sequence[str]) -> dict[str, Any]:
    return {"id": customer_gid(customer_id), "tags": list(tags)}


def _write_small(
    ctx: jobs.Context,
    client: AdminAPI,
    state: ShopTags,
    planned: Mapping[int, TagDiff],
    wanted: Mapping[int, set[str]],
    report: SyncReport,
) -> None:
    """Write ``planned`` with aliased requests, re-diffing each batch under its claim."""
    owned = state.owned
    for batch in _batches(planned):
        with _claim(ctx, state.shop_id, batch) as claim:
            # Re-diff against the tags as they are now: another writer or a customers/update
            # may have changed them since planning.
            changes: dict[int, TagDiff] = {}
            for cid in batch:
                if cid in claim.current:
                    change = diff(claim.current[cid], wanted.get(cid, set()), owned)
                    if not change.empty:
                        changes[cid] = change
            if not changes:
                continue
            document, variables, keys = _request(changes)
            try:
                data = client.execute(document, variables)
            except ShopifyError as exc:
                _record(
                    ctx,
                    _audit(
                        state.shop_id,
                        "tags.write",
                        subject=document,
                        count=len(changes),
                        result="error",
                        detail=_change_detail(changes),
                        error=stored_error(exc),
                    ),
                )
                raise
            report.requests += 1
            failed: dict[int, str] = {}
            for key, customer_id in keys:
                payload = data.get(key) or {}
                errors = payload.get("userErrors") or []
                if errors:
                    failed[customer_id] = "; ".join(str(e.get("message")) for e in errors)
                    continue
                # The node's tags are Shopify's state after this field, whatever came before.
                node = payload.get("node") or {}
                if not claim.answer(customer_id, node):
                    # An answer without the node: assume Shopify applied what was asked.
                    base = claim.results.get(customer_id, claim.current[customer_id])
                    one = changes[customer_id]
                    removing = key.startswith("r") or key == "tagsRemove"
                    step = TagDiff(remove=one.remove) if removing else TagDiff(add=one.add)
                    claim.results[customer_id] = apply(base, step)
            ok = {cid: c for cid, c in changes.items() if cid not in failed}
            report.changed += len(ok)
            report.added += sum(len(c.add) for c in ok.values())
            report.removed += sum(len(c.remove) for c in ok.values())
            report.failed.update(failed)
            claim.audit.append(
                _audit(
                    state.shop_id,
                    "tags.write",
                    subject=document,
                    count=len(changes),
                    result="partial" if failed else "ok",
                    detail={
                        **_change_detail(changes),
                        "failed": {str(k): v for k, v in failed.items()},
                    },
                )
            )
            if failed:
                log.warning("tag write for shop %s: userErrors for %s", state.shop_id, failed)


def _change_detail(changes: Mapping[int, TagDiff]) -> dict[str, Any]:
    return {
        "customers": len(changes),
        "added": sum(len(c.add) for c in changes.values()),
        "removed": sum(len(c.remove) for c in changes.values()),
        "changes": [[cid, list(c.add), list(c.remove)] for cid, c in sorted(changes.items())],
    }


def _write_bulk(
    ctx: jobs.Context,
    client: AdminAPI,
    state: ShopTags,
    planned: Mapping[int, TagDiff],
    report: SyncReport,
    attempt: int,
) -> None:
    """Start bulk mutations (removes, then adds) and record them as running."""
    for action, document in (
        ("tags.bulk_remove", REMOVE_DOCUMENT),
        ("tags.bulk_add", ADD_DOCUMENT),
    ):
        rows: list[tuple[int, list[str]]] = [
            (cid, list(c.add if document == ADD_DOCUMENT else c.remove))
            for cid, c in sorted(planned.items())
        ]
        rows = [(cid, tags) for cid, tags in rows if tags]
        if not rows:
            continue
        try:
            gid = client.run_bulk_mutation(
                document, ({"id": customer_gid(cid), "tags": tags} for cid, tags in rows)
            )
        except ShopifyError as exc:
            _record(
                ctx,
                _audit(
                    state.shop_id, action, count=len(rows), result="error", error=stored_error(exc)
                ),
            )
            raise
        report.requests += 1
        report.bulk_operations.append(gid)
        _record(
            ctx,
            _audit(
                state.shop_id,
                action,
                subject=gid,
                count=len(rows),
                result=RUNNING,
                detail={"operation": gid, "attempt": attempt, "rows": [list(r) for r in rows]},
            ),
        )


def _record_limits(ctx: jobs.Context, shop_id: int, limited: Mapping[int, tuple[str, ...]]) -> None:
    if not limited:
        return
    log.warning(
        "shop %s: %d customers at Shopify's %d-tag limit; Goldpan tags not added",
        shop_id,
        len(limited),
        MAX_TAGS_PER_CUSTOMER,
    )
    sample = dict(list(sorted(limited.items()))[:100])
    entry = _audit(
        shop_id,
        "tags.limit",
        count=len(limited),
        result="partial",
        detail={
            "message": (
                f"{len(limited)} customers already have {MAX_TAGS_PER_CUSTOMER} tags; "
                "Goldpan did not add its tags to them and never removes the merchant's tags "
                "to make room"
            ),
            "customers": {str(cid): list(tags) for cid, tags in sample.items()},
        },
    )
    entry.target = "app"
    _record(ctx, entry)


def sync_tags(
    ctx: jobs.Context,
    shop_id: int,
    customer_ids: Sequence[int] | None = None,
    *,
    client: AdminAPI | None = None,
    extra_owned: Iterable[str] = (),
    wanted_override: Mapping[int, set[str]] | None = None,
    attempt: int = 1,
) -> SyncReport:
    """Write the tag diff of ``customer_ids`` (all customers when ``None``) to Shopify.

    ``extra_owned`` adds tags Goldpan owns only for this run (an old tag being migrated away);
    ``wanted_override`` replaces the memberships (``remove_all`` wants nothing). An unchanged
    customer costs nothing; a changed one one slot in an aliased request, or one bulk row.
    """
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or not shop.is_installed:
            # Uninstalled (or redacted): nothing can be written, and nothing should be.
            log.info("tags for shop %s skipped: not installed", shop_id)
            return SyncReport()
        state = ShopTags.load(session, shop_id, extra_owned)
        planned, limited, wanted = plan(
            session, state, customer_ids, wanted_override=wanted_override
        )
        busy = _in_flight(session, shop_id) if planned else set()
    report = SyncReport(checked=len(wanted), limited=dict(limited))
    for customer_id in busy & planned.keys():
        del planned[customer_id]
        report.in_flight += 1
    _record_limits(ctx, shop_id, limited)
    if not planned:
        return report
    client = client or admin_client(ctx, shop_id)
    if len(planned) > state.threshold and attempt <= MAX_BULK_ATTEMPTS:
        _write_bulk(ctx, client, state, planned, report, attempt)
    else:
        _write_small(ctx, client, state, planned, wanted, report)
    log.info("tags for shop %s: %s", shop_id, report.summary())
    return report


# --------------------------------------------------------------------------------------------
# Bulk completion
# --------------------------------------------------------------------------------------------

_TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "EXPIRED"}


def on_bulk_finish(
    ctx: jobs.Context,
    shop_id: int,
    payload: Mapping[str, Any],
    *,
    client: AdminAPI | None = None,
) -> SyncReport | None:
    """Handle ``bulk_operations/finish`` of a tag bulk mutation (``type`` ``"mutation"``).

    Reads the result JSONL (or the partial one of a failed operation), stores the tags Shopify
    answered for each row that succeeded, then re-diffs the operation's customers: rows that
    answered ``userErrors`` or never ran are written again, and so are changes that arrived
    while the operation ran. Idempotent: a repeated delivery finds the entry finished.
    Returns the retry's report, or ``None`` when the operation is not one of ours or not done.
    """
    gid = str(payload.get("admin_graphql_api_id") or payload.get("id") or "")
    client = client or admin_client(ctx, shop_id)
    with ctx.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.subject == gid,
                AuditEntry.action.in_(_BULK_ACTIONS),
            )
        ).first()
        if entry is None or entry.result != RUNNING:
            return None
        entry_id = entry.id
        rows: list[list[Any]] = list(entry.detail.get("rows", []))
        attempt = int(entry.detail.get("attempt", 1))
        deferred = [int(cid) for cid in entry.detail.get("deferred", [])]
        kind = "add" if entry.action == "tags.bulk_add" else "remove"
    operation = client.bulk_operation(gid)
    status = str(operation.get("status") or payload.get("status") or "").upper()
    if status not in _TERMINAL:
        return None
    url = operation.get("url") or operation.get("partialDataUrl")
    field_name = "tagsAdd" if kind == "add" else "tagsRemove"
    answered: dict[int, list[str] | None] = {}
    stamps: dict[int, dt.datetime | None] = {}
    failed: dict[int, str] = {}
    if url:
        for line in client.stream_jsonl(str(url)):
            number = line.get("__lineNumber")
            if not isinstance(number, int) or not 0 <= number < len(rows):
                continue
            customer_id = int(rows[number][0])
            result = (line.get("data") or {}).get(field_name) or {}
            errors = result.get("userErrors") or line.get("errors") or []
            if errors or not result:
                failed[customer_id] = "; ".join(str(e.get("message")) for e in errors) or "no data"
                continue
            node = result.get("node") or {}
            answered[customer_id] = node.get("tags") if isinstance(node.get("tags"), list) else None
            stamps[customer_id] = _timestamp(node.get("updatedAt"))
    missing = [int(row[0]) for row in rows if int(row[0]) not in answered]
    row_tags = {int(row[0]): list(row[1]) for row in rows}
    with transaction(ctx.sessions) as session:
        entry_row = session.get(AuditEntry, entry_id, with_for_update=True)
        if entry_row is None or entry_row.result != RUNNING:
            return None  # another delivery (webhook vs poll) got here first
        customers: dict[int, Customer] = {}
        for chunk in _chunks(list(answered)):
            query = select(Customer).where(Customer.shop_id == shop_id)
            if chunk is not None:
                query = query.where(Customer.id.in_(chunk))
            customers.update((c.id, c) for c in session.scalars(query))
        for customer_id, tags in answered.items():
            customer = customers.get(customer_id)
            if customer is None:
                continue
            if tags is None:
                step = (
                    TagDiff(add=tuple(row_tags[customer_id]))
                    if kind == "add"
                    else TagDiff(remove=tuple(row_tags[customer_id]))
                )
                tags = apply(list(customer.tags or []), step)
            _store_answer(customer, [str(t) for t in tags], stamps.get(customer_id))
        entry_row.result = "ok" if not missing else ("error" if not answered else "partial")
        entry_row.error = (
            None if not missing else f"{status}: {len(missing)} of {len(rows)} rows not applied"
        )
        entry_row.detail = {
            "operation": gid,
            "attempt": attempt,
            "status": status,
            "error_code": operation.get("errorCode") or payload.get("error_code"),
            "rows": len(rows),
            "succeeded": len(answered),
            "failed": {str(k): v for k, v in list(failed.items())[:100]},
            "not_run": len(missing) - len(failed),
        }
        entry_row.at = utcnow()
        # Re-diff every row, not only the failed ones: a recompute that came in while the
        # operation ran was skipped as in flight and is caught up here (diff-only: customers
        # already right cost nothing). Customers also in a sibling operation still running (the
        # removes' twin of these adds) would be skipped again; the sibling takes them instead.
        retry = sorted({int(row[0]) for row in rows} | set(deferred))
        siblings = session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.action.in_(_BULK_ACTIONS),
                AuditEntry.result == RUNNING,
                AuditEntry.id != entry_id,
            )
            .with_for_update()
        ).all()
        for sibling in siblings:
            theirs = {int(row[0]) for row in sibling.detail.get("rows", [])} & set(retry)
            if theirs:
                later = sorted(set(sibling.detail.get("deferred", [])) | theirs)
                sibling.detail = {**sibling.detail, "deferred": later}
                retry = [cid for cid in retry if cid not in theirs]
    if missing:
        log.warning("tag bulk %s for shop %s: %d rows not applied", gid, shop_id, len(missing))
    if not retry:
        return SyncReport()
    return sync_tags(ctx, shop_id, retry, client=client, attempt=attempt + 1)


def poll_bulk(ctx: jobs.Context, shop_id: int, *, client: AdminAPI | None = None) -> int:
    """Finish every running tag bulk mutation of the shop that Shopify reports done.

    The fallback when a ``bulk_operations/finish`` webhook is late or lost. Returns how many
    operations are running afterwards (retries started here included).
    """
    with ctx.sessions() as session:
        gids = _running_gids(session, shop_id)
    client = client or admin_client(ctx, shop_id)
    for gid in gids:
        operation = client.bulk_operation(gid)
        status = str(operation.get("status") or "").upper()
        if status in _TERMINAL:
            on_bulk_finish(
                ctx,
                shop_id,
                {"admin_graphql_api_id": gid, "status": status, "type": "mutation"},
                client=client,
            )
    # Finishing may have started retries; they count as running too.
    with ctx.sessions() as session:
        return len(_running_gids(session, shop_id))


def _running_gids(session: Session, shop_id: int) -> list[str]:
    return [
        gid
        for gid in session.scalars(
            select(AuditEntry.subject).where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.action.in_(_BULK_ACTIONS),
                AuditEntry.result == RUNNING,
            )
        )
        if gid is not None
    ]


# --------------------------------------------------------------------------------------------
# Segment changes, removal, native segments, preview
# --------------------------------------------------------------------------------------------


def on_segment_changed(
    ctx: jobs.Context,
    shop_id: int,
    segment_id: int,
    old_tag: str | None = None,
    *,
    client: AdminAPI | None = None,
) -> SyncReport:
    """After a tag rename or tag sync switched off/on: move the tag, diff-only.

    ``old_tag`` (the tag before a rename) is treated as Goldpan's for this run, so customers
    carrying it lose it and members gain the new tag; customers already right cost nothing.
    A native Shopify segment follows the rename.
    """
    client = client or admin_client(ctx, shop_id)
    extra = [old_tag] if old_tag else []
    report = sync_tags(ctx, shop_id, None, client=client, extra_owned=extra)
    with ctx.sessions() as session:
        segment = session.get(Segment, segment_id)
        native = segment is not None and segment.native_segment_id is not None
    if native:
        ensure_native_segment(ctx, shop_id, segment_id, client=client)
    return report


def on_prefix_changed(
    ctx: jobs.Context, shop_id: int, old_prefix: str, *, client: AdminAPI | None = None
) -> SyncReport:
    """After the merchant changed the tag prefix: move every prefix-named tag, diff-only.

    Only the tags Goldpan itself wrote under the old prefix (old prefix + handle) are treated as
    Goldpan's for this run, not every tag that happens to start with the old prefix. Native
    segments of prefix-named tags follow.
    """
    with ctx.sessions() as session:
        segments = session.scalars(select(Segment).where(Segment.shop_id == shop_id)).all()
        old_tags = [f"{old_prefix}{s.handle}" for s in segments if not (s.tag or "").strip()]
        native = [s.id for s in segments if s.native_segment_id and not (s.tag or "").strip()]
    client = client or admin_client(ctx, shop_id)
    report = sync_tags(ctx, shop_id, None, client=client, extra_owned=old_tags)
    for segment_id in native:
        ensure_native_segment(ctx, shop_id, segment_id, client=client)
    return report


def remove_all(ctx: jobs.Context, shop_id: int, *, client: AdminAPI | None = None) -> SyncReport:
    """Remove every Goldpan tag from every customer and switch tag sync off on every segment.

    Tag sync goes off first, so a recompute racing with the removal does not add tags back.
    """
    with transaction(ctx.sessions) as session:
        for segment in session.scalars(select(Segment).where(Segment.shop_id == shop_id)):
            segment.tag_sync = False
        session.add(AuditEntry(shop_id=shop_id, target="app", action="tags.remove_all", count=0))
    return sync_tags(ctx, shop_id, None, client=client, wanted_override={})


def ensure_native_segment(
    ctx: jobs.Context, shop_id: int, segment_id: int, *, client: AdminAPI | None = None
) -> str:
    """Create (or update) the native Shopify segment ``customer_tags CONTAINS '<tag>'``.

    Idempotent: an existing segment (by id, or by name when an earlier answer was lost) is
    updated in place. Returns its GID.
    """
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        segment = session.get(Segment, segment_id)
        if shop is None or segment is None or segment.shop_id != shop_id:
            raise InputError(f"segment {segment_id} not found", field="segment_id")
        tag = segment_tag(segment, shop_prefix(shop))
        name = f"Goldpan: {segment.name}"
        existing = segment.native_segment_id
    client = client or admin_client(ctx, shop_id)
    query = native_segment_query(tag)
    if existing is None:
        found = client.execute("segments", {"query": f"name:'{_escape(name)}'"})
        nodes = ((found.get("segments") or {}).get("nodes")) or []
        existing = next((n["id"] for n in nodes if n.get("name") == name), None)
    if existing is None:
        data = client.execute("segment_create", {"name": name, "query": query})
        payload = data.get("segmentCreate") or {}
        action = "tags.native_create"
    else:
        data = client.execute("segment_update", {"id": existing, "name": name, "query": query})
        payload = data.get("segmentUpdate") or {}
        action = "tags.native_update"
    errors = payload.get("userErrors") or []
    gid = (payload.get("segment") or {}).get("id")
    with transaction(ctx.sessions) as session:
        session.add(
            _audit(
                shop_id,
                action,
                subject=gid or existing,
                count=1,
                result="error" if errors or not gid else "ok",
                detail={"name": name, "query": query, "userErrors": errors},
                error="; ".join(str(e.get("message")) for e in errors) or None,
            )
        )
        if gid:
            row = session.get(Segment, segment_id)
            if row is not None:
                row.native_segment_id = gid
    if errors or not gid:
        raise ShopifyError(f"native segment for {tag!r} refused: {errors}")
    return str(gid)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def preview(session: Session, shop_id: int) -> dict[str, dict[str, int]]:
    """Per enabled segment handle: how many customers would gain and lose its tag if synced.

    Counts as if tag sync were on for that segment (it is shown before the merchant enables it).
    """
    shop = session.get(Shop, shop_id)
    if shop is None:
        return {}
    prefix = shop_prefix(shop)
    segments = session.scalars(
        select(Segment).where(Segment.shop_id == shop_id, Segment.enabled.is_(True))
    ).all()
    if not segments:
        return {}
    members: dict[int, set[int]] = defaultdict(set)
    for segment_id, customer_id in session.execute(
        select(Membership.segment_id, Membership.customer_id).where(Membership.shop_id == shop_id)
    ):
        members[segment_id].add(customer_id)
    holders: dict[str, set[int]] = defaultdict(set)
    tag_keys = {tag_key(segment_tag(s, prefix)) for s in segments}
    for customer_id, tags in session.execute(
        select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
    ):
        for tag in tags or []:
            key = tag_key(str(tag))
            if key in tag_keys:
                holders[key].add(customer_id)
    result: dict[str, dict[str, int]] = {}
    for segment in segments:
        have = holders.get(tag_key(segment_tag(segment, prefix)), set())
        want = members.get(segment.id, set())
        result[segment.handle] = {"gain": len(want - have), "lose": len(have - want)}
    return result


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


class _LazyClient:
    """The shop's Admin client, built on first use (a run with nothing to write builds none)
    and closed when the task ends, so the cost it spent reaches ``Shop.api_cost_spent``."""

    def __init__(self, ctx: jobs.Context, shop_id: int) -> None:
        self._ctx = ctx
        self._shop_id = shop_id
        self._client: AdminAPI | None = None

    def _get(self) -> AdminAPI:
        if self._client is None:
            from shopify_app.shopify.client import AdminClient

            # One kept-alive connection per worker thread, not a new one per tag write.
            self._client = AdminClient(self._ctx, self._shop_id, http=_thread_http())
        return self._client

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._get().execute(document_name, variables)

    def run_bulk_mutation(self, document_name: str, rows: Iterable[dict[str, Any]]) -> str:
        return self._get().run_bulk_mutation(document_name, rows)

    def bulk_operation(self, gid: str) -> dict[str, Any]:
        return self._get().bulk_operation(gid)

    def stream_jsonl(self, url: str) -> Iterator[dict[str, Any]]:
        return self._get().stream_jsonl(url)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if callable(close):
            close()


_HTTP = threading.local()


def _thread_http() -> requests.Session:
    """This thread's HTTP session for task clients (requests' sessions are not thread-safe)."""
    session: requests.Session | None = getattr(_HTTP, "session", None)
    if session is None:
        session = _HTTP.session = requests.Session()
    return session


@contextmanager
def _task_client(ctx: jobs.Context, shop_id: int) -> Iterator[AdminAPI]:
    client = _LazyClient(ctx, shop_id)
    try:
        yield client
    finally:
        client.close()


@jobs.task("tags.sync")
def sync_task(
    ctx: jobs.Context, shop_id: int, customer_ids: list[int] | None = None
) -> dict[str, Any]:
    """Task: write the tag diff for some customers (after a recompute) or all (``None``)."""
    with _task_client(ctx, shop_id) as client:
        return sync_tags(ctx, shop_id, customer_ids, client=client).summary()


@jobs.task("tags.remove_all")
def remove_all_task(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """Task: remove every Goldpan tag (the merchant is leaving)."""
    with _task_client(ctx, shop_id) as client:
        return remove_all(ctx, shop_id, client=client).summary()


@jobs.task("tags.segment_changed")
def segment_changed_task(
    ctx: jobs.Context, shop_id: int, segment_id: int, old_tag: str | None = None
) -> dict[str, Any]:
    """Task: a segment's tag was renamed or its tag sync switched; migrate diff-only."""
    with _task_client(ctx, shop_id) as client:
        return on_segment_changed(ctx, shop_id, segment_id, old_tag, client=client).summary()


@jobs.task("tags.prefix_changed")
def prefix_changed_task(ctx: jobs.Context, shop_id: int, old_prefix: str) -> dict[str, Any]:
    """Task: the shop's tag prefix changed; move the prefix-named tags diff-only."""
    with _task_client(ctx, shop_id) as client:
        return on_prefix_changed(ctx, shop_id, old_prefix, client=client).summary()


@jobs.task("tags.native_segment")
def native_segment_task(ctx: jobs.Context, shop_id: int, segment_id: int) -> str:
    """Task: create or update the segment's native Shopify segment."""
    with _task_client(ctx, shop_id) as client:
        return ensure_native_segment(ctx, shop_id, segment_id, client=client)


@jobs.task("tags.poll_bulk")
def poll_bulk_task(ctx: jobs.Context, shop_id: int) -> int:
    """Task: finish this shop's tag bulk mutations that Shopify reports done."""
    with _task_client(ctx, shop_id) as client:
        return poll_bulk(ctx, shop_id, client=client)


@jobs.periodic("tags.poll_bulk_all", minute="*/5")
def poll_bulk_all(ctx: jobs.Context) -> None:
    """Every 5 minutes: poll the shops with tag bulk mutations still marked running."""
    with ctx.sessions() as session:
        shop_ids = set(
            session.scalars(
                select(AuditEntry.shop_id).where(
                    AuditEntry.action.in_(_BULK_ACTIONS), AuditEntry.result == RUNNING
                )
            )
        )
    for shop_id in sorted(shop_ids):
        ctx.enqueue("tags.poll_bulk", shop_id=shop_id)


__all__ = [
    "DEFAULT_BULK_THRESHOLD",
    "DEFAULT_PREFIX",
    "MAX_TAGS_PER_CUSTOMER",
    "AdminAPI",
    "ShopTags",
    "SyncReport",
    "TagDiff",
    "apply",
    "batch_document",
    "diff",
    "ensure_native_segment",
    "native_segment_query",
    "on_bulk_finish",
    "on_prefix_changed",
    "on_segment_changed",
    "ownership",
    "plan",
    "poll_bulk",
    "preview",
    "remove_all",
    "sync_tags",
    "tag_key",
    "validate_tag",
]
