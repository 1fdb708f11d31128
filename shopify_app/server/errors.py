"""The one map from Goldpan's errors to HTTP responses: :data:`EXCEPTION_HANDLERS`, the
``exception_handlers`` of ``create_app``.

Endpoints raise and never answer errors themselves (sync endpoints run in Starlette's threadpool;
its handlers catch what they raise all the same). Every JSON error body is ``{"error": sentence,
"field": the input at fault or null, ...}``: ``web/api.js`` shows ``error`` and the settings form
marks ``field``.

====================  ======  ===========================================================
error                 status  besides ``error`` and ``field``
====================  ======  ===========================================================
AuthError             401     ``X-Shopify-Retry-Invalid-Session-Request: 1``: App Bridge
                              retries once with a fresh session token
NotInstalled          401     reauthorize headers (no retry: a new token would not help)
InputError, CsvError  400     ``field`` names the input; ``code`` + ``params`` when it has them
NotFound              404     another shop's id answers exactly as a missing one
TokenError            401     the shop's grant is gone (uninstalled, revoked): reauthorize
                      502     Shopify refused for another reason: ``code``
ShopifyError          502     throttled, transient, GraphQL and user errors
MetaTermsError        409     ``field`` ``"terms"``, Meta's ``code`` and ``subcode``
MetaTokenError        409     ``field`` ``"token"``, ``code``, ``subcode``
MetaThrottledError    429     ``retry_after`` seconds, also as the ``Retry-After`` header
MetaError             502     ``code``, ``subcode``
GoldpanError          500     ConfigError, SyncError: logged with the traceback
====================  ======  ===========================================================

Starlette looks a handler up along the error's class hierarchy, so the most specific row wins.
Middleware runs outside Starlette's handlers: it answers with :func:`response_for`, the same map.
"""

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
    MetaTermsError,
    MetaThrottledError,
    MetaTokenError,
    NotFound,
    ShopifyError,
    TokenError,
)

log = logging.getLogger(__name__)

RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"

REAUTHORIZE_CODES = frozenset({"uninstalled", "invalid_grant", "invalid_client", "unknown_shop"})
"""TokenError codes meaning the shop's grant is gone: only installing again helps."""


class NotInstalled(AuthError):
    """A valid session token, but its shop has not installed the app (or uninstalled it)."""

    def __init__(self, shop: str) -> None:
        super().__init__("the app is not installed on this shop")
        self.shop = shop


def json_error(
    status: int,
    message: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The JSON every error answers: ``{"error", "field", ...extra}``."""
    body = {"error": message, "field": field, **extra}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _reauthorize(message: str, shop: str) -> Response:
    # App Bridge reloads the page at this URL, which installs the app again (token exchange).
    url = f"/?{urlencode({'shop': shop})}"
    headers = {
        "X-Shopify-API-Request-Failure-Reauthorize": "1",
        "X-Shopify-API-Request-Failure-Reauthorize-Url": url,
    }
    return json_error(401, message, headers=headers)


def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return json_error(401, exc.reason, headers={RETRY_HEADER: "1"})


def _not_installed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotInstalled)
    return _reauthorize(exc.reason, exc.shop)


def _input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    if exc.code is None:
        return json_error(400, str(exc), exc.field)
    return json_error(400, str(exc), exc.field, code=exc.code, params=exc.params)


def _not_found(request: Request, exc: Exception) -> Response:
    return json_error(404, str(exc) or "not found")


def _token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokenError)
    if exc.code in REAUTHORIZE_CODES:
        shop = getattr(request.state, "shop_domain", None) or exc.shop or ""
        return _reauthorize(str(exc), shop)
    log.warning("Shopify refused a token: %s", exc)
    return json_error(502, str(exc), code=exc.code)


def _shopify_error(request: Request, exc: Exception) -> Response:
    log.warning("Shopify error: %s", exc)
    return json_error(502, str(exc))


def _meta_terms_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MetaTermsError)
    return json_error(409, str(exc), "terms", code=exc.code, subcode=exc.subcode)


def _meta_token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MetaTokenError)
    return json_error(409, str(exc), "token", code=exc.code, subcode=exc.subcode)


def _meta_throttled(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MetaThrottledError)
    return json_error(
        429,
        str(exc),
        headers={"Retry-After": str(int(exc.retry_after))},
        retry_after=exc.retry_after,
    )


def _meta_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MetaError)
    log.warning("Meta error: %s", exc)
    return json_error(502, str(exc), code=exc.code, subcode=exc.subcode)


def _goldpan_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled Goldpan error: %s", exc, exc_info=exc)
    return json_error(500, str(exc))


EXCEPTION_HANDLERS: Mapping[type[Exception], Callable[[Request, Exception], Response]] = {
    AuthError: _auth_error,
    NotInstalled: _not_installed,
    InputError: _input_error,
    NotFound: _not_found,
    TokenError: _token_error,
    ShopifyError: _shopify_error,
    MetaTermsError: _meta_terms_error,
    MetaTokenError: _meta_token_error,
    MetaThrottledError: _meta_throttled,
    MetaError: _meta_error,
    GoldpanError: _goldpan_error,
}


def response_for(request: Request, exc: GoldpanError) -> Response:
    """What the map answers for ``exc``, found along its class hierarchy as Starlette does."""
    for cls in type(exc).__mro__:
        handler = EXCEPTION_HANDLERS.get(cls)
        if handler is not None:
            return handler(request, exc)
    raise TypeError(f"no handler for {type(exc).__name__}")  # GoldpanError has one
