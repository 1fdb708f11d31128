"""The ``shopify-app`` command: serve, worker, db, demo, sandbox, analyze, keygen, rotate-keys.

Each command parses its arguments here and hands off to the module that owns the work, imported
lazily so ``shopify-app analyze`` does not pay for the web stack and vice versa.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from shopify_app.errors import ConfigError, GoldpanError, InputError


def iso_date(value: str) -> dt.date:
    """argparse type for ``YYYY-MM-DD`` (shared by the sandbox CLI)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's command reference)."""
    parser = argparse.ArgumentParser(prog="shopify-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app (uvicorn)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    serve.add_argument("--host", default="127.0.0.1")

    worker = sub.add_parser("worker", help="run a background worker (huey consumer)")
    worker.add_argument("--threads", type=int, default=4)
    worker.add_argument(
        "--scheduler",
        action="store_true",
        help="also enqueue the periodic tasks (start exactly one worker per cluster with it)",
    )

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to head")

    demo = sub.add_parser("demo", help="run the whole app against the local sandbox")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)

    sandbox = sub.add_parser("sandbox", help="run or drive the Shopify/Meta stand-ins")
    sandbox.add_argument("args", nargs=argparse.REMAINDER, help="see `shopify-app sandbox --help`")

    analyze = sub.add_parser("analyze", help="segments and metrics from an orders-export CSV")
    analyze.add_argument("orders_csv", type=Path)
    analyze.add_argument("--as-of", type=iso_date, default=None, help="YYYY-MM-DD (default: today)")
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.add_argument("--meta-dir", type=Path, default=None, help="write Meta customer lists")

    sub.add_parser("keygen", help="print a new TOKEN_ENCRYPTION_KEY")
    sub.add_parser("rotate-keys", help="re-encrypt stored tokens under the first key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shopify-app`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GoldpanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "keygen":
        from shopify_app.crypto import generate_key

        print(generate_key())
        return 0
    if command == "analyze":
        from shopify_app.analysis import run_analyze

        return run_analyze(
            args.orders_csv, as_of=args.as_of, as_json=args.json, meta_dir=args.meta_dir
        )
    if command == "sandbox":
        from goldpan_sandbox.cli import main as sandbox_main

        return sandbox_main(args.args)
    if command == "demo":
        from goldpan_sandbox.demo import run_demo

        return run_demo(port=args.port, customers=args.customers, seed=args.seed)

    from shopify_app.settings import Settings

    settings = Settings.from_env()
    if command == "db":
        from shopify_app.db import upgrade

        settings.ensure_local_dirs()
        upgrade(settings.database_url)
        print("database is at the latest migration")
        return 0
    if command == "serve":
        from shopify_app.server.processes import serve

        port = args.port if args.port is not None else settings.port
        serve(settings.with_overrides(port=port), host=args.host)
        return 0
    if command == "worker":
        from shopify_app.server.processes import run_worker

        run_worker(settings, threads=args.threads, scheduler=args.scheduler)
        return 0
    if command == "rotate-keys":
        from shopify_app.shopify.auth import rotate_keys

        count = rotate_keys(settings)
        print(f"re-encrypted {count} stored secrets under the current key")
        return 0
    raise AssertionError(f"unhandled command {command!r}")


if __name__ == "__main__":
    raise SystemExit(main())
