"""Where the shipped front end lives (``web/`` in a checkout)."""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
