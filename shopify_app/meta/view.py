"""What the page shows about Meta, per segment: one state vocabulary, live figures, lookalike offer.

Every view (the segment list's badge, the segment's Meta panel, the settings card) reads the
state from :func:`audience_state`, so "synced" means the same everywhere and a disconnected
shop never shows an audience as synced. The figures are the current ones, not the first
upload's: ``records`` counts the rows Goldpan has in the audience now (incremental removals
included), ``match_rate`` is Meta's size estimate over those records, and ``last_change`` is
when rows were last added or removed (from the audit log, which every upload writes).

The lookalike offer is decided here too, so the page can say *why* there is no form (no
connection, sync off, fewer than 100 people matched, size not known yet) instead of showing an
error after submit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shopify_app.db.models import (
    AuditEntry,
    MetaAudience,
    MetaAudienceMember,
    MetaConnection,
    Segment,
)
from shopify_app.meta.audiences import (
    LOOKALIKE_COUNTRIES,
    MIN_LOOKALIKE_MEMBERS,
    USABLE,
    lookalike_key,
)
from shopify_app.states import (
    AuditTarget,
    MetaAudienceKind,
    MetaAudienceStatus,
    MetaState,
)

CHANGE_ACTIONS = (
    "audience_create",
    "audience_recreate",
    "audience_add",
    "audience_remove",
    "audience_replace",
    "audience_customer",
)
"""Audit actions that changed an audience's rows (or made it)."""

LOOKALIKE_REASONS = ("connect", "sync_first", "paused", "too_small", "size_pending")
"""Why no lookalike can be made now; the page words each (``lookalike.reason.<key>``)."""

_STATUS_STATE = {
    MetaAudienceStatus.PENDING: MetaState.SYNCING,
    MetaAudienceStatus.PAUSED: MetaState.PAUSED,
    MetaAudienceStatus.THROTTLED: MetaState.THROTTLED,
    MetaAudienceStatus.REPLACING: MetaState.REFRESHING,
    MetaAudienceStatus.FLAGGED: MetaState.FLAGGED,
    MetaAudienceStatus.ERROR: MetaState.ERROR,
}


def audience_state(
    aud: MetaAudience | None, *, records: int, connected: bool, sync_on: bool
) -> MetaState:
    """The one state the page shows for an audience (``None``: the segment has none yet)."""
    if aud is None:
        if not sync_on:
            return MetaState.OFF
        return MetaState.SYNCING if connected else MetaState.DISCONNECTED
    if not connected:
        return MetaState.DISCONNECTED
    if aud.kind == MetaAudienceKind.LOOKALIKE:
        return _STATUS_STATE.get(aud.status, MetaState.CREATED)
    if not sync_on:
        return MetaState.PAUSED
    if aud.status == MetaAudienceStatus.READY:
        return MetaState.SYNCED if records else MetaState.EMPTY
    return _STATUS_STATE[aud.status]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _figures(
    aud: MetaAudience, state: MetaState, records: int, changed: dt.datetime | None
) -> dict[str, Any]:
    lower = aud.approximate_lower or 0
    return {
        "id": aud.id,
        "kind": aud.kind,
        "audience_id": aud.audience_id,
        "origin_audience_id": aud.origin_audience_id,
        "state": state,
        "records": records,
        "invalid": aud.invalid,
        "approximate_lower": aud.approximate_lower,
        "approximate_upper": aud.approximate_upper,
        # Meta's estimate of matched people over the rows uploaded now.
        "match_rate": min(1.0, lower / records) if records and lower else None,
        "error": aud.error,
        "spec": aud.spec,
        "last_synced_at": _iso(aud.last_synced_at),
        "last_change": _iso(changed),
    }


