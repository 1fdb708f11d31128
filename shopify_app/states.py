"""The values of every state and kind Goldpan stores, one ``StrEnum`` each.

Columns store them as the plain strings they are (:class:`shopify_app.db.types.StrEnumType`
validates them on the way in and out), so a misspelt state fails where it is written instead of
matching nothing later. This module sits at the package root, not in ``db/``, so that the pure
segments core can name a segment's kind without loading SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class WebhookStatus(StrEnum):
    """A stored delivery (``WebhookEvent.status``): queued → processing → done or skipped.

    ``failed`` deliveries are claimed again by their retry; ``processing`` left by a dead worker
    is queued again once stale.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class SyncRunKind(StrEnum):
    """What a :class:`~shopify_app.db.models.SyncRun` is: the bulk import or a reconciliation."""

    INITIAL = "initial"
    RECONCILE = "reconcile"


class SyncRunStatus(StrEnum):
    """A sync run: running (export on Shopify) → ingesting (reading its JSONL) → done or failed.

    A failed export that is retried goes back to running; a stalled ingest is resumed.
    """

    RUNNING = "running"
    INGESTING = "ingesting"
    DONE = "done"
    FAILED = "failed"


class SegmentKind(StrEnum):
    """Where a segment's definition comes from: the playbook, RFM, a cross-sell rule, a region,
    or the merchant's own rule."""

    BUILTIN = "builtin"
    RFM = "rfm"
    CROSS_SELL = "cross_sell"
    REGION = "region"
    CUSTOM = "custom"


class AuditTarget(StrEnum):
    """Who an audit-log entry's write went to (``app``: Goldpan's own records and decisions)."""

    SHOPIFY = "shopify"
    META = "meta"
    APP = "app"


class AuditResult(StrEnum):
    """How a write ended (``AuditEntry.result``); a bulk job still running has none yet."""

    OK = "ok"
    PARTIAL = "partial"
    ERROR = "error"


class JobStatus(StrEnum):
    """A long-running write recorded in the audit log (``AuditEntry.job_status``): a tag bulk
    mutation runs on Shopify until its result is read back."""

    RUNNING = "running"
    DONE = "done"


class MetaConnectionStatus(StrEnum):
    """A shop's Meta connection.

    ``confirm``: Facebook Login returned, waiting for the merchant to confirm the account;
    ``pending``: logged in, no ad account chosen yet; ``terms``: the account has not accepted
    the Custom Audience terms; ``expired`` / ``revoked``: the token is gone, log in again;
    ``error``: the last call failed and the next sync tries again.
    """

    DISCONNECTED = "disconnected"
    CONFIRM = "confirm"
    PENDING = "pending"
    TERMS = "terms"
    CONNECTED = "connected"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ERROR = "error"


class MetaAudienceKind(StrEnum):
    """A segment's customer-file audience, its value-based twin (each customer's predicted
    12-month value as ``LOOKALIKE_VALUE``), or a lookalike of either."""

    CUSTOM = "custom"
    VALUE = "value"
    LOOKALIKE = "lookalike"


class ModelStatus(StrEnum):
    """Whether the shop's purchase model (BG/NBD) was fitted, or predictions fall back to each
    customer's own order rhythm (kept with the shop's yardsticks, ``ShopStats``)."""

    FITTED = "fitted"
    FALLBACK = "fallback"


class MetaAudienceStatus(StrEnum):
    """A Meta audience: ``pending`` until its first upload, then ``ready``.

    ``paused``: Meta sync turned off; ``throttled``: Meta rate-limited it, retried later;
    ``replacing``: a full replace is under way; ``flagged``: Meta reports a problem with it;
    ``error``: the last sync failed.
    """

    PENDING = "pending"
    READY = "ready"
    PAUSED = "paused"
    THROTTLED = "throttled"
    REPLACING = "replacing"
    FLAGGED = "flagged"
    ERROR = "error"


class FlowTrigger(StrEnum):
    """Goldpan's Shopify Flow triggers, by extension handle (``extensions/<handle>/``)."""

    ENTERED = "goldpan-segment-entered"
    LEFT = "goldpan-segment-left"


class FlowEventStatus(StrEnum):
    """One Flow event Goldpan owes (``FlowEvent.status``): ``pending`` → ``sent``, or
    ``skipped`` when no workflow used the trigger or the customer is held out (recorded all the
    same, so the entry is never announced later by surprise); ``failed`` when Shopify refused
    the payload (a userError, not retried)."""

    PENDING = "pending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class MetaState(StrEnum):
    """What the page says about a segment's Meta audience: the one vocabulary of every view.

    Derived from the connection, the segment's switch and the stored audience
    (:func:`shopify_app.meta.view.audience_state`): ``off`` (sync never on), ``disconnected``
    (Meta is not connected, whatever the audience last was), ``syncing`` (before the first
    upload), ``synced``, ``empty`` (uploaded, nobody in it), then the audience statuses
    ``paused``, ``throttled``, ``refreshing``, ``flagged``, ``error``; lookalikes are
    ``created`` (Meta fills them in 1–6 hours).
    """

    OFF = "off"
    DISCONNECTED = "disconnected"
    SYNCING = "syncing"
    SYNCED = "synced"
    EMPTY = "empty"
    PAUSED = "paused"
    THROTTLED = "throttled"
    REFRESHING = "refreshing"
    FLAGGED = "flagged"
    ERROR = "error"
    CREATED = "created"
