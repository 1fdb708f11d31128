"""A merchant's settings change: what it would do to tags and Meta audiences, then applied.

Every change that moves tags or audiences answers with its effect first and is applied only
when the merchant confirms it:

* :func:`prepare` validates the change (:meth:`~.config.ShopConfig.changed`), refuses a new
  prefix that collides with a tag the store uses (:mod:`shopify_app.tagging.usage`), and works
  out the effect: the tags added and removed (per tag and segment, and how many customers), the
  Meta audiences whose members change, and the synced segments the change removes. It writes
  nothing.
* :func:`apply` stores the settings, renames the segment tags named under the old prefix (and
  renamed rules and custom segments), and turns off the tag and Meta syncs of the segments the
  change removes or archives (with an audit entry each), in one transaction; the caller then
  queues the recompute and the tag moves.

The effect is what Goldpan would write with the new settings less what it would write with the
old ones, so writes already pending are not blamed on the change and a save that changes
nothing moves nothing. Its :attr:`SettingsChange.token` (a hash of the settings before and
after) ties a confirmation to the preview the merchant saw.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.actions import discounts
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, Customer, Membership, Segment, Shop
from shopify_app.errors import GoldpanError, InputError
from shopify_app.meta.identifiers import Person, consent_check
from shopify_app.segments import library, loader, rules
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset
from shopify_app.states import AuditTarget
from shopify_app.tagging import changes as tag_changes
from shopify_app.tagging import ledger, usage
from shopify_app.tagging.diff import TagDiff, plan
from shopify_app.tagging.state import current_tags
from shopify_app.tagging.tags import moved_tag, segment_tag, tag_key

AUDIENCE_KEYS = frozenset({"consent_policy"})
"""Settings that change who is uploaded to Meta but no segment's members."""
NAMING_KEYS = frozenset({"tag_prefix"})
"""Settings that change tag names but no segment's members."""


@dataclass(frozen=True)
class _Segment:
    """A segment row as the effect needs it."""

    id: int
    handle: str
    name: str
    tag: str
    enabled: bool
    tag_sync: bool
    meta_sync: bool


@dataclass
class Effect:
    """What a change would move. Empty when it moves nothing (then no confirmation is asked)."""

    tags: list[dict[str, Any]] = field(default_factory=list)
    """Per tag: ``{"tag", "segment", "added", "removed"}`` (customers gaining / losing it)."""
    customers: int = 0
    """Customers whose tags would change."""
    audiences: list[dict[str, Any]] = field(default_factory=list)
    """Per Meta-synced segment affected: ``{"segment", "name", "added", "removed", "paused"}``."""
    removed: list[dict[str, Any]] = field(default_factory=list)
    """Synced segments the change removes: ``{"id", "segment", "name", "tag", "tag_sync",
    "meta_sync"}``; their syncs are turned off."""

    @property
    def moves(self) -> bool:
        """Whether tags or audiences would move (so the merchant must confirm)."""
        return bool(self.tags or self.audiences or self.removed)


