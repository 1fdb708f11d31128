"""``shopify-app demo``: the whole app on loopback against the Shopify and Meta stand-ins.

Nothing to configure. :func:`start_demo`:

1. makes a work folder (a temporary one unless given) with a SQLite database and huey file,
   and settings as the Shopify CLI would pass them — a random API key and secret, a fresh
   ``TOKEN_ENCRYPTION_KEY``, ``SHOPIFY_BASE_URL`` at the Shopify sandbox, ``META_GRAPH_URL`` and
   ``META_DIALOG_URL`` at the Meta sandbox;
2. generates a linen shop (:mod:`goldpan_sandbox.generator`) and serves it from the Shopify
   sandbox, and serves the Meta sandbox with an ad account whose "Meta users" are derived from
   the store, so match counts mean something;
3. migrates the database and starts the app with its background worker inside the process, and
   with :class:`SandboxAdmin` standing in for the Shopify admin around the page;
4. installs the app exactly as production does: the sandbox mints an App Bridge session token,
   the app's page is loaded with ``id_token=...``, which runs token exchange, records the shop
   and starts the initial sync (bulk queries, the ``bulk_operations/finish`` webhook, ingest,
   segments, tags);
5. waits for the initial sync and hands back the page URL. The page, in demo mode (``demo=1``),
   mints its session tokens from the sandbox instead of App Bridge.

:func:`run_demo` prints the URL and the live-store commands and runs until interrupted.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from goldpan_sandbox.generator import generate_store
from goldpan_sandbox.server import RunningServer, free_port, start_server
from goldpan_sandbox.shopify import ShopifySandbox
from shopify_app.server.pages import ShopifyAdmin
from shopify_app.settings import Settings

log = logging.getLogger(__name__)

DEMO_SHOP = "linen-lane.myshopify.com"
AD_ACCOUNT = "act_1029384756"


class DemoError(Exception):
    """The demo could not start (a port in use, the install or the initial sync failed).

    ``exit_code`` is 2 when the user can fix it with other options (a port in use), else 1.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _check_port(port: int, what: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} ({what}) is in use; choose others with --port N "
                "(the demo uses N, N+1 and N+2)",
                exit_code=2,
            ) from None


@dataclass
class Demo:
    """A running demo. ``stop()`` shuts everything down (and removes a temporary work folder)."""

    page_url: str
    app_url: str
    sandbox_url: str
    shop_domain: str
    shopify: ShopifySandbox
    meta: Any  # MetaSandbox, or None when the Meta stand-in is not available
    meta_url: str | None
    ctx: Any  # shopify_app.jobs.Context
    shop_id: int | None
    workdir: Path
    settings: Any  # shopify_app.settings.Settings
    sync: dict[str, Any] = field(default_factory=dict)
    _stoppers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop the app, its worker and both sandboxes; later stoppers run even if one fails."""
        _stop_all(self._stoppers)

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_settings(
    *,
    workdir: Path,
    app_url: str,
    shop_base: str,
    meta_url: str | None,
    database_url: str | None = None,
    log_level: str = "WARNING",
) -> Settings:
    """Settings for the demo, built the way ``Settings.from_env`` reads the Shopify CLI's."""
    from shopify_app.crypto import generate_key

    env = {
        "SHOPIFY_API_KEY": f"demo-{secrets.token_hex(8)}",
        "SHOPIFY_API_SECRET": secrets.token_hex(24),
        "TOKEN_ENCRYPTION_KEY": generate_key(),
        "SHOPIFY_APP_URL": app_url,
        "PORT": app_url.rsplit(":", 1)[-1],
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'goldpan.sqlite3'}",
        "HUEY_PATH": str(workdir / "huey.sqlite3"),
        "SHOPIFY_BASE_URL": shop_base,
        "INLINE_WORKER": "1",
        "LOG_JSON": "false",
        "LOG_LEVEL": log_level,
    }
    if meta_url is not None:
        env |= {
            "META_APP_ID": str(1_000_000_000_000 + secrets.randbelow(10**12)),
            "META_APP_SECRET": secrets.token_hex(16),
            "META_GRAPH_URL": meta_url,
            "META_DIALOG_URL": meta_url,
        }
    return Settings.from_env(env)


