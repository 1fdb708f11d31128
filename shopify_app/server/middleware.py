"""Pure-ASGI middleware: the session-token guard of ``/api``, the cap on ``/api`` request
bodies, the frame-ancestors policy and the headers every response carries.

Pure ASGI rather than ``BaseHTTPMiddleware``: nothing is buffered and streaming responses (the
CSV exports) stream. All are added by :func:`shopify_app.server.app.create_app`.
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
from shopify_app.server.errors import NotInstalled, json_error, response_for
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


MAX_API_BODY = 256 * 1024
"""Bytes an ``/api`` request body may have. The largest real one, a full settings object with
50 custom segments, is a few kilobytes; settings themselves are capped lower
(:mod:`shopify_app.segments.limits`)."""


class BodyLimit:
    """Pure-ASGI: an ``/api`` request body over ``limit`` bytes is refused with 413.

    Refused by ``Content-Length`` before anything is read, and while streaming for a body sent
    without one (chunked) or longer than it claimed. The body is read here, at most ``limit``
    bytes, and handed to the endpoint as one message: endpoints read it whole anyway.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/api", limit: int = MAX_API_BODY) -> None:
        self.app = app
        self.prefix = prefix
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length") or ""
        # The server has checked the header's syntax; a body longer than it is counted below.
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {
            "type": "http.request",
            "body": b"".join(chunks),
            "more_body": False,
        }

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()  # after the body: a disconnect, for streaming responses

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        kb = self.limit // 1024
        response = json_error(
            413,
            f"the request body is larger than {kb} KB",
            "body",
            limit=self.limit,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


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


class SecurityHeaders:
    """Pure-ASGI: headers on every response, unless the handler set its own.

    * ``X-Content-Type-Options: nosniff`` — a browser never reads a CSV export or a JSON answer
      as a script or a page;
    * ``Referrer-Policy: strict-origin-when-cross-origin`` — the embedded page's URL carries the
      shop, ``host`` and App Bridge's ``id_token``; other sites (Shopify's CDN included) get
      only the origin. App Bridge reads the page's own URL, never the referrer;
    * ``Strict-Transport-Security`` when the app is served over https (``hsts``): browsers never
      try plain http again. Without https (the demo, a laptop) it would lock them out.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in self.headers if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
