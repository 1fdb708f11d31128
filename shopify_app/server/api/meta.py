"""The Meta endpoints (``/api/meta/...``, and the segment's ``meta-preview``) and Facebook
Login's start and callback (``/meta/login``, ``/meta/callback``).

The API endpoints sit behind the session-token middleware, which sets
``request.state.shop_id``. Facebook Login runs in a top-level tab, without a session token:
``/api/meta/connect`` stores a single-use login (its ``state``, hashed, for ten minutes) and
answers a Goldpan URL, ``/meta/login``, where the tab starts. That binds the login to the
browser with a first-party cookie and redirects to the dialog; ``/meta/callback`` completes only
a login bound to the browser calling it, and consumes it. A ``state`` seen elsewhere (a log, a
shared link, another browser) is useless. The page then shows whose Facebook account was
connected, and nothing is synced until the merchant confirms it (``/api/meta/confirm``).

Meta's errors propagate to :mod:`shopify_app.server.errors` (terms and a revoked token 409,
throttling 429 with ``retry_after``); the ones that say something about the connection are
remembered on it first, so the settings card shows them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import html
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import delete, select, update
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import MetaAudience, MetaConnection, MetaLogin, Shop
from shopify_app.db.types import utcnow
from shopify_app.errors import (
    AuthError,
    InputError,
    MetaError,
    MetaTermsError,
    MetaTokenError,
    MetaUnreachableError,
)
from shopify_app.meta import audiences, graph, view
from shopify_app.meta.identifiers import Person, consent_allows, csv_text
from shopify_app.server import context
from shopify_app.server.api.request import (
    db_session,
    get_segment,
    get_shop,
    json_body,
    path_id,
    request_shop_id,
)
from shopify_app.server.errors import json_error
from shopify_app.states import MetaAudienceKind, MetaAudienceStatus, MetaConnectionStatus

LOGIN_TTL = dt.timedelta(minutes=10)
"""How long a Facebook Login may take (Meta's codes live as long)."""

LOGIN_COOKIE = "goldpan_meta_login"
"""The first-party cookie naming the browser that started a login (a random value)."""

_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


def redirect_uri(ctx: jobs.Context) -> str:
    """Where Facebook Login sends the merchant back (register it in the Meta app)."""
    return f"{ctx.settings.app_url}/meta/callback"


# --- the login -------------------------------------------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_login(ctx: jobs.Context, shop_id: int) -> str:
    """Store a new login for ``shop_id``; returns its ``state`` (kept only as a hash)."""
    state = secrets.token_urlsafe(32)
    now = utcnow()
    with transaction(ctx.sessions) as session:
        session.execute(delete(MetaLogin).where(MetaLogin.expires_at <= now))
        session.add(
            MetaLogin(state_hash=_digest(state), shop_id=shop_id, expires_at=now + LOGIN_TTL)
        )
    return state


def bind_login(ctx: jobs.Context, state: str, browser: str) -> bool:
    """Tie the login ``state`` to ``browser`` (the cookie's value); only the first call can."""
    with transaction(ctx.sessions) as session:
        result = session.execute(
            update(MetaLogin)
            .where(
                MetaLogin.state_hash == _digest(state),
                MetaLogin.browser_hash.is_(None),
                MetaLogin.expires_at > utcnow(),
            )
            .values(browser_hash=_digest(browser))
        )
    return bool(getattr(result, "rowcount", 0))


def finish_login(ctx: jobs.Context, state: str, browser: str | None) -> int | None:
    """Consume the login ``state`` if ``browser`` started it and it has not expired; returns
    its shop id (None: forged, used, expired, or another browser's)."""
    if not browser or not state:
        return None
    with transaction(ctx.sessions) as session:
        return session.scalar(
            delete(MetaLogin)
            .where(
                MetaLogin.state_hash == _digest(state),
                MetaLogin.browser_hash == _digest(browser),
                MetaLogin.expires_at > utcnow(),
            )
            .returning(MetaLogin.shop_id)
        )


# --- views -----------------------------------------------------------------------------------


def _conn_json(conn: MetaConnection | None) -> dict[str, Any]:
    if conn is None:
        return {
            "status": MetaConnectionStatus.DISCONNECTED,
            "connected": False,
            "ad_account_id": None,
            "tos_accepted": False,
            "terms_url": None,
            "error": None,
            "token_expires_at": None,
            "user_name": None,
        }
    status = conn.status
    if conn.token_expires_at is not None and conn.token_expires_at <= utcnow():
        # Known before Meta says so: the page can ask to reconnect.
        status = MetaConnectionStatus.EXPIRED
    return {
        "status": status,
        "connected": status == MetaConnectionStatus.CONNECTED,
        "ad_account_id": conn.ad_account_id,
        "tos_accepted": conn.tos_accepted,
        "terms_url": graph.terms_url(conn.ad_account_id) if conn.ad_account_id else None,
        "error": conn.error,
        "token_expires_at": conn.token_expires_at.isoformat() if conn.token_expires_at else None,
        "user_name": conn.user_name,
    }


def _audience_json(aud: MetaAudience) -> dict[str, Any]:
    return {
        "id": aud.id,
        "segment_id": aud.segment_id,
        "kind": aud.kind,
        "audience_id": aud.audience_id,
        "origin_audience_id": aud.origin_audience_id,
        "spec": aud.spec,
        "status": aud.status,
        "received": aud.received,
        "invalid": aud.invalid,
        "invalid_samples": aud.invalid_samples,
        "approximate_lower": aud.approximate_lower,
        "approximate_upper": aud.approximate_upper,
        "error": aud.error,
        "last_synced_at": aud.last_synced_at.isoformat() if aud.last_synced_at else None,
        "last_full_refresh_at": (
            aud.last_full_refresh_at.isoformat() if aud.last_full_refresh_at else None
        ),
    }


def _store_token(
    ctx: jobs.Context,
    shop_id: int,
    token: str,
    expires_in: int | None,
    *,
    user_name: str | None,
    confirmed: bool,
) -> MetaConnection:
    """Keep the token (encrypted) and whose it is; a Facebook Login waits for the merchant to
    confirm the account (status ``confirm``), a token they pasted themselves does not."""
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        if conn is None:
            conn = MetaConnection(shop_id=shop_id)
            session.add(conn)
        conn.access_token = ctx.cipher.encrypt(token)
        conn.token_expires_at = utcnow() + dt.timedelta(seconds=expires_in) if expires_in else None
        conn.connected_at = utcnow()
        conn.user_name = user_name
        conn.error = None
        # A new login keeps the chosen account, but its terms are checked again.
        conn.status = MetaConnectionStatus.PENDING if confirmed else MetaConnectionStatus.CONFIRM
        conn.tos_accepted = False
        return conn


def _client(ctx: jobs.Context, shop_id: int) -> tuple[MetaConnection, graph.GraphClient]:
    with ctx.sessions() as session:
        conn = session.get(MetaConnection, shop_id)
    if conn is None or not conn.access_token:
        raise InputError("connect Meta first", field="meta")
    if conn.status == MetaConnectionStatus.CONFIRM:
        raise InputError("confirm the Facebook account first", field="meta")
    return conn, audiences.client_for(ctx, conn)


def _remember_error(ctx: jobs.Context, shop_id: int, exc: MetaError) -> None:
    if isinstance(exc, MetaTokenError | MetaTermsError):
        with transaction(ctx.sessions) as session:
            conn = session.get(MetaConnection, shop_id)
            if conn is not None:
                audiences.record_connection_error(session, conn, exc)


def preview(request: Request) -> Response:
    """Before Meta sync is turned on: how many members the consent policy lets us upload.

    Switching it on and off, lookalikes and the hashed file are the endpoints below.
    """
    shop_id = request_shop_id(request)
    segment_id = path_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        seg = get_segment(session, shop_id, segment_id)
        policy = audiences.consent_policy(shop)
        upload = sum(
            1
            for _cid, person in audiences.uploadable_people(session, shop, seg.id, seg.handle)
            if consent_allows(policy, person)
        )
        conn = session.get(MetaConnection, shop_id)
        return JSONResponse(
            {
                "preview": {"upload": upload, "members": seg.member_count},
                "policy": policy,
                "connected": conn is not None and conn.status == MetaConnectionStatus.CONNECTED,
            }
        )


def status(request: Request) -> Response:
    """The connection and every audience, for the Meta card on the page."""
    ctx, shop_id = context(request), request_shop_id(request)
    with ctx.sessions() as session:
        pending = session.get(MetaConnection, shop_id)
        account = (
            pending.ad_account_id
            if pending and pending.status == MetaConnectionStatus.TERMS
            else None
        )
    if account:
        # A failure is remembered on the connection and shown below.
        with contextlib.suppress(MetaError):
            _check_terms(ctx, shop_id, account)
    with ctx.sessions() as session:
        conn = session.get(MetaConnection, shop_id)
        shop = session.get(Shop, shop_id)
        rows = session.scalars(
            select(MetaAudience).where(MetaAudience.shop_id == shop_id).order_by(MetaAudience.id)
        ).all()
        policy = audiences.consent_policy(shop) if shop is not None else "subscribed"
        return JSONResponse(
            {
                **_conn_json(conn),
                "configured": bool(ctx.settings.meta_app_id and ctx.settings.meta_app_secret),
                "consent_policy": policy,
                "audiences": [_audience_json(a) for a in rows],
            }
        )


def connect(request: Request) -> Response:
    """Start Facebook Login: the Goldpan URL to open in a new tab (it can't run in the iframe),
    which sends the tab on to the dialog (see :func:`login`)."""
    ctx, shop_id = context(request), request_shop_id(request)
    if not (ctx.settings.meta_app_id and ctx.settings.meta_app_secret):
        return json_error(
            503, "Facebook Login is not configured (META_APP_ID, META_APP_SECRET)", "meta"
        )
    state = start_login(ctx, shop_id)
    return JSONResponse({"url": f"{ctx.settings.app_url}/meta/login?{urlencode({'state': state})}"})


def confirm(request: Request) -> Response:
    """The merchant confirms that the Facebook account shown ("connected as …") is theirs.

    An ad account chosen before is kept when this login can manage it (its terms are checked
    again); otherwise the merchant chooses one.
    """
    ctx, shop_id = context(request), request_shop_id(request)
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        if conn is None or conn.status != MetaConnectionStatus.CONFIRM:
            raise InputError("there is no Facebook login to confirm", field="meta")
        conn.status = MetaConnectionStatus.PENDING
        account = conn.ad_account_id
    if account is not None:
        if account in _manageable(ctx, shop_id):
            _check_terms(ctx, shop_id, account)
        else:
            with transaction(ctx.sessions) as session:
                conn = session.get(MetaConnection, shop_id)
                assert conn is not None
                conn.ad_account_id = None
    with ctx.sessions() as session:
        return JSONResponse(_conn_json(session.get(MetaConnection, shop_id)))


def paste_token(request: Request) -> Response:
    """Use a system-user token the merchant pasted (Business Settings → System users)."""
    ctx, shop_id = context(request), request_shop_id(request)
    token = json_body(request).get("token")
    if not isinstance(token, str) or len(token.strip()) < 20 or " " in token.strip():
        raise InputError("paste the whole access token", field="token")
    client = graph.GraphClient(ctx.settings, token.strip())
    try:
        me = client.me()
    except MetaTokenError:
        raise InputError("Meta does not accept this token", field="token") from None
    conn = _store_token(ctx, shop_id, token.strip(), None, user_name=_name(me), confirmed=True)
    return JSONResponse(_conn_json(conn))


def _name(me: dict[str, Any]) -> str | None:
    name = me.get("name")
    return str(name)[:255] if name else None


def _accounts(ctx: jobs.Context, shop_id: int) -> list[dict[str, Any]]:
    """The ad accounts the connected login can manage (a token problem is remembered)."""
    _conn, client = _client(ctx, shop_id)
    try:
        return client.ad_accounts()
    except MetaError as exc:
        _remember_error(ctx, shop_id, exc)
        raise


def _manageable(ctx: jobs.Context, shop_id: int) -> set[str]:
    return {str(a.get("id")) for a in _accounts(ctx, shop_id)}


def ad_accounts(request: Request) -> Response:
    """The ad accounts the connected login can manage."""
    ctx, shop_id = context(request), request_shop_id(request)
    return JSONResponse(
        {
            "data": [
                {"id": a.get("id"), "name": a.get("name"), "currency": a.get("currency")}
                for a in _accounts(ctx, shop_id)
            ]
        }
    )


def _check_terms(ctx: jobs.Context, shop_id: int, account_id: str) -> None:
    """Ask Meta whether the account accepted the Custom Audience terms and store the answer.

    Starts the first sync once they are accepted. Called when the merchant picks the account and
    again each time the page loads while acceptance is pending: the merchant accepts the terms
    in Ads Manager, in another tab, so nothing tells Goldpan when it happens.
    """
    _conn, client = _client(ctx, shop_id)
    try:
        accepted = client.tos_accepted(account_id)
    except MetaError as exc:
        _remember_error(ctx, shop_id, exc)
        raise
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        assert conn is not None
        conn.ad_account_id = account_id
        conn.tos_accepted = accepted
        conn.status = MetaConnectionStatus.CONNECTED if accepted else MetaConnectionStatus.TERMS
        conn.error = (
            None
            if accepted
            else "Accept Meta's Custom Audience terms for this ad account: "
            + graph.terms_url(account_id)
        )
    if accepted:
        ctx.enqueue("meta.sync_shop", shop_id=shop_id)


def choose_account(request: Request) -> Response:
    """Pick the ad account; checks the Custom Audience terms (link to accept them if missing)."""
    ctx, shop_id = context(request), request_shop_id(request)
    raw = json_body(request).get("ad_account_id")
    if not isinstance(raw, str) or not raw.removeprefix("act_").isdigit():
        raise InputError("choose an ad account", field="ad_account_id")
    account_id = "act_" + raw.removeprefix("act_")
    if account_id not in _manageable(ctx, shop_id):
        raise InputError("this login cannot manage that ad account", field="ad_account_id")
    _check_terms(ctx, shop_id, account_id)
    with ctx.sessions() as session:
        return JSONResponse(_conn_json(session.get(MetaConnection, shop_id)))


def disconnect(request: Request) -> Response:
    """Forget the token (audiences stay in Ads Manager; sync stops)."""
    ctx, shop_id = context(request), request_shop_id(request)
    with transaction(ctx.sessions) as session:
        conn = session.get(MetaConnection, shop_id)
        if conn is not None:
            conn.access_token = None
            conn.token_expires_at = None
            conn.user_name = None
            conn.status = MetaConnectionStatus.DISCONNECTED
            conn.error = None
        answer = _conn_json(conn)
    return JSONResponse(answer)


def segment_sync(request: Request) -> Response:
    """Turn Meta sync on (syncs now) or off (the audience stays, marked paused)."""
    ctx, shop_id = context(request), request_shop_id(request)
    enabled = json_body(request).get("enabled")
    if not isinstance(enabled, bool):
        raise InputError("enabled must be true or false", field="enabled")
    with transaction(ctx.sessions) as session:
        seg = get_segment(session, shop_id, path_id(request))
        conn = session.get(MetaConnection, shop_id)
        if enabled and (conn is None or conn.status != MetaConnectionStatus.CONNECTED):
            raise InputError("connect Meta and pick an ad account first", field="meta")
        seg.meta_sync = enabled
        segment_id = seg.id
        if not enabled:
            for aud in session.scalars(
                select(MetaAudience).where(
                    MetaAudience.segment_id == segment_id,
                    MetaAudience.kind != MetaAudienceKind.LOOKALIKE,
                )
            ):
                aud.status = MetaAudienceStatus.PAUSED
    if enabled:
        ctx.enqueue("meta.sync_segment", shop_id=shop_id, segment_id=segment_id)
    with ctx.sessions() as session:
        rows = session.scalars(
            select(MetaAudience)
            .where(MetaAudience.segment_id == segment_id)
            .order_by(MetaAudience.id)
        ).all()
        return JSONResponse({"enabled": enabled, "audiences": [_audience_json(a) for a in rows]})


def _panel(ctx: jobs.Context, shop_id: int, segment_id: int) -> dict[str, Any]:
    with ctx.sessions() as session:
        return view.segment_meta(session, shop_id)[segment_id]


def segment_panel(request: Request) -> Response:
    """The segment's Meta panel: its state, current figures, lookalikes and lookalike offers
    (the page polls it while the panel is open)."""
    ctx, shop_id = context(request), request_shop_id(request)
    with ctx.sessions() as session:
        seg = get_segment(session, shop_id, path_id(request))
    return JSONResponse(_panel(ctx, shop_id, seg.id))


def segment_lookalike(request: Request) -> Response:
    """Create a lookalike: ``{"country": "US", "ratio": 1..10, "source": "custom"|"value"}``;
    answers the new panel (the lookalike listed in it)."""
    ctx, shop_id = context(request), request_shop_id(request)
    body = json_body(request)
    with ctx.sessions() as session:
        seg = get_segment(session, shop_id, path_id(request))
    ratio = body.get("ratio")
    if not isinstance(ratio, int) or isinstance(ratio, bool):
        raise InputError("ratio must be a whole percentage from 1 to 10", field="ratio")
    source = body.get("source", MetaAudienceKind.CUSTOM)
    if source not in (MetaAudienceKind.CUSTOM, MetaAudienceKind.VALUE):
        raise InputError("source must be custom or value", field="source")
    aud = audiences.create_lookalike(
        ctx,
        shop_id,
        seg.id,
        str(body.get("country") or ""),
        ratio,
        MetaAudienceKind(source),
    )
    return JSONResponse(
        {"created": _audience_json(aud), "meta": _panel(ctx, shop_id, seg.id)}, status_code=201
    )


def segment_value_audience(request: Request) -> Response:
    """Add a value-based audience to the segment (each customer's predicted 12-month value);
    the next sync, queued now, fills it."""
    ctx, shop_id = context(request), request_shop_id(request)
    with ctx.sessions() as session:
        seg = get_segment(session, shop_id, path_id(request))
    audiences.create_value_audience(ctx, shop_id, seg.id)
    return JSONResponse(_panel(ctx, shop_id, seg.id), status_code=201)


def segment_file(request: Request) -> Response:
    """The segment as the hashed customer file (same as ``analyze --meta-dir``)."""
    ctx, shop_id = context(request), request_shop_id(request)
    with ctx.sessions() as session:
        seg = get_segment(session, shop_id, path_id(request))
        shop = get_shop(session, shop_id)
        policy = audiences.consent_policy(shop)
        people = [
            p
            for _cid, p in audiences.uploadable_people(session, shop, seg.id, seg.handle)
            if consent_allows(policy, p)
        ]
        handle = seg.handle

    def lines(items: list[Person]) -> Iterator[str]:
        yield from csv_text(items)

    return StreamingResponse(
        lines(people),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="meta-{handle}.csv"'},
    )


# --- Facebook Login callback -----------------------------------------------------------------


def _page(title: str, message: str, status: int = 200) -> HTMLResponse:
    # No script: the tab has no opener (it opens with noopener); the page notices the new
    # status by polling while the login is under way.
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status)


