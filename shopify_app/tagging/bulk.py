"""Tag bulk mutations finishing: store what Shopify answered, write the rest again.

A bulk mutation started by :mod:`.writes` completes via the ``bulk_operations/finish`` webhook
(:func:`on_bulk_finish`) or polling (:func:`poll_bulk`, the fallback when the webhook is late or
lost); rows that answered ``userErrors`` or never ran are diffed and written again. Rows that
succeeded go into (adds) or out of (removes) the ledger with the tags Shopify answered.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import AuditEntry, Customer
from shopify_app.db.types import utcnow
from shopify_app.states import AuditResult, JobStatus
from shopify_app.tagging import ledger
from shopify_app.tagging.diff import TagDiff, apply
from shopify_app.tagging.state import BULK_ACTIONS, id_chunks
from shopify_app.tagging.writes import (
    AdminAPI,
    SyncReport,
    admin_client,
    parse_timestamp,
    store_answer,
    sync_tags,
)

log = logging.getLogger(__name__)

_TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "EXPIRED"}


def on_bulk_finish(
    ctx: jobs.Context,
    shop_id: int,
    payload: Mapping[str, Any],
    *,
    client: AdminAPI | None = None,
) -> SyncReport | None:
    """Handle ``bulk_operations/finish`` of a tag bulk mutation (``type`` ``"mutation"``).

    Reads the result JSONL (or the partial one of a failed operation), stores the tags Shopify
    answered for each row that succeeded, then re-diffs the operation's customers: rows that
    answered ``userErrors`` or never ran are written again, and so are changes that arrived
    while the operation ran. Idempotent: a repeated delivery finds the entry finished.
    Returns the retry's report, or ``None`` when the operation is not one of ours or not done.
    """
    gid = str(payload.get("admin_graphql_api_id") or payload.get("id") or "")
    client = client or admin_client(ctx, shop_id)
    with ctx.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.subject == gid,
                AuditEntry.action.in_(BULK_ACTIONS),
            )
        ).first()
        if entry is None or entry.job_status != JobStatus.RUNNING:
            return None
        entry_id = entry.id
        rows: list[list[Any]] = list(entry.detail.get("rows", []))
        attempt = int(entry.detail.get("attempt", 1))
        deferred = [int(cid) for cid in entry.detail.get("deferred", [])]
        kind = "add" if entry.action == "tags.bulk_add" else "remove"
    operation = client.bulk_operation(gid)
    status = str(operation.get("status") or payload.get("status") or "").upper()
    if status not in _TERMINAL:
        return None
    url = operation.get("url") or operation.get("partialDataUrl")
    field_name = "tagsAdd" if kind == "add" else "tagsRemove"
    answered: dict[int, list[str] | None] = {}
    stamps: dict[int, dt.datetime | None] = {}
    failed: dict[int, str] = {}
    if url:
        for line in client.stream_jsonl(str(url)):
            number = line.get("__lineNumber")
            if not isinstance(number, int) or not 0 <= number < len(rows):
                continue
            customer_id = int(rows[number][0])
            result = (line.get("data") or {}).get(field_name) or {}
            errors = result.get("userErrors") or line.get("errors") or []
            if errors or not result:
                failed[customer_id] = "; ".join(str(e.get("message")) for e in errors) or "no data"
                continue
            node = result.get("node") or {}
            answered[customer_id] = node.get("tags") if isinstance(node.get("tags"), list) else None
            stamps[customer_id] = parse_timestamp(node.get("updatedAt"))
    missing = [int(row[0]) for row in rows if int(row[0]) not in answered]
    row_tags = {int(row[0]): list(row[1]) for row in rows}
    with transaction(ctx.sessions) as session:
        entry_row = session.get(AuditEntry, entry_id, with_for_update=True)
        if entry_row is None or entry_row.job_status != JobStatus.RUNNING:
            return None  # another delivery (webhook vs poll) got here first
        customers: dict[int, Customer] = {}
        for chunk in id_chunks(list(answered)):
            query = select(Customer).where(Customer.shop_id == shop_id)
            if chunk is not None:
                query = query.where(Customer.id.in_(chunk))
            customers.update((c.id, c) for c in session.scalars(query))
        for customer_id, tags in answered.items():
            customer = customers.get(customer_id)
            if customer is None:
                continue
            if tags is None:
                step = (
                    TagDiff(add=tuple(row_tags[customer_id]))
                    if kind == "add"
                    else TagDiff(remove=tuple(row_tags[customer_id]))
                )
                tags = apply(list(customer.tags or []), step)
            store_answer(customer, [str(t) for t in tags], stamps.get(customer_id))
        done = [(cid, str(tag)) for cid in answered if cid in customers for tag in row_tags[cid]]
        if kind == "add":
            ledger.record(session, shop_id, added=done)
        else:
            ledger.record(session, shop_id, removed=done)
        entry_row.job_status = JobStatus.DONE
        if not missing:
            entry_row.result = AuditResult.OK
        else:
            entry_row.result = AuditResult.PARTIAL if answered else AuditResult.ERROR
        entry_row.error = (
            None if not missing else f"{status}: {len(missing)} of {len(rows)} rows not applied"
        )
        entry_row.detail = {
            "operation": gid,
            "attempt": attempt,
            "status": status,
            "error_code": operation.get("errorCode") or payload.get("error_code"),
            "rows": len(rows),
            "succeeded": len(answered),
            "failed": {str(k): v for k, v in list(failed.items())[:100]},
            "not_run": len(missing) - len(failed),
        }
        entry_row.at = utcnow()
        # Re-diff every row, not only the failed ones: a recompute that came in while the
        # operation ran was skipped as in flight and is caught up here (diff-only: customers
        # already right cost nothing). Customers also in a sibling operation still running (the
        # removes' twin of these adds) would be skipped again; the sibling takes them instead.
        retry = sorted({int(row[0]) for row in rows} | set(deferred))
        siblings = session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.action.in_(BULK_ACTIONS),
                AuditEntry.job_status == JobStatus.RUNNING,
                AuditEntry.id != entry_id,
            )
            .with_for_update()
        ).all()
        for sibling in siblings:
            theirs = {int(row[0]) for row in sibling.detail.get("rows", [])} & set(retry)
            if theirs:
                later = sorted(set(sibling.detail.get("deferred", [])) | theirs)
                sibling.detail = {**sibling.detail, "deferred": later}
                retry = [cid for cid in retry if cid not in theirs]
    if missing:
        log.warning("tag bulk %s for shop %s: %d rows not applied", gid, shop_id, len(missing))
    if not retry:
        return SyncReport()
    return sync_tags(ctx, shop_id, retry, client=client, attempt=attempt + 1)


def poll_bulk(ctx: jobs.Context, shop_id: int, *, client: AdminAPI | None = None) -> int:
    """Finish every running tag bulk mutation of the shop that Shopify reports done.

    The fallback when a ``bulk_operations/finish`` webhook is late or lost. Returns how many
    operations are running afterwards (retries started here included).
    """
    with ctx.sessions() as session:
        gids = _running_gids(session, shop_id)
    client = client or admin_client(ctx, shop_id)
    for gid in gids:
        operation = client.bulk_operation(gid)
        status = str(operation.get("status") or "").upper()
        if status in _TERMINAL:
            on_bulk_finish(
                ctx,
                shop_id,
                {"admin_graphql_api_id": gid, "status": status, "type": "mutation"},
                client=client,
            )
    # Finishing may have started retries; they count as running too.
    with ctx.sessions() as session:
        return len(_running_gids(session, shop_id))


def _running_gids(session: Session, shop_id: int) -> list[str]:
    return [
        gid
        for gid in session.scalars(
            select(AuditEntry.subject).where(
                AuditEntry.shop_id == shop_id,
                AuditEntry.action.in_(BULK_ACTIONS),
                AuditEntry.job_status == JobStatus.RUNNING,
            )
        )
        if gid is not None
    ]