@dataclass
class SettingsChange:
    """A validated change and its effect; nothing is written until :func:`apply`."""

    shop_id: int
    before: dict[str, Any]
    after: dict[str, Any]
    effect: Effect

    @property
    def token(self) -> str:
        """What a confirmation must send: the same settings before and after as the preview."""
        text = json.dumps([self.shop_id, self.before, self.after], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def changed_keys(self) -> list[str]:
        """The settings whose values change."""
        return sorted(k for k in self.after if self.after[k] != self.before.get(k))

    def preview(self) -> dict[str, Any]:
        """The effect as the page shows it."""
        return {
            "token": self.token,
            "changed": self.changed_keys,
            "customers": self.effect.customers,
            "tags": self.effect.tags,
            "audiences": self.effect.audiences,
            "removed": self.effect.removed,
        }


def prepare(ctx: jobs.Context, shop_id: int, changes: Mapping[str, Any]) -> SettingsChange:
    """Validate ``changes`` (some settings, by key) and work out their effect; writes nothing.

    Raises :class:`InputError` naming the field: a value out of range, an unknown key, or a new
    prefix that is already a tag in the store (checked first: "VIP" is refused for that reason
    before its shape is judged).
    """
    with ctx.sessions() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise GoldpanError(f"shop {shop_id} does not exist")
        old = ShopConfig.from_settings(shop.settings or {})
        segments = _segments(session, shop_id, old.tag_prefix)
        prefix = changes.get("tag_prefix")
        if isinstance(prefix, str) and prefix != old.tag_prefix:
            moved = [moved_tag(s.tag, old.tag_prefix, prefix) for s in segments]
            usage.refuse_taken(
                ctx,
                session,
                shop_id,
                usage.prefix_names(prefix, [m for m in moved if m]),
                field="tag_prefix",
                starting_with=prefix,
            )
        new = old.changed(dict(changes))
        # A segment's own tag, renamed away from the prefix, is still Goldpan's.
        own = [s.tag for s in segments]
        for i, spec in enumerate(new.custom_segments):
            where = f"custom_segments[{i}]"
            rules.own_tag_problem(rules.parse_custom_segment(spec, where), where, "", own)
        effect = _effect(session, shop_id, old, new, segments) if new != old else Effect()
    return SettingsChange(shop_id, old.to_settings(), new.to_settings(), effect)


def apply(ctx: jobs.Context, change: SettingsChange, *, user_id: Any = None) -> None:
    """Store the change in one transaction (see the module docstring).

    Refused (:class:`InputError`, field ``confirm``) when the shop's settings changed since
    :func:`prepare`: the merchant confirmed another change.
    """
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, change.shop_id, with_for_update=True)
        if shop is None:
            raise GoldpanError(f"shop {change.shop_id} does not exist")
        if ShopConfig.from_settings(shop.settings or {}).to_settings() != change.before:
            raise InputError(
                "the settings changed since this preview: review the change again",
                field="confirm",
            )
        # Keys other features keep in Shop.settings are left as they are.
        shop.settings = {**(shop.settings or {}), **change.after}
        old_prefix, new_prefix = change.before["tag_prefix"], change.after["tag_prefix"]
        if new_prefix != old_prefix:
            tag_changes.move_prefix(session, change.shop_id, old_prefix, new_prefix)
        _rename(session, change.shop_id, change.after)
        for gone in change.effect.removed:
            segment = session.get(Segment, gone["id"])
            if segment is None or segment.shop_id != change.shop_id:
                continue
            segment.tag_sync = False
            segment.meta_sync = False
            session.add(
                AuditEntry.of(
                    change.shop_id,
                    "segment.removed",
                    target=AuditTarget.APP,
                    subject=segment.handle,
                    detail={
                        "reason": "settings change",
                        "tag": gone["tag"],
                        "tag_sync": gone["tag_sync"],
                        "meta_sync": gone["meta_sync"],
                        "user_id": user_id,
                    },
                )
            )
        session.add(
            AuditEntry.of(
                change.shop_id,
                "settings.update",
                target=AuditTarget.APP,
                subject=",".join(change.changed_keys)[:255] or None,
                count=len(change.changed_keys),
                detail={
                    "user_id": user_id,
                    "token": change.token,
                    "customers": change.effect.customers,
                    "removed": [r["segment"] for r in change.effect.removed],
                },
            )
        )


def _rename(session: Session, shop_id: int, after: Mapping[str, Any]) -> None:
    """A renamed rule or custom segment shows its new name at once, not after the recompute
    (which names them the same way: :func:`shopify_app.segments.library.segment_definitions`)."""
    names = {f"cross-sell-{r['handle']}": r["name"] for r in after["cross_sell"]}
    names.update(
        {f"custom-{c['handle']}": c.get("name") or c["handle"] for c in after["custom_segments"]}
    )
    for segment in session.scalars(
        select(Segment).where(Segment.shop_id == shop_id, Segment.handle.in_(sorted(names)))
    ):
        segment.name = names[segment.handle]


