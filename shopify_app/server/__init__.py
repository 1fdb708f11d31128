"""The web process: the embedded page, its JSON API, install and health endpoints.

It reads the database and queues jobs; it does no sync or segment work in the request.

* :mod:`.app` — ``create_app``: the one routes table, middleware, exception handlers;
* :mod:`.middleware` — the session-token guard of ``/api`` and the frame-ancestors policy;
* :mod:`.errors` — the one map from Goldpan's errors to HTTP responses;
* :mod:`.pages` — the embedded page and the session-token bounce page;
* :mod:`.oauth` — the authorization-code grant (``/auth``, ``/auth/callback``);
* :mod:`.health` — ``/healthz``, ``/readyz`` and the Prometheus ``/metrics``;
* :mod:`.api` — one module per view of the page, plus the request plumbing they share;
* :mod:`.processes` — ``shopify-app serve`` and ``shopify-app worker``.
"""

from __future__ import annotations

from starlette.requests import Request

from shopify_app.jobs import Context


def context(request: Request) -> Context:
    """The app's :class:`Context` (``create_app`` keeps it on ``app.state``)."""
    ctx: Context = request.app.state.ctx
    return ctx
