"""Fixtures for the Meta tests: the Graph API stand-in on loopback, a context pointed at it,
and shops with multilingual customers in a Meta-synced segment.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.meta import MetaSandbox
from goldpan_sandbox.server import start_server
from shopify_app.db.models import Customer, Membership, MetaConnection, Segment
from shopify_app.jobs import Context
from shopify_app.meta.identifiers import Person
from shopify_app.states import MetaConnectionStatus, SegmentKind

META_APP_ID = "1234567890123456"
META_APP_SECRET = "meta-test-secret"
AD_ACCOUNT = "act_100200300"

_customer_ids = itertools.count(8_000_000_000_000)

_FIRST = {
    "US": ["John", "Mary", "Emily", "Michael", "Sarah"],
    "GR": ["Γιώργος", "Μαρία", "Νίκος", "Ελένη"],
    "KR": ["김민준", "이서연", "박지호"],
    "SA": ["محمد", "فاطمة", "عبدالله"],
}
_LAST = {
    "US": ["Smith", "O'Neil", "Johnson-Lee", "García"],
    "GR": ["Παπαδόπουλος", "Ιωάννου", "Κωνσταντίνου"],
    "KR": ["김", "이", "박"],
    "SA": ["العتيبي", "الأحمد", "القحطاني"],
}
_CITY = {"US": "San Francisco", "GR": "Αθήνα", "KR": "서울", "SA": "الرياض"}
_ZIP = {"US": "94107-1234", "GR": "105 57", "KR": "04538", "SA": "12211"}
_STATE = {"US": "CA", "GR": "I", "KR": "KR-11", "SA": "SA-01"}


def _phone(country: str, i: int) -> str:
    # Unique for every i below 10**7, so people made with different seeds (i includes
    # seed * 100,000) never share a phone and match each other's Meta users.
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    if country == "US":
        return f"+1415{2_000_000 + i % 8_000_000:07d}"
    if country == "GR":
        return f"69{i % 100_000_000:08d}"
    if country == "KR":
        return f"010-{(i // 10_000) % 10_000:04d}-{i % 10_000:04d}"
    return f"05{i % 100_000_000:08d}".translate(arabic)  # Saudi mobile in Arabic-Indic digits


def make_people(n: int, *, seed: int = 0, subscribed: float = 1.0) -> list[Person]:
    """``n`` customers across the US, Greece, Korea and Saudi Arabia, unique emails."""
    rng = random.Random(seed)
    people = []
    for i in range(n):
        country = ("US", "GR", "KR", "SA")[i % 4]
        people.append(
            Person(
                email=f"customer{seed}-{i}@example.com",
                phone=_phone(country, i + seed * 100_000),
                first_name=rng.choice(_FIRST[country]),
                last_name=rng.choice(_LAST[country]),
                city=_CITY[country],
                province_code=_STATE[country],
                zip=_ZIP[country],
                country_code=country,
                email_marketing_state="SUBSCRIBED"
                if rng.random() < subscribed
                else "NOT_SUBSCRIBED",
            )
        )
    return people


@dataclass
class MetaStand:
    """The running stand-in: ``sandbox`` for knobs, ``url`` for settings."""

    sandbox: MetaSandbox
    url: str


@pytest.fixture
def meta() -> Iterator[MetaStand]:
    """A fresh Graph API stand-in on loopback with one ad account whose terms are accepted."""
    sandbox = MetaSandbox(META_APP_ID, META_APP_SECRET)
    sandbox.add_ad_account(AD_ACCOUNT, "Linen & Co ads")
    server = start_server(sandbox.app())
    try:
        yield MetaStand(sandbox, server.url)
    finally:
        server.stop()


@pytest.fixture
def meta_ctx(ctx: Context, meta: MetaStand) -> Context:
    """The job context with Meta settings pointing at the stand-in."""
    settings = ctx.settings.with_overrides(
        meta_app_id=META_APP_ID,
        meta_app_secret=META_APP_SECRET,
        meta_graph_url=meta.url,
        meta_dialog_url=meta.url,
    )
    return dataclasses.replace(ctx, settings=settings)


def add_segment(
    sessions: sessionmaker[Session],
    shop_id: int,
    people: list[Person],
    *,
    handle: str = "true-fans",
    name: str = "True fans",
    meta_sync: bool = True,
) -> tuple[int, list[int]]:
    """Insert ``people`` as customers in a new segment; returns ``(segment id, customer ids)``."""
    now = dt.datetime.now(dt.UTC)
    ids = [next(_customer_ids) for _ in people]
    with sessions.begin() as session:
        if people:
            session.execute(
                insert(Customer),
                [
                    {
                        "shop_id": shop_id,
                        "id": cid,
                        **{f.name: getattr(p, f.name) for f in dataclasses.fields(Person)},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for cid, p in zip(ids, people, strict=True)
                ],
            )
        segment = Segment(
            shop_id=shop_id, handle=handle, name=name, kind=SegmentKind.BUILTIN, meta_sync=meta_sync
        )
        session.add(segment)
        session.flush()
        if ids:
            session.execute(
                insert(Membership),
                [{"segment_id": segment.id, "customer_id": cid, "shop_id": shop_id} for cid in ids],
            )
        return segment.id, ids


def add_members(
    sessions: sessionmaker[Session], shop_id: int, segment_id: int, people: list[Person]
) -> list[int]:
    """Insert more customers into an existing segment."""
    now = dt.datetime.now(dt.UTC)
    ids = [next(_customer_ids) for _ in people]
    with sessions.begin() as session:
        session.execute(
            insert(Customer),
            [
                {
                    "shop_id": shop_id,
                    "id": cid,
                    **{f.name: getattr(p, f.name) for f in dataclasses.fields(Person)},
                    "created_at": now,
                    "updated_at": now,
                }
                for cid, p in zip(ids, people, strict=True)
            ],
        )
        session.execute(
            insert(Membership),
            [{"segment_id": segment_id, "customer_id": cid, "shop_id": shop_id} for cid in ids],
        )
    return ids


def connect_shop(ctx: Context, meta: MetaStand, shop_id: int, *, account: str = AD_ACCOUNT) -> str:
    """Store a connected MetaConnection with a fresh long-lived token; returns the token."""
    token = meta.sandbox.issue_user_token()
    with ctx.sessions.begin() as session:
        session.merge(
            MetaConnection(
                shop_id=shop_id,
                access_token=ctx.cipher.encrypt(token),
                token_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=60),
                ad_account_id=account,
                tos_accepted=True,
                status=MetaConnectionStatus.CONNECTED,
                connected_at=dt.datetime.now(dt.UTC),
            )
        )
    return token
