"""Where the shipped front end lives (``web/`` in a checkout, inside the package in a wheel)."""

from __future__ import annotations

from shopify_app.resources import resource_dir

WEB_DIR = resource_dir("web")
