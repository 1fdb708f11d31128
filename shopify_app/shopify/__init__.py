"""Talking to Shopify: install and tokens (:mod:`.auth`), the cost-aware Admin GraphQL client
(:mod:`.client`) and the webhook intake (:mod:`.webhooks`).

Everything here is the edge between Goldpan and Shopify's documented contracts: HMACs, session
tokens, token exchange, query cost. The GraphQL documents it sends live in ``shopify_app/graphql/``.
"""
