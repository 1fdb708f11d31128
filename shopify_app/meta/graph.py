"""The Meta Graph API client: Facebook Login, ad accounts, and Custom Audience calls.

One :class:`GraphClient` per token. It maps Graph's error bodies onto :mod:`shopify_app.errors`
(``MetaTokenError`` for 190, ``MetaTermsError`` for 200/1870090, ``MetaThrottledError`` for
80003/80004/17/613/4 with ``retry_after`` from ``X-Business-Use-Case-Usage``) and retries what
is worth retrying — transient server errors and short throttles — a bounded number of times.
A throttle longer than ``max_wait`` is raised at once so the job can be re-queued for later
instead of holding a worker thread. No answer at all is ``MetaUnreachableError``, whose message
leaves out ``requests``' text (it quotes the URL).

The user token is sent as ``Authorization: Bearer`` (as Meta's own examples do), never in a URL.

The HTTP session is injected (``http=``) so tests and the demo point the client at the sandbox
over real loopback HTTP without patching anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import MismatchingStateException

from shopify_app.errors import (
    AuthError,
    MetaError,
    MetaTermsError,
    MetaThrottledError,
    MetaTokenError,
    MetaUnreachableError,
)
from shopify_app.settings import META_GRAPH_VERSION, Settings

log = logging.getLogger(__name__)

SCOPE = "ads_management"
MAX_BATCH = 10_000
THROTTLE_CODES = frozenset({80003, 80004, 17, 613, 4, 32})
TRANSIENT_CODES = frozenset({1, 2})
TERMS_URL = "https://business.facebook.com/ads/manage/customaudiences/tos/?act={account_id}"


@dataclass(frozen=True)
class TokenInfo:
    """An access token and when it expires (``None``: never, e.g. a system-user token)."""

    access_token: str
    expires_in: int | None = None


@dataclass
class UploadResult:
    """What Meta said about an upload, summed over its batches."""

    received: int = 0
    invalid: int = 0
    samples: dict[str, str] = field(default_factory=dict)
    batches: int = 0
    session_id: int | None = None

    def add(self, answer: dict[str, Any]) -> None:
        self.received += int(answer.get("num_received") or 0)
        self.invalid += int(answer.get("num_invalid_entries") or 0)
        for key, value in (answer.get("invalid_entry_samples") or {}).items():
            if len(self.samples) < 10:
                self.samples[str(key)] = str(value)
        self.batches += 1


def graph_base(settings: Settings) -> str:
    """``https://graph.facebook.com/v26.0`` (or the sandbox's equivalent)."""
    return f"{settings.meta_graph_url}/{META_GRAPH_VERSION}"


def terms_url(account_id: str) -> str:
    """Where the merchant accepts the Custom Audience terms for an ad account."""
    return TERMS_URL.format(account_id=account_id.removeprefix("act_"))


