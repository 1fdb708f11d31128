"""The exception tree. Every error Goldpan raises on purpose is one of these.

::

    GoldpanError                  base; ``str(e)`` is a sentence a merchant or operator can act on
    ├── ConfigError               a setting is missing or malformed (``.variable``)
    ├── InputError                bad input from outside: a rule, a setting, a payload
    │                             (``.field``; ``.code`` + ``.params`` for the page's words)
    │   └── CsvError              a malformed orders-export CSV (``.row``, ``.column``)
    ├── AuthError                 a request is not who it claims to be (``.reason``)
    ├── NotFound                  no such object in the requesting shop (another shop's included)
    ├── ShopifyError              talking to Shopify failed
    │   ├── TokenError            exchange or refresh refused (``.code``)
    │   ├── ThrottledError        the cost bucket stayed empty after every retry
    │   ├── TransientError        429 / 5xx / timeout after every retry
    │   ├── GraphQLError          the response carried top-level ``errors`` (``.errors``)
    │   └── UserErrorsError       a mutation answered ``userErrors`` (``.user_errors``)
    ├── MetaError                 talking to Meta failed (``.code``, ``.subcode``)
    │   ├── MetaTermsError        Custom Audience terms not accepted (200 / 1870090)
    │   ├── MetaThrottledError    rate limited (80003, 80004, 17, 613, 4) (``.retry_after``)
    │   ├── MetaTokenError        the token expired or was revoked (190)
    │   └── MetaUnreachableError  no answer at all: refused, reset, timed out
    └── SyncError                 an import could not finish (bulk operation failed, expired, ...)

No HTTP status lives here: the web edge (:mod:`shopify_app.server.errors`) maps errors to
responses.

:func:`stored_error` is the one way an error becomes text in the database: a short redacted
message plus a code, never the raw text of a library's exception.
"""

from __future__ import annotations

from typing import Any

from shopify_app.logs import redact

STORED_MESSAGE_LIMIT = 300


class GoldpanError(Exception):
    """Base class of every deliberate Goldpan error."""


class ConfigError(GoldpanError):
    """A setting is missing or malformed; ``variable`` names it."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class InputError(GoldpanError):
    """Input from outside was refused; the message says why. ``field`` names what was wrong;
    ``code`` and ``params``, when given, let the page say it in the merchant's language and
    units (the English message stays for logs and API clients)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.params = params or {}


class CsvError(InputError):
    """A malformed orders-export CSV. ``row`` is 1-based counting the header as row 1."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = ", ".join(
            part
            for part in (
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message, field=column)
        self.row = row
        self.column = column


class AuthError(GoldpanError):
    """A request failed verification (HMAC, session token, OAuth state, shop domain)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(GoldpanError):
    """The object does not exist in the requesting shop: another shop's id is refused exactly
    as a missing one, so ids reveal nothing across shops."""


class ShopifyError(GoldpanError):
    """Talking to Shopify failed. ``shop`` says which store, when known."""

    def __init__(self, message: str, *, shop: str | None = None) -> None:
        super().__init__(message)
        self.shop = shop


class TokenError(ShopifyError):
    """Shopify refused a token exchange or refresh; ``code`` is its ``error`` field."""

    def __init__(self, message: str, *, code: str, shop: str | None = None) -> None:
        super().__init__(message, shop=shop)
        self.code = code


class ThrottledError(ShopifyError):
    """The GraphQL cost bucket stayed empty after every retry."""


class TransientError(ShopifyError):
    """HTTP 429, 5xx or a timeout persisted after every retry."""


class GraphQLError(ShopifyError):
    """The response carried top-level GraphQL ``errors``."""

    def __init__(
        self, message: str, *, errors: list[dict[str, Any]], shop: str | None = None
    ) -> None:
        super().__init__(message, shop=shop)
        self.errors = errors


class UserErrorsError(ShopifyError):
    """A mutation answered with ``userErrors``."""

    def __init__(
        self, message: str, *, user_errors: list[dict[str, Any]], shop: str | None = None
    ) -> None:
        super().__init__(message, shop=shop)
        self.user_errors = user_errors


class MetaError(GoldpanError):
    """The Meta Graph API answered an error. ``code``/``subcode`` are Meta's."""

    def __init__(
        self, message: str, *, code: int | None = None, subcode: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode


class MetaTermsError(MetaError):
    """The ad account has not accepted the Custom Audience terms (200 / 1870090)."""


class MetaThrottledError(MetaError):
    """Meta is rate limiting; ``retry_after`` seconds is its estimate of when to come back."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        retry_after: float = 60.0,
    ) -> None:
        super().__init__(message, code=code, subcode=subcode)
        self.retry_after = retry_after


class MetaTokenError(MetaError):
    """The Meta access token expired or was revoked (code 190)."""


class MetaUnreachableError(MetaError):
    """Meta could not be reached (connection refused or reset, DNS, timeout) after every retry."""


class SyncError(GoldpanError):
    """An import could not finish: a bulk operation failed or expired, a download broke off."""


def error_code(exc: BaseException) -> str:
    """A short, stable code saying what kind of failure ``exc`` is.

    Meta's own ``code/subcode`` (what its documentation and support speak), ``network`` when
    nothing answered, Shopify's token error, or the kind of Goldpan error; the class name for
    anything else (a bug or a library's exception).
    """
    if isinstance(exc, MetaUnreachableError):
        return "network"
    if isinstance(exc, MetaError):
        if exc.code is None:
            return "meta"
        return f"meta {exc.code}" + (f"/{exc.subcode}" if exc.subcode is not None else "")
    if isinstance(exc, TokenError):
        return f"shopify {exc.code}"
    if isinstance(exc, ThrottledError):
        return "shopify throttled"
    if isinstance(exc, TransientError):
        return "shopify unavailable"
    if isinstance(exc, GraphQLError | UserErrorsError):
        return "shopify refused"
    kinds: tuple[tuple[type[GoldpanError], str], ...] = (
        (ShopifyError, "shopify"),
        (SyncError, "sync"),
        (InputError, "input"),
        (AuthError, "auth"),
        (ConfigError, "config"),
    )
    for kind, code in kinds:
        if isinstance(exc, kind):
            return code
    return type(exc).__name__


def stored_error(exc: BaseException) -> str:
    """The text stored in an ``error`` column for ``exc``: ``"<short message> [<code>]"``.

    A Goldpan error's message is a sentence written for the merchant, redacted and shortened
    (it may quote an upstream answer). Any other exception's text is never stored: requests'
    carries the URL with its query string, the database's carries SQL and values, and neither
    tells a merchant anything; the log has the details, redacted.
    """
    if isinstance(exc, GoldpanError):
        message = " ".join(redact(str(exc)).split())
        if len(message) > STORED_MESSAGE_LIMIT:
            message = message[: STORED_MESSAGE_LIMIT - 1].rstrip() + "…"
    else:
        message = "Unexpected error; the details are in the log."
    return f"{message or 'Error'} [{error_code(exc)}]"
