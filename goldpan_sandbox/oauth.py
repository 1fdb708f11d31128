"""Shopify's side of OAuth, for the sandbox: authorize, token exchange, refresh, session tokens.

:class:`OAuthServer` keeps the tokens it issued in memory and answers as Shopify documents:

* ``GET /shops/{shop}/admin/oauth/authorize`` redirects to ``redirect_uri`` with ``code``,
  ``hmac``, ``host``, ``shop``, ``state`` and ``timestamp``, signed with the client secret.
* ``POST /shops/{shop}/admin/oauth/access_token`` takes the code grant, token exchange (an ID
  token, or a legacy offline token to migrate) and ``grant_type=refresh_token``. Expiring offline
  tokens live an hour; refresh tokens 90 days and rotate on every use — the previous refresh
  token stays valid until the new one is first used. Errors are Shopify's JSON bodies
  (``invalid_client`` 401; ``invalid_subject_token``, ``invalid_request``, ``invalid_grant`` 400).
* ``GET /shops/{shop}/admin/session-token`` returns ``{"token": ...}``: a fresh session token, for
  the demo page's shim that stands in for App Bridge (never part of real Shopify).

Helper methods let tests and the sandbox drive it: :meth:`OAuthServer.mint_session_token`,
:meth:`~OAuthServer.issue_offline_token`, :meth:`~OAuthServer.expire_tokens`,
:meth:`~OAuthServer.uninstall`, :meth:`~OAuthServer.authenticate`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shopify_app.shopify.auth import (
    ID_TOKEN_TYPE,
    OFFLINE_TOKEN_TYPE,
    SESSION_TOKEN_LEEWAY,
    TOKEN_EXCHANGE_GRANT,
    oauth_hmac,
    sanitize_shop,
)

ACCESS_TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 90 * 86400
CODE_TTL = 600


@dataclass
class _Access:
    shop: str
    expires_at: float | None  # None: a legacy non-expiring offline token


@dataclass
class _Refresh:
    shop: str
    expires_at: float
    parent: str | None  # the refresh token this one replaced; revoked when this one is first used
    used: bool = False


@dataclass
class _Shop:
    installed: bool = False
    scopes: str = ""


@dataclass
class _State:
    shops: dict[str, _Shop] = field(default_factory=dict)
    access: dict[str, _Access] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    codes: dict[str, tuple[str, float]] = field(default_factory=dict)


class TokenRequestError(Exception):
    """An error answer of the token endpoint (Shopify's JSON body and status)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class OAuthServer:
    """Shopify's OAuth endpoints for sandbox shops ``/shops/{shop}/admin/oauth/...``."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        scopes: str = "read_customers,write_customers,read_orders,read_products",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.scopes = scopes
        self.clock = clock
        self._lock = threading.Lock()
        self._state = _State()
        self.token_requests: list[tuple[str, str]] = []
        """Every accepted token request as (shop, grant kind), for tests and the demo log."""

    # --- routes ---------------------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        """The Starlette routes; mount them at the root of a sandbox server."""
        return [
            Route("/shops/{shop}/admin/oauth/authorize", self._authorize, methods=["GET"]),
            Route("/shops/{shop}/admin/oauth/access_token", self._access_token, methods=["POST"]),
            Route("/shops/{shop}/admin/session-token", self._session_token, methods=["GET"]),
        ]

    def _authorize(self, request: Request) -> Response:
        shop = sanitize_shop(request.path_params["shop"])
        params = request.query_params
        if shop is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        if params.get("client_id") != self.api_key:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "unknown client_id"}, 400
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return JSONResponse(
                {"error": "invalid_request", "error_description": "redirect_uri is required"}, 400
            )
        code = secrets.token_hex(16)
        with self._lock:
            self._state.codes[code] = (shop, self.clock() + CODE_TTL)
        query = {
            "code": code,
            "host": host_param(shop),
            "shop": shop,
            "state": params.get("state", ""),
            "timestamp": str(int(self.clock())),
        }
        query["hmac"] = oauth_hmac(self.api_secret, query)
        parts = urlsplit(redirect_uri)
        merged = [*parse_qsl(parts.query), *query.items()]
        return RedirectResponse(urlunsplit(parts._replace(query=urlencode(merged))), 302)

    async def _access_token(self, request: Request) -> Response:
        shop = sanitize_shop(request.path_params["shop"])
        if shop is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        raw = await request.body()
        body: dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
        else:
            body = dict(parse_qsl(raw.decode()))
        try:
            return JSONResponse(self.token(shop, body))
        except TokenRequestError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description}, exc.status
            )

    def _session_token(self, request: Request) -> Response:
        shop = sanitize_shop(request.path_params["shop"])
        if shop is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        # The demo page fetches this from the app's origin.
        return JSONResponse(
            {"token": self.mint_session_token(shop)},
            headers={"Access-Control-Allow-Origin": "*"},
        )

    # --- the token endpoint ---------------------------------------------------------------

    def token(self, shop: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a token request for ``shop`` (raises :class:`TokenRequestError`)."""
        if body.get("client_id") != self.api_key or body.get("client_secret") != self.api_secret:
            raise TokenRequestError(401, "invalid_client", "Client credentials are invalid")
        expiring = str(body.get("expiring", "0")) == "1"
        grant = body.get("grant_type")
        with self._lock:
            if grant == TOKEN_EXCHANGE_GRANT:
                return self._exchange(shop, body, expiring)
            if grant == "refresh_token":
                return self._use_refresh(shop, str(body.get("refresh_token") or ""))
            if grant in (None, "authorization_code") and body.get("code"):
                return self._use_code(shop, str(body["code"]), expiring)
        raise TokenRequestError(400, "invalid_request", "unsupported grant")

    def _exchange(self, shop: str, body: dict[str, Any], expiring: bool) -> dict[str, Any]:
        if body.get("requested_token_type") != OFFLINE_TOKEN_TYPE:
            raise TokenRequestError(400, "invalid_request", "requested_token_type is not supported")
        subject = str(body.get("subject_token") or "")
        kind = body.get("subject_token_type")
        if kind == ID_TOKEN_TYPE:
            if not self._valid_id_token(shop, subject):
                raise TokenRequestError(400, "invalid_subject_token", "Subject token is invalid")
            self.token_requests.append((shop, "token_exchange"))
            return self._issue(shop, expiring=expiring)
        if kind == OFFLINE_TOKEN_TYPE:
            held = self._state.access.get(subject)
            if held is None or held.shop != shop or not self._installed(shop):
                raise TokenRequestError(400, "invalid_subject_token", "Subject token is invalid")
            if held.expires_at is None:
                # Migrating a legacy token retires it.
                del self._state.access[subject]
            self.token_requests.append((shop, "migrate"))
            return self._issue(shop, expiring=True)
        raise TokenRequestError(400, "invalid_request", "subject_token_type is not supported")

    def _valid_id_token(self, shop: str, token: str) -> bool:
        try:
            claims = jwt.decode(
                token,
                self.api_secret,
                algorithms=["HS256"],
                audience=self.api_key,
                leeway=SESSION_TOKEN_LEEWAY,
                options={"require": ["exp", "dest"], "verify_iat": False, "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            return False
        now = self.clock()
        if (
            claims["exp"] + SESSION_TOKEN_LEEWAY < now
            or claims.get("nbf", 0) - SESSION_TOKEN_LEEWAY > now
        ):
            return False
        return urlsplit(str(claims["dest"])).hostname == shop

    def _use_code(self, shop: str, code: str, expiring: bool) -> dict[str, Any]:
        held = self._state.codes.pop(code, None)
        if held is None or held[0] != shop or held[1] < self.clock():
            raise TokenRequestError(
                400, "invalid_request", "authorization code was not found or was already used"
            )
        self.token_requests.append((shop, "authorization_code"))
        return self._issue(shop, expiring=expiring)

    def _use_refresh(self, shop: str, token: str) -> dict[str, Any]:
        held = self._state.refresh.get(token)
        if (
            held is None
            or held.shop != shop
            or held.expires_at < self.clock()
            or not self._installed(shop)
        ):
            raise TokenRequestError(400, "invalid_grant", "refresh token is invalid or expired")
        if not held.used:
            held.used = True
            # First use of a rotated token retires the one it replaced.
            if held.parent is not None:
                self._state.refresh.pop(held.parent, None)
        self.token_requests.append((shop, "refresh_token"))
        return self._issue(shop, expiring=True, parent=token)

    def _issue(self, shop: str, *, expiring: bool, parent: str | None = None) -> dict[str, Any]:
        now = self.clock()
        record = self._state.shops.setdefault(shop, _Shop())
        record.installed = True
        record.scopes = self.scopes
        access = "shpat_" + secrets.token_hex(16)
        if not expiring:
            self._state.access[access] = _Access(shop, None)
            return {"access_token": access, "scope": self.scopes}
        refresh = "shprt_" + secrets.token_hex(16)
        self._state.access[access] = _Access(shop, now + ACCESS_TOKEN_TTL)
        self._state.refresh[refresh] = _Refresh(shop, now + REFRESH_TOKEN_TTL, parent)
        return {
            "access_token": access,
            "scope": self.scopes,
            "expires_in": ACCESS_TOKEN_TTL,
            "refresh_token": refresh,
            "refresh_token_expires_in": REFRESH_TOKEN_TTL,
        }

    def _installed(self, shop: str) -> bool:
        record = self._state.shops.get(shop)
        return record is not None and record.installed

    # --- helpers for the sandbox and tests ------------------------------------------------

    def authenticate(self, shop: str, access_token: str | None) -> bool:
        """Whether ``access_token`` is a live token of ``shop`` (the Admin API's check)."""
        if not access_token:
            return False
        with self._lock:
            held = self._state.access.get(access_token)
            return (
                held is not None
                and held.shop == shop
                and self._installed(shop)
                and (held.expires_at is None or held.expires_at > self.clock())
            )

    def mint_session_token(self, shop: str, user_id: int = 1, ttl: int = 60) -> str:
        """A session (ID) token for ``shop`` as App Bridge would hand the page."""
        now = int(self.clock())
        claims = {
            "iss": f"https://{shop}/admin",
            "dest": f"https://{shop}",
            "aud": self.api_key,
            "sub": str(user_id),
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(8),
            "sid": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    def issue_offline_token(self, shop: str) -> dict[str, Any]:
        """Install ``shop`` with a legacy non-expiring offline token (to test migration)."""
        with self._lock:
            return self._issue(shop, expiring=False)

    def install(self, shop: str) -> dict[str, Any]:
        """Install ``shop`` and return an expiring token set (as the token endpoint would)."""
        with self._lock:
            return self._issue(shop, expiring=True)

    def expire_tokens(self, shop: str) -> None:
        """Make every access token of ``shop`` expire now (refresh tokens stay valid)."""
        with self._lock:
            now = self.clock()
            for held in self._state.access.values():
                # Legacy tokens never expire; only expiring ones are moved.
                if held.shop == shop and held.expires_at is not None:
                    held.expires_at = now - 1

    def uninstall(self, shop: str) -> None:
        """The merchant uninstalled: every token of ``shop`` is revoked."""
        with self._lock:
            self._state.shops.setdefault(shop, _Shop()).installed = False
            for table in (self._state.access, self._state.refresh):
                for token in [t for t, held in table.items() if held.shop == shop]:
                    del table[token]

    def is_installed(self, shop: str) -> bool:
        """Whether ``shop`` has the app installed."""
        with self._lock:
            return self._installed(shop)

    def valid_refresh_tokens(self, shop: str) -> set[str]:
        """The refresh tokens of ``shop`` that would be accepted now."""
        with self._lock:
            now = self.clock()
            return {
                token
                for token, held in self._state.refresh.items()
                if held.shop == shop and held.expires_at > now
            }


def host_param(shop: str) -> str:
    """The ``host`` query parameter Shopify sends: base64 of ``admin.shopify.com/store/{name}``."""
    store = shop.removesuffix(".myshopify.com")
    return base64.b64encode(f"admin.shopify.com/store/{store}".encode()).decode().rstrip("=")
