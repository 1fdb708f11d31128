"""Keep Meta Custom Audiences in step with segments: create, add/remove, replace, lookalikes.

Every synced segment has one customer-file audience (``MetaAudience`` kind ``custom``), may
have a value-based twin (kind ``value``: the same rows plus each customer's predicted 12-month
value as ``LOOKALIKE_VALUE``) and lookalikes of either. Customers held out of the segment
(:mod:`shopify_app.actions.holdout`) are never uploaded.

``MetaAudienceMember`` holds the hashed row last uploaded for each customer, so a sync sends
only the difference: customers who joined (add), left or lost their consent (remove — using
the row that was uploaded, so it works after the customer was deleted) and customers whose
identifiers changed (remove the old row, add the new). A re-sync of an
unchanged segment sends nothing. A periodic full refresh goes through ``/usersreplace``, which
swaps the list without resetting the ad sets' learning.

Failures never crash the page: they are stored on ``MetaConnection`` (token expired or revoked,
terms not accepted) or ``MetaAudience`` (throttled, flagged, invalid entries, deleted in Ads
Manager — which is repaired by creating the audience again) and written to the audit log, always
as :func:`shopify_app.errors.stored_error` text (a short message and a code).

Tasks: ``meta.sync_segment``, ``meta.sync_shop``, ``meta.sync_customer`` (one customer after a
webhook), ``meta.forget_customer``, ``meta.full_refresh``, ``meta.refresh_shop`` and the hourly
``meta.refresh_all``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.actions.holdout import held_out
from shopify_app.db import transaction
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    MetaConnection,
    Segment,
    Shop,
)
from shopify_app.db.types import utcnow
from shopify_app.errors import (
    InputError,
    MetaError,
    MetaTermsError,
    MetaThrottledError,
    MetaTokenError,
    stored_error,
)
from shopify_app.meta import graph
from shopify_app.meta.identifiers import (
    DEFAULT_CONSENT_POLICY,
    SCHEMA,
    Person,
    hash_members,
    hash_value,
    normalize_email,
    normalize_phone,
)
from shopify_app.segments import library, loader
from shopify_app.segments.recompute import cached_stats, shop_config
from shopify_app.states import (
    AuditResult,
    AuditTarget,
    MetaAudienceKind,
    MetaAudienceStatus,
    MetaConnectionStatus,
)

log = logging.getLogger(__name__)

FULL_REFRESH_EVERY = dt.timedelta(days=7)
MIN_LOOKALIKE_MEMBERS = 100
_CHUNK = 900  # ids per IN (...) clause: under SQLite's variable limit
USABLE = (MetaConnectionStatus.CONNECTED, MetaConnectionStatus.ERROR)
"""Connection statuses sync runs with (an error is retried)."""
VALUE_KEY = "LOOKALIKE_VALUE"
"""The schema key of a value-based audience's value column (sent unhashed, a number ≥ 0)."""

# ISO 3166-1 alpha-2 codes a lookalike may target: every assigned country code except those
# where Meta serves no ads (Cuba, Iran, North Korea, Syria).
_COUNTRY_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IS IT JE JM JO JP KE KG KH KI KM KN KR
    KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS
    MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
    PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF
    WS YE YT ZA ZM ZW"""
LOOKALIKE_COUNTRIES = frozenset(_COUNTRY_CODES.split())

Row = tuple[str, ...]


# --- pure core -------------------------------------------------------------------------------


def row_hash(row: Sequence[str]) -> str:
    """A fingerprint of an uploaded row, to see whether it changed."""
    return hashlib.blake2b("\x1f".join(row).encode(), digest_size=16).hexdigest()


@dataclass
class Plan:
    """What a sync must send: rows to add and rows to remove (each with its customer id)."""

    add: list[tuple[int, Row]] = field(default_factory=list)
    remove: list[tuple[int, Row]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove


def plan(previous: dict[int, tuple[str, Row]], wanted: dict[int, Row]) -> Plan:
    """Diff the last upload (``customer -> (row_hash, row)``) against the wanted rows.

    A customer whose row changed (new email, new phone) is removed with the old row and added
    with the new one: the old identifiers may match a different Meta account.
    """
    out = Plan()
    for cid, row in wanted.items():
        before = previous.get(cid)
        if before is None:
            out.add.append((cid, row))
        elif before[0] != row_hash(row):
            out.remove.append((cid, before[1]))
            out.add.append((cid, row))
    for cid, (_h, row) in previous.items():
        if cid not in wanted:
            out.remove.append((cid, row))
    return out


def person_of(customer: Any) -> Person:
    """A :class:`Person` from a ``Customer`` row (or anything with the same attributes)."""
    return Person(
        email=customer.email,
        phone=customer.phone,
        first_name=customer.first_name,
        last_name=customer.last_name,
        city=customer.city,
        province_code=customer.province_code,
        zip=customer.zip,
        country_code=customer.country_code,
        email_marketing_state=customer.email_marketing_state,
    )


def prepare(people: Iterable[tuple[int, Person]], policy: str) -> dict[int, Row]:
    """Hashed rows of the people ``policy`` allows and who can match someone."""
    return hash_members(people, policy)


def audience_name(segment: Segment, kind: MetaAudienceKind = MetaAudienceKind.CUSTOM) -> str:
    suffix = " · value" if kind == MetaAudienceKind.VALUE else ""
    return f"Goldpan · {segment.name}{suffix}"


def audience_description(
    segment: Segment, shop: Shop, kind: MetaAudienceKind = MetaAudienceKind.CUSTOM
) -> str:
    value = ", each with their predicted 12-month value" if kind == MetaAudienceKind.VALUE else ""
    return (
        f"Customers in the Goldpan segment “{segment.name}” ({segment.handle}) of "
        f"{shop.name or shop.domain}{value}, kept in sync automatically by Goldpan."
    )


# --- database helpers ------------------------------------------------------------------------


def consent_policy(shop: Shop) -> str:
    """The shop's Meta consent policy (``Shop.settings["consent_policy"]``)."""
    return str((shop.settings or {}).get("consent_policy") or DEFAULT_CONSENT_POLICY)


