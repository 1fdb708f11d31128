"""Hold-out groups: a segment's members who get no Goldpan action, so the action can be measured.

A merchant keeps a share of a segment (``ShopConfig.holdouts``, by handle; the page offers 10%)
as a control group: no tag-driven discount, no Meta upload, no Flow event. Who is held out is a
stable hash of the segment handle and the customer id, so a customer stays in the same group
across recomputes, workers and restarts, and the split needs no stored state. The handle is in
the hash so the same customers are not held out of every segment at once.
"""

from __future__ import annotations

import hashlib

from shopify_app.segments.config import ShopConfig

DEFAULT_SHARE = 0.10


def bucket(segment_handle: str, customer_id: int) -> float:
    """Where ``customer_id`` falls in ``[0, 1)`` for ``segment_handle``; uniform and stable."""
    digest = hashlib.blake2b(f"{segment_handle}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def share(config: ShopConfig, segment_handle: str) -> float:
    """The hold-out share the merchant chose for ``segment_handle`` (0 when none)."""
    return config.holdouts.get(segment_handle, 0.0)


def held_out(config: ShopConfig, segment_handle: str, customer_id: int) -> bool:
    """Whether ``customer_id`` is in ``segment_handle``'s control group (gets no action)."""
    kept = share(config, segment_handle)
    return kept > 0 and bucket(segment_handle, customer_id) < kept
