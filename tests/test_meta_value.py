"""Value-based audiences (issue 18): the Meta stand-in's rules for ``is_value_based`` audiences
and ``LOOKALIKE_VALUE``, and Goldpan's value-based audience of a segment — each customer's
predicted 12-month value — with a lookalike from it, over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from goldpan_sandbox.generator import generate_store
from shopify_app import jobs
from shopify_app.db.models import (
    Customer,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    Segment,
    Shop,
)
from shopify_app.errors import InputError, MetaError
from shopify_app.jobs import Context
from shopify_app.meta import audiences, graph
from shopify_app.meta.identifiers import SCHEMA, Person, hash_row
from shopify_app.segments.recompute import recompute_shop_now
from shopify_app.states import MetaAudienceKind
from shopify_app.sync import bulk
from tests.fixtures_meta import AD_ACCOUNT, MetaStand, connect_shop
from tests.fixtures_sync import SyncEnv, make_sync_env

__all__ = ["make_sync_env"]  # the fixture, used here


def _client(meta_ctx: Context, meta: MetaStand) -> graph.GraphClient:
    return graph.GraphClient(meta_ctx.settings, meta.sandbox.issue_system_user_token())


def _value_audience(client: graph.GraphClient) -> str:
    return client.create_audience(AD_ACCOUNT, "Value", "test", value_based=True)


def test_a_value_based_audience_needs_its_terms_and_a_non_negative_value_column(
    meta_ctx: Context, meta: MetaStand
) -> None:
    client = _client(meta_ctx, meta)
    people = [Person(email=f"v{i}@example.com") for i in range(3)]
    meta.sandbox.seed_people(people, match_rate=1.0)
    rows = [hash_row(p) for p in people]
    schema = (*SCHEMA, audiences.VALUE_KEY)

    meta.sandbox.set_value_tos(AD_ACCOUNT, False)
    assert client.tos_accepted(AD_ACCOUNT) is True
    assert client.tos_accepted(AD_ACCOUNT, audiences.VALUE_TERMS) is False
    with pytest.raises(MetaError, match="value-based lookalike terms"):
        _value_audience(client)
    meta.sandbox.set_value_tos(AD_ACCOUNT, True)
    value_id = _value_audience(client)
    assert client.get(value_id, fields="is_value_based")["is_value_based"] is True

    # Without the value column, or the value column on an ordinary audience: refused.
    with pytest.raises(MetaError, match="needs the LOOKALIKE_VALUE column"):
        client.upload(value_id, SCHEMA, rows)
    plain = client.create_audience(AD_ACCOUNT, "Plain", "test")
    with pytest.raises(MetaError, match="only be sent to a value-based"):
        client.upload(plain, schema, [[*r, 1.0] for r in rows])

    # A negative or textual value makes its row invalid; the others count.
    sent = [[*rows[0], 44.5], [*rows[1], -3], [*rows[2], "12"]]
    result = client.upload(value_id, schema, sent)
    assert (result.received, result.invalid) == (3, 2)
    assert "LOOKALIKE_VALUE" in json.dumps(result.samples)
    assert sorted(meta.sandbox.values(value_id).values()) == [44.5]
    # Removal needs no value; it takes the person's value out too.
    client.upload(value_id, SCHEMA, [rows[0]], mode="remove")
    assert meta.sandbox.values(value_id) == {}


def test_a_segments_value_based_audience_carries_predicted_value_and_makes_a_lookalike(
    meta_ctx: Context, meta: MetaStand, make_sync_env: Callable[..., SyncEnv]
) -> None:
    # A generated shop synced from the Shopify sandbox and recomputed: its purchase model fits,
    # so every customer has a predicted 12-month value.
    env = make_sync_env(lambda domain: generate_store(domain, customers=220, seed=5))
    bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    recompute_shop_now(env.ctx, env.shop.id)
    shop = env.shop
    with meta_ctx.sessions() as session:
        handles = dict(
            session.execute(
                select(Segment.handle, Segment.id).where(Segment.shop_id == shop.id)
            ).all()
        )
        customers = session.scalars(select(Customer).where(Customer.shop_id == shop.id)).all()
        meta.sandbox.seed_people([audiences.person_of(c) for c in customers], match_rate=1.0)
        shop_row = session.get_one(Shop, shop.id)
        shop_row.settings = {**(shop_row.settings or {}), "consent_policy": "all"}
        session.commit()
        predicted = audiences.predicted_values(session, shop_row)
    assert predicted is not None, "the seeded shop has a purchase model"
    segment_id = max(handles.values(), key=lambda sid: len(_members(meta_ctx, sid)))
    with meta_ctx.sessions.begin() as session:
        session.execute(update(Segment).where(Segment.id == segment_id).values(meta_sync=True))
    connect_shop(meta_ctx, meta, shop.id)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)

    # The terms are detected and explained before anything is made.
    meta.sandbox.set_value_tos(AD_ACCOUNT, False)
    with pytest.raises(InputError, match="value-based audience terms") as refused:
        audiences.create_value_audience(meta_ctx, shop.id, segment_id)
    assert refused.value.field == "value_terms" and "act=100200300" in str(refused.value)
    meta.sandbox.set_value_tos(AD_ACCOUNT, True)
    audiences.create_value_audience(meta_ctx, shop.id, segment_id)  # syncs inline here
    with pytest.raises(InputError, match="already"):
        audiences.create_value_audience(meta_ctx, shop.id, segment_id)

    with meta_ctx.sessions() as session:
        value = session.scalars(
            select(MetaAudience).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == MetaAudienceKind.VALUE
            )
        ).one()
        rows = dict(
            session.execute(
                select(MetaAudienceMember.customer_id, MetaAudienceMember.row).where(
                    MetaAudienceMember.audience_id == value.id
                )
            ).all()
        )
    assert value.audience_id and value.status == "ready" and value.error is None
    # The same people as the segment's customer list (members with an identifier), each row
    # ending with the customer's predicted 12-month value, rounded.
    with meta_ctx.sessions() as session:
        custom = audiences.previous_rows(session, _custom_pk(meta_ctx, segment_id))
    assert set(rows) == set(custom) and len(rows) >= 100
    assert set(rows) <= _members(meta_ctx, segment_id)
    assert {cid: tuple(row[:-1]) for cid, row in rows.items()} == {
        cid: row for cid, (_h, row) in custom.items()
    }
    assert {cid: row[-1] for cid, row in rows.items()} == {
        cid: audiences.lookalike_value(predicted[cid]) for cid in rows
    }
    assert len({row[-1] for row in rows.values()}) > 1  # values, not one constant
    sent = meta.sandbox.values(value.audience_id)
    assert sorted(sent.values()) == sorted(float(row[-1]) for row in rows.values())
    create = [
        r
        for r in meta.sandbox.requests_to("/customaudiences", "POST")
        if "is_value_based" in r.params
    ]
    assert len(create) == 1

    # A re-sync with nothing changed sends nothing to either audience.
    assert jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id) == {
        "added": 0,
        "removed": 0,
    }

    # The lookalike is made from the value-based audience.
    look = audiences.create_lookalike(
        meta_ctx, shop.id, segment_id, "GR", 1, source=MetaAudienceKind.VALUE
    )
    assert look.origin_audience_id == value.audience_id
    assert meta.sandbox.audiences[look.audience_id or ""].value_based is True


def _custom_pk(ctx: Context, segment_id: int) -> int:
    with ctx.sessions() as session:
        return session.scalars(
            select(MetaAudience.id).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == MetaAudienceKind.CUSTOM
            )
        ).one()


def _members(ctx: Context, segment_id: int) -> set[int]:
    with ctx.sessions() as session:
        return set(
            session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == segment_id)
            )
        )
