"""Admin GraphQL client: cost-aware throttling, retries, typed errors and bulk-operation helpers.

Shopify meters Admin GraphQL with a leaky bucket per app and shop: every response reports
``extensions.cost.throttleStatus`` (points available now, the maximum, the restore rate). The
client keeps that picture and, before each request, waits until the bucket holds what the
request is expected to cost (the ``requestedQueryCost`` it reported last time for the same
document), so it slows down *before* Shopify throttles it rather than after.

Retried with bounded exponential backoff and jitter: ``THROTTLED`` errors, HTTP 429 (honouring
``Retry-After``), 502/503/504, timeouts and dropped connections. A 401 refreshes the access token
once. Anything else raises a typed error from :mod:`shopify_app.errors` naming the shop.

Every GraphQL document lives in ``shopify_app/graphql/<name>.graphql``; callers pass the name.

A client decrypts the shop's token once and keeps it until shortly before it expires. Worker
threads keep one client per shop across tasks (:func:`thread_client`): a client built per tag
write read the whole shop row (its settings JSON included) to start, again for the token of
every request, decrypted it each time, and wrote its cost in a transaction of its own.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from sqlalchemy import bindparam, select, update

from shopify_app.db import transaction
from shopify_app.db.models import Shop, utcnow
from shopify_app.errors import (
    GraphQLError,
    ShopifyError,
    SyncError,
    ThrottledError,
    TokenError,
    TransientError,
    UserErrorsError,
)
from shopify_app.jobs import Context
from shopify_app.shopify import auth

log = logging.getLogger(__name__)

GRAPHQL_DIR = Path(__file__).resolve().parents[1] / "graphql"

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 8
BACKOFF_BASE = 0.5  # seconds; doubled per attempt
BACKOFF_CAP = 30.0  # a single wait never exceeds this
REQUEST_TIMEOUT = (10.0, 60.0)  # connect, read
DEFAULT_COST = 50  # expected cost of a document never sent before
COST_FLUSH_SECONDS = 60.0
"""How often a kept client adds the cost it spent to ``Shop.api_cost_spent`` (a figure for
``/metrics``). A worker keeps a client per thread and shop, each used every few seconds under
load: at 10 s nearly every tag write also paid a transaction for this counter."""


@functools.cache
def load_document(name: str) -> str:
    """The text of ``shopify_app/graphql/<name>.graphql``; raises ``KeyError`` if unknown."""
    path = GRAPHQL_DIR / f"{name}.graphql"
    if not path.is_file():
        raise KeyError(f"no GraphQL document named {name!r} in {GRAPHQL_DIR}")
    return path.read_text(encoding="utf-8")


def gid_number(gid: str | int | None) -> int | None:
    """The numeric tail of a Shopify GID (``gid://shopify/Order/123`` → 123)."""
    if gid is None:
        return None
    if isinstance(gid, int):
        return gid
    tail = gid[gid.rfind("/") + 1 :]
    try:
        return int(tail)
    except ValueError:  # a GID may carry parameters: gid://shopify/LineItem/1?x=y
        return int(tail.split("?", 1)[0])


@dataclass
class CostBucket:
    """Shopify's leaky bucket as last reported, projected forward by its restore rate."""

    maximum: float = 1000.0
    available: float = 1000.0
    restore_rate: float = 50.0
    as_of: float = 0.0

    def update(self, throttle_status: dict[str, Any], now: float) -> None:
        """Take the ``throttleStatus`` of a response as the new truth."""
        self.maximum = float(throttle_status.get("maximumAvailable", self.maximum))
        self.available = float(throttle_status.get("currentlyAvailable", self.available))
        self.restore_rate = float(throttle_status.get("restoreRate", self.restore_rate)) or 1.0
        self.as_of = now

    def projected(self, now: float) -> float:
        """Points available at ``now``, assuming nothing else spends them."""
        elapsed = max(0.0, now - self.as_of)
        return min(self.maximum, self.available + elapsed * self.restore_rate)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds to wait until ``cost`` points are available (0 when they already are)."""
        cost = min(cost, self.maximum)  # a cost above the maximum can never fit: don't wait forever
        missing = cost - self.projected(now)
        return 0.0 if missing <= 0 else missing / self.restore_rate


class AdminClient:
    """An Admin GraphQL client for one shop.

    ``http``, ``sleep`` and ``clock`` are injectable so tests drive real loopback HTTP without
    real waiting. Costs are added to ``Shop.api_cost_spent`` in batches; call :meth:`close`
    (or use the client as a context manager) to write the remainder. A ``kept`` client (see
    :func:`thread_client`) writes them at most every :data:`COST_FLUSH_SECONDS`, also on close.
    """

    def __init__(
        self,
        ctx: Context,
        shop_id: int,
        *,
        http: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = MAX_ATTEMPTS,
        rng: Callable[[], float] = random.random,
        kept: bool = False,
    ) -> None:
        self.ctx = ctx
        self.shop_id = shop_id
        self.http = http or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.max_attempts = max_attempts
        self.rng = rng
        self.kept = kept
        # Two columns, not the row: Shop.settings is a large JSON document.
        with ctx.sessions() as session:
            shop = session.execute(
                select(Shop.domain, Shop.token_version).where(Shop.id == shop_id)
            ).first()
        if shop is None:
            raise TokenError(f"shop {shop_id} does not exist", code="unknown_shop")
        self.shop: str = shop.domain
        self.token_version: int = shop.token_version
        self._cached_token: tuple[str, dt.datetime] | None = None
        self.url = ctx.settings.graphql_url(self.shop)
        self.bucket = CostBucket(as_of=clock())
        self._expected_cost: dict[str, float] = {}
        self._cost_pending = 0
        self._cost_flushed_at = clock()
        self.cost_spent = 0  # this client's total, for logs and tests

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write the cost not yet recorded (a kept client: when it is due)."""
        self.flush_cost(due_only=self.kept)

    def flush_cost(self, *, due_only: bool = False) -> None:
        """Add the cost spent since the last flush to ``Shop.api_cost_spent``; with
        ``due_only``, only once :data:`COST_FLUSH_SECONDS` have passed since the last one."""
        if not self._cost_pending:
            return
        if due_only and self.clock() - self._cost_flushed_at < COST_FLUSH_SECONDS:
            return
        spent, self._cost_pending = self._cost_pending, 0
        self._cost_flushed_at = self.clock()
        with transaction(self.ctx.sessions) as session:
            session.execute(
                update(Shop)
                .where(Shop.id == self.shop_id)
                .values(api_cost_spent=Shop.api_cost_spent + spent)
                .execution_options(synchronize_session=False)
            )

    # --- GraphQL ------------------------------------------------------------------------------

    def execute(
        self, document_name: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send the named document; returns ``data``. Raises a :class:`ShopifyError` subclass."""
        return self.request(load_document(document_name), variables, label=document_name)

    def request(
        self, query: str, variables: dict[str, Any] | None = None, *, label: str = "query"
    ) -> dict[str, Any]:
        """Send ``query`` with retries and pacing; ``label`` keys the cost estimate and logs."""
        refreshed = False
        token = self._token()
        last_problem = "no attempt made"
        throttled = False
        for attempt in range(self.max_attempts):
            self._pace(self._expected_cost.get(label, DEFAULT_COST))
            try:
                response = self.http.post(
                    self.url,
                    json={"query": query, "variables": variables or {}},
                    headers={"X-Shopify-Access-Token": token, "Accept": "application/json"},
                    timeout=REQUEST_TIMEOUT,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                last_problem, throttled = f"{type(exc).__name__}: {exc}", False
                self._backoff(attempt, label, last_problem)
                continue
            status = response.status_code
            if status == 401:
                if refreshed:
                    raise TokenError(
                        f"Shopify refused the access token of {self.shop} after a refresh",
                        code="unauthorized",
                        shop=self.shop,
                    )
                refreshed = True
                self._cached_token = None
                token = auth.force_refresh(self.ctx, self.shop_id, self.http)
                continue
            if status == 429:
                last_problem, throttled = "HTTP 429", False
                self._backoff(attempt, label, last_problem, _retry_after(response))
                continue
            if status in RETRY_STATUSES:
                last_problem, throttled = f"HTTP {status}", False
                self._backoff(attempt, label, last_problem)
                continue
            if status != 200:
                raise ShopifyError(
                    f"Shopify answered HTTP {status} to {label} for {self.shop}: "
                    f"{response.text[:300]}",
                    shop=self.shop,
                )
            try:
                body = response.json()
            except ValueError:
                last_problem, throttled = "a response that is not JSON", False
                self._backoff(attempt, label, last_problem)
                continue
            cost = (body.get("extensions") or {}).get("cost") or {}
            self._account(label, cost)
            errors = body.get("errors") or []
            if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
                last_problem, throttled = "THROTTLED", True
                requested = float(
                    cost.get("requestedQueryCost") or self._expected_cost.get(label, 0)
                )
                wait = self.bucket.wait_for(requested, self.clock())
                self._backoff(attempt, label, last_problem, max(wait, 0.0) or None)
                continue
            if errors:
                messages = "; ".join(str(e.get("message")) for e in errors)
                raise GraphQLError(
                    f"{label} failed for {self.shop}: {messages}", errors=errors, shop=self.shop
                )
            data = body.get("data")
            if not isinstance(data, dict):
                raise ShopifyError(f"{label} for {self.shop} returned no data", shop=self.shop)
            return data
        if throttled:
            raise ThrottledError(
                f"{label} for {self.shop} stayed throttled after {self.max_attempts} attempts",
                shop=self.shop,
            )
        raise TransientError(
            f"{label} for {self.shop} failed after {self.max_attempts} attempts: {last_problem}",
            shop=self.shop,
        )

    def _token(self) -> str:
        """The access token, decrypted once and kept until :data:`auth.REFRESH_MARGIN` before it
        expires (then :func:`auth.access_token` refreshes it)."""
        cached = self._cached_token
        if cached is not None and cached[1] - utcnow() > auth.REFRESH_MARGIN:
            return cached[0]
        with self.ctx.sessions() as session:
            expires = session.scalar(
                select(Shop.access_token_expires_at).where(Shop.id == self.shop_id)
            )
        token = auth.access_token(self.ctx, self.shop_id, self.http)
        # The expiry read before: if access_token refreshed just now, the next request reads
        # the new one (once) instead of trusting a time it did not see.
        self._cached_token = (token, expires) if expires is not None else None
        return token

    def _pace(self, expected_cost: float) -> None:
        wait = self.bucket.wait_for(expected_cost, self.clock())
        if wait > 0:
            log.debug("waiting %.2fs for the cost bucket", wait, extra={"shop": self.shop})
            self.sleep(wait)

    def _backoff(
        self, attempt: int, label: str, problem: str, at_least: float | None = None
    ) -> None:
        if attempt + 1 >= self.max_attempts:
            return
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
        delay = delay / 2 + self.rng() * delay / 2  # "equal jitter": never zero, never in step
        if at_least is not None:
            delay = max(delay, min(at_least, BACKOFF_CAP * 4))
        log.info(
            "retrying %s after %s in %.2fs",
            label,
            problem,
            delay,
            extra={"shop": self.shop, "attempt": attempt + 1},
        )
        self.sleep(delay)

    def _account(self, label: str, cost: dict[str, Any]) -> None:
        if not cost:
            return
        status = cost.get("throttleStatus")
        if isinstance(status, dict):
            self.bucket.update(status, self.clock())
        requested = cost.get("requestedQueryCost")
        if requested is not None:
            self._expected_cost[label] = float(requested)
        actual = cost.get("actualQueryCost")
        spent = int(actual if actual is not None else requested or 0)
        self.cost_spent += spent
        self._cost_pending += spent
        if self.clock() - self._cost_flushed_at >= COST_FLUSH_SECONDS:
            self.flush_cost()

    # --- bulk operations ----------------------------------------------------------------------

    def run_bulk_query(self, document_name: str) -> str:
        """Start a bulk query with the named document; returns the operation's GID."""
        data = self.execute("bulk_operation_run_query", {"query": load_document(document_name)})
        payload = data["bulkOperationRunQuery"] or {}
        self._raise_user_errors("bulkOperationRunQuery", payload)
        return str(payload["bulkOperation"]["id"])

    def bulk_operation(self, gid: str) -> dict[str, Any]:
        """The current state of bulk operation ``gid`` (status, objectCount, url, ...)."""
        data = self.execute("bulk_operation", {"id": gid})
        node = data.get("bulkOperation")
        if not node:
            raise SyncError(f"bulk operation {gid} of {self.shop} is unknown to Shopify")
        return dict(node)

    def running_bulk_operations(self) -> list[dict[str, Any]]:
        """Bulk operations of this app still running on the shop."""
        data = self.execute("bulk_operations_running", {"type": "status:RUNNING"})
        return list((data.get("bulkOperations") or {}).get("nodes") or [])

    def run_bulk_mutation(self, document_name: str, rows: Iterable[dict[str, Any]]) -> str:
        """Upload ``rows`` (one variables object per line) and start the named mutation in bulk.

        stagedUploadsCreate → multipart POST of the JSONL to the returned target with its
        parameters → bulkOperationRunMutation. Returns the operation's GID.
        """
        buffer = io.BytesIO()
        for row in rows:
            buffer.write(json.dumps(row, separators=(",", ":")).encode())
            buffer.write(b"\n")
        filename = f"{document_name}.jsonl"
        data = self.execute(
            "staged_uploads_create",
            {
                "input": [
                    {
                        "resource": "BULK_MUTATION_VARIABLES",
                        "filename": filename,
                        "mimeType": "text/jsonl",
                        "httpMethod": "POST",
                    }
                ]
            },
        )
        payload = data["stagedUploadsCreate"] or {}
        self._raise_user_errors("stagedUploadsCreate", payload)
        target = payload["stagedTargets"][0]
        params = [(p["name"], p["value"]) for p in target.get("parameters") or []]
        self._upload(target["url"], params, filename, buffer.getvalue())
        key = next((value for name, value in params if name == "key"), None)
        path = key or target.get("resourceUrl") or ""
        data = self.execute(
            "bulk_operation_run_mutation",
            {"mutation": load_document(document_name), "stagedUploadPath": path},
        )
        result = data["bulkOperationRunMutation"] or {}
        self._raise_user_errors("bulkOperationRunMutation", result)
        return str(result["bulkOperation"]["id"])

    def _upload(self, url: str, params: list[tuple[str, str]], filename: str, body: bytes) -> None:
        problem = ""
        for attempt in range(self.max_attempts):
            try:
                response = self.http.post(
                    url,
                    data=params,
                    files={"file": (filename, body, "text/jsonl")},
                    timeout=REQUEST_TIMEOUT,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self._backoff(attempt, "staged upload", problem)
                continue
            if response.status_code in RETRY_STATUSES or response.status_code == 429:
                problem = f"HTTP {response.status_code}"
                self._backoff(attempt, "staged upload", problem, _retry_after(response))
                continue
            if response.status_code >= 300:
                raise ShopifyError(
                    f"the staged upload for {self.shop} was refused: HTTP {response.status_code}",
                    shop=self.shop,
                )
            return
        raise TransientError(f"the staged upload for {self.shop} failed: {problem}", shop=self.shop)

    def stream_jsonl(self, url: str, *, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Parse a bulk result as it downloads: one dict per line, never the whole file in memory.

        ``skip`` lines are passed over without parsing (resuming from a checkpoint). Raises
        :class:`SyncError` when the download breaks off before ``Content-Length`` bytes or ends
        in the middle of a line.
        """
        for line in self.stream_lines(url, skip=skip):
            yield json.loads(line)

    def stream_lines(self, url: str, *, skip: int = 0) -> Iterator[bytes]:
        """The raw lines of a bulk result (see :meth:`stream_jsonl`)."""
        yield from iter_jsonl_lines(self.http, url, skip=skip, shop=self.shop)

    @staticmethod
    def _raise_user_errors(label: str, payload: dict[str, Any]) -> None:
        errors = payload.get("userErrors") or []
        if errors:
            messages = "; ".join(str(e.get("message")) for e in errors)
            raise UserErrorsError(f"{label}: {messages}", user_errors=list(errors))


THREAD_CLIENTS = 256
"""Clients a worker thread keeps (one per shop); the least recently used one goes first."""

_THREAD = threading.local()

_TOKEN_VERSION = select(Shop.domain, Shop.token_version).where(Shop.id == bindparam("shop"))
"""Built once: :func:`thread_client` reads it for every task that sends a request."""


class ThreadSession(requests.Session):
    """A worker thread's HTTP session, leaner per request than ``requests.Session`` (a tag
    write per webhook spent a third of its CPU in ``requests``): the environment's settings
    (proxies, ``no_proxy``, CA bundle) are read once per origin, since a process's environment
    does not change while it runs, and requests are prepared without the cookie-jar copies
    when there are no cookies (:meth:`prepare_request`)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, Any, Any, Any], Any] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if proxies:  # proxies given with the request merge as requests merges them
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        origin = "/".join(str(url).split("/", 3)[:3])
        key = (origin, stream, verify, cert)
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(origin, {}, stream, verify, cert)
            self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """As requests prepares it, less the cookie-jar copies and the ``~/.netrc`` lookup when
        neither can apply: no cookies, and no login (the Admin API and signed URLs carry their
        own credentials; a netrc login for them would be wrong anyway)."""
        if self.cookies or request.cookies or self.auth or request.auth or self.params:
            return super().prepare_request(request)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=str(request.method).upper(),
            url=request.url,
            files=request.files,
            data=request.data,
            json=request.json,
            headers=merge_setting(request.headers, self.headers, dict_class=CaseInsensitiveDict),
            params=request.params,
            hooks=merge_hooks(request.hooks, self.hooks),
        )
        return prepared


