"""``customers/redact`` leaves nothing about the person in any table.

The whole path runs for real: the Shopify sandbox delivers signed webhooks to ``create_app`` on
loopback (customers, orders, a data request, the tags Goldpan writes coming back as
``customers/update``), the Meta stand-in receives the person in a Custom Audience, and the
queued jobs run from the queue. Then the person asks to be forgotten, with one delivery about
them still waiting in the inbox, and every column of every table of a fresh database is read
back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import Integer, MetaData, select, update

from goldpan_sandbox.meta import MetaSandbox
from goldpan_sandbox.server import RunningServer, start_server
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Address, Customer, LineItem, Order, Product, Store, Variant
from shopify_app import db
from shopify_app.crypto import TokenCipher
from shopify_app.db.models import (
    Membership,
    MetaAudience,
    MetaConnection,
    Segment,
    Shop,
    WebhookEvent,
)
from shopify_app.db.models import Order as OrderRow
from shopify_app.jobs import Context, Runtime
from shopify_app.server.app import create_app
from shopify_app.settings import Settings
from shopify_app.sync import inbox
from tests.conftest import TEST_API_KEY, TEST_API_SECRET, fresh_database
from tests.fixtures_meta import AD_ACCOUNT, META_APP_ID, META_APP_SECRET

PERSON_ID = 8_888_888_000_001
CONTROL_ID = 8_888_888_000_002
# Strings that occur nowhere else, so finding one means the person was kept.
PERSON = {
    "first name": "Zéphyrine",
    "last name": "Quillfeather",
    "email": "zephyrine.quillfeather@example.org",
    "phone": "+33612987654",
    "company": "Quillfeather Linens",
    "address": "17 Rue Quillfeather",
    "city": "Quillborough",
    "zip": "QX9 7ZZ",
}
CONTROL_EMAIL = "bartholomew.inkwell@example.org"


def _store(domain: str) -> Store:
    store = Store(domain, name="Quill & Co")
    t0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    napkin = Product(store.next_id(), "Linen napkin", "linen-napkin", "Napkins", "Goldpan", t0, t0)
    napkin.variants.append(Variant(store.next_id(), napkin.id, "White", "NAP-W", Decimal("8.50")))
    store.add_product(napkin)
    return store


def _person(store: Store) -> Customer:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    return Customer(
        id=PERSON_ID,
        first_name=PERSON["first name"],
        last_name=PERSON["last name"],
        email=PERSON["email"],
        phone=PERSON["phone"],
        created_at=now,
        updated_at=now,
        email_marketing_state="SUBSCRIBED",
        default_address=Address(
            first_name=PERSON["first name"],
            last_name=PERSON["last name"],
            company=PERSON["company"],
            address1=PERSON["address"],
            city=PERSON["city"],
            country_code="FR",
            zip=PERSON["zip"],
            phone=PERSON["phone"],
        ),
    )


def _order(store: Store, customer: Customer, days_ago: int) -> Order:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    variant = next(iter(store.products.values())).variants[0]
    return Order(
        id=store.next_id(),
        name=store.next_order_name(),
        customer_id=customer.id,
        email=customer.email,
        created_at=when,
        processed_at=when,
        updated_at=when,
        currency="USD",
        line_items=[
            LineItem(
                store.next_id(), variant.product_id, variant.id, "NAP-W", "Napkin", 3, variant.price
            )
        ],
        billing_address=customer.default_address,
    )


@dataclass
class World:
    ctx: Context
    sandbox: ShopifySandbox
    store: Store
    meta: MetaSandbox
    app: RunningServer
    shop_id: int

    def run_queue(self) -> int:
        """Run the queued jobs until none is left (what the worker does); returns how many."""
        assert self.ctx.runtime is not None
        huey = self.ctx.runtime.huey
        ran = 0
        while (task := huey.dequeue()) is not None:
            huey.execute(task)
            ran += 1
        return ran

    def deliver(self) -> None:
        """Wait until the sandbox has delivered every webhook it owes the app."""
        assert self.sandbox.delivery.drain(30)
        assert all(d.delivered for d in self.sandbox.delivery.log(self.store.domain))

    def settle(self) -> None:
        """Deliveries, then their jobs, until both are quiet (tag writes send webhooks back).

        The jobs run while the sandbox holds back the webhooks they cause, so that the app
        has one writer at a time and every run of this test sees the same history.
        """
        for _ in range(10):
            self.deliver()
            self.sandbox.delivery.stop()
            try:
                ran = self.run_queue()
            finally:
                self.sandbox.delivery.start()
            if ran == 0:
                return
        pytest.fail("webhooks and jobs never settled")


@pytest.fixture
def world(tmp_path: Path, encryption_key: str) -> Iterator[World]:
    domain = "redact-me.myshopify.com"
    sandbox = ShopifySandbox(
        TEST_API_KEY, TEST_API_SECRET, retry_backoff=0.05, workdir=tmp_path / "sandbox", seed=3
    )
    store = sandbox.add_shop(domain, _store(domain))
    sandbox.start()
    meta = MetaSandbox(META_APP_ID, META_APP_SECRET)
    meta.add_ad_account(AD_ACCOUNT, "Quill ads")
    meta_server = start_server(meta.app())
    with fresh_database(tmp_path) as url:
        db.upgrade(url)
        settings = Settings.from_env(
            {
                "SHOPIFY_API_KEY": TEST_API_KEY,
                "SHOPIFY_API_SECRET": TEST_API_SECRET,
                "TOKEN_ENCRYPTION_KEY": encryption_key,
                "SHOPIFY_APP_URL": "https://goldpan.test",
                "DATABASE_URL": url,
                "HUEY_PATH": str(tmp_path / "huey.sqlite3"),
                "LOG_JSON": "false",
                # settle() runs the queue until it is empty: no delivery may sit in a window.
                "WEBHOOK_GATHER_MS": "0",
                "SHOPIFY_BASE_URL": sandbox.shop_base("{shop}"),
                "META_APP_ID": META_APP_ID,
                "META_APP_SECRET": META_APP_SECRET,
                "META_GRAPH_URL": meta_server.url,
                "META_DIALOG_URL": meta_server.url,
            }
        )
        engine = db.make_engine(url)
        cipher = TokenCipher(settings.token_encryption_keys)
        ctx = Context(settings, engine, db.make_sessionmaker(engine), cipher)
        Runtime(ctx, MemoryHuey("redaction-test", immediate=False))
        tokens = sandbox.install(domain)
        now = dt.datetime.now(dt.UTC)
        with ctx.sessions.begin() as session:
            shop = Shop(
                domain=domain,
                access_token=cipher.encrypt(tokens["access_token"]),
                access_token_expires_at=now + dt.timedelta(hours=1),
                refresh_token=cipher.encrypt(tokens["refresh_token"]),
                refresh_token_expires_at=now + dt.timedelta(days=90),
                scopes=",".join(settings.scopes),
                installed_at=now,
                settings={},
            )
            session.add(shop)
            session.flush()
            shop_id = shop.id
        app = start_server(create_app(ctx))
        sandbox.app_url = app.url
        try:
            yield World(ctx, sandbox, store, meta, app, shop_id)
        finally:
            app.stop()
            engine.dispose()
    sandbox.close()
    meta_server.stop()


def _connect_meta(world: World) -> None:
    """The merchant connected Meta with the account whose terms are accepted."""
    token = world.meta.issue_user_token()
    with world.ctx.sessions.begin() as session:
        session.add(
            MetaConnection(
                shop_id=world.shop_id,
                access_token=world.ctx.cipher.encrypt(token),
                ad_account_id=AD_ACCOUNT,
                tos_accepted=True,
                status="connected",
                connected_at=dt.datetime.now(dt.UTC),
            )
        )


def _everything(ctx: Context) -> Iterator[tuple[str, str, Any, Any]]:
    """(table, column, type, value) for every non-null value of every table of the database."""
    metadata = MetaData()
    metadata.reflect(ctx.engine)
    with ctx.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if value is not None:
                        yield table.name, column.name, column.type, value


def _found(ctx: Context, strings: dict[str, str], number: int) -> set[str]:
    """Where ``number`` is in an integer column, or it or one of ``strings`` in any other
    (text, JSON, …) column: ``{"table.column: what", …}``."""
    patterns = {what: re.compile(re.escape(text), re.IGNORECASE) for what, text in strings.items()}
    patterns["id"] = re.compile(rf"(?<!\d){number}(?!\d)")
    found = set()
    for table, column, kind, value in _everything(ctx):
        if isinstance(kind, Integer):
            if value == number:
                found.add(f"{table}.{column}: id")
            continue
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
        found |= {f"{table}.{column}: {what}" for what, p in patterns.items() if p.search(text)}
    return found


def test_a_redacted_customer_is_in_no_table(world: World) -> None:
    store, ctx = world.store, world.ctx
    _connect_meta(world)
    person = store.add_customer(_person(store))
    control = store.add_customer(
        dataclasses.replace(
            _person(store),
            id=CONTROL_ID,
            email=CONTROL_EMAIL,
            phone=None,
            first_name="Bartholomew",
            last_name="Inkwell",
            default_address=None,
        )
    )
    for days_ago in (40, 12):
        store.add_order(_order(store, person, days_ago))
    store.add_order(_order(store, control, 30))
    world.settle()
    # Goldpan holds them now: in a segment, tagged in Shopify, uploaded to Meta.
    with ctx.sessions() as session:
        segment_id = session.scalar(
            select(Membership.segment_id).where(
                Membership.shop_id == world.shop_id, Membership.customer_id == PERSON_ID
            )
        )
        assert segment_id is not None
    with ctx.sessions.begin() as session:
        session.execute(
            update(Segment)
            .where(Segment.id == segment_id)
            .values(tag_sync=True, meta_sync=True, tag="quill-regulars")
        )
    ctx.enqueue("tags.sync", shop_id=world.shop_id, customer_ids=None)
    ctx.enqueue("meta.sync_segment", shop_id=world.shop_id, segment_id=segment_id)
    world.settle()
    assert "quill-regulars" in store.customers[PERSON_ID].tags
    world.sandbox.request_customer_data(store.domain, PERSON_ID)
    world.settle()
    before = _found(ctx, PERSON, PERSON_ID)
    for where in (
        "customers.email: email",
        "orders.email: email",
        "orders.billing_company: company",
        "data_requests.export: email",
        "audit_log.subject: id",
        "audit_log.detail: id",
        "meta_audience_members.customer_id: id",
        "memberships.reason: company",
    ):
        assert where in before, (where, sorted(before))

    # An order update rendered now reaches Goldpan only after the redaction (deliveries come
    # late and in any order).
    late_order = world.sandbox.delivery.order_payload(store, store.customer_orders(PERSON_ID)[0])
    # A change to the person is delivered but not handled yet when the redaction comes.
    store.update_customer(PERSON_ID, note=f"Call {PERSON['phone']} before delivery")
    world.deliver()
    with ctx.sessions() as session:
        waiting = session.scalars(
            select(WebhookEvent).where(
                WebhookEvent.shop_domain == store.domain, WebhookEvent.status == "queued"
            )
        ).all()
    assert [e.topic for e in waiting] == ["customers/update"]
    world.sandbox.redact_customer(store.domain, PERSON_ID)
    world.deliver()
    with ctx.sessions() as session:
        redaction = session.scalar(
            select(WebhookEvent.id).where(WebhookEvent.topic == "customers/redact")
        )
    assert redaction is not None
    assert inbox.process(ctx, event_id=redaction) == "done"
    # At once, before any other job runs: only the uploaded (hashed) Meta rows wait for Meta.
    assert _found(ctx, PERSON, PERSON_ID) == {
        "tombstones.id: id",
        "meta_audience_members.customer_id: id",
    }
    world.settle()  # the waiting delivery's own job, Meta's removal, the follow-ups
    world.sandbox.delivery.send(store.domain, "orders/updated", late_order)
    world.settle()

    assert _found(ctx, PERSON, PERSON_ID) == {"tombstones.id: id"}
    assert world.meta.members(_audience_of(world, segment_id)) == set()
    # The scan sees what is kept: the other customer, and the orders without their buyer.
    assert _found(ctx, {"email": CONTROL_EMAIL}, CONTROL_ID) >= {
        "customers.email: email",
        "customers.id: id",
    }
    with ctx.sessions() as session:
        orders = session.scalars(
            select(OrderRow).where(OrderRow.shop_id == world.shop_id, OrderRow.total > 0)
        ).all()
    assert len(orders) == 3 and sum(o.customer_id is None for o in orders) == 2


def _audience_of(world: World, segment_id: int) -> str:
    with world.ctx.sessions() as session:
        remote = session.scalar(
            select(MetaAudience.audience_id).where(MetaAudience.segment_id == segment_id)
        )
    assert remote is not None
    return remote
