"""Logging: JSON lines (or plain text) on stderr, tagged with the shop and job, secrets redacted.

``bind(shop=..., job=...)`` sets context variables that every record logged inside it carries,
so one grep finds everything that happened for a store.

:func:`redact` is the one place that knows what a credential looks like: Shopify and Meta
tokens, ``Bearer`` headers, ``client_secret`` / ``access_token`` / ``appsecret_proof`` /
``fb_exchange_token`` / ``code`` values in query strings and bodies, and the whole query string
of a signed download URL (a bulk operation's result link *is* the credential until it expires).
Everything Goldpan persists or logs goes through it: the error text stored in the database
(:func:`shopify_app.errors.stored_error`) and every log record. Records are redacted when they
are created (a log-record factory installed on import), so no handler ever sees a secret —
pytest's ``caplog``, uvicorn's and huey's included, not only Goldpan's own handler; that handler's
:class:`RedactingFilter` also covers the ``extra=`` fields, which are attached after creation.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings imports errors, which imports this module
    from shopify_app.settings import Settings

shop_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("goldpan_shop", default=None)
job_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("goldpan_job", default=None)

REDACTED = "[redacted]"

# A query string inside free text ends at whitespace, a quote, a bracket or a fragment; one of
# its values also ends at the next ``&``.
_QUERY_CHARS = r"[^\s\"'<>()\[\]{}#]"
_VALUE_CHARS = r"[^\s\"'<>()\[\]{}#&]"
_SIGNING = (
    r"signature|x-goog-signature|x-goog-credential|googleaccessid|"
    r"x-amz-signature|x-amz-credential|sig"
)
# A signed URL's query string (GCS V2/V4, S3, Azure SAS) lets whoever holds it download the file:
# all of it goes, not just the signature.
_SIGNED_QUERY = re.compile(rf"(?i)\?(?={_QUERY_CHARS}*?(?<![\w-])(?:{_SIGNING})=){_QUERY_CHARS}+")
_TOKENS = (
    re.compile(r"\bshp(?:at|rt|ss|ca|pa|ua)_[A-Za-z0-9_-]+"),  # Shopify tokens and secrets
    re.compile(r"\bEAA[A-Za-z0-9]{20,}"),  # Meta user, page and system-user tokens
)
_BEARER = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]+")
# Names unambiguous enough to redact as ``name=value``, ``name: value`` or ``"name": "value"``.
_CREDENTIAL = re.compile(
    r"(?i)([\"']?(?:client_secret|access_token|refresh_token|subject_token|id_token|"
    r"api_secret|appsecret_proof|fb_exchange_token|password)[\"']?\s*[=:]\s*[\"']?)"
    r"([^\"'&\s,}]+)"
)
# Short names that are credentials only as URL or form parameters: ``code=`` is an OAuth grant,
# ``"code": 190`` in a Meta error is not.
_PARAMETER = re.compile(rf"(?i)((?<![\w-])(?:code|{_SIGNING})=){_VALUE_CHARS}+")

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[redacted]``."""
    text = _SIGNED_QUERY.sub(f"?{REDACTED}", text)
    for pattern in _TOKENS:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _PARAMETER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def _redact_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(redact(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, Mapping):
        return {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
    return args


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place: message, arguments, string extras and traceback.

    The arguments keep their shape when redacting them one by one is enough (uvicorn's access
    formatter unpacks them); otherwise the message is formatted and redacted as a whole.
    """
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not lose the record
        message, record.args = str(record.msg), None
    clean = redact(message)
    if clean != message:
        msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
        args = _redact_args(record.args)
        try:
            separately = str(msg) % args if args else str(msg)
        except Exception:
            separately = None
        if separately == clean:
            record.msg, record.args = msg, args
        else:
            record.msg, record.args = clean, None
    for key, value in list(vars(record).items()):
        if key not in _STANDARD and isinstance(value, str):
            setattr(record, key, redact(value))
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """Redacts each record again at the handler, now with its ``extra=`` fields attached."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_record_redaction() -> None:
    """Make every log record of the process redacted at creation (idempotent)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "goldpan_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        redact_record(record)
        return record

    factory.goldpan_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class ContextFilter(logging.Filter):
    """Adds ``shop`` and ``job`` from the context variables unless the record has its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "shop", None) is None:
            record.shop = shop_var.get()
        if getattr(record, "job", None) is None:
            record.job = job_var.get()
        return True


class TaskLinesFilter(logging.Filter):
    """Drops huey's two INFO lines per task ("Executing …", "… executed in …") unless the
    root logger is at DEBUG.

    At 50 webhooks a second they were two thirds of the worker's log lines and a few percent
    of its CPU; each delivery's outcome has its own line, and huey's retries and failures are
    other lines, kept.
    """

    LINES = frozenset({"Executing %s", "%s executed in %0.3fs"})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.LINES or logging.getLogger().isEnabledFor(logging.DEBUG)


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
    huey = logging.getLogger("huey")
    if not any(isinstance(f, TaskLinesFilter) for f in huey.filters):
        huey.addFilter(TaskLinesFilter())
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


# On import, not in configure_logging: tests, the CLI and library code log without it.
install_record_redaction()
