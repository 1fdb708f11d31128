"""Changes the merchant makes to tagging: renames, tag sync on/off, a new prefix, removal.

Each moves tags diff-only (customers already right cost nothing) and is previewed before it is
confirmed (:func:`preview`). A native Shopify segment (``customer_tags CONTAINS '<tag>'``)
follows its segment's tag.
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
from shopify_app.tagging.state import shop_prefix
from shopify_app.tagging.tags import segment_tag, tag_key
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


def _escape(value: str) -> str:
    """``value`` escaped for single quotes (ShopifyQL and Shopify's search syntax alike)."""
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
    tag_keys = {tag_key(segment_tag(s.tag, s.handle, prefix)) for s in segments}
    for customer_id, tags in session.execute(
        select(Customer.id, Customer.tags).where(Customer.shop_id == shop_id)
    ):
        for tag in tags or []:
            key = tag_key(str(tag))
            if key in tag_keys:
                holders[key].add(customer_id)
    result: dict[str, dict[str, int]] = {}
    for segment in segments:
        have = holders.get(tag_key(segment_tag(segment.tag, segment.handle, prefix)), set())
        want = members.get(segment.id, set())
        result[segment.handle] = {"gain": len(want - have), "lose": len(have - want)}
    return result


def native_segment_query(tag: str) -> str:
    """The ShopifyQL query of a native segment holding the customers tagged ``tag``."""
    return f"customer_tags CONTAINS '{_escape(tag)}'"