def page_url(app_url: str, shop: str, host: str) -> str:
    """The embedded page as the admin opens it, with the demo shim switched on."""
    return app_url + _page_path(shop, host, locale="en")


def _page_path(shop: str, host: str | None, **extra: str) -> str:
    query = {"shop": shop, **({"host": host} if host else {}), "embedded": "1", **extra}
    return "/?" + urllib.parse.urlencode({**query, "demo": "1"})


def _js(text: str) -> str:
    """``text`` as a JavaScript string literal that cannot close the ``<script>`` around it."""
    return json.dumps(text).replace("<", "\\u003c")


@dataclass(frozen=True)
class SandboxAdmin(ShopifyAdmin):
    """The demo's stand-in for the Shopify admin around the page (``create_app(admin=...)``).

    There is no App Bridge: the bounce page and the page's shim (``web/demo-shim.js``) get
    session tokens from the Shopify sandbox at ``sandbox_url``, which signs them with the app's
    secret as Shopify would; and "the app inside the admin" is the page itself, shim on.
    """

    sandbox_url: str

    def token_script(self, settings: Settings, shop: str | None, reload_to: str) -> str:
        if shop is None:
            return super().token_script(settings, shop, reload_to)
        token_url = f"{self.sandbox_url}/shops/{shop}/admin/session-token"
        return (
            "<script>fetch(" + _js(token_url) + ").then(r => r.json()).then(b => {"
            "const u = new URL(" + _js(reload_to) + ", location.origin);"
            "u.searchParams.set('id_token', b.token);"
            "u.searchParams.set('embedded', '1');"
            # The view (#/segments) survives the bounce: a redirect keeps it, this reload too.
            "u.hash = location.hash;"
            "location.replace(u.toString());});</script>"
        )

    def app_url(self, settings: Settings, shop: str, host: str | None) -> str:
        return _page_path(shop, host)

    def page_values(self, settings: Settings, shop: str) -> Mapping[str, str]:
        return {"SANDBOX_URL": self.sandbox_url}


def _meta_sandbox_class() -> Any:
    try:
        from goldpan_sandbox.meta import MetaSandbox
    except ImportError:  # the Meta stand-in is optional for the demo
        return None
    return MetaSandbox