def _segments(session: Session, shop_id: int, prefix: str) -> list[_Segment]:
    rows = session.execute(
        select(
            Segment.id,
            Segment.handle,
            Segment.name,
            Segment.tag,
            Segment.enabled,
            Segment.tag_sync,
            Segment.meta_sync,
        )
        .where(Segment.shop_id == shop_id)
        .order_by(Segment.id)
    ).all()
    return [
        _Segment(
            r.id,
            r.handle,
            r.name,
            segment_tag(r.tag, r.handle, prefix),
            r.enabled,
            r.tag_sync,
            r.meta_sync,
        )
        for r in rows
    ]


def _effect(
    session: Session, shop_id: int, old: ShopConfig, new: ShopConfig, segments: list[_Segment]
) -> Effect:
    before, after = old.to_settings(), new.to_settings()
    membership_keys = {k for k in after if after[k] != before[k]} - AUDIENCE_KEYS - NAMING_KEYS
    synced = [s for s in segments if s.enabled and (s.tag_sync or s.meta_sync)]
    if not synced:
        return Effect()  # nothing syncs: nothing can move
    born: list[_Segment]
    if membership_keys:
        # Both settings evaluated on today's data: the difference is the change's own, not the
        # drift since the last recompute.
        ds = loader.load(session, shop_id)
        today = library.today()
        members_before = _evaluated(ds, library.evaluate(ds, old, today), segments)
        ev = library.evaluate(ds, new, today)
        members_after = _evaluated(ds, ev, segments)
        defined = {d.handle for d in library.segment_definitions(new, ev.stats)}
        born = _born_tagged(session, shop_id, ds, ev, new, segments, members_after)
    else:
        members_before = members_after = _members(session, shop_id)
        defined = {s.handle for s in segments}
        born = []
    gone = [s for s in synced if s.handle not in defined]
    gone_ids = {s.id for s in gone}
    tag_after = {s.id: moved_tag(s.tag, old.tag_prefix, new.tag_prefix) or s.tag for s in segments}
    effect = Effect(
        removed=[
            {
                "id": s.id,
                "segment": s.handle,
                "name": s.name,
                "tag": s.tag,
                "tag_sync": s.tag_sync,
                "meta_sync": s.meta_sync,
            }
            for s in gone
        ]
    )
    wanted_before = _wanted(
        (s.tag, members_before.get(s.id, set())) for s in segments if s.enabled and s.tag_sync
    )
    wanted_after = _wanted(
        [
            (tag_after[s.id], members_after.get(s.id, set()))
            for s in segments
            if s.enabled and s.tag_sync and s.id not in gone_ids
        ]
        + [(s.tag, members_after[s.id]) for s in born]
    )
    if wanted_before != wanted_after:
        names = {tag_key(s.tag): s.handle for s in segments}
        names.update({tag_key(tag_after[s.id]): s.handle for s in segments})
        names.update({tag_key(s.tag): s.handle for s in born})
        effect.tags, effect.customers = _tag_moves(
            session, shop_id, wanted_before, wanted_after, names
        )
    meta = [s for s in synced if s.meta_sync]
    if meta and (membership_keys or gone or old.consent_policy != new.consent_policy):
        effect.audiences = _audience_moves(
            session, shop_id, meta, gone_ids, members_before, members_after, old, new
        )
    return effect


def _born_tagged(
    session: Session,
    shop_id: int,
    ds: Dataset,
    ev: library.Evaluation,
    new: ShopConfig,
    segments: list[_Segment],
    members_after: dict[int, set[int]],
) -> list[_Segment]:
    """Segments the change creates whose tags Goldpan writes at once (a switched-on discount's
    new hold-out: :func:`shopify_app.actions.discounts.auto_tagged`), with negative ids; their
    members go into ``members_after``."""
    existing = {s.handle for s in segments}
    born: list[_Segment] = []
    for handle in discounts.auto_tagged(session, shop_id):
        result = ev.segments.get(handle)
        if handle in existing or result is None:
            continue
        s = _Segment(-len(born) - 1, handle, result.definition.name,
                     segment_tag(None, handle, new.tag_prefix), True, True, False)  # fmt: skip
        members_after[s.id] = set(ds.customer_ids[result.members].tolist())
        born.append(s)
    return born


def _members(session: Session, shop_id: int) -> dict[int, set[int]]:
    members: dict[int, set[int]] = defaultdict(set)
    for segment_id, customer_id in session.execute(
        select(Membership.segment_id, Membership.customer_id).where(Membership.shop_id == shop_id)
    ):
        members[int(segment_id)].add(int(customer_id))
    return members