_PERSON_COLUMNS = (
    Customer.id,
    Customer.email,
    Customer.phone,
    Customer.first_name,
    Customer.last_name,
    Customer.city,
    Customer.province_code,
    Customer.zip,
    Customer.country_code,
    Customer.email_marketing_state,
)


def segment_people(session: Session, shop_id: int, segment_id: int) -> Iterator[tuple[int, Person]]:
    """The segment's members as ``(customer id, Person)``, streamed."""
    stmt = (
        select(*_PERSON_COLUMNS)
        .join(
            Membership,
            (Membership.shop_id == Customer.shop_id) & (Membership.customer_id == Customer.id),
        )
        .where(Membership.segment_id == segment_id, Customer.shop_id == shop_id)
        .execution_options(yield_per=5000)
    )
    for cid, *rest in session.execute(stmt):
        yield int(cid), Person(*rest)


def uploadable_people(
    session: Session, shop: Shop, segment_id: int, handle: str
) -> Iterator[tuple[int, Person]]:
    """The segment's members minus its hold-out group, who get no Meta upload (issue 18)."""
    config = shop_config(shop)
    for cid, person in segment_people(session, shop.id, segment_id):
        if not held_out(config, handle, cid):
            yield cid, person


def lookalike_value(value: float) -> str:
    """A predicted value as the ``LOOKALIKE_VALUE`` cell: two significant digits, never
    negative (Meta refuses negative values), so a daily refit does not re-upload everyone."""
    if not value > 0:
        return "0"
    rounded = float(f"{value:.2g}")
    return str(int(rounded)) if rounded >= 1 else f"{rounded:g}"


def predicted_values(session: Session, shop: Shop) -> dict[int, float] | None:
    """Each customer's predicted 12-month value (the same engine as the page and the score
    metafields); None when the shop has no purchase model to predict with."""
    stats = cached_stats(shop)
    ev = library.evaluate(
        loader.load(session, shop.id), shop_config(shop), library.today(), stats=stats
    )
    if not ev.predictions.available:
        return None
    ids = ev.dataset.customer_ids.tolist()
    return dict(zip(ids, ev.predictions.clv_12m.tolist(), strict=True))


def with_values(rows: dict[int, Row], values: dict[int, float]) -> dict[int, Row]:
    """The rows of a value-based audience: each hashed row plus its ``LOOKALIKE_VALUE``."""
    return {cid: (*row, lookalike_value(values.get(cid, 0.0))) for cid, row in rows.items()}


def schema_of(kind: MetaAudienceKind) -> tuple[str, ...]:
    """The upload schema of an audience: a value-based one ends with the value column."""
    return (*SCHEMA, VALUE_KEY) if kind == MetaAudienceKind.VALUE else SCHEMA


def wire_rows(kind: MetaAudienceKind, rows: Iterable[Row]) -> Iterator[list[str | float]]:
    """Rows as Meta takes them: a value-based audience's value column is a number."""
    for row in rows:
        yield [*row[:-1], float(row[-1])] if kind == MetaAudienceKind.VALUE else list(row)


