"""Win-back code discounts, one per lapsed tier the merchant switches on.

Each is a Shopify basic code discount limited to the tier's native segment
(``context.customerSegments``), the tier's percentage, once per customer, ending
:data:`VALID_DAYS` after it was written (renewed when fewer than :data:`RENEW_DAYS` are left),
with a readable code (``COMEBACK15-7KQ2``). :func:`sync` makes Shopify match the switches and
the tiers: a new switch creates, a tier change (percentage, days) updates, a switch turned off
or a tier removed deactivates (the discount is kept, as Shopify keeps it, and can be read back).

The discount's segment is a native segment of its own, "Goldpan win-back: <tier>", holding
the customers carrying the tier's tag but neither the tier's hold-out tag (its control group,
:mod:`.holdout`) nor the reminder tag (regulars still inside their usual interval, who get a
reminder instead): ``customer_tags CONTAINS '<tier>' AND customer_tags NOT CONTAINS
'<hold-out>' AND customer_tags NOT CONTAINS '<reminder>'`` (Shopify's segment query language:
``NOT CONTAINS`` is the multi-value attribute's own operator). So a tier's discount needs its
tag sync on (:func:`set_enabled` refuses otherwise), and switching it on turns on the tags of
the segments it leaves out (:func:`tag_exclusions`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import select

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, Segment, Shop, WinBackDiscount, utcnow
from shopify_app.errors import InputError, ShopifyError
from shopify_app.segments.config import LAPSED_REMINDER, ShopConfig, holdout_handle, lapsed_handle
from shopify_app.segments.recompute import shop_config
from shopify_app.states import AuditTarget
from shopify_app.tagging.state import shop_prefix
from shopify_app.tagging.tags import quoted, segment_tag
from shopify_app.tagging.writes import AdminAPI, admin_client, shopify_audit

VALID_DAYS = 30
RENEW_DAYS = 7
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed from an email


def new_code(percent: int) -> str:
    """A readable code for a ``percent`` discount: ``COMEBACK15-7KQ2``."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(4))
    return f"COMEBACK{percent}-{suffix}"


def discount_input(
    *,
    title: str,
    code: str | None,
    percent: int,
    segment_gid: str,
    starts: dt.datetime,
    ends: dt.datetime,
) -> dict[str, Any]:
    """``DiscountCodeBasicInput`` for a tier (``code`` None on update: it is kept)."""
    data: dict[str, Any] = {
        "title": title,
        "startsAt": starts.isoformat(),
        "endsAt": ends.isoformat(),
        "appliesOncePerCustomer": True,
        "context": {"customerSegments": {"add": [segment_gid]}},
        "customerGets": {"value": {"percentage": percent / 100}, "items": {"all": True}},
    }
    if code is not None:
        data["code"] = code
    return data


def set_enabled(ctx: jobs.Context, shop_id: int, tier: int, enabled: bool) -> None:
    """The merchant's switch for tier ``tier`` (1-based); queues :func:`sync`."""
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise InputError("shop not found", field="shop")
        cfg = shop_config(shop)
        if not 1 <= tier <= len(cfg.lapsed_tiers):
            raise InputError(f"there is no lapsed tier {tier}", field="tier")
        if enabled:
            segment = _segment(session, shop_id, tier)
            if segment is None or not segment.tag_sync:
                raise InputError(
                    "turn on tag sync for this tier first: its discount is limited to the "
                    "customers carrying its tag",
                    field="tier",
                )
        row = session.get(WinBackDiscount, (shop_id, tier)) or WinBackDiscount(
            shop_id=shop_id, tier=tier, status="off"
        )
        row.enabled = enabled
        session.add(row)
        session.flush()
        retag = tag_exclusions(session, shop_id)
        session.add(
            AuditEntry.of(
                shop_id,
                "discounts.enabled" if enabled else "discounts.disabled",
                target=AuditTarget.APP,
                subject=lapsed_handle(tier),
            )
        )
    if retag:
        ctx.enqueue("tags.sync", shop_id=shop_id, customer_ids=None)
    ctx.enqueue("actions.sync_discounts", shop_id=shop_id)


