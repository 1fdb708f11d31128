"""Local stand-ins for Shopify (OAuth, Admin GraphQL, webhooks) and Meta (Marketing API).

They run on loopback for the demo and the tests and behave as the real services are documented
to: same endpoints, same error shapes, same limits. They are held to Shopify's published schema
and Meta's published rules, never bent to suit the app.
"""