def lookalike_key(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes two lookalikes of one source the same: the country and the ratio."""
    return {"country": spec.get("country"), "ratio": spec.get("ratio")}


def previous_rows(session: Session, audience_pk: int) -> dict[int, tuple[str, Row]]:
    stmt = select(
        MetaAudienceMember.customer_id, MetaAudienceMember.row_hash, MetaAudienceMember.row
    ).where(MetaAudienceMember.audience_id == audience_pk)
    return {
        int(cid): (h, tuple(row or ()))
        for cid, h, row in session.execute(stmt.execution_options(yield_per=5000))
    }


def _store_members(
    session: Session, audience_pk: int, removed: Iterable[int], added: Sequence[tuple[int, Row]]
) -> None:
    ids = sorted(set(removed) | {cid for cid, _ in added})
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            delete(MetaAudienceMember).where(
                MetaAudienceMember.audience_id == audience_pk,
                MetaAudienceMember.customer_id.in_(ids[start : start + _CHUNK]),
            )
        )
    for start in range(0, len(added), 5000):
        session.execute(
            insert(MetaAudienceMember),
            [
                {
                    "audience_id": audience_pk,
                    "customer_id": cid,
                    "row_hash": row_hash(row),
                    "row": list(row),
                }
                for cid, row in added[start : start + 5000]
            ],
        )


def audit(session: Session, shop_id: int, action: str, **fields: Any) -> None:
    """One audit-log line for a write to Meta (fields as :meth:`AuditEntry.of` takes them)."""
    session.add(AuditEntry.of(shop_id, action, target=AuditTarget.META, **fields))


def client_for(ctx: jobs.Context, conn: MetaConnection) -> graph.GraphClient:
    """A Graph client with the connection's (decrypted) token."""
    if not conn.access_token:
        raise MetaTokenError("Meta is not connected", code=190)
    return graph.GraphClient(ctx.settings, ctx.cipher.decrypt(conn.access_token))


def record_connection_error(session: Session, conn: MetaConnection, exc: MetaError) -> None:
    """Store a token or terms problem on the connection, for the page."""
    if isinstance(exc, MetaTokenError):
        conn.status = (
            MetaConnectionStatus.EXPIRED if exc.subcode == 463 else MetaConnectionStatus.REVOKED
        )
        conn.error = (
            "The Meta login expired; reconnect Meta to keep audiences in sync."
            if conn.status == MetaConnectionStatus.EXPIRED
            else "Meta access was removed or is no longer valid; reconnect Meta."
        )
    elif isinstance(exc, MetaTermsError):
        conn.status = MetaConnectionStatus.TERMS
        conn.tos_accepted = False
        conn.error = "Accept Meta's Custom Audience terms for this ad account: " + graph.terms_url(
            conn.ad_account_id or ""
        )
    else:
        conn.error = stored_error(exc)


def _lock(ctx: jobs.Context, key: str) -> AbstractContextManager[None]:
    return ctx.runtime.lock(key) if ctx.runtime is not None else nullcontext()


def _ad_account(session: Session, shop_id: int) -> tuple[MetaConnection, str]:
    """The shop's Meta connection and chosen ad account; refused when Meta is not connected or
    no account is chosen."""
    conn = session.get(MetaConnection, shop_id)
    if not _usable(conn):
        raise InputError("connect Meta and pick an ad account first", field="meta")
    assert conn is not None and conn.ad_account_id is not None
    return conn, conn.ad_account_id


def _usable(conn: MetaConnection | None) -> bool:
    return (
        conn is not None
        and conn.access_token is not None
        and conn.ad_account_id is not None
        and conn.status in USABLE
    )


# --- tasks -----------------------------------------------------------------------------------


@jobs.task("meta.sync_shop")
def sync_shop(ctx: jobs.Context, shop_id: int) -> None:
    """Sync every segment with Meta sync on; mark audiences of switched-off segments paused."""
    with ctx.sessions() as session:
        if not _usable(session.get(MetaConnection, shop_id)):
            return
        segments = session.execute(
            select(Segment.id, Segment.meta_sync, Segment.enabled).where(Segment.shop_id == shop_id)
        ).all()
    for segment_id, on, enabled in segments:
        if on and enabled:
            ctx.enqueue("meta.sync_segment", shop_id=shop_id, segment_id=segment_id)
    off = [sid for sid, on, enabled in segments if not (on and enabled)]
    if off:
        with transaction(ctx.sessions) as session:
            for aud in session.scalars(
                select(MetaAudience).where(
                    MetaAudience.shop_id == shop_id,
                    MetaAudience.segment_id.in_(off),
                    MetaAudience.kind != MetaAudienceKind.LOOKALIKE,
                )
            ):
                aud.status = MetaAudienceStatus.PAUSED


@jobs.task("meta.sync_segment")
def sync_segment(ctx: jobs.Context, shop_id: int, segment_id: int) -> dict[str, int]:
    """Bring the segment's audience up to date; returns ``{"added": n, "removed": n}``."""
    with _lock(ctx, f"meta:{shop_id}:{segment_id}"):
        return _sync_segment(ctx, shop_id, segment_id, replace=False)


@jobs.task("meta.full_refresh")
def full_refresh(ctx: jobs.Context, shop_id: int, segment_id: int) -> dict[str, int]:
    """Replace the whole audience through ``/usersreplace`` (keeps the ad sets' learning)."""
    with _lock(ctx, f"meta:{shop_id}:{segment_id}"):
        return _sync_segment(ctx, shop_id, segment_id, replace=True)


@dataclass
class _Target:
    """What a sync needs to know, read in one short transaction (no ORM objects kept)."""

    shop_id: int
    segment_id: int
    kind: MetaAudienceKind
    aud_pk: int
    audience_id: str | None
    account_id: str
    handle: str
    name: str
    description: str
    policy: str

    @property
    def schema(self) -> tuple[str, ...]:
        return schema_of(self.kind)


def _sync_segment(
    ctx: jobs.Context, shop_id: int, segment_id: int, *, replace: bool
) -> dict[str, int]:
    """Sync the segment's audience, then its value-based twin if the merchant made one."""
    outcome = _sync_audience(ctx, shop_id, segment_id, MetaAudienceKind.CUSTOM, replace=replace)
    with ctx.sessions() as session:
        twin = session.scalar(
            select(MetaAudience.id).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == MetaAudienceKind.VALUE
            )
        )
    if twin is not None:
        more = _sync_audience(ctx, shop_id, segment_id, MetaAudienceKind.VALUE, replace=replace)
        outcome = {k: outcome[k] + more[k] for k in outcome}
    return outcome


