"""Shopify's tag-name rules and Goldpan's ownership: the one place the app decides what a tag is.

Shopify compares tags trimmed and case-insensitively, refuses empty tags, tags longer than
:data:`MAX_TAG_LENGTH` and (because ``tagsAdd`` splits on commas) tags with a comma, and keeps at
most :data:`MAX_TAGS_PER_CUSTOMER` on one customer. Goldpan owns its namespace: the shop's prefix
(default ``goldpan-``) plus every segment's own tag, which the merchant may rename to anything;
it never adds, removes or reorders any other tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from shopify_app.errors import InputError

DEFAULT_PREFIX = "goldpan-"
MAX_TAGS_PER_CUSTOMER = 250
"""Shopify's limit of tags on one customer."""
MAX_TAG_LENGTH = 255
"""Shopify's limit on one tag's length (characters)."""


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
