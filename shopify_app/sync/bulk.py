"""The initial sync: Admin GraphQL bulk operations from start to ingest, and their tasks.

``sync.initial`` starts one bulk query per resource (customers, orders with their line items,
products with their variants) — they run concurrently on Shopify — and records a
:class:`SyncRun` for each. Completion arrives by the ``bulk_operations/finish`` webhook
(:func:`on_bulk_finish`) or, as a fallback, ``sync.poll``. The result JSONL is streamed and
ingested from its checkpoint (:mod:`shopify_app.sync.ingest`). ``FAILED``/``EXPIRED``/
``CANCELED`` operations and broken downloads are retried a bounded number of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import SyncRun
from shopify_app.db.types import utcnow
from shopify_app.shopify.client import AdminClient
from shopify_app.states import SyncRunKind, SyncRunStatus
from shopify_app.sync.ingest import ingest_run
from shopify_app.sync.runs import FINISHED, RESOURCES, active_runs, fail_run
from shopify_app.sync.scopes import check_scopes
from shopify_app.sync.shop import refresh_shop

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # bulk operations started per resource before giving up
POLL_INTERVAL = 5.0
STALL_SECONDS = 120.0  # an ingest whose checkpoint has not moved this long lost its worker


@jobs.task("sync.initial", retries=3, retry_delay=30)
def initial(
    ctx: jobs.Context, shop_id: int, *, http: Any = None, poll_interval: float = POLL_INTERVAL
) -> list[int]:
    """Start the bulk export of every resource; returns the SyncRun ids.

    Does nothing while an initial sync of the shop is already under way (a reinstall or a
    double click must not start a second set of exports). Then waits for completion: the
    webhook normally wins, ``sync.poll`` is the fallback.
    """
    check_scopes(ctx, shop_id)
    running = {r.resource for r in active_runs(ctx, shop_id)}
    # A retry of this task after a partial start (say Shopify refused the third export) starts
    # only what is missing.
    missing = [r for r in RESOURCES if r not in running]
    if not missing:
        log.info("initial sync already running", extra={"shop_id": shop_id})
        return []
    started = utcnow()
    run_ids: list[int] = []
    with AdminClient(ctx, shop_id, http=http) as client:
        refresh_shop(ctx, client, shop_id)
        for resource in missing:
            gid = client.run_bulk_query(f"bulk_{resource}")
            with transaction(ctx.sessions) as session:
                run = SyncRun(
                    shop_id=shop_id,
                    kind=SyncRunKind.INITIAL,
                    resource=resource,
                    status=SyncRunStatus.RUNNING,
                    bulk_operation_id=gid,
                    attempts=1,
                    watermark=started,
                    started_at=started,
                )
                session.add(run)
                session.flush()
                run_ids.append(run.id)
    log.info("initial sync started", extra={"shop_id": shop_id, "runs": run_ids})
    schedule_poll(ctx, shop_id, poll_interval, http=http)
    return run_ids


def schedule_poll(
    ctx: jobs.Context, shop_id: int, delay: float = POLL_INTERVAL, *, http: Any = None
) -> None:
    """Poll later (queued) — or now, in a loop, when there is no queue (CLI, scripts)."""
    if ctx.runtime is not None:
        ctx.runtime.enqueue_in(delay, "sync.poll", shop_id=shop_id)
    else:
        poll(ctx, shop_id, wait=True, interval=delay, http=http)


@jobs.task("sync.poll", retries=5, retry_delay=30)
def poll(
    ctx: jobs.Context,
    shop_id: int,
    *,
    wait: bool = False,
    interval: float = POLL_INTERVAL,
    stalled: dict[str, list[int]] | None = None,
    stall_seconds: float = STALL_SECONDS,
    http: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Check the shop's bulk operations and ingest finished ones; True when all are settled.

    Queued, it re-enqueues itself while something still runs; with ``wait`` it loops instead.
    A run left ``ingesting`` whose checkpoint stops moving for ``stall_seconds`` lost its
    worker (killed, redeployed): it is resumed from its checkpoint. ``stalled`` carries what the
    previous polls saw from one queued poll to the next.
    """
    # {run id: [checkpoint last seen, consecutive polls without progress]}
    seen: dict[str, list[int]] = {k: list(v) for k, v in (stalled or {}).items()}
    patience = max(1, int(stall_seconds / max(interval, 0.001)))
    with AdminClient(ctx, shop_id, http=http) as client:
        while True:
            pending = False
            for run in active_runs(ctx, shop_id):
                if run.status == SyncRunStatus.INGESTING:
                    # Someone is ingesting it — or was, and died. Resume only when stalled.
                    last, quiet = seen.get(str(run.id), [-1, 0])
                    quiet = quiet + 1 if last == run.checkpoint else 0
                    seen[str(run.id)] = [run.checkpoint, quiet]
                    if quiet < patience:
                        pending = True
                        continue
                    log.warning("resuming a stalled ingest", extra={"run": run.id})
                    seen.pop(str(run.id), None)
                    ingest_run(ctx, client, run.id)
                    _maybe_finished(ctx, shop_id)
                    continue
                op = client.bulk_operation(run.bulk_operation_id or "")
                if not advance(ctx, client, run.id, op):
                    pending = True
            if not pending:
                return True
            if not wait:
                break
            sleep(interval)
    if ctx.runtime is not None:
        ctx.runtime.enqueue_in(interval, "sync.poll", shop_id=shop_id, stalled=seen)
    return False


