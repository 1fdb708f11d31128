"""A stand-in for Meta's Graph / Marketing API v26.0: Facebook Login and Custom Audiences.

It behaves as Meta documents the real service (v25.0 is served too):

- **Facebook Login**: ``/{version}/dialog/oauth`` plays the consenting Facebook user
  (:attr:`MetaSandbox.login_user`, named in :attr:`MetaSandbox.user_names`) and redirects back
  with ``code`` and ``state`` (or ``error=access_denied`` when told to refuse); codes are
  single use, bound to their ``redirect_uri`` and expire after 10 minutes. ``/me`` answers the
  token's user id and name.
  ``/{version}/oauth/access_token`` exchanges a code for a short-lived token (2 h) and, with
  ``grant_type=fb_exchange_token``, a token for a long-lived one (60 days).
  :meth:`MetaSandbox.issue_system_user_token` mints a never-expiring system-user token.
- **Ad accounts**: ``/me/adaccounts``; ``act_<id>?fields=tos_accepted``. An account whose
  Custom Audience terms are not accepted refuses every audience write with 200 / 1870090.
- **Custom audiences**: ``POST act_<id>/customaudiences`` (``name``, ``subtype``,
  ``customer_file_source`` required for customer files; ``LOOKALIKE`` with
  ``origin_audience_id`` + ``lookalike_spec``, the origin needing 100 matched people; at most
  500 customer-file audiences per account); ``GET``/``DELETE /<audience>``.
- **Users**: ``POST``/``DELETE /<audience>/users`` and ``POST`` with ``method=DELETE``: the
  multi-key payload (a fixed schema per session, at most 10,000 rows, every hashed cell 64
  lowercase hex or ``""``), ``session`` with ``session_id``, ``batch_seq``, ``last_batch_flag``,
  ``estimated_num_total``, a session closing 90 minutes after its first batch. Invalid cells are
  counted (``num_invalid_entries``) with samples, not refused. A repeated ``batch_seq`` (a client
  retry) is acknowledged without being applied twice. DELETE query strings longer than 8 KB get
  HTTP 414 like the real front end.
- **Value-based audiences**: ``is_value_based=1`` on a customer-file create (refused with
  error 200 unless the account accepted the value-based lookalike terms, reported in
  ``tos_accepted`` as ``value_based_custom_audience_tos``); adds and replaces must carry the
  unhashed ``LOOKALIKE_VALUE`` column (a non-negative integer or float; a negative or
  non-numeric value makes the row invalid), which other audiences refuse; a lookalike of a
  value-based audience is value-based (``is_value_based`` on the audience).
- **Replace**: ``POST /<audience>/usersreplace`` — one replace at a time, a 90-minute session,
  ``operation_status`` 414 while it runs and 415 if it fails, error 2650 with subcodes 1870145
  (another replace in progress), 1870158 (session timed out), 1870147 (first ``batch_seq`` not 1),
  1870159 (session already finished), 1870144 (more than 100M people).
- **Matching**: uploads are matched against a population of "Meta users" the sandbox is seeded
  with (:meth:`MetaSandbox.seed_people`, typically a store's customers at a match rate), so
  ``approximate_count_lower_bound``/``_upper_bound`` mean something.
- **Access tokens** are read from the ``access_token`` parameter (query string or form body) or
  the ``Authorization`` header (``Bearer`` or ``OAuth`` scheme), as Graph reads them;
  ``appsecret_proof`` is checked against whichever token was used.
- **Errors** are Graph-shaped, ``{"error": {"message", "type", "code", "error_subcode",
  "fbtrace_id"}}``: token missing (104), invalid, expired or revoked (190 with 463/458),
  unknown objects (100/33), throttling (80003, 80004, 17, 613, 4) with an
  ``X-Business-Use-Case-Usage`` header carrying ``estimated_time_to_regain_access``.
- **Fault knobs**: :meth:`throttle`, :meth:`fail_next`, :meth:`expire_token`,
  :meth:`revoke_token`, :meth:`delete_in_ads_manager`, :meth:`flag_audience`,
  :meth:`set_tos`, :meth:`advance` (the sandbox clock), :attr:`delay`.

Everything is in memory, guarded by one lock; :attr:`MetaSandbox.log` records each request
(method, path, row count, raw query string, where the access token came from) so tests can see
exactly what the app sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from shopify_app.meta.identifiers import SCHEMA, Person, hash_row

VERSIONS = ("v26.0", "v25.0")
MAX_ROWS = 10_000
MAX_AUDIENCES = 500
SESSION_SECONDS = 90 * 60
SHORT_TOKEN_SECONDS = 2 * 3600
LONG_TOKEN_SECONDS = 60 * 86400
CODE_SECONDS = 600
MIN_LOOKALIKE_ORIGIN = 100
MAX_REPLACE_TOTAL = 100_000_000
MAX_QUERY_STRING = 8192

# Keys Meta accepts in a multi-key schema; EXTERN_ID and MADID are sent unhashed.
SCHEMA_KEYS = frozenset(
    {
        "EXTERN_ID",
        "EMAIL",
        "PHONE",
        "GEN",
        "DOBY",
        "DOBM",
        "DOBD",
        "LN",
        "FN",
        "FI",
        "CT",
        "ST",
        "ZIP",
        "MADID",
        "COUNTRY",
        "LOOKALIKE_VALUE",
    }
)
VALUE_KEY = "LOOKALIKE_VALUE"
_UNHASHED = frozenset({"EXTERN_ID", "MADID", VALUE_KEY})
_HEX64 = re.compile(r"[0-9a-f]{64}")

THROTTLE_MESSAGES = {
    80003: "(#80003) There have been too many calls to this ad-account. Wait a bit and try again.",
    80004: "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
    17: "(#17) User request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    4: "(#4) Application request limit reached",
}


class GraphError(Exception):
    """An error the sandbox answers in Graph's shape."""

    def __init__(
        self,
        message: str,
        code: int,
        subcode: int | None = None,
        *,
        status: int = 400,
        type_: str = "OAuthException",
        headers: dict[str, str] | None = None,
        transient: bool = False,
        user_title: str | None = None,
        user_msg: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.status = status
        self.type = type_
        self.headers = headers or {}
        self.transient = transient
        self.user_title = user_title
        self.user_msg = user_msg

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "fbtrace_id": secrets.token_urlsafe(12),
        }
        if self.subcode is not None:
            body["error_subcode"] = self.subcode
        if self.transient:
            body["is_transient"] = True
        if self.user_title:
            body["error_user_title"] = self.user_title
            body["error_user_msg"] = self.user_msg or ""
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)