def _evaluated(
    ds: Dataset, ev: library.Evaluation, segments: list[_Segment]
) -> dict[int, set[int]]:
    """Segment id → the customer ids an evaluation puts in it (none for disabled segments)."""
    members: dict[int, set[int]] = {}
    for s in segments:
        result = ev.segments.get(s.handle)
        if result is None or not s.enabled:
            members[s.id] = set()
        else:
            members[s.id] = set(ds.customer_ids[result.members].tolist())
    return members


def _wanted(tagged: Iterable[tuple[str, set[int]]]) -> dict[int, set[str]]:
    """Customer id → the tags their segments call for."""
    wanted: dict[int, set[str]] = defaultdict(set)
    for tag, members in tagged:
        for customer_id in members:
            wanted[customer_id].add(tag)
    return dict(wanted)


def _tag_moves(
    session: Session,
    shop_id: int,
    wanted_before: dict[int, set[str]],
    wanted_after: dict[int, set[str]],
    names: dict[str, str],
) -> tuple[list[dict[str, Any]], int]:
    """Per tag, customers gaining and losing it because of the change; customers affected."""
    current = current_tags(session, shop_id, None)
    owned = ledger.owned(session, shop_id, None)
    with_old, _ = plan(current, {c: wanted_before.get(c, set()) for c in current}, owned)
    with_new, _ = plan(current, {c: wanted_after.get(c, set()) for c in current}, owned)
    added: dict[str, int] = defaultdict(int)
    removed: dict[str, int] = defaultdict(int)
    spelling: dict[str, str] = {}
    affected = 0
    for customer_id in with_old.keys() | with_new.keys():
        old, new = with_old.get(customer_id, TagDiff()), with_new.get(customer_id, TagDiff())
        gains = _keyed(new.add, spelling).keys() - _keyed(old.add, spelling).keys()
        losses = _keyed(new.remove, spelling).keys() - _keyed(old.remove, spelling).keys()
        for key in gains:
            added[key] += 1
        for key in losses:
            removed[key] += 1
        affected += bool(gains or losses)
    rows = [
        {
            "tag": spelling[key],
            "segment": names.get(key),
            "added": added.get(key, 0),
            "removed": removed.get(key, 0),
        }
        for key in sorted(added.keys() | removed.keys())
    ]
    return rows, affected


def _keyed(tags: Iterable[str], spelling: dict[str, str]) -> dict[str, str]:
    keyed = {tag_key(t): t for t in tags}
    for key, tag in keyed.items():
        spelling.setdefault(key, tag)
    return keyed


def _audience_moves(
    session: Session,
    shop_id: int,
    meta: list[_Segment],
    gone_ids: set[int],
    members_before: dict[int, set[int]],
    members_after: dict[int, set[int]],
    old: ShopConfig,
    new: ShopConfig,
) -> list[dict[str, Any]]:
    """Per Meta-synced segment: members the consent policy lets upload, before and after."""
    states = {
        int(cid): state
        for cid, state in session.execute(
            select(Customer.id, Customer.email_marketing_state).where(Customer.shop_id == shop_id)
        )
    }
    allowed_before = consent_check(old.consent_policy)
    allowed_after = consent_check(new.consent_policy)
    moves: list[dict[str, Any]] = []
    for s in meta:
        was = {
            c
            for c in members_before.get(s.id, set())
            if allowed_before(Person(email_marketing_state=states.get(c)))
        }
        if s.id in gone_ids:
            # Sync off: the audience stays in Meta as it is, no longer updated.
            moves.append(
                {"segment": s.handle, "name": s.name, "added": 0, "removed": 0, "paused": True}
            )
            continue
        will = {
            c
            for c in members_after.get(s.id, set())
            if allowed_after(Person(email_marketing_state=states.get(c)))
        }
        if was != will:
            moves.append(
                {
                    "segment": s.handle,
                    "name": s.name,
                    "added": len(will - was),
                    "removed": len(was - will),
                    "paused": False,
                }
            )
    return moves
