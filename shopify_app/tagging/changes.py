"""Changes the merchant makes to tagging: renames, tag sync on/off, a new prefix, removal.

Each is a full diff-only run (customers already right cost nothing): every tag in the ledger
that is no longer wanted comes off, the wanted ones go on, and nothing the merchant wrote is
touched. Turning a segment's sync on is previewed first (:func:`preview`); settings changes are
previewed by :mod:`shopify_app.segments.settings_change`. A native Shopify segment
(``customer_tags CONTAINS '<tag>'``) follows its segment's tag.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, Customer, Membership, Segment, Shop
from shopify_app.errors import InputError, ShopifyError
from shopify_app.states import AuditResult, AuditTarget
from shopify_app.tagging import ledger
from shopify_app.tagging.state import shop_prefix
from shopify_app.tagging.tags import moved_tag, quoted, segment_tag, tag_key
from shopify_app.tagging.writes import (
    AdminAPI,
    SyncReport,
    admin_client,
    shopify_audit,
    sync_tags,
)


def on_segment_changed(
    ctx: jobs.Context,
    shop_id: int,
    segment_id: int,
    old_tag: str | None = None,
    *,
    client: AdminAPI | None = None,
) -> SyncReport:
    """After a tag rename or tag sync switched off/on: move the tag, diff-only.

    Customers Goldpan gave ``old_tag`` (the tag before a rename) lose it and members gain the
    new tag; a customer who had ``old_tag`` before Goldpan keeps it. A native Shopify segment
    follows the rename. ``old_tag`` is kept in the task's signature (queued tasks keep
    working); the ledger already knows which customers carry it because of Goldpan.
    """
    del old_tag
    client = client or admin_client(ctx, shop_id)
    report = sync_tags(ctx, shop_id, None, client=client)
    with ctx.sessions() as session:
        segment = session.get(Segment, segment_id)
        native = segment is not None and segment.native_segment_id is not None
    if native:
        ensure_native_segment(ctx, shop_id, segment_id, client=client)
    return report


def move_prefix(session: Session, shop_id: int, old_prefix: str, new_prefix: str) -> None:
    """In the settings change's transaction: rename the segment tags named under ``old_prefix``
    to ``new_prefix`` (a tag the merchant renamed outside the prefix stays);
    :func:`on_prefix_changed` then moves the customers' tags."""
    for segment in session.scalars(select(Segment).where(Segment.shop_id == shop_id)):
        tag = moved_tag(
            segment_tag(segment.tag, segment.handle, old_prefix), old_prefix, new_prefix
        )
        if tag is not None:
            segment.tag = tag


def on_prefix_changed(
    ctx: jobs.Context, shop_id: int, old_prefix: str, *, client: AdminAPI | None = None
) -> SyncReport:
    """After the merchant changed the tag prefix: move every tag Goldpan wrote, diff-only.

    The settings change already renamed the segments' tags named under ``old_prefix``
    (:func:`~shopify_app.tagging.tags.moved_tag`); this run takes every ledger tag no longer
    wanted off (the old names) and puts the new names on, so no customer keeps both. A tag that
    merely starts with the old prefix but was not written by Goldpan stays. Native segments
    follow their tags.
    """
    client = client or admin_client(ctx, shop_id)
    report = sync_tags(ctx, shop_id, None, client=client)
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        prefix = shop_prefix(shop) if shop is not None else ""
        segments = session.scalars(select(Segment).where(Segment.shop_id == shop_id)).all()
        native = [
            s.id
            for s in segments
            if s.native_segment_id
            and tag_key(segment_tag(s.tag, s.handle, prefix)).startswith(tag_key(prefix))
        ]
    with transaction(ctx.sessions) as session:
        session.add(
            AuditEntry.of(
                shop_id,
                "tags.prefix_changed",
                target=AuditTarget.APP,
                subject=f"{old_prefix} → {prefix}"[:255],
                count=report.changed,
                detail=report.summary(),
            )
        )
    for segment_id in native:
        ensure_native_segment(ctx, shop_id, segment_id, client=client)
    return report


def remove_all(ctx: jobs.Context, shop_id: int, *, client: AdminAPI | None = None) -> SyncReport:
    """Remove every tag in the ledger from every customer and switch tag sync off everywhere.

    Tag sync goes off first, so a recompute racing with the removal does not add tags back.
    The ledger is empty afterwards, except for customers in a bulk mutation still running
    (finishing it runs the same diff again).
    """
    with transaction(ctx.sessions) as session:
        for segment in session.scalars(select(Segment).where(Segment.shop_id == shop_id)):
            segment.tag_sync = False
        session.add(
            AuditEntry(shop_id=shop_id, target=AuditTarget.APP, action="tags.remove_all", count=0)
        )
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
        tag = segment_tag(segment.tag, segment.handle, shop_prefix(shop))
        name = f"Goldpan: {segment.name}"
        existing = segment.native_segment_id
    client = client or admin_client(ctx, shop_id)
    query = native_segment_query(tag)
    if existing is None:
        found = client.execute("segments", {"query": f"name:{quoted(name)}"})
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
            shopify_audit(
                shop_id,
                action,
                subject=gid or existing,
                count=1,
                result=AuditResult.ERROR if errors or not gid else AuditResult.OK,
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


def preview(session: Session, shop_id: int) -> dict[str, dict[str, int]]:
    """Per enabled segment handle: how many customers would gain and lose its tag if synced.

    Counts as if tag sync were on for that segment (it is shown before the merchant enables it).
    Only customers Goldpan gave the tag can lose it.
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
    tag_keys = {tag_key(segment_tag(s.tag, s.handle, prefix)) for s in segments}
    for customer_id, tags in session.execute(
        select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
    ):
        for tag in tags or []:
            key = tag_key(str(tag))
            if key in tag_keys:
                holders[key].add(customer_id)
    ours: dict[str, set[int]] = defaultdict(set)
    for customer_id, keys in ledger.owned(session, shop_id, None).items():
        for key in keys.keys() & tag_keys:
            ours[key].add(customer_id)
    result: dict[str, dict[str, int]] = {}
    for segment in segments:
        key = tag_key(segment_tag(segment.tag, segment.handle, prefix))
        have = holders.get(key, set())
        want = members.get(segment.id, set())
        lose = (have & ours.get(key, set())) - want
        result[segment.handle] = {"gain": len(want - have), "lose": len(lose)}
    return result


def native_segment_query(tag: str) -> str:
    """The ShopifyQL query of a native segment holding the customers tagged ``tag``."""
    return f"customer_tags CONTAINS {quoted(tag)}"
