"""The data model: SQLAlchemy 2.0 typed tables, one ``Base`` with a naming convention.

Store data (customers, orders, line items, products, variants) is keyed by ``(shop_id, id)``
where ``id`` is Shopify's numeric id (the tail of the GID). Natural keys make bulk upserts
idempotent and let children arrive before their parents (bulk JSONL has no ordering), so orders
carry ``customer_id`` without a foreign key to ``customers``: a customer may be synced after
their orders, or deleted while their orders stay.

Every datetime is stored as UTC and comes back timezone-aware (:class:`UTCDateTime`, in
:mod:`.types`), on SQLite and PostgreSQL alike. Money is ``Numeric`` read as float: segments
and metrics do arithmetic on it, and display rounds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopify_app.db.types import Money, StrEnumType, UTCDateTime, utcnow
from shopify_app.states import (
    AuditResult,
    AuditTarget,
    FlowEventStatus,
    FlowTrigger,
    JobStatus,
    MetaAudienceKind,
    MetaAudienceStatus,
    MetaConnectionStatus,
    SegmentKind,
    SyncRunKind,
    SyncRunStatus,
    WebhookStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base; constraint names follow :data:`NAMING_CONVENTION`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Shop(Base):
    """An installed (or once installed) store and its credentials.

    Tokens are encrypted with :class:`shopify_app.crypto.TokenCipher`. ``token_version`` is
    bumped by every refresh: the refresh writes the rotated pair only if the version is still
    the one it read, so two workers refreshing at once never lose the valid refresh token.
    """

    __tablename__ = "shops"
    # SQLite must never hand a deleted shop's id to the next install (migration 0007).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str | None] = mapped_column(String(3))
    timezone: Mapped[str | None] = mapped_column(String(64))
    plan: Mapped[str | None] = mapped_column(String(64))
    access_token: Mapped[str | None] = mapped_column(Text)
    access_token_expires_at: Mapped[dt.datetime | None]
    refresh_token: Mapped[str | None] = mapped_column(Text)
    refresh_token_expires_at: Mapped[dt.datetime | None]
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    installed_at: Mapped[dt.datetime | None]
    uninstalled_at: Mapped[dt.datetime | None]
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Cached by every full recompute; deferred, so that the many reads of a shop row (several
    # per webhook) do not parse them: only what evaluates or shows segments loads them.
    segment_stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    cross_sell_suggestions: Mapped[list[Any] | None] = mapped_column(JSON, deferred=True)
    api_cost_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped by every write that changes what the page shows (``db.bump_data_version``).
    data_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @hybrid_property
    def is_installed(self) -> bool:
        """Installed and holding a token: the one definition, in Python and in SQL."""
        return self.uninstalled_at is None and self.access_token is not None

    @is_installed.inplace.expression
    @classmethod
    def _installed_expression(cls) -> ColumnElement[bool]:
        return and_(cls.uninstalled_at.is_(None), cls.access_token.is_not(None))


class Customer(Base):
    """A store's customer as Shopify has it now (``tags`` included)."""

    __tablename__ = "customers"
    __table_args__ = (Index("ix_customers_shop_email", "shop_id", "email"),)

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    email_marketing_state: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(64))
    phone_marketing_state: Mapped[str | None] = mapped_column(String(32))
    country_code: Mapped[str | None] = mapped_column(String(2))
    province_code: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(255))
    zip: Mapped[str | None] = mapped_column(String(32))
    company: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Sync stores Shopify's counters; every recompute replaces them with the segments engine's
    # figures (orders that count, net of refunds), which the members list shows beside reasons.
    number_of_orders: Mapped[int] = mapped_column(Integer, default=0)
    amount_spent: Mapped[float] = mapped_column(Money, default=0)
    rfm_group: Mapped[str | None] = mapped_column(String(32))
    predicted_spend_tier: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime | None]


