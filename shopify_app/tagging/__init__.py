"""The tagging stage: segment memberships written back to Shopify as customer tags, only the
difference, and only tags Goldpan wrote itself.

* :mod:`.tags` — Shopify's tag-name rules and Goldpan's naming rules (pure);
* :mod:`.diff` — the per-customer diff, its result, and the aliased batch documents (pure);
* :mod:`.state` — a shop's prefix, synced segments, current tags and bulk mutations in flight;
* :mod:`.ledger` — the tags Goldpan wrote, per customer: the only ones it may remove;
* :mod:`.usage` — the tags the merchant uses, which a new prefix or tag name must not be;
* :mod:`.writes` — small aliased writes and bulk mutations, claimed against concurrent writers;
* :mod:`.bulk` — bulk mutations finishing (webhook or polling) and their leftovers retried;
* :mod:`.changes` — renames, tag sync on/off, prefix changes, removal, native segments, preview;
* :mod:`.tasks` — the ``tags.*`` jobs.
"""
