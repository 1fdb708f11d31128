"""Sync runs (:class:`SyncRun`): what a sync covers, which runs are under way, their progress.

Shared by the bulk import and reconciliation; the page, the CLI and the demo read
:func:`progress`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from shopify_app import db, jobs
from shopify_app.db import transaction
from shopify_app.db.models import SyncRun
from shopify_app.db.types import utcnow
from shopify_app.states import SyncRunKind, SyncRunStatus

RESOURCES = ("customers", "orders", "products")
ACTIVE = (SyncRunStatus.RUNNING, SyncRunStatus.INGESTING)
"""Statuses of a run still under way."""
FINISHED = (SyncRunStatus.DONE, SyncRunStatus.FAILED)
"""Statuses of a run that is over."""


def active_runs(
    ctx: jobs.Context, shop_id: int, kind: SyncRunKind = SyncRunKind.INITIAL
) -> list[SyncRun]:
    """The runs of ``kind`` still running or ingesting for the shop."""
    with ctx.sessions() as session:
        return list(
            session.scalars(
                select(SyncRun).where(
                    SyncRun.shop_id == shop_id,
                    SyncRun.kind == kind,
                    SyncRun.status.in_(ACTIVE),
                )
            )
        )


def progress(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """The latest run per resource, for the page and the CLI."""
    out: dict[str, Any] = {}
    with ctx.sessions() as session:
        for resource in RESOURCES:
            run = session.scalar(
                select(SyncRun)
                .where(SyncRun.shop_id == shop_id, SyncRun.resource == resource)
                .order_by(SyncRun.id.desc())
                .limit(1)
            )
            if run is not None:
                out[resource] = {
                    "kind": run.kind,
                    "status": run.status,
                    "objects_done": run.objects_done,
                    "object_count": run.object_count,
                    "error": run.error,
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                }
    return out


def release_run(ctx: jobs.Context, run_id: int) -> None:
    """Hand an ``ingesting`` run back (``running``) so the next retry or poll claims it at once."""
    with db.write_engine(ctx.engine).begin() as conn:
        conn.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status == SyncRunStatus.INGESTING)
            .values(status=SyncRunStatus.RUNNING)
        )


def fail_run(ctx: jobs.Context, run_id: int, error: str) -> None:
    """Mark the run ``failed`` with ``error`` (shown on the page)."""
    with transaction(ctx.sessions) as session:
        run = session.get(SyncRun, run_id)
        if run is not None:
            run.status = SyncRunStatus.FAILED
            run.error = error[:2000]
            run.finished_at = utcnow()