def thread_client(
    ctx: Context, shop_id: int, *, seen: tuple[str, int] | None = None
) -> AdminClient:
    """This thread's Admin client for ``shop_id``, kept across tasks.

    Reused while the shop's ``token_version`` is the one the client started with: every token
    refresh and the uninstall bump it, so a refreshed or revoked token is never sent from the
    cache (the client built then asks :mod:`.auth` again, which refuses an uninstalled shop).
    Keeping it costs one two-column read per call, or none when the caller passes what it
    has just read of the shop in the transaction that decided to send: ``seen``, its
    (domain, token_version). Each thread has its own clients and HTTP session (``requests``
    sessions are not thread-safe); a client also keeps its cost bucket and expected costs
    between tasks.
    """
    clients: dict[int, AdminClient] = _THREAD.__dict__.setdefault("clients", {})
    if seen is None:
        with ctx.engine.connect() as conn:
            shop = conn.execute(_TOKEN_VERSION, {"shop": shop_id}).first()
        seen = None if shop is None else (shop.domain, shop.token_version)
    client = clients.pop(shop_id, None)
    if client is not None and not (
        seen is not None
        and client.shop == seen[0]
        and client.token_version == seen[1]
        and client.ctx.engine is ctx.engine
        and client.ctx.settings is ctx.settings
        and client.ctx.cipher is ctx.cipher
    ):
        _retire(client, ctx)
        client = None
    if client is None:
        http: requests.Session | None = getattr(_THREAD, "http", None)
        if http is None:
            http = _THREAD.http = ThreadSession()
        # A plain context: the caller's may be a FollowUps list that must not live on in here.
        plain = Context(ctx.settings, ctx.engine, ctx.sessions, ctx.cipher, ctx.runtime)
        client = AdminClient(plain, shop_id, http=http, kept=True)
    clients[shop_id] = client  # re-inserted last: the dict's order is the recency
    while len(clients) > THREAD_CLIENTS:
        _retire(clients.pop(next(iter(clients))), ctx)
    return client