def on_bulk_finish(ctx: jobs.Context, shop_id: int, payload: dict[str, Any]) -> None:
    """``bulk_operations/finish`` for a query: ingest (or retry) the run it belongs to."""
    gid = str(payload.get("admin_graphql_api_id") or "")
    with ctx.sessions() as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.shop_id == shop_id, SyncRun.bulk_operation_id == gid)
        )
    if run is None or run.status != SyncRunStatus.RUNNING:
        log.info("bulk finish for an unknown or claimed operation", extra={"gid": gid})
        return
    with AdminClient(ctx, shop_id) as client:
        # The webhook carries no URL or count: ask for them.
        advance(ctx, client, run.id, client.bulk_operation(gid))


def advance(ctx: jobs.Context, client: AdminClient, run_id: int, op: dict[str, Any]) -> bool:
    """Move ``run_id`` forward given its bulk operation's state; True once the run is settled.

    Ingesting is claimed with a conditional UPDATE (``running`` → ``ingesting``): when the
    webhook and the poller both see COMPLETED, exactly one of them ingests.
    """
    status = str(op.get("status") or "").upper()
    count = int(op.get("objectCount") or 0)
    gid = op.get("id")
    if status in ("CREATED", "RUNNING", "CANCELING"):
        with transaction(ctx.sessions) as session:
            session.execute(update(SyncRun).where(SyncRun.id == run_id).values(object_count=count))
        return False
    if status == "COMPLETED":
        with transaction(ctx.sessions) as session:
            claim = session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id, SyncRun.status == SyncRunStatus.RUNNING)
                .values(status=SyncRunStatus.INGESTING, url=op.get("url"), object_count=count)
                .execution_options(synchronize_session=False)
            )
            claimed = getattr(claim, "rowcount", 0) == 1
            shop_id = session.scalar(select(SyncRun.shop_id).where(SyncRun.id == run_id))
        if not claimed:
            return True  # another worker has it (or it is settled)
        ingest_run(ctx, client, run_id)
        if shop_id is not None:
            _maybe_finished(ctx, shop_id)
        return True
    # FAILED, EXPIRED, CANCELED: start the export again (a partial result is re-read in full
    # by the new one; upserts are idempotent) — a bounded number of times.
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        if (
            run is None
            or run.status != SyncRunStatus.RUNNING
            or (gid and run.bulk_operation_id != gid)
        ):
            return True  # settled, or already retried by someone else
        shop_id, resource, attempts = run.shop_id, run.resource, run.attempts
    reason = f"bulk operation {status.lower()} ({op.get('errorCode') or 'no error code'})"
    if attempts >= MAX_ATTEMPTS:
        fail_run(ctx, run_id, f"{reason} after {attempts} attempts")
        log.error("bulk import failed", extra={"shop": client.shop, "run": run_id})
        _maybe_finished(ctx, shop_id)
        return True
    new_gid = client.run_bulk_query(f"bulk_{resource}")
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        run.bulk_operation_id = new_gid
        run.attempts = attempts + 1
        run.status = SyncRunStatus.RUNNING
        run.error = reason
        # The new export's lines come in another order: start counting again.
        run.checkpoint = 0
        run.objects_done = 0
        run.url = None
    log.warning("bulk operation retried", extra={"shop": client.shop, "run": run_id})
    return False


def _maybe_finished(ctx: jobs.Context, shop_id: int) -> None:
    with ctx.sessions() as session:
        latest = session.scalars(
            select(SyncRun)
            .where(SyncRun.shop_id == shop_id, SyncRun.kind == SyncRunKind.INITIAL)
            .order_by(SyncRun.id.desc())
            .limit(len(RESOURCES))
        ).all()
    settled = latest and all(r.status in FINISHED for r in latest)
    if settled and any(r.status == SyncRunStatus.DONE for r in latest):
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)