def _offer(
    source: dict[str, Any] | None, *, connected: bool, sync_on: bool, taken: list[dict[str, Any]]
) -> dict[str, Any]:
    """Whether a lookalike can be made from ``source`` now, and if not the reason (a key)."""
    connect, sync_first, paused, too_small, size_pending = LOOKALIKE_REASONS
    reason: str | None = None
    matched = (source or {}).get("approximate_lower") or 0
    if not connected:
        reason = connect
    elif source is None or source["audience_id"] is None:
        reason = sync_first
    elif not sync_on or source["state"] == MetaState.PAUSED:
        reason = paused
    elif source["records"] < MIN_LOOKALIKE_MEMBERS:
        reason = too_small
    elif not matched:
        reason = size_pending  # Meta has not reported the size of the uploaded rows yet
    elif matched < MIN_LOOKALIKE_MEMBERS:
        reason = too_small
    return {
        "available": reason is None,
        "reason": reason,
        "minimum": MIN_LOOKALIKE_MEMBERS,
        "matched": matched,
        "countries": sorted(LOOKALIKE_COUNTRIES),
        "taken": taken,
    }


def segment_meta(session: Session, shop_id: int) -> dict[int, dict[str, Any]]:
    """Per segment id: ``state``, ``audience``, ``value_audience``, ``lookalikes`` and the
    lookalike offers (one per source audience kind)."""
    conn = session.get(MetaConnection, shop_id)
    connected = bool(
        conn is not None and conn.access_token and conn.ad_account_id and conn.status in USABLE
    )
    segments = session.execute(
        select(Segment.id, Segment.meta_sync, Segment.enabled).where(Segment.shop_id == shop_id)
    ).all()
    rows = session.scalars(
        select(MetaAudience).where(MetaAudience.shop_id == shop_id).order_by(MetaAudience.id)
    ).all()
    counts = dict(
        session.execute(
            select(MetaAudienceMember.audience_id, func.count())
            .join(MetaAudience, MetaAudience.id == MetaAudienceMember.audience_id)
            .where(MetaAudience.shop_id == shop_id)
            .group_by(MetaAudienceMember.audience_id)
        ).all()
    )
    remote = [a.audience_id for a in rows if a.audience_id]
    changed = (
        dict(
            session.execute(
                select(AuditEntry.subject, func.max(AuditEntry.at))
                .where(
                    AuditEntry.shop_id == shop_id,
                    AuditEntry.target == AuditTarget.META,
                    AuditEntry.action.in_(CHANGE_ACTIONS),
                    AuditEntry.subject.in_(remote),
                )
                .group_by(AuditEntry.subject)
            ).all()
        )
        if remote
        else {}
    )
    out: dict[int, dict[str, Any]] = {}
    for segment_id, meta_sync, enabled in segments:
        sync_on = bool(meta_sync and enabled)
        mine = [a for a in rows if a.segment_id == segment_id]
        shown: dict[MetaAudienceKind, dict[str, Any]] = {}
        lookalikes = []
        for aud in mine:
            records = int(counts.get(aud.id, 0))
            state = audience_state(aud, records=records, connected=connected, sync_on=sync_on)
            data = _figures(aud, state, records, changed.get(aud.audience_id or ""))
            if aud.kind == MetaAudienceKind.LOOKALIKE:
                lookalikes.append(data)
            else:
                shown[aud.kind] = data
        taken = [
            {"source": la["origin_audience_id"], **lookalike_key(la["spec"])} for la in lookalikes
        ]
        custom = shown.get(MetaAudienceKind.CUSTOM)
        out[segment_id] = {
            "state": custom["state"]
            if custom
            else audience_state(None, records=0, connected=connected, sync_on=sync_on),
            "audience": custom,
            "value_audience": shown.get(MetaAudienceKind.VALUE),
            "lookalikes": lookalikes,
            "offers": {
                kind.value: _offer(
                    shown.get(kind), connected=connected, sync_on=sync_on, taken=taken
                )
                for kind in (MetaAudienceKind.CUSTOM, MetaAudienceKind.VALUE)
            },
        }
    return out


__all__ = ["CHANGE_ACTIONS", "LOOKALIKE_REASONS", "audience_state", "segment_meta"]