def error_from_response(resp: requests.Response) -> MetaError:
    """The :mod:`shopify_app.errors` exception for a Graph error response."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return MetaError(f"Meta answered HTTP {resp.status_code}", code=None)
    message = str(err.get("error_user_msg") or err.get("message") or "Meta refused the request")
    code = _int(err.get("code"))
    subcode = _int(err.get("error_subcode"))
    if code == 190 or code == 102:
        return MetaTokenError(
            f"The Meta connection is no longer valid ({err.get('message')}); reconnect it.",
            code=code,
            subcode=subcode,
        )
    if code == 200 and subcode == 1870090:
        return MetaTermsError(
            "The ad account has not accepted Meta's Custom Audience terms.",
            code=code,
            subcode=subcode,
        )
    if code in THROTTLE_CODES:
        return MetaThrottledError(
            f"Meta is rate limiting this ad account ({err.get('message')}).",
            code=code,
            subcode=subcode,
            retry_after=retry_after(resp.headers.get("X-Business-Use-Case-Usage")),
        )
    return MetaError(message, code=code, subcode=subcode)


def retry_after(header: str | None, default: float = 60.0) -> float:
    """Seconds to wait, from ``X-Business-Use-Case-Usage``'s ``estimated_time_to_regain_access``.

    Meta gives minutes per usage type; the longest one wins. No header → ``default``.
    """
    if not header:
        return default
    try:
        usage = json.loads(header)
    except ValueError:
        return default
    minutes = [
        float(entry.get("estimated_time_to_regain_access") or 0)
        for entries in (usage.values() if isinstance(usage, dict) else [])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    ]
    return max(minutes, default=0.0) * 60.0 if minutes else default


def usage_percent(header: str | None) -> float:
    """The highest of ``call_count``, ``total_cputime``, ``total_time`` in the usage header."""
    if not header:
        return 0.0
    try:
        usage = json.loads(header)
    except ValueError:
        return 0.0
    values = [
        float(entry.get(key) or 0)
        for entries in (usage.values() if isinstance(usage, dict) else [])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        for key in ("call_count", "total_cputime", "total_time")
    ]
    return max(values, default=0.0)


def unreachable(exc: requests.RequestException) -> MetaUnreachableError:
    """The error for a call that got no answer; ``exc``'s text (the URL) is left out of it."""
    if isinstance(exc, requests.Timeout):
        return MetaUnreachableError("Meta did not answer in time.")
    return MetaUnreachableError("Meta could not be reached.")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class GraphClient:
    """Graph API calls with one access token.

    ``max_wait``: the longest throttle (seconds) worth sleeping through in-line; anything longer
    raises :class:`MetaThrottledError`. ``sleep`` is injectable so tests don't wait.
    """

    def __init__(
        self,
        settings: Settings,
        access_token: str,
        *,
        http: requests.Session | None = None,
        retries: int = 3,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        self.base = graph_base(settings)
        self.settings = settings
        self._token = access_token
        self.http = http or requests.Session()
        self.retries = retries
        self.max_wait = max_wait
        self.sleep = sleep
        self.timeout = timeout
        self.last_usage: str | None = None
        self._resume_at = 0.0  # time.monotonic() before which no call is made
        # appsecret_proof proves the call comes from the app's server (Meta apps can require
        # it); it is the token's HMAC-SHA256 under the app secret.
        self._proof = (
            hmac.new(
                settings.meta_app_secret.encode(), access_token.encode(), hashlib.sha256
            ).hexdigest()
            if settings.meta_app_secret
            else None
        )

    # --- transport --------------------------------------------------------------------------

    def request(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        """One Graph call with bounded retries; returns the decoded JSON body.

        The token travels in the ``Authorization`` header, never in the URL: URLs end up in
        proxies' and servers' access logs and in the text of ``requests``' exceptions.
        ``appsecret_proof`` stays a parameter (Meta reads it there); it is an HMAC of the token,
        not the token, and :func:`shopify_app.logs.redact` removes it from anything logged.
        """
        self._respect_usage()
        url = f"{self.base}/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self._token}"}
        params = {**(data or {})}
        if self._proof:
            params["appsecret_proof"] = self._proof
        attempt = 0
        while True:
            attempt += 1
            try:
                # GET and DELETE carry their parameters in the query string (a DELETE body is
                # not read); POST in a form body.
                in_query = method in ("GET", "DELETE")
                resp = self.http.request(
                    method,
                    url,
                    params=params if in_query else None,
                    data=None if in_query else params,
                    headers=headers,
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt > self.retries:
                    raise unreachable(exc) from exc
                self.sleep(min(2.0 ** (attempt - 1), 8.0))
                continue
            self.last_usage = resp.headers.get("X-Business-Use-Case-Usage") or self.last_usage
            if resp.status_code < 400:
                self._note_usage(resp.headers.get("X-Business-Use-Case-Usage"))
                return resp.json()
            error = error_from_response(resp)
            if attempt > self.retries:
                raise error
            if isinstance(error, MetaThrottledError):
                if error.retry_after > self.max_wait:
                    raise error
                self.sleep(max(error.retry_after, 2.0 ** (attempt - 1)))
                continue
            if resp.status_code >= 500 or error.code in TRANSIENT_CODES:
                self.sleep(min(2.0 ** (attempt - 1), 8.0))
                continue
            raise error

    def _note_usage(self, header: str | None) -> None:
        """Meta asks clients to stop at 100 % of a usage budget, before it starts refusing."""
        if usage_percent(header) >= 100:
            self._resume_at = time.monotonic() + retry_after(header, default=60.0)

    def _respect_usage(self) -> None:
        wait = self._resume_at - time.monotonic()
        if wait <= 0:
            return
        if wait > self.max_wait:
            raise MetaThrottledError(
                "This ad account used its whole Meta API budget; waiting before the next call.",
                retry_after=wait,
            )
        self.sleep(wait)
        self._resume_at = 0.0

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params)

    def post(self, path: str, **data: Any) -> Any:
        return self.request("POST", path, data)

    # --- accounts ---------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """Who the token belongs to (validates a pasted token)."""
        return dict(self.get("me", fields="id,name"))

    def ad_accounts(self) -> list[dict[str, Any]]:
        """The ad accounts this token can manage: ``[{"id": "act_…", "name": …}, …]``."""
        answer = self.get("me/adaccounts", fields="id,account_id,name,currency", limit=200)
        return list(answer.get("data") or [])

    def tos_accepted(self, account_id: str, terms: str = "custom_audience_tos") -> bool:
        """Whether the ad account accepted ``terms``: the Custom Audience terms, or
        ``value_based_custom_audience_tos`` (each account accepts those separately)."""
        answer = self.get(_act(account_id), fields="tos_accepted")
        tos = answer.get("tos_accepted") or {}
        return isinstance(tos, dict) and bool(tos.get(terms))

    # --- audiences --------------------------------------------------------------------------

    def create_audience(
        self, account_id: str, name: str, description: str, *, value_based: bool = False
    ) -> str:
        """Create a customer-file audience (``value_based``: its rows carry
        ``LOOKALIKE_VALUE``); returns its id."""
        extra = {"is_value_based": 1} if value_based else {}
        answer = self.post(
            f"{_act(account_id)}/customaudiences",
            name=name,
            subtype="CUSTOM",
            customer_file_source="USER_PROVIDED_ONLY",
            description=description,
            **extra,
        )
        return str(answer["id"])

    def create_lookalike(
        self, account_id: str, name: str, origin_audience_id: str, country: str, ratio: float
    ) -> str:
        """Create a lookalike of ``origin_audience_id`` for ``country`` at ``ratio`` (0.01–0.10)."""
        answer = self.post(
            f"{_act(account_id)}/customaudiences",
            name=name,
            subtype="LOOKALIKE",
            origin_audience_id=origin_audience_id,
            lookalike_spec=json.dumps({"country": country.upper(), "ratio": ratio}),
        )
        return str(answer["id"])

    def audience(self, audience_id: str) -> dict[str, Any]:
        """Size and status of an audience."""
        return dict(
            self.get(
                audience_id,
                fields="id,name,approximate_count_lower_bound,approximate_count_upper_bound,"
                "operation_status,delivery_status,time_updated",
            )
        )

    def delete_audience(self, audience_id: str) -> None:
        self.request("DELETE", audience_id)

    def upload(
        self,
        audience_id: str,
        schema: Sequence[str],
        rows: Iterable[Sequence[str | float]],
        *,
        mode: str = "add",
        total: int | None = None,
    ) -> UploadResult:
        """Send ``rows`` in one session of batches of at most 10,000 rows.

        ``mode``: ``add`` (``POST /users``), ``remove`` (``POST /users`` with
        ``method=DELETE`` — a long ``DELETE`` query string would be refused) or ``replace``
        (``POST /usersreplace``, which needs the whole list in one 90-minute session).
        """
        edge = "usersreplace" if mode == "replace" else "users"
        session_id = secrets.randbits(62) + 1
        result = UploadResult(session_id=session_id)
        batches = _batches(rows, MAX_BATCH)
        seq = 0
        current = next(batches, None)
        while current is not None:
            following = next(batches, None)
            seq += 1
            data: dict[str, Any] = {
                "payload": json.dumps({"schema": list(schema), "data": current}),
                "session": json.dumps(
                    {
                        "session_id": session_id,
                        "batch_seq": seq,
                        "last_batch_flag": following is None,
                        "estimated_num_total": total if total is not None else len(current),
                    }
                ),
            }
            if mode == "remove":
                data["method"] = "DELETE"
            result.add(self.request("POST", f"{audience_id}/{edge}", data))
            current = following
        return result


def _batches(rows: Iterable[Sequence[str | float]], size: int) -> Iterator[list[list[str | float]]]:
    batch: list[list[str | float]] = []
    for row in rows:
        batch.append(list(row))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _act(account_id: str) -> str:
    return account_id if account_id.startswith("act_") else f"act_{account_id}"


# --- Facebook Login --------------------------------------------------------------------------


def _oauth(settings: Settings, redirect_uri: str, state: str | None = None) -> OAuth2Session:
    if not settings.meta_app_id or not settings.meta_app_secret:
        raise MetaError("META_APP_ID and META_APP_SECRET are not configured")
    session = OAuth2Session(
        settings.meta_app_id,
        settings.meta_app_secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        state=state,
        token_endpoint_auth_method="client_secret_post",
    )

    def check(resp: requests.Response) -> requests.Response:
        # Graph errors are {"error": {...}}, not RFC 6749's; map them before authlib parses.
        if resp.status_code >= 400:
            raise error_from_response(resp)
        return resp

    session.register_compliance_hook("access_token_response", check)
    return session


def _no_auth(request: Any) -> Any:
    return request


def login_url(settings: Settings, redirect_uri: str, state: str) -> str:
    """The Facebook Login dialog URL asking for ``ads_management``."""
    url, _ = _oauth(settings, redirect_uri, state).create_authorization_url(
        f"{settings.meta_dialog_url}/{META_GRAPH_VERSION}/dialog/oauth", state=state
    )
    return str(url)


def exchange_code(
    settings: Settings, authorization_response: str, redirect_uri: str, state: str
) -> TokenInfo:
    """Exchange the dialog's ``code`` for a long-lived user token.

    ``authorization_response`` is the full callback URL; authlib checks its ``state`` against
    ``state`` (raising :class:`AuthError` on a mismatch). The short-lived token is then swapped
    for a long-lived one (about 60 days).
    """
    session = _oauth(settings, redirect_uri, state)
    try:
        token = session.fetch_token(
            f"{graph_base(settings)}/oauth/access_token",
            authorization_response=authorization_response,
            method="GET",
            # Facebook reads the client credentials from the query string of a GET.
            client_id=settings.meta_app_id,
            client_secret=settings.meta_app_secret,
            auth=_no_auth,
        )
    except MismatchingStateException:
        raise AuthError("meta_state_mismatch") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise unreachable(exc) from exc
    return exchange_long_lived(settings, str(token["access_token"]))


def exchange_long_lived(
    settings: Settings, short_token: str, *, http: requests.Session | None = None
) -> TokenInfo:
    """Swap a short-lived user token for a long-lived one (``grant_type=fb_exchange_token``)."""
    if not settings.meta_app_id or not settings.meta_app_secret:
        raise MetaError("META_APP_ID and META_APP_SECRET are not configured")
    try:
        # Meta documents this exchange as a GET with the secrets in the query string; a failure's
        # text therefore holds them, and is not passed on.
        resp = (http or requests.Session()).get(
            f"{graph_base(settings)}/oauth/access_token",
            params={
                "grant_type": "fb_exchange_token",
                "client_id": settings.meta_app_id,
                "client_secret": settings.meta_app_secret,
                "fb_exchange_token": short_token,
            },
            timeout=30,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise unreachable(exc) from exc
    if resp.status_code >= 400:
        raise error_from_response(resp)
    body = resp.json()
    expires = _int(body.get("expires_in"))
    return TokenInfo(str(body["access_token"]), expires)


__all__ = [
    "MAX_BATCH",
    "GraphClient",
    "TokenInfo",
    "UploadResult",
    "error_from_response",
    "exchange_code",
    "exchange_long_lived",
    "graph_base",
    "login_url",
    "retry_after",
    "terms_url",
    "usage_percent",
]
