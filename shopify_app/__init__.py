"""Goldpan: repeat-customer segments for Shopify, kept as customer tags and Meta audiences.

One subpackage per stage of the data flow, in order:

* :mod:`.shopify` — install and tokens, the Admin GraphQL client, the webhook intake;
* :mod:`.sync` — the store's customers, orders and products copied into :mod:`.db`;
* :mod:`.segments` — the pure segment engine, predictions and metrics, and the recompute;
* :mod:`.tagging` — memberships written back to Shopify as customer tags;
* :mod:`.meta` — memberships uploaded to Meta Custom Audiences;
* :mod:`.server` — the embedded page and its API.

The ground floor they share sits at the top: :mod:`.settings`, :mod:`.errors`, :mod:`.logs`,
:mod:`.crypto`, :mod:`.jobs` and the ``shopify-app`` command (:mod:`.cli`). The Shopify and Meta
stand-ins used by the demo and the tests are the separate package ``goldpan_sandbox``.
"""