def _sync_audience(
    ctx: jobs.Context,
    shop_id: int,
    segment_id: int,
    kind: MetaAudienceKind,
    *,
    replace: bool,
) -> dict[str, int]:
    # No transaction stays open across HTTP calls: on SQLite that would block every other
    # writer (webhook intake, sync) for the length of an upload. Each step that Meta accepted
    # is recorded in its own short transaction, so a failure halfway loses nothing.
    outcome = {"added": 0, "removed": 0}
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        segment = session.get(Segment, segment_id)
        shop = session.get(Shop, shop_id)
        if shop is None or segment is None or segment.shop_id != shop_id:
            return outcome
        if not _usable(conn) or not segment.meta_sync:
            return outcome
        assert conn is not None and conn.ad_account_id is not None
        aud = session.scalars(
            select(MetaAudience).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == kind
            )
        ).first()
        if aud is None:
            aud = MetaAudience(shop_id=shop_id, segment_id=segment_id, kind=kind, spec={})
            session.add(aud)
            session.flush()
        target = _Target(
            shop_id,
            segment_id,
            kind,
            aud.id,
            aud.audience_id,
            conn.ad_account_id,
            segment.handle,
            audience_name(segment, kind),
            audience_description(segment, shop, kind),
            consent_policy(shop),
        )
        client = client_for(ctx, conn)
    try:
        outcome = _push(ctx, client, target, replace=replace)
    except MetaError as exc:
        with transaction(ctx.sessions) as session:
            aud = session.get(MetaAudience, target.aud_pk)
            conn = session.get(MetaConnection, shop_id)
            if aud is None or conn is None:
                return outcome
            if isinstance(exc, MetaTokenError | MetaTermsError):
                record_connection_error(session, conn, exc)
                aud.status, aud.error = MetaAudienceStatus.ERROR, conn.error
            elif isinstance(exc, MetaThrottledError):
                minutes = max(1, round(exc.retry_after / 60))
                aud.status = MetaAudienceStatus.THROTTLED
                aud.error = (
                    f"Meta is rate limiting this ad account; Goldpan retries in about "
                    f"{minutes} min."
                )
            else:
                aud.status = (
                    MetaAudienceStatus.REPLACING
                    if exc.subcode == 1870145
                    else MetaAudienceStatus.ERROR
                )
                aud.error = stored_error(exc)
            audit(
                session,
                shop_id,
                "audience_sync",
                subject=target.handle,
                result=AuditResult.ERROR,
                error=stored_error(exc),
            )
        return outcome
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        if conn is not None and conn.status == MetaConnectionStatus.ERROR:
            conn.status, conn.error = MetaConnectionStatus.CONNECTED, None
    return outcome


