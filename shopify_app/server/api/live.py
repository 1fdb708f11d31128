"""The view that lets an open page follow changes: the shop's data version, polled cheaply.

Polling, not server-sent events: every API call carries a short-lived session token that
App Bridge hands to ``fetch``, which an ``EventSource`` cannot send, and a poll answered with
304 costs one primary-key read.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import Shop
from shopify_app.errors import NotFound
from shopify_app.server.api.request import db_session, request_shop_id


def version(request: Request) -> Response:
    """The shop's data version as an ``ETag``; ``If-None-Match`` with it answers 304."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        current = session.scalar(select(Shop.data_version).where(Shop.id == shop_id))
    if current is None:
        raise NotFound("shop not found")
    etag = f'"v{current}"'
    headers = {"ETag": etag, "Cache-Control": "no-store"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return JSONResponse({"version": current}, headers=headers)