def _retire(client: AdminClient, ctx: Context) -> None:
    """Drop a kept client, recording the cost it counted when its database is the caller's: a
    client kept from another context (another database) is dropped as it is."""
    if client.ctx.engine is ctx.engine:
        client.flush_cost()


def iter_jsonl_lines(
    http: requests.Session, url: str, *, skip: int = 0, shop: str | None = None
) -> Iterator[bytes]:
    """Download ``url`` as a stream and yield its non-empty lines after the first ``skip``.

    The signed result URL carries its own credentials, so no access token is sent. A download
    that ends short of ``Content-Length``, or whose last line has no newline and is not valid
    JSON, raises :class:`SyncError` so the caller resumes from its checkpoint instead of
    taking a partial file as complete.
    """
    try:
        response = http.get(url, stream=True, timeout=REQUEST_TIMEOUT)
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise SyncError(f"downloading the bulk result of {shop} failed: {exc}") from exc
    with response:
        if response.status_code != 200:
            raise SyncError(
                f"downloading the bulk result of {shop} failed: HTTP {response.status_code}"
            )
        # Content-Length counts the bytes on the wire; with a Content-Encoding requests hands
        # back more (decoded) bytes than that, so the check only applies to identity bodies.
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        expected = None if encoded else response.headers.get("Content-Length")
        received = 0
        pending = b""
        index = 0
        try:
            for chunk in response.iter_content(chunk_size=1 << 20):
                received += len(chunk)
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if not line:
                        continue
                    index += 1
                    if index > skip:
                        yield line
        except (requests.RequestException, OSError) as exc:
            raise SyncError(f"the bulk result of {shop} broke off: {exc}") from exc
        if expected is not None and received < int(expected):
            raise SyncError(
                f"the bulk result of {shop} is truncated: {received} of {expected} bytes"
            )
        if pending.strip():
            try:
                json.loads(pending)
            except ValueError:
                raise SyncError(f"the bulk result of {shop} ends in a partial line") from None
            index += 1
            if index > skip:
                yield pending


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