def _push(
    ctx: jobs.Context, client: graph.GraphClient, target: _Target, *, replace: bool
) -> dict[str, int]:
    with ctx.sessions() as session:
        shop = session.get_one(Shop, target.shop_id)
        wanted = prepare(
            uploadable_people(session, shop, target.segment_id, target.handle), target.policy
        )
        if target.kind == MetaAudienceKind.VALUE:
            values = predicted_values(session, shop)
            if values is None:
                raise MetaError(
                    "Goldpan has no predicted values for this shop yet (its purchase model "
                    "is not fitted), so the value-based audience can't be filled"
                )
            wanted = with_values(wanted, values)
    schema = target.schema
    remote_id = target.audience_id
    info: dict[str, Any] | None = None
    recreated = False
    if remote_id is not None and not replace:
        # An audience deleted by hand in Ads Manager answers 100/33: make it again.
        try:
            info = client.audience(remote_id)
        except MetaError as exc:
            if exc.code != 100:
                raise
            with transaction(ctx.sessions) as session:
                audit(
                    session,
                    target.shop_id,
                    "audience_missing",
                    subject=remote_id,
                    result=AuditResult.ERROR,
                    error=stored_error(exc),
                )
            remote_id, recreated = None, True
    created = remote_id is None
    if created:
        remote_id = client.create_audience(
            target.account_id,
            target.name,
            target.description,
            value_based=target.kind == MetaAudienceKind.VALUE,
        )
        with transaction(ctx.sessions) as session:
            aud = _aud(session, target)
            session.execute(
                delete(MetaAudienceMember).where(MetaAudienceMember.audience_id == aud.id)
            )
            aud.audience_id = remote_id
            aud.received = aud.invalid = 0
            aud.invalid_samples = []
            audit(
                session,
                target.shop_id,
                "audience_recreate" if recreated else "audience_create",
                subject=remote_id,
                detail={"segment": target.handle},
            )
    assert remote_id is not None
    if replace:
        result = client.upload(
            remote_id,
            schema,
            wire_rows(target.kind, wanted.values()),
            mode="replace",
            total=len(wanted),
        )
        with transaction(ctx.sessions) as session:
            aud = _aud(session, target)
            session.execute(
                delete(MetaAudienceMember).where(MetaAudienceMember.audience_id == aud.id)
            )
            _store_members(session, aud.id, (), list(wanted.items()))
            aud.received, aud.invalid = result.received, result.invalid
            aud.invalid_samples = [f"{k}: {v}" for k, v in result.samples.items()]
            aud.last_full_refresh_at = utcnow()
            audit(
                session,
                target.shop_id,
                "audience_replace",
                subject=remote_id,
                count=result.received,
                result=AuditResult.PARTIAL if result.invalid else AuditResult.OK,
                detail=_detail(result, target.handle),
            )
        outcome = {"added": len(wanted), "removed": 0}
    else:
        with ctx.sessions() as session:
            previous = {} if created else previous_rows(session, target.aud_pk)
        diff = plan(previous, wanted)
        if diff.remove:
            result = client.upload(
                remote_id,
                schema,
                wire_rows(target.kind, (r for _, r in diff.remove)),
                mode="remove",
                total=len(diff.remove),
            )
            with transaction(ctx.sessions) as session:
                # A changed customer's row goes too: should the add below fail, the next sync
                # sees them as new and adds them.
                _store_members(session, target.aud_pk, (c for c, _ in diff.remove), [])
                audit(
                    session,
                    target.shop_id,
                    "audience_remove",
                    subject=remote_id,
                    count=result.received,
                    detail=_detail(result, target.handle),
                )
        if diff.add:
            result = client.upload(
                remote_id,
                schema,
                wire_rows(target.kind, (r for _, r in diff.add)),
                mode="add",
                total=len(diff.add),
            )
            with transaction(ctx.sessions) as session:
                aud = _aud(session, target)
                _store_members(session, aud.id, (), diff.add)
                aud.received += result.received
                aud.invalid += result.invalid
                if result.samples:
                    aud.invalid_samples = [f"{k}: {v}" for k, v in result.samples.items()]
                audit(
                    session,
                    target.shop_id,
                    "audience_add",
                    subject=remote_id,
                    count=result.received,
                    result=AuditResult.PARTIAL if result.invalid else AuditResult.OK,
                    detail=_detail(result, target.handle),
                )
        outcome = {"added": len(diff.add), "removed": len(diff.remove)}
    if outcome["added"] or outcome["removed"] or info is None:
        info = client.audience(remote_id)  # the size and status after this sync's uploads
    with transaction(ctx.sessions) as session:
        aud = _aud(session, target)
        if created and not replace:
            # The first upload of a new audience is a full list: the weekly replace starts now.
            aud.last_full_refresh_at = utcnow()
        if not _apply_info(aud, info):
            aud.status, aud.error = MetaAudienceStatus.READY, None
        aud.last_synced_at = utcnow()
    return outcome


def _aud(session: Session, target: _Target) -> MetaAudience:
    aud = session.get(MetaAudience, target.aud_pk)
    if aud is None:  # the segment was deleted meanwhile (cascade)
        raise MetaError("the segment was deleted during the sync")
    return aud


def _detail(result: graph.UploadResult, handle: str) -> dict[str, Any]:
    return {
        "segment": handle,
        "received": result.received,
        "invalid": result.invalid,
        "invalid_samples": result.samples,
        "batches": result.batches,
    }


def _apply_info(aud: MetaAudience, info: dict[str, Any]) -> bool:
    """Copy Meta's size estimate and status onto the row; ``True`` if Meta reports a problem."""
    lower = info.get("approximate_count_lower_bound")
    upper = info.get("approximate_count_upper_bound")
    aud.approximate_lower = int(lower) if isinstance(lower, int) and lower >= 0 else None
    aud.approximate_upper = int(upper) if isinstance(upper, int) and upper >= 0 else None
    status = info.get("operation_status") or {}
    code = status.get("code") if isinstance(status, dict) else None
    if code == 471:
        aud.status = MetaAudienceStatus.FLAGGED
        aud.error = (
            "Meta flagged this audience: it may suggest information its terms don't allow "
            "(health, finances). It can't be used in ad campaigns; rename or change the segment."
        )
        return True
    if code == 414:
        aud.status, aud.error = MetaAudienceStatus.REPLACING, None
        return True
    if code == 415:
        aud.status = MetaAudienceStatus.ERROR
        aud.error = "Meta's last full refresh of this audience failed; Goldpan will retry."
        return True
    return False


