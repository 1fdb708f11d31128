"""The JSON API behind the embedded page: one module per view, paths relative to ``/api``.

:mod:`shopify_app.server.app` routes ``/api/...`` here behind the session-token middleware,
which sets ``request.state.shop_id`` (and ``shop_domain``, ``user_id``). Every query is filtered
by that shop id: an id belonging to another shop answers 404, exactly as an id that does not
exist, so nothing leaks across shops.

Endpoints are sync functions (Starlette runs them in its threadpool) using SQLAlchemy sessions
from the app's context; :mod:`.request` holds what they all read from a request.

* :mod:`.home` — sync status, notices, the retention headline;
* :mod:`.segments` — the list, one segment, its members (and CSV), tag sync, native segments;
* :mod:`.customers` — one customer's orders, segments with reasons, and predictions;
* :mod:`.analytics` — the retention metrics the last full recompute stored (cohorts, time
  between orders, RFM, repeat trend, products, the backtest), or for a segment and months;
* :mod:`.settings` — the shop's segment settings, removing every Goldpan tag;
* :mod:`.audit` — the audit log, customers' data requests, the product picker;
* :mod:`.meta` — the Meta connection, audiences, and the Facebook Login callback.

The two hot paths — the segments list and a 50-member page — read precomputed columns
(``Segment.member_count``, ``SegmentHistory``) and walk the ``memberships`` primary key
(``segment_id, customer_id``) as a keyset, so a 300,000-customer shop answers as fast as a
small one. Analytics and the headline read the one row the full recompute stores
(``ShopMetrics``); the segments' total spend is cached per shop until they are recomputed
(:mod:`.cache`).
"""
