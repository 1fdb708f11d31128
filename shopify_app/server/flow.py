"""``POST /flow/lifecycle``: Shopify Flow's trigger lifecycle callback.

Flow calls it when a merchant enables or disables a workflow that uses a Goldpan trigger; Goldpan
sends events only to shops whose latest callback said a workflow is on
(:func:`shopify_app.actions.flow.record_lifecycle`). The body is JSON
(``flow_trigger_definition_id``, ``has_enabled_flow``, ``shop_id``, ``shopify_domain``,
``timestamp``), signed like a webhook:
``X-Shopify-Hmac-Sha256`` with the app secret, so a forged call gets 401. Flow lets the merchant
enable the workflow only after a 2xx within five seconds: the handler only stores a row (and
queues the first :func:`~shopify_app.actions.flow.sync_events`, which records who is a member now
so that their departure can be announced).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopify_app import jobs
from shopify_app.actions import flow
from shopify_app.db import transaction
from shopify_app.db.models import Shop
from shopify_app.shopify import auth
from shopify_app.shopify.webhooks import read_body
from shopify_app.states import FlowTrigger

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""The callback is five short properties; anything larger is not Flow's."""


def parse(body: bytes) -> tuple[str, FlowTrigger | None, bool, dt.datetime] | str:
    """(shop domain, trigger or None when not Goldpan's, enabled, timestamp), or why not."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    shop = auth.sanitize_shop(data.get("shopify_domain"))
    definition = data.get("flow_trigger_definition_id")
    enabled = data.get("has_enabled_flow")
    raw_time = data.get("timestamp")
    if shop is None:
        return "shopify_domain is not a myshopify.com domain"
    if not isinstance(definition, str) or not isinstance(enabled, bool):
        return "flow_trigger_definition_id (string) and has_enabled_flow (boolean) are required"
    try:
        at = dt.datetime.fromisoformat(str(raw_time).replace("Z", "+00:00"))
    except ValueError:
        return "timestamp is not an ISO 8601 time"
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return shop, flow.trigger_for(definition), enabled, at.astimezone(dt.UTC)


def _store(ctx: jobs.Context, shop: str, trigger: FlowTrigger, enabled: bool, at: Any) -> bool:
    with transaction(ctx.sessions) as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        if shop_id is None:
            return False
        news = flow.record_lifecycle(session, shop_id, trigger, enabled, at)
    if news and enabled:
        ctx.enqueue("actions.flow_events", shop_id=shop_id)
    return True


async def lifecycle(request: Request) -> Response:
    """The endpoint: size cap, HMAC (401), then store the workflow state, then 200."""
    ctx: jobs.Context = request.app.state.ctx
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
    if not auth.verify_webhook_hmac(
        ctx.settings.api_secret, body, request.headers.get("x-shopify-hmac-sha256")
    ):
        return JSONResponse({"error": "invalid hmac"}, status_code=401)
    parsed = parse(body)
    if isinstance(parsed, str):
        return JSONResponse({"error": parsed}, status_code=400)
    shop, trigger, enabled, at = parsed
    if trigger is None:
        # Another app's trigger cannot reach here; an old extension's might: acknowledged, so
        # the merchant is not blocked, and ignored.
        log.warning("flow lifecycle for an unknown trigger", extra={"shop": shop})
        return JSONResponse({"ok": True, "ignored": "unknown trigger"})
    known = await run_in_threadpool(_store, ctx, shop, trigger, enabled, at)
    return JSONResponse({"ok": True} if known else {"ok": True, "ignored": "unknown shop"})


routes = [Route("/flow/lifecycle", lifecycle, methods=["POST"])]
"""Mounted at the root by :func:`shopify_app.server.app.build_routes`."""
