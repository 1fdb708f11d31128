"""Shopify's tag-name rules and Goldpan's ownership: the one place the app decides what a tag is.

Shopify compares tags trimmed and case-insensitively, refuses empty tags, tags longer than
:data:`MAX_TAG_LENGTH` and (because ``tagsAdd`` splits on commas) tags with a comma, and keeps at
most :data:`MAX_TAGS_PER_CUSTOMER` on one customer. Goldpan owns its namespace: the shop's prefix
(default ``goldpan-``) plus every segment's own tag, which the merchant may rename to anything;
it never adds, removes or reorders any other tag. Every tag name the app builds, checks or
compares goes through this module (the sandbox keeps its own copy of Shopify's rules: it stands
in for Shopify).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from shopify_app.errors import InputError

DEFAULT_PREFIX = "goldpan-"
MAX_TAGS_PER_CUSTOMER = 250
"""Shopify's limit of tags on one customer."""
MAX_TAG_LENGTH = 255
"""Shopify's limit on one tag's length (characters)."""
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")


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


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be the shop's tag prefix, or ``None`` if it is fine.

    Short and plain (it starts every segment's tag, so prefix + handle always passes
    :func:`tag_problem`, and merchants type it into customer search).
    """
    if _PREFIX_RE.match(prefix):
        return None
    return "tag prefix must be 1-32 letters, digits or - _ . : (starting with a letter or digit)"


def segment_tag(own_tag: str | None, handle: str, prefix: str) -> str:
    """The tag a segment writes: its own (renamed) tag, else ``prefix`` + ``handle``."""
    return (own_tag or "").strip() or f"{prefix}{handle}"