def start_demo(
    *,
    port: int = 0,
    customers: int = 300,
    seed: int = 7,
    database_url: str | None = None,
    workdir: Path | str | None = None,
    shop: str = DEMO_SHOP,
    sandbox_port: int | None = None,
    meta_port: int | None = None,
    as_of: Any = None,
    sync_timeout: float | None = None,
    log_level: str = "WARNING",
    progress: Callable[[str], None] | None = None,
) -> Demo:
    """Start everything, install the app on a generated shop, wait for the initial sync.

    ``port`` 0 picks free ports; a given ``port`` puts the Shopify sandbox on ``port + 1`` and
    the Meta sandbox on ``port + 2`` (so ``shopify-app sandbox ...`` finds the demo's sandbox on
    its default ``127.0.0.1:8001``). ``progress`` receives one line per step.
    """
    say = progress or (lambda message: log.info("%s", message))
    if customers < 0:
        raise DemoError("--customers must not be negative", exit_code=2)
    app_port = port or free_port()
    shopify_port = sandbox_port or (port + 1 if port else free_port())
    meta_port = meta_port or (port + 2 if port else free_port())
    for number, what in ((app_port, "app"), (shopify_port, "Shopify sandbox"), (meta_port, "Meta")):
        _check_port(number, what)
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="goldpan-demo-")) if workdir is None else Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    stoppers: list[Callable[[], None]] = []
    if temporary:
        stoppers.append(lambda: shutil.rmtree(folder, ignore_errors=True))

    try:
        app_url = f"http://127.0.0.1:{app_port}"

        say(f"Generating {customers} customers for {shop} (seed {seed})")
        started = time.monotonic()
        store = generate_store(shop, customers=customers, seed=seed, as_of=as_of)
        say(
            f"  {len(store.customers)} customers, {len(store.orders)} orders "
            f"in {time.monotonic() - started:.1f}s"
        )

        # Settings need the sandboxes' URLs and the sandboxes need the app's key: pick the keys
        # first by building settings with the (known) ports, then start the sandboxes with them.
        meta_cls = _meta_sandbox_class()
        settings = demo_settings(
            workdir=folder,
            app_url=app_url,
            shop_base=f"http://127.0.0.1:{shopify_port}/shops/{{shop}}",
            meta_url=f"http://127.0.0.1:{meta_port}" if meta_cls is not None else None,
            database_url=database_url,
            log_level=log_level,
        )

        shopify = ShopifySandbox(
            settings.api_key,
            settings.api_secret,
            app_url=app_url,
            workdir=folder / "bulk",
            seed=seed,
        )
        shopify.add_shop(shop, store)
        try:
            shopify.start(port=shopify_port)
        except (OSError, RuntimeError) as exc:
            raise DemoError(
                f"cannot serve the Shopify sandbox on port {shopify_port}: {exc}"
            ) from None
        stoppers.append(shopify.close)
        sandbox_url = shopify.base_url

        meta = None
        meta_url = None
        if meta_cls is not None:
            meta = meta_cls(settings.meta_app_id, settings.meta_app_secret, seed=seed)
            meta.add_ad_account(AD_ACCOUNT, "Linen Lane ads")
            matched = meta.seed_store(store, seed=seed)
            try:
                meta_server: RunningServer = start_server(meta.app(), port=meta_port)
            except (OSError, RuntimeError) as exc:
                raise DemoError(
                    f"cannot serve the Meta sandbox on port {meta_port}: {exc}"
                ) from None
            stoppers.append(meta_server.stop)
            meta_url = meta_server.url
            say(f"Meta sandbox at {meta_url} ({matched} Meta users match the store's customers)")
        say(f"Shopify sandbox at {sandbox_url}")

        from shopify_app import db
        from shopify_app.server.app import build_context, create_app

        say("Migrating the database")
        settings.ensure_local_dirs()
        try:
            db.upgrade(settings.database_url)
        except Exception as exc:
            raise DemoError(f"database migration failed: {exc}") from exc
        ctx = build_context(settings)
        stoppers.append(ctx.engine.dispose)
        app = create_app(ctx, start_worker=True, admin=SandboxAdmin(sandbox_url))
        try:
            app_server = start_server(app, port=app_port)
        except (OSError, RuntimeError) as exc:
            raise DemoError(f"cannot serve the app on port {app_port}: {exc}") from None
        stoppers.append(app_server.stop)
        say(f"Goldpan at {app_url}")

        from goldpan_sandbox.oauth import host_param

        host = host_param(shop)
        demo = Demo(
            page_url=page_url(app_url, shop, host),
            app_url=app_url,
            sandbox_url=sandbox_url,
            shop_domain=shop,
            shopify=shopify,
            meta=meta,
            meta_url=meta_url,
            ctx=ctx,
            shop_id=None,
            workdir=folder,
            settings=settings,
            _stoppers=stoppers,
        )
        say("Installing Goldpan on the shop (session token → token exchange)")
        demo.shop_id = install(demo, host)
        say("Initial sync: bulk queries, webhooks, ingest, segments")
        timeout = sync_timeout if sync_timeout is not None else 120 + customers / 500
        demo.sync = wait_for_initial_sync(ctx, demo.shop_id, timeout=timeout)
        if not wait_for_segments(ctx, demo.shop_id, timeout=timeout):
            log.warning("segments were not computed within %.0fs; the page will fill in", timeout)
        return demo
    except BaseException:
        _stop_all(stoppers)
        raise


def _stop_all(stoppers: list[Callable[[], None]]) -> None:
    while stoppers:
        try:
            stoppers.pop()()
        except Exception:  # shutting down: log and carry on with the rest
            log.exception("demo shutdown step failed")


