"""The sync stage: keeping the app's copy of a store exact, and the inputs that feed it.

- :mod:`~shopify_app.sync.rows` — pure: bulk JSONL, GraphQL nodes and REST webhook payloads
  as row tuples;
- :mod:`~shopify_app.sync.ingest` — the idempotent upserts (``COPY`` on PostgreSQL) and the
  checkpointed ingest of a bulk result;
- :mod:`~shopify_app.sync.bulk` — the initial sync: bulk operations from start to ingest
  (tasks ``sync.initial``, ``sync.poll``);
- :mod:`~shopify_app.sync.reconcile` — repairing missed webhooks from paged queries
  (``sync.reconcile``, ``sync.reconcile_all``);
- :mod:`~shopify_app.sync.webhooks` — applying ``orders/*`` and ``customers/*`` deliveries;
- :mod:`~shopify_app.sync.tombstones` — deleted customers stay deleted, whatever arrives late;
- :mod:`~shopify_app.sync.runs` — sync runs: what a sync covers, which are active, progress;
- :mod:`~shopify_app.sync.scopes` — the notice for shops without ``read_all_orders``;
- :mod:`~shopify_app.sync.orders_csv` — Shopify's orders-export CSV, for ``analyze``.
"""
