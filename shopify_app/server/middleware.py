"""Pure-ASGI middleware: the session-token guard of ``/api`` and the frame-ancestors policy.

Pure ASGI rather than ``BaseHTTPMiddleware``: nothing is buffered and streaming responses (the
CSV exports) stream. Both are added by :func:`shopify_app.server.app.create_app`.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopify_app import logs
from shopify_app.db.models import Shop
from shopify_app.errors import AuthError
from shopify_app.jobs import Context
from shopify_app.server.errors import NotInstalled, response_for
from shopify_app.shopify import auth


class SessionTokenAuth:
    """Pure-ASGI guard of ``/api``: a valid session token of an installed shop, or 401
    (:class:`~shopify_app.server.errors.NotInstalled` when the shop is not installed).

    On success it sets ``request.state.shop_id``, ``shop_domain``, ``user_id`` and
    ``session_token`` and runs the request with the shop bound into the log context.
    """

    def __init__(self, app: ASGIApp, ctx: Context, prefix: str = "/api") -> None:
        self.app = app
        self.ctx = ctx
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        token = header[7:].strip() if header and header[:7].lower() == "bearer " else None
        try:
            session = auth.verify_session_token(self.ctx.settings, token)
            shop = await run_in_threadpool(self._installed_shop, session.shop)
            if shop is None:
                raise NotInstalled(session.shop)
        except AuthError as exc:
            # Starlette's exception handlers sit inside the middleware: answer from the map.
            await response_for(Request(scope), exc)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state.update(
            shop_id=shop,
            shop_domain=session.shop,
            user_id=session.user_id,
            session_token=session,
        )
        with logs.bind(shop=session.shop):
            await self.app(scope, receive, send)

    def _installed_shop(self, domain: str) -> int | None:
        with self.ctx.sessions() as session:
            row = session.execute(
                select(Shop.id).where(Shop.domain == domain, Shop.is_installed)
            ).first()
        return int(row[0]) if row else None


class FrameAncestors:
    """Pure-ASGI: every HTML response may be framed only by the shop's admin.

    The shop comes from the page handler (``request.state.shop_domain``) or the sanitized
    ``shop`` query parameter; with neither, nobody may frame the page.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                has_csp = any(k.lower() == b"content-security-policy" for k, _ in headers)
                if content_type.startswith(b"text/html") and not has_csp:
                    shop = scope.get("state", {}).get("shop_domain") or _query_shop(scope)
                    headers.append((b"content-security-policy", csp_for(shop).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_csp)


def csp_for(shop: str | None) -> str:
    """The ``Content-Security-Policy`` of a page for ``shop`` (sanitized here again)."""
    shop = auth.sanitize_shop(shop)
    if shop is None:
        return "frame-ancestors 'none';"
    return f"frame-ancestors https://{shop} https://admin.shopify.com;"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _query_shop(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("shop")
    return auth.sanitize_shop(values[0]) if values else None