class Order(Base):
    """An order. ``total`` is net of refunds (``segments.dataset.net_value``); ``refunded`` is
    the money given back (None: synced before it was kept, until the order is read again)."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_shop_customer", "shop_id", "customer_id"),)

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime]
    processed_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[float] = mapped_column(Money, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    discount_codes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    billing_company: Mapped[str | None] = mapped_column(String(255))
    refunded: Mapped[float | None] = mapped_column(Money)


class LineItem(Base):
    """One line of an order. ``quantity`` is the current quantity (after edits/refunds)."""

    __tablename__ = "line_items"
    __table_args__ = (Index("ix_line_items_shop_order", "shop_id", "order_id"),)

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(BigInteger)
    product_id: Mapped[int | None] = mapped_column(BigInteger)
    variant_id: Mapped[int | None] = mapped_column(BigInteger)
    sku: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(512), default="")
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[float] = mapped_column(Money, default=0)


class Product(Base):
    """A catalogue product, for cross-sell pickers."""

    __tablename__ = "products"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(512), default="")
    handle: Mapped[str | None] = mapped_column(String(255))
    product_type: Mapped[str | None] = mapped_column(String(255))
    vendor: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime | None]


class Variant(Base):
    """A product variant."""

    __tablename__ = "variants"
    __table_args__ = (Index("ix_variants_shop_product", "shop_id", "product_id"),)

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(512), default="")
    sku: Mapped[str | None] = mapped_column(String(255))
    price: Mapped[float | None] = mapped_column(Money)


class Tombstone(Base):
    """A store object Shopify deleted (``customers/delete``).

    Shopify delivers webhooks at least once and in any order, and never reuses an id: any
    create or update of a deleted id that arrives later (a late webhook, a bulk export or a
    reconciliation page read before the deletion) is stale, and the tombstone keeps it out.
    """

    __tablename__ = "tombstones"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(String(16), primary_key=True)  # customers
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    deleted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """A segment definition (built-in, cross-sell rule or custom) and its sync switches."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("shop_id", "handle"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    handle: Mapped[str] = mapped_column(String(64))
    kind: Mapped[SegmentKind] = mapped_column(
        StrEnumType(SegmentKind, 16), default=SegmentKind.BUILTIN
    )
    name: Mapped[str] = mapped_column(String(255))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tag: Mapped[str | None] = mapped_column(String(255))
    tag_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    meta_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    native_segment_id: Mapped[str | None] = mapped_column(String(255))
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Membership(Base):
    """A customer in a segment, since when, and why (shown on the page)."""

    __tablename__ = "memberships"
    # No foreign keys (to customers or segments): PostgreSQL checks them row by row (a lookup
    # and a row lock per membership), which was most of a full recompute's write on a big shop
    # (a million memberships: 3x the insert time). Code that deletes customers deletes their
    # memberships in the same transaction (shopify_app.segments.recompute.forget_customers;
    # the index serves those deletes); segments are deleted only with their shop (shop/redact),
    # which deletes the shop's memberships first.
    __table_args__ = (Index("ix_memberships_shop_customer", "shop_id", "customer_id"),)

    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shop_id: Mapped[int] = mapped_column(Integer)
    since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)