def _missing_object(object_id: str) -> GraphError:
    return GraphError(
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        100,
        33,
        type_="GraphMethodException",
    )


def _param_error(message: str) -> GraphError:
    return GraphError(f"(#100) {message}", 100)


def _value_terms_error() -> GraphError:
    return GraphError(
        "(#200) Value-Based Lookalike Terms Not Accepted: accept the value-based lookalike "
        "terms of service for this ad account before creating a value-based audience.",
        200,
        user_title="Value-Based Lookalike Terms Not Accepted",
        user_msg="Accept the value-based lookalike terms in Ads Manager, then try again.",
    )


def _terms_error() -> GraphError:
    return GraphError(
        "Custom Audience Terms Not Accepted: You need to accept the Custom Audience Terms "
        "before you can create or edit an audience or lookalike audience.",
        200,
        1870090,
        user_title="Custom Audience Terms Not Accepted",
        user_msg="Accept the Custom Audience terms in Ads Manager, then try again.",
    )


@dataclass
class Token:
    value: str
    user_id: str
    kind: str  # short | long | system
    expires_at: float | None
    revoked: bool = False


@dataclass
class AdAccount:
    account_id: str  # numeric, without "act_"
    name: str
    business_id: str
    tos_accepted: bool = True
    currency: str = "USD"
    value_tos_accepted: bool = True
    owners: set[str] = field(default_factory=set)


@dataclass
class UploadSession:
    session_id: int
    kind: str  # users | delete | replace
    schema: tuple[str, ...]
    started_at: float
    estimated_total: int = 0
    seqs: set[int] = field(default_factory=set)
    finished: bool = False
    received: int = 0
    invalid: int = 0
    matched: set[int] = field(default_factory=set)
    values: dict[int, float] = field(default_factory=dict)


@dataclass
class Audience:
    id: str
    account_id: str
    name: str
    subtype: str
    description: str = ""
    customer_file_source: str | None = None
    origin_audience_id: str | None = None
    lookalike_spec: dict[str, Any] | None = None
    value_based: bool = False
    members: set[int] = field(default_factory=set)
    values: dict[int, float] = field(default_factory=dict)  # a value-based audience's values
    received: int = 0
    invalid: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    deleted: bool = False
    flagged: bool = False
    sessions: dict[tuple[str, int], UploadSession] = field(default_factory=dict)
    replace: UploadSession | None = None
    replace_failed: bool = False
    processed_at: float = 0.0


@dataclass
class LoggedRequest:
    """One request as the stand-in received it (``params`` without the payload and credentials).

    ``query`` is the raw query string and ``token_in`` where the access token came:
    ``header`` (``Authorization: Bearer``/``OAuth``), ``query``, ``body`` or ``""`` (none).
    """

    method: str
    path: str
    rows: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    http_method: str = ""
    query_length: int = 0
    query: str = ""
    token_in: str = ""


