"""Logging: JSON lines (or plain text) on stderr, tagged with the shop and job, secrets redacted.

``bind(shop=..., job=...)`` sets context variables that every record logged inside it carries,
so one grep finds everything that happened for a store. :class:`RedactingFilter` runs on the
handler and rewrites anything that looks like a credential — Shopify access/refresh tokens and
secrets, ``Bearer`` headers, ``client_secret`` / ``access_token`` values — before it is written,
whatever module logged it (requests' and huey's included).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shopify_app.settings import Settings

shop_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("goldpan_shop", default=None)
job_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("goldpan_job", default=None)

REDACTED = "[redacted]"

_SECRET_PATTERNS = (
    re.compile(r"\bshp(?:at|rt|ss|ca|pa|ua)_[A-Za-z0-9_-]+"),
    re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)([\"']?(?:client_secret|access_token|refresh_token|subject_token|id_token|"
        r"api_secret|appsecret_proof|password)[\"']?\s*[=:]\s*[\"']?)([^\"'&\s,}]+)"
    ),
)

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[redacted]``."""
    text = _SECRET_PATTERNS[0].sub(REDACTED, text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrites the message, its arguments and string extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ContextFilter(logging.Filter):
    """Adds ``shop`` and ``job`` from the context variables unless the record has its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "shop", None) is None:
            record.shop = shop_var.get()
        if getattr(record, "job", None) is None:
            record.job = job_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts level logger msg shop job`` plus any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


_PLAIN = "%(asctime)s %(levelname)s %(name)s [shop=%(shop)s job=%(job)s] %(message)s"


def make_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    """A stream handler with the context and redaction filters and the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(_PLAIN))
    handler.set_name("goldpan")
    return handler


def configure_logging(settings: Settings) -> None:
    """Send every logger's records through one Goldpan handler (idempotent)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "goldpan":
            root.removeHandler(existing)
    root.addHandler(make_handler(settings))
    root.setLevel(settings.log_level)
    # uvicorn's own handlers would print a second, unredacted copy.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "huey"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Alembic narrates every plugin it loads at INFO on each start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@contextmanager
def bind(*, shop: str | None = None, job: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block with ``shop`` and/or ``job``."""
    tokens = []
    if shop is not None:
        tokens.append((shop_var, shop_var.set(shop)))
    if job is not None:
        tokens.append((job_var, job_var.set(job)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