@jobs.task("meta.forget_customer")
def forget_customer(
    ctx: jobs.Context,
    shop_id: int,
    customer_id: int | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> int:
    """Remove a person from every Goldpan audience of the shop (redaction, unsubscribe).

    Uses the rows uploaded for the customer plus the email/phone given (the customer row may
    already be gone). Returns the number of audiences the person was removed from. Where Meta
    could not be reached the uploaded row is kept, so the next segment sync — which no longer
    finds the customer — removes them.
    """
    extra: Row | None = None
    e, p = normalize_email(email), normalize_phone(phone)
    if e or p:
        extra = (hash_value(e), hash_value(p), "", "", "", "", "", "")
    work: list[tuple[int, str, MetaAudienceKind, list[Row]]] = []
    with ctx.sessions() as session:
        conn = session.get(MetaConnection, shop_id)
        for aud in session.scalars(
            select(MetaAudience).where(
                MetaAudience.shop_id == shop_id,
                MetaAudience.kind != MetaAudienceKind.LOOKALIKE,
                MetaAudience.audience_id.is_not(None),
            )
        ):
            rows: list[Row] = []
            if customer_id is not None:
                member = session.get(MetaAudienceMember, (aud.id, customer_id))
                if member is not None:
                    rows.append(tuple(member.row))
            if extra is not None:
                mine = (*extra, "0") if aud.kind == MetaAudienceKind.VALUE else extra
                if mine not in rows:
                    rows.append(mine)
            if rows:
                work.append((aud.id, aud.audience_id or "", aud.kind, rows))
        client = client_for(ctx, conn) if conn is not None and conn.access_token else None
    done = 0
    for aud_pk, remote, kind, rows in work:
        error: MetaError | None = None
        received = 0
        if client is None:
            error = MetaError("Meta is not connected")
        else:
            schema = schema_of(kind)
            try:
                received = client.upload(
                    remote, schema, wire_rows(kind, rows), mode="remove"
                ).received
            except MetaError as exc:
                error = exc
        # The audit entries name no customer: this runs after a redaction, which leaves none.
        with transaction(ctx.sessions) as session:
            if error is not None:
                conn = session.get(MetaConnection, shop_id)
                if isinstance(error, MetaTokenError | MetaTermsError) and conn is not None:
                    record_connection_error(session, conn, error)
                audit(
                    session,
                    shop_id,
                    "forget_customer",
                    subject=remote,
                    result=AuditResult.ERROR,
                    error=stored_error(error),
                )
                continue
            if customer_id is not None:
                session.execute(
                    delete(MetaAudienceMember).where(
                        MetaAudienceMember.audience_id == aud_pk,
                        MetaAudienceMember.customer_id == customer_id,
                    )
                )
            audit(
                session,
                shop_id,
                "forget_customer",
                subject=remote,
                count=received,
            )
        done += 1
    return done


@jobs.periodic("meta.refresh_all", minute="23")
def refresh_all(ctx: jobs.Context) -> None:
    """Hourly: queue :func:`refresh_shop` for every shop with a working Meta connection."""
    with ctx.sessions() as session:
        shops = session.scalars(
            select(MetaConnection.shop_id).where(MetaConnection.status.in_(USABLE))
        ).all()
    for shop_id in shops:
        ctx.enqueue("meta.refresh_shop", shop_id=shop_id)


@jobs.task("meta.refresh_shop")
def refresh_shop(ctx: jobs.Context, shop_id: int) -> None:
    """Re-diff every synced audience (retrying throttled or failed ones); weekly full refresh."""
    now = utcnow()
    with ctx.sessions() as session:
        if not _usable(session.get(MetaConnection, shop_id)):
            return
        rows = session.execute(
            select(
                MetaAudience.segment_id,
                MetaAudience.last_full_refresh_at,
                MetaAudience.last_synced_at,
            )
            .join(Segment, Segment.id == MetaAudience.segment_id)
            .where(
                MetaAudience.shop_id == shop_id,
                MetaAudience.kind == MetaAudienceKind.CUSTOM,
                Segment.meta_sync.is_(True),
            )
        ).all()
    for segment_id, refreshed, synced in rows:
        if synced is not None and (refreshed is None or now - refreshed > FULL_REFRESH_EVERY):
            ctx.enqueue("meta.full_refresh", shop_id=shop_id, segment_id=segment_id)
        else:
            # Also the safety net for changes no webhook announced (an unsubscribe arriving
            # while Meta was throttling, a membership change while disconnected): the diff
            # sends nothing when nothing changed.
            ctx.enqueue("meta.sync_segment", shop_id=shop_id, segment_id=segment_id)


@jobs.task("meta.sync_customer")
def sync_customer(ctx: jobs.Context, shop_id: int, customer_id: int) -> dict[str, int]:
    """Bring one customer up to date in every synced audience (a webhook changed them).

    Joined a segment → added; left it, unsubscribed or changed identifiers → removed (and
    re-added with the new row). Cheap: one customer, not the whole segment.
    """
    outcome = {"added": 0, "removed": 0}
    work: list[tuple[int, str, str, MetaAudienceKind, Plan]] = []
    with ctx.sessions() as session:
        conn = session.get(MetaConnection, shop_id)
        shop = session.get(Shop, shop_id)
        if shop is None or conn is None or not _usable(conn):
            return outcome
        customer = session.execute(
            select(*_PERSON_COLUMNS).where(Customer.shop_id == shop_id, Customer.id == customer_id)
        ).first()
        in_segments = set(
            session.scalars(
                select(Membership.segment_id).where(
                    Membership.shop_id == shop_id, Membership.customer_id == customer_id
                )
            )
        )
        policy = consent_policy(shop)
        config = shop_config(shop)
        for aud, handle in session.execute(
            select(MetaAudience, Segment.handle)
            .join(Segment, Segment.id == MetaAudience.segment_id)
            .where(
                MetaAudience.shop_id == shop_id,
                MetaAudience.kind != MetaAudienceKind.LOOKALIKE,
                MetaAudience.audience_id.is_not(None),
                Segment.meta_sync.is_(True),
            )
        ).all():
            wanted: dict[int, Row] = {}
            if (
                customer is not None
                and aud.segment_id in in_segments
                and not held_out(config, handle, customer_id)
            ):
                _cid, *fields = customer
                wanted = prepare([(customer_id, Person(*fields))], policy)
            member = session.get(MetaAudienceMember, (aud.id, customer_id))
            previous = {customer_id: (member.row_hash, tuple(member.row))} if member else {}
            if aud.kind == MetaAudienceKind.VALUE:
                # The value comes from the shop's model: the segment sync adds and updates;
                # here a value-based audience only loses whoever must leave it.
                wanted = {cid: previous[cid][1] for cid in wanted if cid in previous}
            diff = plan(previous, wanted)
            if not diff.empty:
                work.append((aud.id, aud.audience_id or "", handle, aud.kind, diff))
        client = client_for(ctx, conn) if work else None
    for aud_pk, remote, handle, kind, diff in work:
        assert client is not None
        error: MetaError | None = None
        received = invalid = 0
        schema = schema_of(kind)
        try:
            if diff.remove:
                client.upload(
                    remote, schema, wire_rows(kind, (r for _, r in diff.remove)), mode="remove"
                )
            if diff.add:
                result = client.upload(remote, schema, wire_rows(kind, (r for _, r in diff.add)))
                received, invalid = result.received, result.invalid
        except MetaError as exc:
            error = exc
        with transaction(ctx.sessions) as session:
            row = session.get(MetaAudience, aud_pk)
            if row is None:
                continue
            if error is not None:
                conn = session.get(MetaConnection, shop_id)
                if isinstance(error, MetaTokenError | MetaTermsError) and conn is not None:
                    record_connection_error(session, conn, error)
                else:
                    row.status = (
                        MetaAudienceStatus.THROTTLED
                        if isinstance(error, MetaThrottledError)
                        else MetaAudienceStatus.ERROR
                    )
                    row.error = stored_error(error)
                audit(
                    session,
                    shop_id,
                    "audience_customer",
                    subject=remote,
                    result=AuditResult.ERROR,
                    error=stored_error(error),
                )
                continue
            _store_members(session, aud_pk, (c for c, _ in diff.remove), diff.add)
            row.received += received
            row.invalid += invalid
            audit(
                session,
                shop_id,
                "audience_customer",
                subject=remote,
                count=len(diff.add) + len(diff.remove),
                detail={"segment": handle, "customer_id": customer_id, "added": len(diff.add)},
            )
        outcome["added"] += len(diff.add)
        outcome["removed"] += len(diff.remove)
    return outcome


# --- lookalikes ------------------------------------------------------------------------------


def create_lookalike(
    ctx: jobs.Context,
    shop_id: int,
    segment_id: int,
    country: str,
    ratio_percent: int,
    source: MetaAudienceKind = MetaAudienceKind.CUSTOM,
) -> MetaAudience:
    """Create a lookalike of the segment's audience (``source``: the customer list or its
    value-based twin) for ``country`` at 1–10 % of its population.

    Raises :class:`InputError` for a country Meta can't target, a paused or missing source,
    one with fewer than 100 people matched, or a lookalike that exists already (same source,
    country and ratio); and the Meta errors (terms, throttling) for the caller to show.
    """
    country = (country or "").strip().upper()
    if country not in LOOKALIKE_COUNTRIES:
        raise InputError(
            f"“{country[:8]}” is not a country a lookalike can target: choose one from the list",
            field="country",
        )
    if (
        not isinstance(ratio_percent, int)
        or isinstance(ratio_percent, bool)
        or not 1 <= ratio_percent <= 10
    ):
        raise InputError("ratio must be a whole percentage from 1 to 10", field="ratio")
    if source == MetaAudienceKind.LOOKALIKE:
        raise InputError("a lookalike is made from a customer list", field="source")
    ratio = ratio_percent / 100
    with ctx.sessions() as session:
        conn, account_id = _ad_account(session, shop_id)
        segment = session.get_one(Segment, segment_id)
        origin = session.scalars(
            select(MetaAudience).where(
                MetaAudience.shop_id == shop_id,
                MetaAudience.segment_id == segment_id,
                MetaAudience.kind == source,
            )
        ).first()
        if origin is None or origin.audience_id is None:
            raise InputError(
                "sync the segment to Meta before creating a lookalike", field="segment"
            )
        if not segment.meta_sync or origin.status == MetaAudienceStatus.PAUSED:
            raise InputError(
                "Meta sync is paused for this segment: turn it on before creating a lookalike",
                field="segment",
            )
        origin_id = origin.audience_id
        enough = session.scalar(
            select(MetaAudienceMember.customer_id)
            .where(MetaAudienceMember.audience_id == origin.id)
            .offset(MIN_LOOKALIKE_MEMBERS - 1)
            .limit(1)
        )
        if enough is None or (origin.approximate_lower or 0) < MIN_LOOKALIKE_MEMBERS:
            raise InputError(
                f"a lookalike needs a source audience of at least {MIN_LOOKALIKE_MEMBERS} "
                f"people matched by Meta (now {origin.approximate_lower or 0})",
                field="segment",
            )
        wanted = {"country": country, "ratio": ratio}
        for spec in session.scalars(
            select(MetaAudience.spec).where(
                MetaAudience.shop_id == shop_id,
                MetaAudience.kind == MetaAudienceKind.LOOKALIKE,
                MetaAudience.origin_audience_id == origin_id,
            )
        ):
            if lookalike_key(spec) == wanted:
                raise InputError(
                    f"a {ratio_percent}% lookalike for {country} of this audience exists already",
                    field="country",
                )
        handle = segment.handle
        kind_label = " value" if source == MetaAudienceKind.VALUE else ""
        name = f"Goldpan · {segment.name} ·{kind_label} lookalike {country} {ratio_percent}%"
        client = client_for(ctx, conn)
    try:
        audience_id = client.create_lookalike(account_id, name, origin_id, country, ratio)
    except MetaError as exc:
        with transaction(ctx.sessions) as session:
            current = session.get(MetaConnection, shop_id)
            if isinstance(exc, MetaTokenError | MetaTermsError) and current is not None:
                record_connection_error(session, current, exc)
            audit(
                session,
                shop_id,
                "lookalike_create",
                subject=origin_id,
                result=AuditResult.ERROR,
                error=stored_error(exc),
            )
        raise
    with transaction(ctx.sessions) as session:
        aud = MetaAudience(
            shop_id=shop_id,
            segment_id=segment_id,
            kind=MetaAudienceKind.LOOKALIKE,
            audience_id=audience_id,
            origin_audience_id=origin_id,
            spec=wanted,
            status=MetaAudienceStatus.READY,
            last_synced_at=utcnow(),
        )
        session.add(aud)
        audit(
            session,
            shop_id,
            "lookalike_create",
            subject=audience_id,
            detail={"segment": handle, "country": country, "ratio": ratio, "source": source},
        )
        session.flush()
        return aud


__all__ = [
    "Plan",
    "audience_description",
    "create_lookalike",
    "create_value_audience",
    "forget_customer",
    "full_refresh",
    "plan",
    "prepare",
    "refresh_all",
    "refresh_shop",
    "row_hash",
    "sync_customer",
    "sync_segment",
    "sync_shop",
]


VALUE_TERMS = "value_based_custom_audience_tos"
"""The ``tos_accepted`` entry of the value-based audience terms (separate from the Custom
Audience terms; each ad account accepts them once)."""


def create_value_audience(ctx: jobs.Context, shop_id: int, segment_id: int) -> MetaAudience:
    """Add a value-based twin to the segment's audience: the same people, each with their
    predicted 12-month value, for value-based lookalikes. Filled by the next segment sync
    (queued here).

    Raises :class:`InputError` when Meta is not connected, the segment's Meta sync is off, it
    has a twin already, or the ad account has not accepted the value-based terms (with the link).
    """
    with ctx.sessions() as session:
        conn, account_id = _ad_account(session, shop_id)
        segment = session.get_one(Segment, segment_id)
        if not segment.meta_sync:
            raise InputError("turn on Meta sync for this segment first", field="segment")
        if session.scalar(
            select(MetaAudience.id).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == MetaAudienceKind.VALUE
            )
        ):
            raise InputError("this segment has a value-based audience already", field="segment")
        client = client_for(ctx, conn)
    if not client.tos_accepted(account_id, VALUE_TERMS):
        raise InputError(
            "Accept Meta's value-based audience terms for this ad account first, in Ads "
            f"Manager: {graph.terms_url(account_id)}",
            field="value_terms",
        )
    with transaction(ctx.sessions) as session:
        aud = MetaAudience(
            shop_id=shop_id, segment_id=segment_id, kind=MetaAudienceKind.VALUE, spec={}
        )
        session.add(aud)
        audit(session, shop_id, "value_audience_add", detail={"segment": segment.handle})
        session.flush()
        session.expunge(aud)
    ctx.enqueue("meta.sync_segment", shop_id=shop_id, segment_id=segment_id)
    return aud