class MetaSandbox:
    """The Graph API stand-in. ``app()`` is the ASGI app to serve on loopback."""

    def __init__(self, app_id: str, app_secret: str, *, seed: int = 0) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(23_850_000_000_000_000 + seed * 1000)
        self._offset = 0.0
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, tuple[str, str, float]] = {}  # code -> (redirect_uri, user, exp)
        self.accounts: dict[str, AdAccount] = {}
        self.audiences: dict[str, Audience] = {}
        self.log: list[LoggedRequest] = []
        # The population: each hashed identifier points at a Meta user id.
        self._by_email: dict[str, int] = {}
        self._by_phone: dict[str, int] = {}
        self._by_name_zip: dict[tuple[str, str, str], int] = {}
        self._user_ids = itertools.count(1)
        self.login_user = "10000000000001"
        self.user_names: dict[str, str] = {self.login_user: "Sandbox Merchant"}
        self.login_outcome = "approve"  # approve | deny
        self.delay = 0.0  # seconds added to every Graph answer
        # Seconds after an upload before Meta's size estimate reflects it (sandbox clock).
        self.processing_seconds = 0.0
        self._throttles: list[tuple[int, float]] = []  # (code, minutes) for the next requests
        self._failures: list[int] = []
        # Share of the business-use-case budget reported on every answer; at 100 the answer
        # still succeeds but tells the client to pause for ``regain_minutes``.
        self.usage_percent = 12
        self.regain_minutes = 1.0
        # "Require App Secret" in the app's settings: every call must carry appsecret_proof.
        self.require_appsecret_proof = False

    # --- clock ------------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox clock (wall clock plus whatever :meth:`advance` added)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward: expire tokens, sessions, codes."""
        with self._lock:
            self._offset += seconds

    # --- set-up -----------------------------------------------------------------------------

    def add_ad_account(
        self,
        account_id: str,
        name: str = "Sandbox ad account",
        *,
        tos_accepted: bool = True,
        business_id: str = "900000000000001",
        owner: str | None = None,
    ) -> AdAccount:
        """Give the login user (or ``owner``) an ad account."""
        with self._lock:
            acct = AdAccount(account_id.removeprefix("act_"), name, business_id, tos_accepted)
            acct.owners.add(owner or self.login_user)
            self.accounts[acct.account_id] = acct
            return acct

    def set_tos(self, account_id: str, accepted: bool) -> None:
        """Accept (or withdraw) the Custom Audience terms on an ad account."""
        with self._lock:
            self.accounts[account_id.removeprefix("act_")].tos_accepted = accepted

    def set_value_tos(self, account_id: str, accepted: bool) -> None:
        """Accept (or withdraw) the value-based lookalike terms on an ad account."""
        with self._lock:
            self.accounts[account_id.removeprefix("act_")].value_tos_accepted = accepted

    def issue_system_user_token(self, user_id: str | None = None) -> str:
        """A business system-user token: never expires (the merchant pastes it)."""
        return self._issue(user_id or self.login_user, "system", None)

    def issue_user_token(self, *, long_lived: bool = True, user_id: str | None = None) -> str:
        """A user token as Facebook Login would leave it."""
        seconds = LONG_TOKEN_SECONDS if long_lived else SHORT_TOKEN_SECONDS
        return self._issue(user_id or self.login_user, "long" if long_lived else "short", seconds)

    def seed_people(
        self, people: Iterable[Person], *, match_rate: float = 0.7, seed: int = 0
    ) -> int:
        """Make a share of ``people`` Meta users (deterministic per seed); returns how many."""
        rng = random.Random(seed)
        rows = [hash_row(p) for p in people if rng.random() < match_rate]
        return self.add_meta_users(rows)

    def seed_store(self, store: Any, *, match_rate: float = 0.7, seed: int = 0) -> int:
        """Seed the population from a sandbox Shopify store's customers."""
        people = []
        for customer in list(store.customers.values()):
            addr = customer.default_address
            people.append(
                Person(
                    email=customer.email,
                    phone=customer.phone,
                    first_name=customer.first_name,
                    last_name=customer.last_name,
                    city=addr.city if addr else None,
                    province_code=addr.province_code if addr else None,
                    zip=addr.zip if addr else None,
                    country_code=addr.country_code if addr else None,
                )
            )
        return self.seed_people(people, match_rate=match_rate, seed=seed)

    def add_meta_users(self, rows: Iterable[tuple[str, ...]]) -> int:
        """Add Meta users from hashed rows in :data:`SCHEMA` order."""
        count = 0
        with self._lock:
            for row in rows:
                values = dict(zip(SCHEMA, row, strict=False))
                uid = next(self._user_ids)
                if values.get("EMAIL"):
                    self._by_email[values["EMAIL"]] = uid
                if values.get("PHONE"):
                    self._by_phone[values["PHONE"]] = uid
                if values.get("FN") and values.get("LN") and values.get("ZIP"):
                    self._by_name_zip[(values["FN"], values["LN"], values["ZIP"])] = uid
                count += 1
        return count

    # --- fault knobs ------------------------------------------------------------------------

    def throttle(self, code: int = 80003, *, times: int = 1, minutes: float = 1) -> None:
        """Answer the next ``times`` Graph requests with throttling error ``code``."""
        with self._lock:
            self._throttles.extend([(code, minutes)] * times)

    def fail_next(self, times: int = 1, status: int = 500) -> None:
        """Answer the next ``times`` Graph requests with a transient server error."""
        with self._lock:
            self._failures.extend([status] * times)

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired now."""
        with self._lock:
            self.tokens[token].expires_at = self.now() - 1

    def revoke_token(self, token: str) -> None:
        """The merchant removed the app or changed their password."""
        with self._lock:
            self.tokens[token].revoked = True

    def delete_in_ads_manager(self, audience_id: str) -> None:
        """The merchant deleted the audience by hand in Ads Manager."""
        with self._lock:
            self.audiences[audience_id].deleted = True

    def flag_audience(self, audience_id: str) -> None:
        """Meta's review flags the audience (``operation_status`` 471)."""
        with self._lock:
            self.audiences[audience_id].flagged = True

    def members(self, audience_id: str) -> set[int]:
        """Matched Meta user ids in an audience (for tests)."""
        with self._lock:
            return set(self.audiences[audience_id].members)

    def values(self, audience_id: str) -> dict[int, float]:
        """A value-based audience's ``LOOKALIKE_VALUE`` per matched Meta user (for tests)."""
        with self._lock:
            return dict(self.audiences[audience_id].values)

    def requests_to(self, suffix: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose path ends with ``suffix`` (and method, if given)."""
        return [
            r
            for r in self.log
            if r.path.endswith(suffix) and (method is None or r.method == method)
        ]

    # --- ASGI -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The Starlette app: the login dialog and the Graph API under ``/{version}/``."""
        return Starlette(
            routes=[
                Route("/{version}/dialog/oauth", self._dialog, methods=["GET"]),
                Route("/{version}/{path:path}", self._graph, methods=["GET", "POST", "DELETE"]),
            ]
        )

    # --- internals --------------------------------------------------------------------------

    def _issue(self, user_id: str, kind: str, seconds: float | None) -> str:
        value = "EAAG" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")
        with self._lock:
            expires = None if seconds is None else self.now() + seconds
            self.tokens[value] = Token(value, user_id, kind, expires)
        return value

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _dialog(self, request: Request) -> Any:
        q = request.query_params
        if request.path_params["version"] not in VERSIONS:
            return HTMLResponse("Unknown API version", status_code=404)
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.app_id:
            return HTMLResponse("Invalid App ID: the client_id is not a valid app.", 400)
        if not redirect_uri.startswith(("http://", "https://")):
            return HTMLResponse("URL blocked: redirect_uri is not a valid URL.", 400)
        state = q.get("state")
        params: dict[str, str]
        if self.login_outcome == "deny":
            params = {
                "error": "access_denied",
                "error_code": "200",
                "error_description": "Permissions error",
                "error_reason": "user_denied",
            }
        else:
            code = secrets.token_urlsafe(32)
            with self._lock:
                self.codes[code] = (redirect_uri, self.login_user, self.now() + CODE_SECONDS)
            params = {"code": code}
        if state is not None:
            params["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + sep + urllib.parse.urlencode(params), 302)

    async def _graph(self, request: Request) -> Any:
        version = request.path_params["version"]
        path = request.path_params["path"].strip("/")
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    params.update(body)
            else:
                # Real uploads run to several MB (10,000 rows x 8 hashes); lift the 1 MB default.
                form = await request.form(max_part_size=64 * 1024 * 1024)
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        method = request.method
        if method == "POST" and str(params.get("method", "")).upper() == "DELETE":
            method = "DELETE"
        if self.delay:
            time.sleep(self.delay)
        try:
            if version not in VERSIONS:
                raise GraphError(f"Unknown path components: /{version}", 2500)
            if request.method == "DELETE" and len(request.url.query) > MAX_QUERY_STRING:
                return PlainTextResponse("414 Request-URI Too Large", status_code=414)
            with self._lock:
                result, headers = self._dispatch(method, path, params, request)
            return JSONResponse(result, headers=headers)
        except GraphError as exc:
            return exc.response()

    def _dispatch(
        self, method: str, path: str, params: dict[str, Any], request: Request
    ) -> tuple[Any, dict[str, str]]:
        rows = _row_count(params.get("payload"))
        self.log.append(
            LoggedRequest(
                method,
                "/" + path,
                rows,
                _loggable(params),
                request.method,
                len(request.url.query),
                request.url.query,
                _token_location(params, request),
            )
        )
        if path == "oauth/access_token":
            return self._access_token(params), {}
        if self._failures:
            status = self._failures.pop(0)
            raise GraphError(
                "An unexpected error has occurred. Please retry your request later.",
                2,
                status=status,
                transient=True,
            )
        token = self._authenticate(params, request)
        parts = path.split("/")
        if path in ("me", "me/adaccounts"):
            # User-level calls are rate limited too (17 / 4 / 613 apply to any call).
            owned = [a for a in self.accounts.values() if token.user_id in a.owners]
            if owned:
                self._check_throttle(owned[0])
        if path == "me/adaccounts":
            return self._me_adaccounts(token), {}
        if path == "me":
            name = self.user_names.get(token.user_id, f"Facebook user {token.user_id}")
            return {"id": token.user_id, "name": name}, {}
        if parts[0].startswith("act_"):
            acct = self._account(token, parts[0])
            headers = self._usage_header(acct)
            self._check_throttle(acct)
            if len(parts) == 1 and method == "GET":
                return self._account_fields(acct, params), headers
            if parts[1:] == ["customaudiences"] and method == "POST":
                return self._create_audience(acct, params), headers
            if parts[1:] == ["customaudiences"] and method == "GET":
                data = [
                    {"id": a.id, "name": a.name}
                    for a in self.audiences.values()
                    if a.account_id == acct.account_id and not a.deleted
                ]
                return {"data": data, "paging": {}}, headers
            raise GraphError(f"Unsupported {method.lower()} request.", 100)
        audience = self._audience(token, parts[0])
        acct = self.accounts[audience.account_id]
        headers = self._usage_header(acct)
        self._check_throttle(acct)
        if len(parts) == 1:
            if method == "GET":
                return self._audience_fields(audience, params), headers
            if method == "DELETE":
                audience.deleted = True
                return {"success": True}, headers
        elif parts[1] == "users" and method in ("POST", "DELETE"):
            return self._users(acct, audience, params, remove=method == "DELETE"), headers
        elif parts[1] == "usersreplace" and method == "POST":
            return self._replace(acct, audience, params), headers
        raise GraphError(f"Unsupported {method.lower()} request.", 100)

    # auth -----------------------------------------------------------------------------------

    def _access_token(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("client_id") != self.app_id:
            raise GraphError("Error validating application. Invalid application ID.", 101)
        if params.get("client_secret") != self.app_secret:
            raise GraphError("Error validating client secret.", 1)
        if params.get("grant_type") == "fb_exchange_token":
            old = self.tokens.get(str(params.get("fb_exchange_token", "")))
            if old is None or old.revoked or self._expired(old):
                raise GraphError("Error validating access token: invalid or expired.", 190, 463)
            value = self._issue(old.user_id, "long", LONG_TOKEN_SECONDS)
            return {"access_token": value, "token_type": "bearer", "expires_in": LONG_TOKEN_SECONDS}
        code = str(params.get("code", ""))
        entry = self.codes.pop(code, None)
        if entry is None:
            raise GraphError("This authorization code has been used or is invalid.", 100, 36009)
        redirect_uri, user_id, expires = entry
        if params.get("redirect_uri") != redirect_uri:
            raise GraphError(
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request",
                100,
                36008,
            )
        if self.now() > expires:
            raise GraphError("This authorization code has expired.", 100, 36007)
        value = self._issue(user_id, "short", SHORT_TOKEN_SECONDS)
        return {"access_token": value, "token_type": "bearer", "expires_in": SHORT_TOKEN_SECONDS}

    def _expired(self, token: Token) -> bool:
        return token.expires_at is not None and self.now() >= token.expires_at

    def _authenticate(self, params: dict[str, Any], request: Request) -> Token:
        # Like Graph: the access_token parameter (query string or form body), else the
        # Authorization header with the Bearer or OAuth scheme.
        value = params.get("access_token") or _header_token(request)
        if not value:
            raise GraphError("An access token is required to request this resource.", 104)
        token = self.tokens.get(str(value))
        if token is None:
            raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
        proof = params.get("appsecret_proof")
        expected = hmac.new(
            self.app_secret.encode(), str(value).encode(), hashlib.sha256
        ).hexdigest()
        if proof is not None and not hmac.compare_digest(str(proof), expected):
            raise GraphError("Invalid appsecret_proof provided in the API argument", 100)
        if proof is None and self.require_appsecret_proof:
            raise GraphError("API calls from the server require an appsecret_proof argument", 100)
        if token.revoked:
            raise GraphError(
                "Error validating access token: The user has not authorized application "
                f"{self.app_id}.",
                190,
                458,
            )
        if self._expired(token):
            stamp = dt.datetime.fromtimestamp(token.expires_at or 0, dt.UTC)
            raise GraphError(
                f"Error validating access token: Session has expired on "
                f"{stamp:%A, %d-%b-%y %H:%M:%S} PST.",
                190,
                463,
            )
        return token

    # accounts -------------------------------------------------------------------------------

    def _account(self, token: Token, raw: str) -> AdAccount:
        acct = self.accounts.get(raw.removeprefix("act_"))
        if acct is None or token.user_id not in acct.owners:
            raise _missing_object(raw)
        return acct

    def _me_adaccounts(self, token: Token) -> dict[str, Any]:
        data = [
            {
                "id": f"act_{a.account_id}",
                "account_id": a.account_id,
                "name": a.name,
                "currency": a.currency,
                "account_status": 1,
                "business": {"id": a.business_id},
            }
            for a in self.accounts.values()
            if token.user_id in a.owners
        ]
        return {"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}}

    def _account_fields(self, acct: AdAccount, params: dict[str, Any]) -> dict[str, Any]:
        fields = str(params.get("fields", "")).split(",")
        out: dict[str, Any] = {"id": f"act_{acct.account_id}"}
        if "tos_accepted" in fields:
            # Meta returns the map of accepted terms; an unaccepted term is simply absent.
            out["tos_accepted"] = {
                **({"custom_audience_tos": 1} if acct.tos_accepted else {}),
                **({"value_based_custom_audience_tos": 1} if acct.value_tos_accepted else {}),
            }
        if "name" in fields:
            out["name"] = acct.name
        if "account_id" in fields:
            out["account_id"] = acct.account_id
        return out

    def _usage_header(self, acct: AdAccount, *, regain_minutes: float = 0) -> dict[str, str]:
        pct = 100 if regain_minutes else self.usage_percent
        if pct >= 100 and not regain_minutes:
            regain_minutes = self.regain_minutes
        usage = {
            acct.business_id: [
                {
                    "type": "custom_audience",
                    "call_count": pct,
                    "total_cputime": max(1, pct // 3),
                    "total_time": max(1, pct // 2),
                    "estimated_time_to_regain_access": regain_minutes,
                    "ads_api_access_tier": "standard_access",
                }
            ]
        }
        return {"X-Business-Use-Case-Usage": json.dumps(usage)}

    def _check_throttle(self, acct: AdAccount) -> None:
        if not self._throttles:
            return
        code, minutes = self._throttles.pop(0)
        raise GraphError(
            THROTTLE_MESSAGES.get(code, f"(#{code}) Rate limited"),
            code,
            2446079 if code == 80003 else None,
            headers=self._usage_header(acct, regain_minutes=minutes),
            transient=True,
        )

    # audiences ------------------------------------------------------------------------------

    def _audience(self, token: Token, audience_id: str) -> Audience:
        audience = self.audiences.get(audience_id)
        if audience is None or audience.deleted:
            raise _missing_object(audience_id)
        acct = self.accounts[audience.account_id]
        if token.user_id not in acct.owners:
            raise _missing_object(audience_id)
        return audience

    def _create_audience(self, acct: AdAccount, params: dict[str, Any]) -> dict[str, Any]:
        if not acct.tos_accepted:
            raise _terms_error()
        name = str(params.get("name") or "").strip()
        if not name:
            raise _param_error("The parameter name is required")
        subtype = str(params.get("subtype") or "").upper()
        if subtype not in ("CUSTOM", "LOOKALIKE"):
            raise _param_error("Param subtype must be one of {CUSTOM, LOOKALIKE}")
        now = self.now()
        if subtype == "CUSTOM":
            source = params.get("customer_file_source")
            allowed = (
                "USER_PROVIDED_ONLY",
                "PARTNER_PROVIDED_ONLY",
                "BOTH_USER_AND_PARTNER_PROVIDED",
            )
            if source not in allowed:
                raise _param_error(
                    "The parameter customer_file_source is required and must be one of "
                    "{" + ", ".join(allowed) + "}"
                )
            live = [
                a
                for a in self.audiences.values()
                if a.account_id == acct.account_id and not a.deleted and a.subtype == "CUSTOM"
            ]
            if len(live) >= MAX_AUDIENCES:
                raise GraphError(
                    "(#2654) Failed to create custom audience: this ad account has reached "
                    f"the limit of {MAX_AUDIENCES} customer file custom audiences.",
                    2654,
                    user_title="Audience limit reached",
                    user_msg="Delete audiences you no longer use before creating new ones.",
                )
            value_based = str(params.get("is_value_based") or "").lower() in ("1", "true")
            if value_based and not acct.value_tos_accepted:
                raise _value_terms_error()
            audience = Audience(
                self._new_id(),
                acct.account_id,
                name,
                "CUSTOM",
                str(params.get("description") or ""),
                str(source),
                value_based=value_based,
                created_at=now,
                updated_at=now,
            )
        else:
            origin_id = str(params.get("origin_audience_id") or "")
            origin = self.audiences.get(origin_id)
            if origin is None or origin.deleted or origin.account_id != acct.account_id:
                raise _param_error("Param origin_audience_id must be a valid custom audience")
            spec = _json_param(params.get("lookalike_spec"), "lookalike_spec")
            if not isinstance(spec, dict):
                raise _param_error("The parameter lookalike_spec is required")
            country = spec.get("country")
            if not (isinstance(country, str) and re.fullmatch(r"[A-Z]{2}", country)):
                raise _param_error("lookalike_spec.country must be an ISO country code")
            ratio = spec.get("ratio")
            if ratio is None and spec.get("type") not in ("similarity", "reach"):
                raise _param_error("lookalike_spec needs a ratio or a type")
            if ratio is not None and not (
                isinstance(ratio, int | float) and 0.01 <= float(ratio) <= 0.20
            ):
                raise _param_error("lookalike_spec.ratio must be between 0.01 and 0.20")
            if len(origin.members) < MIN_LOOKALIKE_ORIGIN:
                raise GraphError(
                    "(#2654) Source Audience Is Too Small: the source audience must include "
                    f"at least {MIN_LOOKALIKE_ORIGIN} people in one country.",
                    2654,
                    1713007,
                    user_title="Source Audience Is Too Small",
                    user_msg="Choose a source audience with at least 100 matched people.",
                )
            audience = Audience(
                self._new_id(),
                acct.account_id,
                name,
                "LOOKALIKE",
                str(params.get("description") or ""),
                origin_audience_id=origin_id,
                lookalike_spec=spec,
                value_based=origin.value_based,  # a value-based seed makes a value-based lookalike
                created_at=now,
                updated_at=now,
            )
        self.audiences[audience.id] = audience
        return {"id": audience.id}

    def _audience_fields(self, audience: Audience, params: dict[str, Any]) -> dict[str, Any]:
        fields = [f for f in str(params.get("fields", "")).split(",") if f] or ["id", "name"]
        size = self._visible_size(audience)
        lower, upper = _bounds(size)
        values: dict[str, Any] = {
            "id": audience.id,
            "name": audience.name,
            "description": audience.description,
            "subtype": audience.subtype,
            "customer_file_source": audience.customer_file_source,
            "approximate_count_lower_bound": lower,
            "approximate_count_upper_bound": upper,
            "operation_status": self._operation_status(audience),
            "delivery_status": {"code": 200, "description": "This audience is ready for use."},
            "time_created": int(audience.created_at),
            "time_updated": int(audience.updated_at),
            "lookalike_spec": audience.lookalike_spec,
            "origin_audience_id": audience.origin_audience_id,
            "is_value_based": audience.value_based,
            "account_id": audience.account_id,
        }
        return {k: values[k] for k in ["id", *fields] if k in values}

    def _visible_size(self, audience: Audience) -> int:
        if audience.subtype == "LOOKALIKE":
            origin = self.audiences.get(audience.origin_audience_id or "")
            ratio = float((audience.lookalike_spec or {}).get("ratio") or 0.01)
            return int(2_300_000 * ratio) if origin else 0
        if self.now() < audience.processed_at:
            return 0
        return len(audience.members)

    def _operation_status(self, audience: Audience) -> dict[str, Any]:
        if audience.flagged:
            return {
                "code": 471,
                "description": "This audience has been flagged because it may suggest "
                "information not permitted under our terms. It can't be used in ad campaigns.",
            }
        self._expire_replace(audience)
        if audience.replace is not None and not audience.replace.finished:
            return {"code": 414, "description": "A replace operation is in progress."}
        if audience.replace_failed:
            return {"code": 415, "description": "The last replace operation failed."}
        if audience.subtype == "CUSTOM" and audience.received == 0:
            return {"code": 410, "description": "No upload: no customer data uploaded yet."}
        return {"code": 200, "description": "Normal"}

    # users ----------------------------------------------------------------------------------

    def _parse_payload(
        self,
        audience: Audience,
        params: dict[str, Any],
        session: UploadSession | None,
        *,
        remove: bool = False,
    ) -> tuple[tuple[str, ...], list[Any]]:
        payload = _json_param(params.get("payload"), "payload")
        if not isinstance(payload, dict):
            raise _param_error("The parameter payload is required")
        schema_raw = payload.get("schema")
        schema = (schema_raw,) if isinstance(schema_raw, str) else tuple(schema_raw or ())
        if not schema or any(not isinstance(k, str) or k not in SCHEMA_KEYS for k in schema):
            raise _param_error(
                f"Invalid schema {schema_raw!r}: keys must be among the multi-key set"
            )
        if len(set(schema)) != len(schema):
            raise _param_error("Duplicate keys in schema")
        if VALUE_KEY in schema and not audience.value_based:
            raise _param_error(
                f"{VALUE_KEY} can only be sent to a value-based custom audience (is_value_based)"
            )
        if audience.value_based and not remove and VALUE_KEY not in schema:
            raise _param_error(
                f"A value-based custom audience needs the {VALUE_KEY} column in its schema"
            )
        if schema == (VALUE_KEY,):
            raise _param_error(f"The schema needs an identifier besides {VALUE_KEY}")
        data = payload.get("data")
        if not isinstance(data, list):
            raise _param_error("payload.data must be an array")
        if len(data) > MAX_ROWS:
            raise _param_error(f"Payload data too large: at most {MAX_ROWS} rows per request")
        if session is not None and session.schema != schema:
            raise GraphError(
                "(#2650) Failed to update the custom audience: the schema must not change "
                "within a session.",
                2650,
                1870064,
            )
        return schema, data

    def _match_rows(
        self, schema: tuple[str, ...], data: list[Any]
    ) -> tuple[set[int], int, dict[str, str], dict[int, float]]:
        """Matched Meta users, invalid rows, samples, and each match's ``LOOKALIKE_VALUE``."""
        matched: set[int] = set()
        worth: dict[int, float] = {}
        invalid = 0
        samples: dict[str, str] = {}
        width = len(schema)
        for row in data:
            cells = [row] if width == 1 and isinstance(row, str) else row
            if not isinstance(cells, list) or len(cells) != width:
                invalid += 1
                if len(samples) < 10:
                    samples[json.dumps(row)[:80]] = f"Row must have {width} values"
                continue
            values: dict[str, str] = {}
            bad = False
            value: float | None = None
            for key, cell in zip(schema, cells, strict=True):
                if key == VALUE_KEY:
                    # A non-negative integer or float; a negative or non-numeric value makes the
                    # row invalid.
                    if isinstance(cell, bool) or not isinstance(cell, int | float) or cell < 0:
                        bad = True
                        if len(samples) < 10:
                            samples[json.dumps(cell)[:80]] = (
                                f"Invalid {VALUE_KEY}: expected a non-negative number"
                            )
                        break
                    value = float(cell)
                    continue
                if not isinstance(cell, str):
                    bad = True
                    break
                if cell and key not in _UNHASHED and not _HEX64.fullmatch(cell):
                    bad = True
                    if len(samples) < 10:
                        samples[cell[:80]] = f"Invalid {key}: expected a SHA-256 hex digest"
                    break
                values[key] = cell
            if bad or not any(values.values()):
                invalid += 1
                continue
            uid = (
                self._by_email.get(values.get("EMAIL", ""))
                or self._by_phone.get(values.get("PHONE", ""))
                or self._by_name_zip.get(
                    (values.get("FN", ""), values.get("LN", ""), values.get("ZIP", ""))
                )
            )
            if uid:
                matched.add(uid)
                if value is not None:
                    worth[uid] = value
        return matched, invalid, samples, worth

    def _session(
        self, audience: Audience, params: dict[str, Any], kind: str, *, required: bool
    ) -> tuple[UploadSession | None, int, bool]:
        raw = _json_param(params.get("session"), "session")
        if raw is None:
            if required:
                raise _param_error("The parameter session is required")
            return None, 1, True
        if not isinstance(raw, dict):
            raise _param_error("session must be an object")
        try:
            session_id = int(raw["session_id"])
            seq = int(raw.get("batch_seq", 0))
        except (KeyError, TypeError, ValueError):
            raise _param_error("session.session_id and session.batch_seq are required") from None
        if session_id <= 0 or seq <= 0:
            raise _param_error("session_id and batch_seq must be positive")
        last = bool(raw.get("last_batch_flag", False))
        key = ("replace" if kind == "replace" else "users", session_id)
        session = audience.sessions.get(key)
        if session is not None and self.now() - session.started_at > SESSION_SECONDS:
            if kind == "replace" and not session.finished:
                self._fail_replace(audience, session)
            elif not session.finished:
                session.finished = True
            if kind == "replace":
                raise GraphError(
                    "(#2650) Replace session timed out: a replace session lasts 90 minutes.",
                    2650,
                    1870158,
                )
            raise GraphError("(#2650) Upload session timed out after 90 minutes.", 2650, 1870158)
        if session is not None and session.finished:
            raise GraphError(
                "(#2650) This session has already finished; start a new session_id.",
                2650,
                1870159,
            )
        return session, seq, last

    def _users(
        self, acct: AdAccount, audience: Audience, params: dict[str, Any], *, remove: bool
    ) -> dict[str, Any]:
        if not acct.tos_accepted:
            raise _terms_error()
        if audience.subtype != "CUSTOM":
            raise _param_error("Users can only be added to or removed from customer file audiences")
        self._expire_replace(audience)
        if audience.replace is not None and not audience.replace.finished:
            raise GraphError(
                "(#2650) A replace operation is in progress on this audience; try again when "
                "it has finished.",
                2650,
                1870145,
            )
        session, seq, last = self._session(audience, params, "users", required=False)
        schema, data = self._parse_payload(audience, params, session, remove=remove)
        raw = _json_param(params.get("session"), "session")
        if session is None and isinstance(raw, dict):
            session = UploadSession(
                int(raw["session_id"]),
                "delete" if remove else "users",
                schema,
                self.now(),
                int(raw.get("estimated_num_total") or 0),
            )
            audience.sessions[("users", session.session_id)] = session
        matched, invalid, samples, values = self._match_rows(schema, data)
        duplicate = session is not None and seq in session.seqs
        if not duplicate:
            if remove:
                audience.members -= matched
                for uid in matched:
                    audience.values.pop(uid, None)
            else:
                audience.members |= matched
                audience.values.update(values)
            audience.received += len(data)
            audience.invalid += invalid
            audience.updated_at = self.now()
            audience.processed_at = self.now() + self.processing_seconds
            if session is not None:
                session.seqs.add(seq)
                session.received += len(data)
                session.invalid += invalid
        if session is not None and last:
            session.finished = True
        out: dict[str, Any] = {
            "audience_id": audience.id,
            "num_received": len(data),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }
        if session is not None:
            out["session_id"] = session.session_id
        return out

    def _replace(
        self, acct: AdAccount, audience: Audience, params: dict[str, Any]
    ) -> dict[str, Any]:
        if not acct.tos_accepted:
            raise _terms_error()
        if audience.subtype != "CUSTOM":
            raise _param_error("Only customer file audiences can be replaced")
        raw = _json_param(params.get("session"), "session")
        if isinstance(raw, dict) and int(raw.get("estimated_num_total") or 0) > MAX_REPLACE_TOTAL:
            raise GraphError(
                "(#2650) Audience too big to replace: at most 100 million people.", 2650, 1870144
            )
        self._expire_replace(audience)
        running = audience.replace
        if (
            running is not None
            and not running.finished
            and isinstance(raw, dict)
            and int(raw.get("session_id") or 0) != running.session_id
        ):
            raise GraphError(
                "(#2650) A replace operation is already in progress on this audience.",
                2650,
                1870145,
            )
        session, seq, last = self._session(audience, params, "replace", required=True)
        schema, data = self._parse_payload(audience, params, session)
        assert isinstance(raw, dict)
        if session is None:
            if seq != 1:
                raise GraphError(
                    "(#2650) The first batch of a replace session must have batch_seq 1.",
                    2650,
                    1870147,
                )
            session = UploadSession(
                int(raw["session_id"]),
                "replace",
                schema,
                self.now(),
                int(raw.get("estimated_num_total") or 0),
            )
            audience.sessions[("replace", session.session_id)] = session
            audience.replace = session
            audience.replace_failed = False
        matched, invalid, samples, values = self._match_rows(schema, data)
        if seq not in session.seqs:
            session.seqs.add(seq)
            session.matched |= matched
            session.values.update(values)
            session.received += len(data)
            session.invalid += invalid
        if last:
            session.finished = True
            audience.members = set(session.matched)
            audience.values = dict(session.values)
            audience.received = session.received
            audience.invalid = session.invalid
            audience.updated_at = self.now()
            audience.processed_at = self.now() + self.processing_seconds
        return {
            "account_id": acct.account_id,
            "session_id": session.session_id,
            "num_received": len(data),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }

    def _expire_replace(self, audience: Audience) -> None:
        session = audience.replace
        if (
            session is not None
            and not session.finished
            and self.now() - session.started_at > SESSION_SECONDS
        ):
            self._fail_replace(audience, session)

    def _fail_replace(self, audience: Audience, session: UploadSession) -> None:
        # A replace that never sent its last batch fails; the old list stays as it was.
        session.finished = True
        audience.replace_failed = True


def _json_param(value: Any, name: str) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise _param_error(f"Param {name} must be JSON") from None


def _header_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def _token_location(params: dict[str, Any], request: Request) -> str:
    if "access_token" in request.query_params:
        return "query"
    if params.get("access_token"):
        return "body"
    return "header" if _header_token(request) else ""


def _row_count(payload: Any) -> int:
    try:
        data = (json.loads(payload) if isinstance(payload, str) else payload or {}).get("data")
    except (ValueError, AttributeError):
        return 0
    return len(data) if isinstance(data, list) else 0


def _loggable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in params.items() if k not in ("payload", "access_token", "appsecret_proof")
    }


def _bounds(size: int) -> tuple[int, int]:
    """Meta reports a range, never the exact count: two significant figures."""
    if size <= 0:
        return 0, 0
    step = 10 ** max(len(str(size)) - 2, 0)
    lower = size // step * step
    return lower, lower + step - 1


def hashed(value: str) -> str:
    """SHA-256 hex (test helper for building payloads by hand)."""
    return hashlib.sha256(value.encode()).hexdigest()


__all__ = ["MAX_ROWS", "GraphError", "MetaSandbox", "hashed"]