class TagLedger(Base):
    """A tag Goldpan wrote on a customer: the only tags it may ever remove.

    Written in the transaction that stores Shopify's answer to a successful ``tagsAdd`` (or a
    bulk add's row), deleted with a successful ``tagsRemove``. A tag the customer had before
    (the merchant's ``VIP``, ``staff``, or a ``goldpan-`` tag typed by hand) has no row, so no
    prefix, rename or removal can take it off. ``tag_key`` is the tag as Shopify compares it
    (trimmed, lower case). No foreign key to customers, as with memberships: whoever deletes a
    customer deletes their rows (``shopify_app.segments.recompute.forget_customers``).
    """

    __tablename__ = "tag_ledger"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tag_key: Mapped[str] = mapped_column(Text, primary_key=True)
    tag: Mapped[str] = mapped_column(Text)
    written_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SegmentHistory(Base):
    """A segment's size and revenue on a day, for "change since last week"."""

    __tablename__ = "segment_history"

    segment_id: Mapped[int] = mapped_column(
        ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    shop_id: Mapped[int] = mapped_column(Integer, index=True)
    members: Mapped[int] = mapped_column(Integer, default=0)
    revenue: Mapped[float] = mapped_column(Money, default=0)


class ShopMetrics(Base):
    """The shop's retention metrics (:func:`shopify_app.segments.metrics.compute`) as of a day.

    Written by every full recompute, read only by the views that show them: kept apart from
    ``Shop.settings`` so that the many reads of a shop row do not parse them.
    """

    __tablename__ = "shop_metrics"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    as_of: Mapped[dt.date] = mapped_column(Date)
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


def _payload_hash(context: Any) -> str:
    """The body hash of a row inserted without one (the intake always gives the raw body's)."""
    payload = context.get_current_parameters().get("payload") or ""
    return hashlib.sha256(payload.encode()).hexdigest()


class WebhookEvent(Base):
    """A received webhook: the deduplication record and the durable inbox of work.

    The intake inserts the row (a unique violation means a duplicate delivery: the same event id
    with the same body), enqueues its id and answers 200; the worker marks it done. Rows left
    ``queued`` are re-enqueued on start-up. Once handled (``done`` or ``skipped``) a row keeps no
    payload, only what deduplication and the audit need; old rows are purged on a schedule.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("shop_domain", "event_id", "body_hash"),
        Index("ix_webhook_events_status", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_domain: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64), default=_payload_hash)
    webhook_id: Mapped[str | None] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    api_version: Mapped[str | None] = mapped_column(String(16))
    triggered_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[WebhookStatus] = mapped_column(
        StrEnumType(WebhookStatus, 16), default=WebhookStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class InboxDrain(Base):
    """Whether a shop's queued store-data deliveries have a ``webhooks.drain`` on its way.

    The intake sets ``due_at`` when it stores such a delivery and none is (queueing the drain
    then); the drain clears it before it claims. Both take the row's lock, so a delivery
    stored without queueing a drain is committed before that drain claims: one task per
    group of deliveries, not one per delivery, with nothing left behind (see
    :func:`shopify_app.shopify.webhooks.accept`). One row per shop domain, kept between drains.
    """

    __tablename__ = "inbox_drains"

    shop_domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    due_at: Mapped[dt.datetime | None]


class SyncRun(Base):
    """One bulk import or reconciliation pass, with its checkpoint and progress."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_shop_status", "shop_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[SyncRunKind] = mapped_column(StrEnumType(SyncRunKind, 16))
    resource: Mapped[str] = mapped_column(String(16))  # customers | orders | products
    status: Mapped[SyncRunStatus] = mapped_column(StrEnumType(SyncRunStatus, 16))
    bulk_operation_id: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str | None] = mapped_column(Text)
    object_count: Mapped[int] = mapped_column(BigInteger, default=0)
    objects_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # Lines of the JSONL already ingested and committed: a resumed ingest skips this many.
    checkpoint: Mapped[int] = mapped_column(BigInteger, default=0)
    watermark: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """One write to Shopify or Meta: what, when, how many, and the result.

    A write that runs on as a job (a tag bulk mutation) has a ``job_status`` too, and no
    ``result`` until it is done.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_shop_at", "shop_id", "at"),
        # Every tag write asks whether a bulk job of the shop runs (migration 0015).
        Index("ix_audit_log_shop_job_status", "shop_id", "job_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    target: Mapped[AuditTarget] = mapped_column(StrEnumType(AuditTarget, 16))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(255))
    count: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[AuditResult | None] = mapped_column(
        StrEnumType(AuditResult, 16), default=AuditResult.OK
    )
    job_status: Mapped[JobStatus | None] = mapped_column(StrEnumType(JobStatus, 16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def of(cls, shop_id: int, action: str, *, target: AuditTarget, **fields: Any) -> AuditEntry:
        """An entry; ``detail=None`` is stored as ``{}`` (the page reads it as an object)."""
        if fields.get("detail") is None:
            fields["detail"] = {}
        return cls(shop_id=shop_id, action=action, target=target, **fields)


class DataRequest(Base):
    """A ``customers/data_request``: what Goldpan holds about the customer, for the merchant."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    export: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MetaConnection(Base):
    """A shop's Meta (Facebook) connection: encrypted token and chosen ad account."""

    __tablename__ = "meta_connections"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    access_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[dt.datetime | None]
    ad_account_id: Mapped[str | None] = mapped_column(String(64))
    tos_accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[MetaConnectionStatus] = mapped_column(
        StrEnumType(MetaConnectionStatus, 32), default=MetaConnectionStatus.DISCONNECTED
    )
    error: Mapped[str | None] = mapped_column(Text)
    connected_at: Mapped[dt.datetime | None]
    # The Facebook user the token belongs to, as Meta names them ("connected as …").
    user_name: Mapped[str | None] = mapped_column(String(255))


class MetaLogin(Base):
    """A Facebook Login in progress: its ``state`` (hashed), single use, for a few minutes.

    It is bound to the browser that opened ``/meta/login`` (the hash of a first-party cookie set
    there) so that only that browser can complete it at ``/meta/callback``.
    """

    __tablename__ = "meta_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime]


