"""Shopify's tag-name rules and Goldpan's naming rules: the one place the app decides what a tag is.

Shopify compares tags trimmed and case-insensitively, refuses empty tags, tags longer than
:data:`MAX_TAG_LENGTH` and (because ``tagsAdd`` splits on commas) tags with a comma, and keeps at
most :data:`MAX_TAGS_PER_CUSTOMER` on one customer. Every tag name the app builds, checks or
compares goes through this module (the sandbox keeps its own copy of Shopify's rules: it stands
in for Shopify).

A tag is Goldpan's only if Goldpan wrote it on that customer: :mod:`.ledger` records each write.
The prefix (default ``goldpan-``) makes Goldpan's tags readable; it does not make a tag Goldpan's,
so a merchant's ``goldpan-friends`` or ``VIP`` is never touched.
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
PREFIX_SEPARATORS = "-_./"
"""What a new prefix ends in. Shopify allows any character but a comma in a tag; these four are
also plain in Shopify's search syntax (``:``, ``\\``, ``(`` and ``)`` must be escaped there), so
``tag:gp-vip`` works as typed in customer search."""
MIN_PREFIX_LENGTH = 3
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{1,31}$")
_STORED_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,31}$")


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


def written(tags: Iterable[str]) -> Ownership:
    """The predicate "Goldpan wrote this tag on this customer", from the customer's ledger rows.

    Compared as Shopify compares (a ledger row ``goldpan-vip`` owns ``Goldpan-VIP``).
    """
    keys = frozenset(tag_key(t) for t in tags)
    return lambda tag: tag_key(tag) in keys


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot become the shop's tag prefix, or ``None`` if it is fine.

    At least :data:`MIN_PREFIX_LENGTH` characters and ending in a separator, so Goldpan's tags
    read as Goldpan's (``VIP`` or ``s`` would make ``VIPtrue-fans``, ``strue-fans``); short and
    plain, because it starts every segment's tag and merchants type it into customer search.
    """
    if len(prefix) < MIN_PREFIX_LENGTH or prefix[-1:] not in tuple(PREFIX_SEPARATORS):
        return (
            f"a tag prefix needs at least {MIN_PREFIX_LENGTH} characters and must end in "
            + " ".join(PREFIX_SEPARATORS)
            + " (for example goldpan-)"
        )
    if not _PREFIX_RE.match(prefix):
        return (
            "a tag prefix may have at most 32 letters, digits or "
            + " ".join(PREFIX_SEPARATORS)
            + ", starting with a letter or digit"
        )
    return None


def stored_prefix_problem(prefix: str) -> str | None:
    """Why a stored prefix is unusable, or ``None``.

    A prefix saved before :func:`prefix_problem` existed (``gp``, ``gp:``) stays the shop's
    until the merchant changes it: refusing it on read would reset every setting to the
    defaults and move every tag.
    """
    if _STORED_PREFIX_RE.match(prefix):
        return None
    return "tag prefix must be 1-32 letters, digits or - _ . : / (starting with a letter or digit)"


def quoted(value: str) -> str:
    """``value`` as a single-quoted string of Shopify's search syntax and ShopifyQL alike."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def segment_tag(own_tag: str | None, handle: str, prefix: str) -> str:
    """The tag a segment writes: its own tag, else ``prefix`` + ``handle``."""
    return (own_tag or "").strip() or f"{prefix}{handle}"


def moved_tag(tag: str, old_prefix: str, new_prefix: str) -> str | None:
    """``tag`` under ``new_prefix`` if it is named under ``old_prefix`` (compared as Shopify
    does), else ``None``: a segment tag the merchant renamed outside the prefix stays as it is."""
    if old_prefix and tag_key(tag).startswith(tag_key(old_prefix)):
        return new_prefix + tag.strip()[len(old_prefix.strip()) :]
    return None
