"""Goldpan's errors as HTTP responses: the ``exception_handlers`` map of ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.errors import (
    AuthError,
    GoldpanError,
    InputError,
    MetaError,
    ShopifyError,
    TokenError,
)

log = logging.getLogger(__name__)

RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"


class NotFound(GoldpanError):
    """The object does not exist in the requesting shop (404)."""


def unauthorized(reason: str, *, retry: bool = True, reauthorize: str | None = None) -> Response:
    """401: ``retry`` asks App Bridge for a fresh token; ``reauthorize`` sends it to install."""
    headers = {RETRY_HEADER: "1"} if retry else {}
    if reauthorize is not None:
        headers["X-Shopify-API-Request-Failure-Reauthorize"] = "1"
        headers["X-Shopify-API-Request-Failure-Reauthorize-Url"] = reauthorize
    return JSONResponse({"error": reason}, status_code=401, headers=headers)


def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return unauthorized(exc.reason)


def _input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)


def _token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokenError)
    if exc.code in ("uninstalled", "invalid_grant", "invalid_client", "unknown_shop"):
        shop = getattr(request.state, "shop_domain", None) or exc.shop or ""
        return unauthorized(str(exc), retry=False, reauthorize=f"/?{urlencode({'shop': shop})}")
    return JSONResponse({"error": str(exc), "code": exc.code}, status_code=502)


def _upstream_error(request: Request, exc: Exception) -> Response:
    log.warning("upstream error: %s", exc)
    return JSONResponse({"error": str(exc)}, status_code=502)


def _goldpan_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled Goldpan error", exc_info=exc)
    return JSONResponse({"error": str(exc)}, status_code=500)


EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Response]] = {
    AuthError: _auth_error,
    InputError: _input_error,
    TokenError: _token_error,
    ShopifyError: _upstream_error,
    MetaError: _upstream_error,
    GoldpanError: _goldpan_error,
}