def auto_tagged(session: Any, shop_id: int) -> list[str]:
    """Handles whose tags Goldpan writes without the merchant's switch: the segments a
    switched-on win-back discount leaves out (the reminder segment and that tier's hold-out).
    Their tag sync is turned on with the discount (:func:`tag_exclusions`), and
    a settings change that creates one previews its tags."""
    tiers = session.scalars(
        select(WinBackDiscount.tier).where(
            WinBackDiscount.shop_id == shop_id, WinBackDiscount.enabled.is_(True)
        )
    ).all()
    if not tiers:
        return []
    return [LAPSED_REMINDER, *(holdout_handle(lapsed_handle(t)) for t in tiers)]


def tag_exclusions(session: Any, shop_id: int) -> bool:
    """Turn on tag sync for the segments a switched-on discount leaves out (the reminder
    segment and each such tier's hold-out); returns whether any was switched on (the caller
    queues a tag sync). Called when a switch changes and after every full recompute, which
    creates a hold-out segment when the merchant keeps a new hold-out."""
    handles = auto_tagged(session, shop_id)
    if not handles:
        return False
    off = session.scalars(
        select(Segment).where(
            Segment.shop_id == shop_id,
            Segment.handle.in_(handles),
            Segment.tag_sync.is_(False),
        )
    ).all()
    for segment in off:
        segment.tag_sync = True
    return bool(off)


def discount_segment_query(tier_tag: str, holdout_tag: str, reminder_tag: str) -> str:
    """The ShopifyQL of a tier's discount segment: its tag, without its hold-out or reminders."""
    return (
        f"customer_tags CONTAINS {quoted(tier_tag)}"
        f" AND customer_tags NOT CONTAINS {quoted(holdout_tag)}"
        f" AND customer_tags NOT CONTAINS {quoted(reminder_tag)}"
    )


def _segment(session: Any, shop_id: int, tier: int) -> Segment | None:
    return session.scalars(
        select(Segment).where(Segment.shop_id == shop_id, Segment.handle == lapsed_handle(tier))
    ).first()


def _title(cfg: ShopConfig, tier: int) -> str:
    return f"Goldpan win-back: lapsed {cfg.lapsed_tiers[tier - 1].days}+ days"


def sync(
    ctx: jobs.Context,
    shop_id: int,
    *,
    client: AdminAPI | None = None,
    now: dt.datetime | None = None,
) -> dict[int, str]:
    """Make the shop's code discounts match the switches and tiers; returns status per tier."""
    now = (now or utcnow()).replace(microsecond=0)
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return {}
        cfg = shop_config(shop)
        rows = session.scalars(
            select(WinBackDiscount).where(WinBackDiscount.shop_id == shop_id)
        ).all()
        plans = [
            (
                r.tier,
                r.enabled and r.tier <= len(cfg.lapsed_tiers),
                r.discount_gid,
                r.percent,
                r.ends_at,
                r.status,
                r.segment_gid,
            )
            for r in rows
        ]
    result: dict[int, str] = {}
    for tier, wanted, gid, percent, ends_at, status, segment_gid in plans:
        if not wanted:
            if gid is not None and status == "active":
                client = client or admin_client(ctx, shop_id)
                result[tier] = _deactivate(ctx, client, shop_id, tier, gid)
            else:
                result[tier] = status
            continue
        client = client or admin_client(ctx, shop_id)
        with transaction(ctx.sessions) as session:
            if tag_exclusions(session, shop_id):
                ctx.enqueue("tags.sync", shop_id=shop_id, customer_ids=None)
            segment = _segment(session, shop_id, tier)
            plan = _segment_plan(session, shop_id, tier) if segment is not None else None
            # A discount written before it had a segment of its own used the tier's, which is
            # the merchant's to use and must not be rewritten: it gets its own now.
            tier_native = segment.native_segment_id if segment is not None else None
            own_gid = segment_gid if segment_gid != tier_native else None
        if plan is None:
            result[tier] = _failed(ctx, shop_id, tier, "the tier's segment is not computed yet")
            continue
        native = _write_segment(ctx, client, shop_id, tier, own_gid, *plan)
        target = cfg.lapsed_tiers[tier - 1].discount_percent
        renew = ends_at is None or ends_at - now < dt.timedelta(days=RENEW_DAYS)
        same = (target, native) == (percent, segment_gid)
        if gid is not None and status == "active" and same and not renew:
            result[tier] = status
            continue
        result[tier] = _write(ctx, client, shop_id, cfg, tier, gid, target, native, now)
    return result


