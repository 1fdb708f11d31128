"""The ``shopify-app`` command: serve, worker, db, analyze, keygen, rotate-keys, and the commands
other installed packages contribute (``demo`` and ``sandbox`` come from ``goldpan_sandbox``).

Each command parses its arguments here and hands off to the module that owns the work, imported
lazily so ``shopify-app analyze`` does not pay for the web stack and vice versa. Contributed
commands are found through the ``shopify_app.commands`` entry-point group, so the app never
imports the package that provides them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from shopify_app.errors import ConfigError, GoldpanError, InputError


def iso_date(value: str) -> dt.date:
    """argparse type for ``YYYY-MM-DD`` (shared by the sandbox CLI)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


COMMANDS_GROUP = "shopify_app.commands"
"""The entry-point group through which installed packages add ``shopify-app`` commands."""


@dataclass(frozen=True)
class Command:
    """A contributed command: the object a ``shopify_app.commands`` entry point names.

    ``run`` gets the arguments after the command name and parses them itself; it returns the
    exit code.
    """

    help: str
    run: Callable[[list[str]], int]


def contributed_commands() -> dict[str, EntryPoint]:
    """The installed packages' commands by name (metadata only: nothing is imported)."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def load_command(entry_point: EntryPoint) -> Command:
    """Import a contributed command; :class:`ConfigError` says what is missing when it can't."""
    try:
        command = entry_point.load()
    except ImportError as exc:
        raise ConfigError(
            f"`shopify-app {entry_point.name}` could not be loaded from {entry_point.value} "
            f"({exc}); install the package that provides it with its extras"
        ) from exc
    if not isinstance(command, Command):
        raise ConfigError(f"{entry_point.value} is not a shopify_app.cli.Command")
    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's command reference).

    Contributed commands are listed with their help; their options are theirs to parse.
    """
    return _parser(contributed_commands(), describe=True)[0]


def _parser(
    contributed: dict[str, EntryPoint], *, describe: bool
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    # describe: import the contributed commands for their help line. Only the command list
    # needs it; running a built-in command must not import the packages that contribute others.
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

    analyze = sub.add_parser("analyze", help="segments and metrics from an orders-export CSV")
    analyze.add_argument("orders_csv", type=Path)
    analyze.add_argument("--as-of", type=iso_date, default=None, help="YYYY-MM-DD (default: today)")
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.add_argument("--meta-dir", type=Path, default=None, help="write Meta customer lists")
    analyze.add_argument(
        "--codes",
        type=lambda text: text.split(","),
        default=None,
        help="win-back codes (COMEBACK10-ABCD,...): print their results per lapsed tier",
    )

    sub.add_parser("keygen", help="print a new TOKEN_ENCRYPTION_KEY")
    sub.add_parser("rotate-keys", help="re-encrypt stored tokens under the first key")

    for name, entry_point in sorted(contributed.items()):
        if name in sub.choices:
            continue  # a package cannot replace a built-in command
        summary = None
        if describe:
            try:
                summary = load_command(entry_point).help
            except ConfigError as exc:
                summary = f"unavailable: {exc}"
        extra = sub.add_parser(name, help=summary, add_help=False)
        extra.add_argument("args", nargs=argparse.REMAINDER, help=f"see `shopify-app {name} -h`")
        extra.set_defaults(contributed=entry_point)
    return parser, sub.choices


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shopify-app`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = not argv or argv[0].startswith("-")
    parser, commands = _parser(contributed_commands(), describe=listing)
    try:
        if not listing:
            command = commands.get(argv[0])
            if command is None:
                print(
                    f"shopify-app: unknown command {argv[0]!r} (installed: "
                    f"{', '.join(commands)}). Further commands come from packages "
                    f"that register them in the {COMMANDS_GROUP!r} entry-point group; no "
                    f"installed package provides {argv[0]!r}.",
                    file=sys.stderr,
                )
                return 2
            entry_point = command.get_default("contributed")
            if entry_point is not None:
                # Handed over before argparse, which would take a leading --option for its own.
                return load_command(entry_point).run(argv[1:])
        return _dispatch(parser.parse_args(argv))
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
            args.orders_csv,
            as_of=args.as_of,
            as_json=args.json,
            meta_dir=args.meta_dir,
            codes=args.codes,
        )
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
