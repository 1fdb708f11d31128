"""The ``tags.*`` jobs. Their names are stable: tasks already queued keep working across deploys.

Each task gets the shop's Admin client lazily: the worker thread's, kept across tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from shopify_app import jobs
from shopify_app.db.models import AuditEntry
from shopify_app.states import JobStatus
from shopify_app.tagging.bulk import poll_bulk
from shopify_app.tagging.changes import (
    ensure_native_segment,
    on_prefix_changed,
    on_segment_changed,
    remove_all,
)
from shopify_app.tagging.state import BULK_ACTIONS
from shopify_app.tagging.writes import AdminAPI, admin_client, sync_tags


class _LazyClient:
    """The shop's Admin client, fetched on first use (a run with nothing to write needs none)
    and closed when the task ends, so the cost it spent reaches ``Shop.api_cost_spent``."""

    def __init__(self, ctx: jobs.Context, shop_id: int) -> None:
        self._ctx = ctx
        self._shop_id = shop_id
        self._client: AdminAPI | None = None

    def _get(self) -> AdminAPI:
        if self._client is None:
            self._client = admin_client(self._ctx, self._shop_id)
        return self._client

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._get().execute(document_name, variables)

    def run_bulk_mutation(self, document_name: str, rows: Iterable[dict[str, Any]]) -> str:
        return self._get().run_bulk_mutation(document_name, rows)

    def bulk_operation(self, gid: str) -> dict[str, Any]:
        return self._get().bulk_operation(gid)

    def stream_jsonl(self, url: str) -> Iterator[dict[str, Any]]:
        return self._get().stream_jsonl(url)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if callable(close):
            close()


@contextmanager
def _task_client(ctx: jobs.Context, shop_id: int) -> Iterator[AdminAPI]:
    client = _LazyClient(ctx, shop_id)
    try:
        yield client
    finally:
        client.close()


@jobs.task("tags.sync")
def sync_task(
    ctx: jobs.Context, shop_id: int, customer_ids: list[int] | None = None
) -> dict[str, Any]:
    """Task: write the tag diff for some customers (after a recompute) or all (``None``).

    The run takes the thread's kept client only when it sends; a kept client records its own
    cost every few seconds, so there is nothing to close. A run for a few customers checks it
    against the token version it read anyway (:func:`~shopify_app.tagging.writes.sync_tags`).
    """
    return sync_tags(ctx, shop_id, customer_ids).summary()


@jobs.task("tags.remove_all")
def remove_all_task(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """Task: remove every Goldpan tag (the merchant is leaving)."""
    with _task_client(ctx, shop_id) as client:
        return remove_all(ctx, shop_id, client=client).summary()


@jobs.task("tags.segment_changed")
def segment_changed_task(
    ctx: jobs.Context, shop_id: int, segment_id: int, old_tag: str | None = None
) -> dict[str, Any]:
    """Task: a segment's tag was renamed or its tag sync switched; migrate diff-only."""
    with _task_client(ctx, shop_id) as client:
        return on_segment_changed(ctx, shop_id, segment_id, old_tag, client=client).summary()


@jobs.task("tags.prefix_changed")
def prefix_changed_task(ctx: jobs.Context, shop_id: int, old_prefix: str) -> dict[str, Any]:
    """Task: the shop's tag prefix changed; move every tag Goldpan wrote, diff-only."""
    with _task_client(ctx, shop_id) as client:
        return on_prefix_changed(ctx, shop_id, old_prefix, client=client).summary()


@jobs.task("tags.native_segment")
def native_segment_task(ctx: jobs.Context, shop_id: int, segment_id: int) -> str:
    """Task: create or update the segment's native Shopify segment."""
    with _task_client(ctx, shop_id) as client:
        return ensure_native_segment(ctx, shop_id, segment_id, client=client)


@jobs.task("tags.poll_bulk")
def poll_bulk_task(ctx: jobs.Context, shop_id: int) -> int:
    """Task: finish this shop's tag bulk mutations that Shopify reports done."""
    with _task_client(ctx, shop_id) as client:
        return poll_bulk(ctx, shop_id, client=client)


@jobs.periodic("tags.poll_bulk_all", minute="*/5")
def poll_bulk_all(ctx: jobs.Context) -> None:
    """Every 5 minutes: poll the shops with tag bulk mutations still marked running."""
    with ctx.sessions() as session:
        shop_ids = set(
            session.scalars(
                select(AuditEntry.shop_id).where(
                    AuditEntry.action.in_(BULK_ACTIONS), AuditEntry.job_status == JobStatus.RUNNING
                )
            )
        )
    for shop_id in sorted(shop_ids):
        ctx.enqueue("tags.poll_bulk", shop_id=shop_id)
