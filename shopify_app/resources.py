"""Folders the package ships besides code: ``web/`` (the page) and ``migrations/`` (Alembic).

In a checkout they stay at the repository's top level, as the layout wants; the wheel carries
them inside the package (``setup.py`` copies them there), where :mod:`importlib.resources` finds
them. Both are used as directories (static files, Alembic's script folder), so an install must
keep the package on the file system, as pip does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_dir(name: str) -> Path:
    """The folder ``name`` inside the installed package, else the checkout's top-level one."""
    inside = files("shopify_app") / name
    if isinstance(inside, Path) and inside.is_dir():
        return inside
    return Path(__file__).resolve().parent.parent / name