def login(request: Request) -> Response:
    """Where the Facebook Login tab starts: bind the login to this browser, then go to the
    dialog. The cookie is first-party (this tab is Goldpan's, not the admin's iframe) and
    ``SameSite=Lax``, so it comes back with Facebook's redirect to :func:`callback`."""
    ctx = context(request)
    state = request.query_params.get("state") or ""
    browser = request.cookies.get(LOGIN_COOKIE) or ""
    if not _COOKIE_VALUE.fullmatch(browser):
        browser = secrets.token_urlsafe(32)  # kept when present: two logins in two tabs
    if not state or not bind_login(ctx, state, browser):
        return _page(
            "Meta connection failed",
            "This login link was already used or has expired; connect again from Goldpan.",
            400,
        )
    response = RedirectResponse(graph.login_url(ctx.settings, redirect_uri(ctx), state), 302)
    response.set_cookie(
        LOGIN_COOKIE,
        browser,
        max_age=int(LOGIN_TTL.total_seconds()),
        path="/meta",
        secure=ctx.settings.app_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


def callback(request: Request) -> Response:
    """Facebook Login returns here: consume the login this browser started, exchange the code,
    store the token and say whose Facebook account it is."""
    ctx = context(request)
    q = request.query_params
    state = q.get("state") or ""
    shop_id = finish_login(ctx, state, request.cookies.get(LOGIN_COOKIE))
    if shop_id is None:
        return _page(
            "Meta connection failed",
            "This login was not started in this browser, was already used or has expired. "
            "Connect again from Goldpan.",
            400,
        )
    if q.get("error"):
        return _page(
            "Meta connection cancelled",
            "Facebook Login was cancelled; connect again from Goldpan when you are ready.",
            400,
        )
    # Rebuild the callback URL from the configured address: behind a proxy the request URL
    # may not be the one registered with Meta.
    response_url = f"{redirect_uri(ctx)}?{request.url.query}"
    try:
        token = graph.exchange_code(ctx.settings, response_url, redirect_uri(ctx), state)
        name = _name(graph.GraphClient(ctx.settings, token.access_token).me())
    except AuthError:
        return _page("Meta connection failed", "This login link is invalid or expired.", 400)
    except MetaUnreachableError:
        # Meta is down, not the login wrong: a gateway error, and the merchant can retry.
        return _page(
            "Meta connection failed",
            "Meta could not be reached. Try connecting again from Goldpan in a few minutes.",
            502,
        )
    except MetaError as exc:
        return _page("Meta connection failed", str(exc), 400)
    _store_token(
        ctx, shop_id, token.access_token, token.expires_in, user_name=name, confirmed=False
    )
    return _page(
        f"Connected as {name}" if name else "Meta connected",
        "Return to Goldpan to confirm that this is your Facebook account and to choose the ad "
        "account; you can close this tab.",
    )
