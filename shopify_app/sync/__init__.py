"""The sync stage: keeping the app's copy of a store exact, from everything Shopify sends.

- :mod:`~shopify_app.sync.rows` — pure: bulk JSONL, GraphQL nodes and REST webhook payloads
  as row tuples;
- :mod:`~shopify_app.sync.ingest` — the idempotent upserts (``COPY`` on PostgreSQL) and the
  checkpointed ingest of a bulk result;
- :mod:`~shopify_app.sync.bulk` — the initial sync: bulk operations from start to ingest
  (tasks ``sync.initial``, ``sync.poll``);
- :mod:`~shopify_app.sync.reconcile` — repairing missed webhooks from paged queries
  (``sync.reconcile``, ``sync.reconcile_all``);
- :mod:`~shopify_app.sync.inbox` — handling the deliveries the webhook intake stored: claimed
  in groups, dispatched by topic (``webhooks.process``), app lifecycle topics;
- :mod:`~shopify_app.sync.webhooks` — applying ``orders/*`` and ``customers/*`` deliveries;
- :mod:`~shopify_app.sync.compliance` — ``customers/data_request``, ``customers/redact``,
  ``shop/redact``;
- :mod:`~shopify_app.sync.tombstones` — deleted customers stay deleted, whatever arrives late;
- :mod:`~shopify_app.sync.runs` — sync runs: what a sync covers, which are active, progress;
- :mod:`~shopify_app.sync.shop` — the shop's name, currency, time zone and plan;
- :mod:`~shopify_app.sync.scopes` — the notice for shops without ``read_all_orders``;
- :mod:`~shopify_app.sync.orders_csv` — Shopify's orders-export CSV, for ``analyze``.

The intake itself (HMAC, inbox row, queue) is :mod:`shopify_app.shopify.webhooks`.
"""