def _segment_plan(session: Any, shop_id: int, tier: int) -> tuple[str, str]:
    """The name and query of tier ``tier``'s discount segment, with the tags as named now."""
    shop = session.get(Shop, shop_id)
    prefix = shop_prefix(shop)
    handle = lapsed_handle(tier)
    own = dict(
        session.execute(
            select(Segment.handle, Segment.tag).where(
                Segment.shop_id == shop_id,
                Segment.handle.in_([handle, holdout_handle(handle), LAPSED_REMINDER]),
            )
        ).all()
    )
    segment = _segment(session, shop_id, tier)
    assert segment is not None
    tier_tag, holdout_tag, reminder_tag = (
        segment_tag(own.get(h), h, prefix)
        for h in (handle, holdout_handle(handle), LAPSED_REMINDER)
    )
    query = discount_segment_query(tier_tag, holdout_tag, reminder_tag)
    return f"Goldpan win-back: {segment.name}", query


def _write_segment(
    ctx: jobs.Context,
    client: AdminAPI,
    shop_id: int,
    tier: int,
    gid: str | None,
    name: str,
    query: str,
) -> str:
    """Create the discount's native segment, or update the one Goldpan created before; a new
    one is kept at once, so a discount write that fails next does not create it twice."""
    if gid is None:
        answer = client.execute("segment_create", {"name": name, "query": query})
        payload = answer.get("segmentCreate") or {}
    else:
        answer = client.execute("segment_update", {"id": gid, "name": name, "query": query})
        payload = answer.get("segmentUpdate") or {}
    errors = payload.get("userErrors") or []
    written = (payload.get("segment") or {}).get("id")
    with transaction(ctx.sessions) as session:
        session.add(
            shopify_audit(
                shop_id,
                "discounts.segment_create" if gid is None else "discounts.segment_update",
                subject=written or gid or name,
                count=1,
                result="error" if errors or not written else "ok",
                detail={"name": name, "query": query, "userErrors": errors},
                error="; ".join(str(e.get("message")) for e in errors) or None,
            )
        )
        row = session.get(WinBackDiscount, (shop_id, tier))
        if written and row is not None and row.discount_gid is None:
            row.segment_gid = str(written)
    if errors or not written:
        raise ShopifyError(f"the win-back segment {name!r} was refused: {errors}")
    return str(written)


def _write(
    ctx: jobs.Context,
    client: AdminAPI,
    shop_id: int,
    cfg: ShopConfig,
    tier: int,
    gid: str | None,
    percent: int,
    segment_gid: str,
    now: dt.datetime,
) -> str:
    """Create the tier's discount, or update the one Goldpan wrote before."""
    ends = now + dt.timedelta(days=VALID_DAYS)
    code = new_code(percent) if gid is None else None
    data = discount_input(
        title=_title(cfg, tier),
        code=code,
        percent=percent,
        segment_gid=segment_gid,
        starts=now,
        ends=ends,
    )
    if gid is None:
        answer = client.execute("discount_code_basic_create", {"basicCodeDiscount": data})
        payload = answer.get("discountCodeBasicCreate") or {}
        action = "discounts.create"
    else:
        data.pop("startsAt")  # an update keeps the discount's start
        answer = client.execute(
            "discount_code_basic_update", {"id": gid, "basicCodeDiscount": data}
        )
        payload = answer.get("discountCodeBasicUpdate") or {}
        action = "discounts.update"
    errors = payload.get("userErrors") or []
    node = payload.get("codeDiscountNode") or {}
    message = "; ".join(str(e.get("message")) for e in errors) or None
    with transaction(ctx.sessions) as session:
        row = session.get(WinBackDiscount, (shop_id, tier))
        assert row is not None
        session.add(
            shopify_audit(
                shop_id,
                action,
                subject=node.get("id") or gid or lapsed_handle(tier),
                count=1,
                result="error" if errors or not node else "ok",
                detail={
                    "tier": tier,
                    "percent": percent,
                    "code": code or row.code,
                    "segment": segment_gid,
                    "endsAt": ends.isoformat(),
                    "userErrors": errors,
                },
                error=message,
            )
        )
        if errors or not node:
            row.status, row.error = "error", message or "no discount in Shopify's answer"
            return row.status
        row.discount_gid = str(node["id"])
        row.code = code or row.code
        row.percent, row.segment_gid, row.ends_at = percent, segment_gid, ends
        row.status, row.error = "active", None
        return row.status


