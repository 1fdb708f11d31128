"""The pure tag diff and the request documents it becomes; no database, no HTTP.

:func:`diff` takes the tags a customer has in Shopify now, the Goldpan tags they should have,
and which tags Goldpan wrote on them (the ledger, :mod:`.ledger`), and returns what to add and
remove; :func:`plan` does it for every customer of a run. :func:`apply` is what Shopify ends up
with after a diff.

Small diffs go out as ``tagsRemove``/``tagsAdd`` fields, up to :data:`BATCH_SLOTS` of each per
request, through static aliased documents (``tags_batch_<n>.graphql``, n = 1, 4, 10) whose slots
are switched on with ``@include``. Static files keep the rule "every document the app sends is a
file validated against the schema" (runtime-generated alias documents would escape that check);
``@include`` lets one file serve several batch sizes, and a batch takes the smallest file it fits
so skipped slots stay few even if Shopify prices them. A single field uses the plain one-field
documents (``tags_add``/``tags_remove``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from shopify_app.tagging.tags import (
    MAX_TAGS_PER_CUSTOMER,
    Ownership,
    tag_key,
    tag_problem,
    written,
)

BATCH_SIZES = (1, 4, 10)
"""Slot counts of the static aliased documents ``tags_batch_<n>.graphql`` (see
:func:`batch_document`). Whether Shopify prices a field skipped by ``@include`` is not
documented, so a batch uses the smallest document it fits: at most 2.5x the fields it needs are
ever priced, and never more than 200 requested points (well under the 1,000 single-query cap)."""
BATCH_SLOTS = BATCH_SIZES[-1]
"""tagsRemove and tagsAdd slots in the largest batch document."""


def batch_document_name(slots: int) -> str:
    """``tags_batch_<slots>``: the file stem of the aliased document with ``slots`` slots."""
    return f"tags_batch_{slots}"


ADD_DOCUMENT = "tags_add"
REMOVE_DOCUMENT = "tags_remove"
_PLACEHOLDER_ID = "gid://shopify/Customer/0"


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
    owned: Ownership,
    *,
    limit: int = MAX_TAGS_PER_CUSTOMER,
) -> TagDiff:
    """The tag changes that turn ``current`` into "``current``'s other tags plus ``wanted``".

    * Removes only tags Goldpan wrote (``owned``) that are not wanted, spelled exactly as
      Shopify has them.
    * Adds wanted tags missing from ``current`` (compared as Shopify does: trimmed,
      case-insensitive), in sorted order so runs are deterministic.
    * Never makes room by removing a tag Goldpan does not own: when the result would exceed
      ``limit`` tags, the adds that do not fit are reported in ``dropped`` instead.
    * Wanted tags Shopify would refuse (empty, too long, with a comma) go to ``invalid``.
    """
    wanted_by_key: dict[str, str] = {}
    invalid: list[str] = []
    for tag in wanted:
        if tag_problem(tag) is not None:
            invalid.append(tag)
            continue
        wanted_by_key.setdefault(tag_key(tag), tag.strip())
    current_keys = {tag_key(t) for t in current}
    remove = tuple(t for t in current if owned(t) and tag_key(t) not in wanted_by_key)
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


def plan(
    current: Mapping[int, Sequence[str]],
    wanted: Mapping[int, Set[str]],
    ledger: Mapping[int, Iterable[str]],
) -> tuple[dict[int, TagDiff], dict[int, tuple[str, ...]]]:
    """Diff every customer in ``current``: (the changes to write, customers who hit the limit).

    ``ledger`` holds the tags Goldpan wrote per customer. Customers without an entry in
    ``wanted`` want no Goldpan tag; unchanged ones are left out.
    """
    changes: dict[int, TagDiff] = {}
    limited: dict[int, tuple[str, ...]] = {}
    for customer_id, tags in current.items():
        owned = written(ledger.get(customer_id, ()))
        change = diff(tags, wanted.get(customer_id, frozenset()), owned)
        if change.dropped:
            limited[customer_id] = change.dropped
        if not change.empty:
            changes[customer_id] = change
    return changes, limited


def batch_document(slots: int = BATCH_SLOTS) -> str:
    """The text of ``tags_batch.graphql``: ``slots`` removes then ``slots`` adds, each optional.

    Kept as a generator so the static files and the slot counts cannot drift (a test compares).
    """
    header = [
        f"# Up to {slots} tagsRemove and {slots} tagsAdd in one request (aliases r0.., a0..). Each",
        "# slot is switched on by @include, so one static, schema-validated document serves many",
        "# batch sizes. Removes come first (top-level mutation fields run in order), so a customer",
        "# near the 250-tag limit frees room before gaining.",
        f"# Generated by shopify_app.tagging.diff.batch_document({slots});"
        " a test keeps the two equal.",
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


def batches(changes: Mapping[int, TagDiff], slots: int = BATCH_SLOTS) -> Iterator[list[int]]:
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


def batch_request(
    changes: Mapping[int, TagDiff],
) -> tuple[str, dict[str, Any], list[tuple[str, int]]]:
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