class MetaAudience(Base):
    """A Meta Custom Audience Goldpan keeps in step with a segment (or a lookalike of one)."""

    __tablename__ = "meta_audiences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    kind: Mapped[MetaAudienceKind] = mapped_column(
        StrEnumType(MetaAudienceKind, 16), default=MetaAudienceKind.CUSTOM
    )
    audience_id: Mapped[str | None] = mapped_column(String(64))
    origin_audience_id: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[MetaAudienceStatus] = mapped_column(
        StrEnumType(MetaAudienceStatus, 32), default=MetaAudienceStatus.PENDING
    )
    received: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    invalid_samples: Mapped[list[Any]] = mapped_column(JSON, default=list)
    approximate_lower: Mapped[int | None] = mapped_column(BigInteger)
    approximate_upper: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[dt.datetime | None]
    last_full_refresh_at: Mapped[dt.datetime | None]


class MetaAudienceMember(Base):
    """The last row uploaded for a customer, hashed, so unchanged rows are not sent again."""

    __tablename__ = "meta_audience_members"

    audience_id: Mapped[int] = mapped_column(
        ForeignKey("meta_audiences.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    row_hash: Mapped[str] = mapped_column(String(64))
    row: Mapped[list[Any]] = mapped_column(JSON, default=list)


class WinBackDiscount(Base):
    """A lapsed tier's win-back code discount: the merchant's switch and what Shopify holds.

    One row per shop and tier position (``lapsed-tier-<tier>``); ``percent`` and ``ends_at``
    are what Goldpan last wrote, so a tier change is seen as a difference and updated.
    """

    __tablename__ = "win_back_discounts"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    discount_gid: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(64))
    percent: Mapped[int | None] = mapped_column(Integer)
    segment_gid: Mapped[str | None] = mapped_column(String(255))
    ends_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="off")  # off | active | ended | error
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScoreSettings(Base):
    """Whether the shop's scores are written to customer metafields, and since when the
    metafield definitions exist (created once, on first use)."""

    __tablename__ = "score_settings"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    definitions_at: Mapped[dt.datetime | None]
    written_at: Mapped[dt.datetime | None]


class ScoreDigest(Base):
    """The digest of the rounded scores last written to a customer's metafields.

    A daily recompute writes only customers whose digest changed. No foreign key to customers
    (as for memberships): code that deletes customers deletes these rows too.
    """

    __tablename__ = "score_digests"

    shop_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(32))


class FlowWorkflow(Base):
    """Whether a shop has an enabled Shopify Flow workflow using one of Goldpan's triggers, as
    the trigger lifecycle callback last said (events go only to shops that use them).

    ``changed_at`` is the callback's own timestamp: an older callback arriving late is ignored.
    ``enabled_at`` is when Goldpan heard it turn on: entries since then are announced, earlier
    members are not (enabling a workflow must not replay every current member).
    """

    __tablename__ = "flow_workflows"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    trigger: Mapped[FlowTrigger] = mapped_column(StrEnumType(FlowTrigger, 32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[dt.datetime]
    enabled_at: Mapped[dt.datetime | None]


class FlowEvent(Base):
    """One Flow event Goldpan owes or sent: a customer's entry into a segment, or its end.

    An entry is (segment, customer, ``entered_at`` = the membership's ``since``): the unique
    key makes a second recompute or a retried task find the row already there, so each entry
    and each departure is announced once. ``payload`` is built when the row is made, so a retry
    sends the same event.
    """

    __tablename__ = "flow_events"
    __table_args__ = (
        UniqueConstraint(
            "segment_id", "customer_id", "entered_at", "trigger", name="uq_flow_events_entry"
        ),
        Index("ix_flow_events_shop_status", "shop_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(BigInteger)
    entered_at: Mapped[dt.datetime]
    trigger: Mapped[FlowTrigger] = mapped_column(StrEnumType(FlowTrigger, 32))
    status: Mapped[FlowEventStatus] = mapped_column(StrEnumType(FlowEventStatus, 16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class SegmentEntry(Base):
    """A customer entering a measured segment (a lapsed tier, or one with a hold-out), and
    whether they were in its control group then.

    Memberships end when the customer leaves (a lapsed customer who orders leaves the tier), so
    results need this record of who entered when. A customer who leaves and comes back has one
    row per entry. No foreign key to customers, as with memberships: whoever deletes a customer
    deletes their rows (``shopify_app.segments.recompute.forget_customers``).
    """

    __tablename__ = "segment_entries"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entered_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    held_out: Mapped[bool] = mapped_column(Boolean, default=False)