def install(demo: Demo, host: str) -> int:
    """Open the app's page with a fresh ID token, as the admin does on first launch."""
    from sqlalchemy import select

    from shopify_app.db.models import Shop

    id_token = demo.shopify.oauth.mint_session_token(demo.shop_domain)
    query = urllib.parse.urlencode(
        {
            "shop": demo.shop_domain,
            "host": host,
            "embedded": "1",
            "id_token": id_token,
            "locale": "en",
        }
    )
    try:
        response = requests.get(f"{demo.app_url}/?{query}", timeout=60, allow_redirects=False)
    except requests.RequestException as exc:
        raise DemoError(f"the app did not answer its page load: {exc}") from None
    if response.status_code != 200:
        raise DemoError(
            f"installing failed: the page answered HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )
    with demo.ctx.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == demo.shop_domain))
    if shop_id is None:
        raise DemoError("the page loaded but the shop was not installed")
    return int(shop_id)


def wait_for_initial_sync(ctx: Any, shop_id: int, *, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the initial sync's runs until every resource is done; returns their progress."""
    from shopify_app.states import SyncRunStatus
    from shopify_app.sync import runs

    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = runs.progress(ctx, shop_id)
        if len(state) == len(runs.RESOURCES) and all(
            run["status"] in runs.FINISHED for run in state.values()
        ):
            failed = {
                name: run["error"]
                for name, run in state.items()
                if run["status"] != SyncRunStatus.DONE
            }
            if failed:
                raise DemoError(f"the initial sync failed: {failed}")
            return state
        time.sleep(0.25)
    raise DemoError(f"the initial sync did not finish within {timeout:.0f}s: {state}")


def wait_for_segments(ctx: Any, shop_id: int, *, timeout: float = 60.0) -> bool:
    """Wait until the segments engine has computed the shop's segments after the sync."""
    from sqlalchemy import func, select

    from shopify_app.db.models import Segment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ctx.sessions() as session:
            computed = session.scalar(
                select(func.count())
                .select_from(Segment)
                .where(Segment.shop_id == shop_id, Segment.computed_at.is_not(None))
            )
        if computed:
            return True
        time.sleep(0.25)
    return False


def stored_counts(demo: Demo) -> dict[str, int]:
    """How many customers, orders and segments the app holds for the demo shop."""
    from sqlalchemy import func, select

    from shopify_app.db.models import Customer, Order, Segment

    counts: dict[str, int] = {}
    with demo.ctx.sessions() as session:
        for label, model in (("customers", Customer), ("orders", Order), ("segments", Segment)):
            counts[label] = int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.shop_id == demo.shop_id)
                )
                or 0
            )
    return counts


def run_demo(port: int = 8000, customers: int = 2000, seed: int = 7) -> int:
    """``shopify-app demo``: start, print the URL, run until Ctrl-C. Returns the exit code."""
    from goldpan_sandbox.cli import wait_until_interrupted

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def say(message: str) -> None:
        print(message, flush=True)

    started = time.monotonic()
    try:
        demo = start_demo(port=port, customers=customers, seed=seed, progress=say)
    except DemoError as exc:
        print(f"error: {exc}", flush=True)
        return exc.exit_code
    counts = ", ".join(f"{n} {kind}" for kind, n in stored_counts(demo).items())
    sandbox_flag = "" if demo.sandbox_url.endswith(":8001") else f" --sandbox {demo.sandbox_url}"
    print(
        f"\nReady in {time.monotonic() - started:.0f}s: {counts}.\n\n"
        f"Open Goldpan as the merchant sees it:\n\n    {demo.page_url}\n\n"
        "Change the store and watch the segments follow (switch on tag sync for a segment on\n"
        "the page and its tags follow too), e.g. a hotel buying napkins by the case:\n"
        f"    shopify-app sandbox order{sandbox_flag} --shop {demo.shop_domain} "
        "--customer buyer@harborviewhotel.com --product linen-dinner-napkins --quantity 48\n"
        f"    shopify-app sandbox customers{sandbox_flag} --shop {demo.shop_domain}\n"
        f"    shopify-app sandbox webhooks{sandbox_flag} --last 5\n\n"
        f"Work folder: {demo.workdir}\nPress Ctrl-C to stop.",
        flush=True,
    )
    try:
        wait_until_interrupted()
    finally:
        print("Stopping…", flush=True)
        demo.stop()
    return 0
