"""Meta Custom Audiences: identifier normalisation (pure), the Graph API client, audience sync.

``identifiers`` is pure and shared with ``shopify-app analyze --meta-dir``; ``graph`` talks to
the Graph API; ``audiences`` declares the sync tasks; ``web`` is the page's JSON endpoints.
"""