def _deactivate(ctx: jobs.Context, client: AdminAPI, shop_id: int, tier: int, gid: str) -> str:
    answer = client.execute("discount_code_deactivate", {"id": gid})
    payload = answer.get("discountCodeDeactivate") or {}
    errors = payload.get("userErrors") or []
    message = "; ".join(str(e.get("message")) for e in errors) or None
    with transaction(ctx.sessions) as session:
        session.add(
            shopify_audit(
                shop_id,
                "discounts.deactivate",
                subject=gid,
                count=1,
                result="error" if errors else "ok",
                detail={"tier": tier, "userErrors": errors},
                error=message,
            )
        )
        row = session.get(WinBackDiscount, (shop_id, tier))
        assert row is not None
        row.status, row.error = ("error", message) if errors else ("ended", None)
        return row.status


def _failed(ctx: jobs.Context, shop_id: int, tier: int, message: str) -> str:
    with transaction(ctx.sessions) as session:
        row = session.get(WinBackDiscount, (shop_id, tier))
        if row is not None:
            row.status, row.error = "error", message
    return "error"


def status(session: Any, shop_id: int) -> list[dict[str, Any]]:
    """Per lapsed tier: its days and percentage, the switch, the code and where it stands."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        return []
    cfg = shop_config(shop)
    rows = {
        r.tier: r
        for r in session.scalars(select(WinBackDiscount).where(WinBackDiscount.shop_id == shop_id))
    }
    tiers = []
    for tier, spec in enumerate(cfg.lapsed_tiers, start=1):
        row = rows.get(tier)
        segment = _segment(session, shop_id, tier)
        tiers.append(
            {
                "tier": tier,
                "handle": lapsed_handle(tier),
                "days": spec.days,
                "percent": spec.discount_percent,
                "tag_sync": bool(segment is not None and segment.tag_sync),
                "enabled": bool(row is not None and row.enabled),
                "code": row.code if row is not None else None,
                "status": row.status if row is not None else "off",
                "ends_at": row.ends_at.isoformat() if row is not None and row.ends_at else None,
                "error": row.error if row is not None else None,
            }
        )
    return tiers


@jobs.task("actions.sync_discounts", lock="discounts:{shop_id}")
def sync_discounts(ctx: jobs.Context, shop_id: int) -> dict[int, str]:
    """Task: make the shop's win-back discounts match its switches and tiers."""
    return sync(ctx, shop_id)


@jobs.periodic("actions.daily_discounts", hour="4", minute="0")
def daily_discounts(ctx: jobs.Context) -> int:
    """Once a day: renew end dates and follow tier changes, for every shop with a switch on."""
    with ctx.sessions() as session:
        shop_ids = session.scalars(
            select(WinBackDiscount.shop_id)
            .join(Shop, Shop.id == WinBackDiscount.shop_id)
            .where(WinBackDiscount.enabled.is_(True), Shop.is_installed)
            .distinct()
        ).all()
    for shop_id in shop_ids:
        ctx.enqueue("actions.sync_discounts", shop_id=int(shop_id))
    return len(shop_ids)
