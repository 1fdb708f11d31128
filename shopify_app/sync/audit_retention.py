"""How long the audit log keeps customer ids: :data:`CUSTOMER_ID_DAYS`, then a daily purge.

The audit log says what Goldpan wrote to Shopify and Meta. Entries about tag writes, Meta
audiences and privacy requests name the customers they touched, so that "why did this customer
get this tag?" can be answered while it is still asked. After :data:`CUSTOMER_ID_DAYS` days an
entry keeps what happened, when, how many and the result, and loses who:
:func:`purge_customer_ids` (daily) replaces every id list under :data:`CUSTOMER_ID_KEYS` in
``detail`` with its length, drops ``customer_id``, clears the subject of a customers/* entry
and blanks customer gids in the error text. Entries of bulk mutations still running keep their
rows: the operation's finish reads them. The entries themselves go with the shop
(``shop/redact``).

An entry that names customers must put their ids under one of :data:`CUSTOMER_ID_KEYS`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from sqlalchemy import or_, select

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, utcnow
from shopify_app.states import JobStatus

CUSTOMER_ID_DAYS = 30
"""Days an audit entry keeps the customer ids it names."""

CUSTOMER_ID_KEYS = ("changes", "failed", "rows", "customers", "deferred", "customer_id")
"""``detail`` keys that hold customer ids (a list or map of them, or one id)."""

CUSTOMER_SUBJECT_ACTIONS = ("customers/data_request", "customers/redact")
"""Actions whose ``subject`` is the customer's id."""

PURGED = "customer_ids_removed"
"""``detail`` key marking an entry the purge has done."""

BATCH = 500

_CUSTOMER_GID = re.compile(r"gid://shopify/Customer/\d+")


def without_customer_ids(detail: dict[str, Any] | None) -> dict[str, Any]:
    """``detail`` without the customers it names: id lists become their length."""
    out: dict[str, Any] = {}
    for key, value in (detail or {}).items():
        if key not in CUSTOMER_ID_KEYS:
            out[key] = value
        elif isinstance(value, list | dict):
            out[key] = len(value)
        elif isinstance(value, int) and key != "customer_id":
            out[key] = value  # already a count ("rows": 120 once a bulk operation finished)
        # anything else under those keys is one customer's id: dropped
    text = _CUSTOMER_GID.sub("gid://shopify/Customer/-", json.dumps(out, ensure_ascii=False))
    return {**json.loads(text), PURGED: True}


@jobs.periodic("audit.purge_customer_ids", hour="4", minute="40")
def purge_customer_ids(ctx: jobs.Context) -> int:
    """Daily: remove customer ids from audit entries older than :data:`CUSTOMER_ID_DAYS`;
    returns how many entries changed."""
    cutoff = utcnow() - dt.timedelta(days=CUSTOMER_ID_DAYS)
    done, after = 0, 0
    while True:
        with transaction(ctx.sessions) as session:
            entries = session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.id > after,
                    AuditEntry.at < cutoff,
                    or_(
                        AuditEntry.job_status.is_(None), AuditEntry.job_status != JobStatus.RUNNING
                    ),
                    AuditEntry.detail[PURGED].as_boolean().is_not(True),
                )
                .order_by(AuditEntry.id)
                .limit(BATCH)
            ).all()
            for entry in entries:
                entry.detail = without_customer_ids(entry.detail)
                if entry.action in CUSTOMER_SUBJECT_ACTIONS:
                    entry.subject = None
                if entry.error:
                    entry.error = _CUSTOMER_GID.sub("gid://shopify/Customer/-", entry.error)
        done += len(entries)
        if len(entries) < BATCH:
            return done
        after = entries[-1].id
