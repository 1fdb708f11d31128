"""The web process: the Starlette app factory, the embedded page, the page's JSON API and the one
map from Goldpan's errors to HTTP responses.

It reads the database and queues jobs; it does no sync or segment work in the request.
"""
