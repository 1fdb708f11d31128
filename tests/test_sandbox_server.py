from __future__ import annotations

import requests
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from goldpan_sandbox.server import start_server


def test_server_serves_on_loopback_and_stops() -> None:
    app = Starlette(routes=[Route("/ping", lambda request: PlainTextResponse("pong"))])
    server = start_server(app)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{server.url}/ping", timeout=5).text == "pong"
    finally:
        server.stop()
    try:
        requests.get(f"{server.url}/ping", timeout=1)
        raise AssertionError("server still answering after stop()")
    except requests.ConnectionError:
        pass
