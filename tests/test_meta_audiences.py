"""Audience sync against the Graph API stand-in over loopback HTTP: create, diff, sessions,
removals, replace, lookalikes, redaction, and every error the page must show."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update

from shopify_app import jobs
from shopify_app.actions.holdout import held_out
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    MetaConnection,
    Shop,
)
from shopify_app.errors import InputError
from shopify_app.meta import audiences, view
from shopify_app.meta.identifiers import SCHEMA, Person, hash_row
from shopify_app.segments.recompute import shop_config
from shopify_app.states import MetaAudienceKind, MetaAudienceStatus, MetaState
from tests.fixtures_meta import (
    AD_ACCOUNT,
    MetaStand,
    add_members,
    add_segment,
    connect_shop,
    make_people,
)


def _audience(ctx: jobs.Context, segment_id: int) -> MetaAudience:
    with ctx.sessions() as session:
        aud = session.scalars(
            select(MetaAudience).where(
                MetaAudience.segment_id == segment_id, MetaAudience.kind == "custom"
            )
        ).one()
        return aud


def _connection(ctx: jobs.Context, shop_id: int) -> MetaConnection:
    with ctx.sessions() as session:
        conn = session.get(MetaConnection, shop_id)
        assert conn is not None
        return conn


def _uploads(meta: MetaStand) -> list:  # type: ignore[type-arg]
    return [r for r in meta.sandbox.log if r.path.endswith(("/users", "/usersreplace"))]


def _setup(meta_ctx, meta, make_shop, n=40, **kw):  # type: ignore[no-untyped-def]
    shop = make_shop(name="Linen & Co")
    people = make_people(n, seed=shop.id, **kw)
    meta.sandbox.seed_people(people, match_rate=0.75, seed=1)
    segment_id, ids = add_segment(meta_ctx.sessions, shop.id, people)
    connect_shop(meta_ctx, meta, shop.id)
    return shop, segment_id, ids, people


def test_first_sync_creates_audience_and_uploads_hashed_members(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, ids, people = _setup(meta_ctx, meta, make_shop, n=40, subscribed=0.8)
    outcome = jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    allowed = [p for p in people if p.email_marketing_state == "SUBSCRIBED"]
    assert outcome == {"added": len(allowed), "removed": 0}

    aud = _audience(meta_ctx, segment_id)
    assert aud.status == "ready" and aud.error is None
    remote = meta.sandbox.audiences[aud.audience_id or ""]
    assert remote.subtype == "CUSTOM" and remote.customer_file_source == "USER_PROVIDED_ONLY"
    assert "True fans" in remote.description and "Linen & Co" in remote.description
    assert remote.account_id == AD_ACCOUNT.removeprefix("act_")
    # Every uploaded row is the shared normaliser's hash; consent keeps non-subscribers out.
    (upload,) = _uploads(meta)
    assert upload.rows == len(allowed)
    session = json.loads(upload.params["session"])
    assert session["batch_seq"] == 1 and session["last_batch_flag"] is True
    assert session["estimated_num_total"] == len(allowed)
    assert aud.received == len(allowed) and aud.invalid == 0
    # Match reporting: the stand-in matched about 75 % of them.
    matched = len(meta.sandbox.members(aud.audience_id or ""))
    assert 0 < matched < len(allowed)
    assert aud.approximate_lower is not None and aud.approximate_lower <= matched
    assert aud.approximate_upper is not None and aud.approximate_upper >= matched
    with meta_ctx.sessions() as s:
        rows = s.scalars(
            select(MetaAudienceMember).where(MetaAudienceMember.audience_id == aud.id)
        ).all()
        assert len(rows) == len(allowed)
        by_id = {r.customer_id: r.row for r in rows}
        first = ids[people.index(allowed[0])]
        assert tuple(by_id[first]) == hash_row(allowed[0])
        actions = [
            a.action for a in s.scalars(select(AuditEntry).where(AuditEntry.shop_id == shop.id))
        ]
    assert actions[:2] == ["audience_create", "audience_add"]


def test_unchanged_resync_sends_nothing_and_changes_become_adds_and_removes(
    meta_ctx, meta, make_shop
) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, ids, _people = _setup(meta_ctx, meta, make_shop, n=30)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    before = len(_uploads(meta))
    again = jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert again == {"added": 0, "removed": 0}
    assert len(_uploads(meta)) == before  # nothing sent at all

    # One leaves the segment, one changes email, one unsubscribes, two join.
    with meta_ctx.sessions.begin() as s:
        s.execute(delete(Membership).where(Membership.customer_id == ids[0]))
        s.execute(
            update(Customer)
            .where(Customer.shop_id == shop.id, Customer.id == ids[1])
            .values(email="new-address@example.com")
        )
        s.execute(
            update(Customer)
            .where(Customer.shop_id == shop.id, Customer.id == ids[2])
            .values(email_marketing_state="UNSUBSCRIBED")
        )
    add_members(meta_ctx.sessions, shop.id, segment_id, make_people(2, seed=shop.id + 7))
    outcome = jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert outcome == {"added": 3, "removed": 3}
    new = _uploads(meta)[before:]
    removal, addition = new
    # Removals go as POST with method=DELETE (a long DELETE query string would fail).
    assert removal.http_method == "POST" and removal.method == "DELETE"
    assert removal.params["method"] == "DELETE" and removal.rows == 3
    assert addition.method == "POST" and addition.rows == 3
    with meta_ctx.sessions() as s:
        stored = {
            r.customer_id: r.row
            for r in s.scalars(
                select(MetaAudienceMember).where(
                    MetaAudienceMember.audience_id == _audience(meta_ctx, segment_id).id
                )
            )
        }
    assert ids[0] not in stored and ids[2] not in stored
    assert stored[ids[1]][0] == hash_row(Person(email="new-address@example.com"))[0]


def test_terms_not_accepted_is_shown_on_the_connection(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop)
    meta.sandbox.set_tos(AD_ACCOUNT, False)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    conn = _connection(meta_ctx, shop.id)
    assert conn.status == "terms" and not conn.tos_accepted
    assert "business.facebook.com/ads/manage/customaudiences/tos/?act=100200300" in (
        conn.error or ""
    )
    aud = _audience(meta_ctx, segment_id)
    assert aud.status == "error" and aud.audience_id is None
    assert not meta.sandbox.audiences


def test_throttling_is_recorded_and_the_next_run_catches_up(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, people = _setup(meta_ctx, meta, make_shop)
    meta.sandbox.throttle(80003, minutes=12)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    aud = _audience(meta_ctx, segment_id)
    assert aud.status == "throttled" and "12 min" in (aud.error or "")
    assert _connection(meta_ctx, shop.id).status == "connected"
    # The hourly refresh (per shop) retries throttled audiences.
    jobs.run_now(meta_ctx, "meta.refresh_shop", shop_id=shop.id)
    aud = _audience(meta_ctx, segment_id)
    assert aud.status == "ready" and aud.received == len(people)


@pytest.mark.parametrize("code", [17, 613, 4])
def test_other_throttle_codes(meta_ctx, meta, make_shop, code: int) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop, n=5)
    meta.sandbox.throttle(code, minutes=3)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert _audience(meta_ctx, segment_id).status == "throttled"


def test_transient_server_errors_are_retried(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop, n=5)
    meta.sandbox.fail_next(1, status=500)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert _audience(meta_ctx, segment_id).status == "ready"


@pytest.mark.parametrize(
    ("knob", "status"), [("expire_token", "expired"), ("revoke_token", "revoked")]
)
def test_expired_or_revoked_token_is_shown_not_raised(
    meta_ctx, meta, make_shop, knob: str, status: str
) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop, n=5)
    conn = _connection(meta_ctx, shop.id)
    getattr(meta.sandbox, knob)(meta_ctx.cipher.decrypt(conn.access_token or ""))
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    conn = _connection(meta_ctx, shop.id)
    assert conn.status == status and "reconnect" in (conn.error or "").lower()
    # A broken connection stops further syncs until the merchant reconnects.
    before = len(meta.sandbox.log)
    jobs.run_now(meta_ctx, "meta.sync_shop", shop_id=shop.id)
    assert len(meta.sandbox.log) == before


def test_audience_deleted_in_ads_manager_is_recreated(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, people = _setup(meta_ctx, meta, make_shop, n=12)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    old = _audience(meta_ctx, segment_id).audience_id
    meta.sandbox.delete_in_ads_manager(old or "")
    outcome = jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    aud = _audience(meta_ctx, segment_id)
    assert aud.audience_id not in (None, old) and aud.status == "ready"
    assert outcome == {"added": len(people), "removed": 0}
    with meta_ctx.sessions() as s:
        actions = set(
            s.scalars(select(AuditEntry.action).where(AuditEntry.shop_id == shop.id)).all()
        )
    assert {"audience_missing", "audience_recreate"} <= actions


def test_flagged_audience_is_reported(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop, n=5)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    meta.sandbox.flag_audience(_audience(meta_ctx, segment_id).audience_id or "")
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    aud = _audience(meta_ctx, segment_id)
    assert aud.status == "flagged" and "flagged" in (aud.error or "")


def test_forget_customer_removes_from_every_audience(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    people = make_people(10, seed=shop.id)
    meta.sandbox.seed_people(people, match_rate=1.0)
    seg_a, ids = add_segment(meta_ctx.sessions, shop.id, people, handle="a", name="A")
    seg_b, _ = add_segment(meta_ctx.sessions, shop.id, [], handle="b", name="B")
    with meta_ctx.sessions.begin() as s:
        s.add(Membership(segment_id=seg_b, customer_id=ids[0], shop_id=shop.id))
    connect_shop(meta_ctx, meta, shop.id)
    jobs.run_now(meta_ctx, "meta.sync_shop", shop_id=shop.id)
    remote_a = _audience(meta_ctx, seg_a).audience_id or ""
    remote_b = _audience(meta_ctx, seg_b).audience_id or ""
    assert len(meta.sandbox.members(remote_a)) == 10 and len(meta.sandbox.members(remote_b)) == 1
    # customers/redact: Goldpan's copy is already gone; the uploaded rows still identify them.
    with meta_ctx.sessions.begin() as s:
        s.execute(delete(Customer).where(Customer.shop_id == shop.id, Customer.id == ids[0]))
    done = jobs.run_now(
        meta_ctx,
        "meta.forget_customer",
        shop_id=shop.id,
        customer_id=ids[0],
        email=people[0].email,
        phone=None,
    )
    assert done == 2
    assert len(meta.sandbox.members(remote_a)) == 9 and not meta.sandbox.members(remote_b)
    removals = [r for r in meta.sandbox.log if r.method == "DELETE"]
    assert removals and all(r.http_method == "POST" for r in removals)
    with meta_ctx.sessions() as s:
        assert (
            s.scalar(select(MetaAudienceMember).where(MetaAudienceMember.customer_id == ids[0]))
            is None
        )


def test_full_refresh_replaces_through_usersreplace(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, ids, people = _setup(meta_ctx, meta, make_shop, n=20)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    remote = _audience(meta_ctx, segment_id).audience_id or ""
    # Someone was added by hand in Ads Manager's list? The replace drops whatever isn't wanted.
    with meta_ctx.sessions.begin() as s:
        s.execute(delete(Membership).where(Membership.customer_id.in_(ids[:5])))
    jobs.run_now(meta_ctx, "meta.full_refresh", shop_id=shop.id, segment_id=segment_id)
    replace = [r for r in meta.sandbox.log if r.path.endswith("/usersreplace")]
    assert len(replace) == 1 and replace[0].rows == 15
    aud = _audience(meta_ctx, segment_id)
    assert aud.last_full_refresh_at is not None and aud.received == 15
    assert meta.sandbox.audiences[remote].replace is not None
    # Meta matches on email, then phone, then name + zip (two test people can share a name
    # and a zip): exactly the people still in the segment, matched Meta's own way.
    expected, _invalid, _samples, _values = meta.sandbox._match_rows(
        SCHEMA, [list(hash_row(p)) for p in people[5:]]
    )
    assert expected and meta.sandbox.members(remote) == expected
    # A second refresh right away is not scheduled; an unchanged sync still sends nothing.
    before = len(_uploads(meta))
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert len(_uploads(meta)) == before


def test_lookalike_needs_100_members_and_a_valid_spec(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, _ids, _people = _setup(meta_ctx, meta, make_shop, n=99)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    with pytest.raises(InputError) as small:
        audiences.create_lookalike(meta_ctx, shop.id, segment_id, "US", 1)
    assert "100" in str(small.value)
    with pytest.raises(InputError):
        audiences.create_lookalike(meta_ctx, shop.id, segment_id, "US", 11)
    with pytest.raises(InputError):
        audiences.create_lookalike(meta_ctx, shop.id, segment_id, "USA", 2)

    big_shop, big_segment, _, _ = _setup(meta_ctx, meta, make_shop, n=150)
    meta.sandbox.seed_people(make_people(150, seed=big_shop.id), match_rate=1.0)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=big_shop.id, segment_id=big_segment)
    look = audiences.create_lookalike(meta_ctx, big_shop.id, big_segment, "gr", 3)
    assert look.kind == "lookalike" and look.spec == {"country": "GR", "ratio": 0.03}
    remote = meta.sandbox.audiences[look.audience_id or ""]
    assert remote.subtype == "LOOKALIKE"
    assert remote.origin_audience_id == _audience(meta_ctx, big_segment).audience_id
    assert remote.lookalike_spec == {"country": "GR", "ratio": 0.03}


def test_lookalike_source_too_small_for_meta_is_refused_before_asking(
    meta_ctx, meta, make_shop
) -> None:  # type: ignore[no-untyped-def]
    # 120 members in Goldpan but Meta matched none of them: refused from Meta's size estimate,
    # without a request Meta would refuse anyway.
    shop = make_shop()
    people = make_people(120, seed=shop.id)
    segment_id, _ = add_segment(meta_ctx.sessions, shop.id, people)
    connect_shop(meta_ctx, meta, shop.id)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    before = len(meta.sandbox.requests_to("/customaudiences", "POST"))
    with pytest.raises(InputError, match="at least 100 people matched by Meta"):
        audiences.create_lookalike(meta_ctx, shop.id, segment_id, "US", 1)
    assert len(meta.sandbox.requests_to("/customaudiences", "POST")) == before


def test_sync_shop_only_touches_segments_with_meta_sync(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    on, _ = add_segment(meta_ctx.sessions, shop.id, make_people(3, seed=1), handle="on")
    off, _ = add_segment(
        meta_ctx.sessions, shop.id, make_people(3, seed=2), handle="off", meta_sync=False
    )
    connect_shop(meta_ctx, meta, shop.id)
    jobs.run_now(meta_ctx, "meta.sync_shop", shop_id=shop.id)
    assert _audience(meta_ctx, on).status == "ready"
    with meta_ctx.sessions() as s:
        assert s.scalar(select(MetaAudience).where(MetaAudience.segment_id == off)) is None


def test_prepare_and_plan_are_pure() -> None:
    people = [(1, Person(email="a@example.com", email_marketing_state="SUBSCRIBED"))]
    people.append((2, Person(city="Αθήνα", email_marketing_state="SUBSCRIBED")))  # no identifier
    people.append((3, Person(email="c@example.com", email_marketing_state="UNSUBSCRIBED")))
    wanted = audiences.prepare(people, "all")
    assert list(wanted) == [1]
    previous = {1: (audiences.row_hash(wanted[1]), wanted[1])}
    assert audiences.plan(previous, wanted).empty
    changed = audiences.plan(previous, {1: ("x",) * 8, 4: ("y",) * 8})
    assert [c for c, _ in changed.add] == [1, 4] and [c for c, _ in changed.remove] == [1]


def test_sync_customer_applies_one_webhook_change(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop, segment_id, ids, _people = _setup(meta_ctx, meta, make_shop, n=8)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    before = len(_uploads(meta))
    unchanged = jobs.run_now(meta_ctx, "meta.sync_customer", shop_id=shop.id, customer_id=ids[3])
    assert unchanged == {"added": 0, "removed": 0} and len(_uploads(meta)) == before
    # A marketing unsubscribe arrives by webhook: the person leaves every audience at once.
    with meta_ctx.sessions.begin() as s:
        s.execute(
            update(Customer)
            .where(Customer.shop_id == shop.id, Customer.id == ids[3])
            .values(email_marketing_state="UNSUBSCRIBED")
        )
    gone = jobs.run_now(meta_ctx, "meta.sync_customer", shop_id=shop.id, customer_id=ids[3])
    assert gone == {"added": 0, "removed": 1}
    (removal,) = _uploads(meta)[before:]
    assert removal.method == "DELETE" and removal.http_method == "POST"
    with meta_ctx.sessions.begin() as s:
        s.execute(
            update(Customer)
            .where(Customer.shop_id == shop.id, Customer.id == ids[3])
            .values(email_marketing_state="SUBSCRIBED")
        )
    back = jobs.run_now(meta_ctx, "meta.sync_customer", shop_id=shop.id, customer_id=ids[3])
    assert back == {"added": 1, "removed": 0}
    # The segment-wide diff agrees: nothing left to send.
    assert jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id) == {
        "added": 0,
        "removed": 0,
    }


def test_refresh_shop_replaces_weekly(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    shop, segment_id, _ids, people = _setup(meta_ctx, meta, make_shop, n=6)
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    assert _audience(meta_ctx, segment_id).last_full_refresh_at is not None
    jobs.run_now(meta_ctx, "meta.refresh_shop", shop_id=shop.id)
    assert not meta.sandbox.requests_to("/usersreplace")  # refreshed less than a week ago
    with meta_ctx.sessions.begin() as s:
        s.execute(
            update(MetaAudience)
            .where(MetaAudience.segment_id == segment_id)
            .values(last_full_refresh_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
        )
    jobs.run_now(meta_ctx, "meta.refresh_shop", shop_id=shop.id)
    (replace,) = meta.sandbox.requests_to("/usersreplace")
    assert replace.rows == len(people)


def test_held_out_customers_are_never_uploaded(meta_ctx, meta, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    people = make_people(80, seed=shop.id)
    meta.sandbox.seed_people(people, match_rate=1.0)
    segment_id, ids = add_segment(meta_ctx.sessions, shop.id, people)
    with meta_ctx.sessions.begin() as s:
        row = s.get_one(Shop, shop.id)
        row.settings = {**(row.settings or {}), "holdouts": {"true-fans": 0.3}}
        config = shop_config(row)
    held = {cid for cid in ids if held_out(config, "true-fans", cid)}
    assert 0 < len(held) < len(ids)
    connect_shop(meta_ctx, meta, shop.id)
    outcome = jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    aud = _audience(meta_ctx, segment_id)
    with meta_ctx.sessions() as s:
        uploaded = set(
            s.scalars(
                select(MetaAudienceMember.customer_id).where(
                    MetaAudienceMember.audience_id == aud.id
                )
            )
        )
    assert uploaded == set(ids) - held and outcome["added"] == len(uploaded)
    assert len(meta.sandbox.members(aud.audience_id or "")) == len(uploaded)
    # A webhook about a held-out customer does not upload them either.
    again = jobs.run_now(meta_ctx, "meta.sync_customer", shop_id=shop.id, customer_id=min(held))
    assert again == {"added": 0, "removed": 0}


def test_the_page_state_of_an_audience() -> None:
    state = view.audience_state
    ready = MetaAudience(kind=MetaAudienceKind.CUSTOM, status=MetaAudienceStatus.READY)
    assert state(ready, records=5, connected=True, sync_on=True) == MetaState.SYNCED
    # Everyone removed: an empty audience, not one "still processing".
    assert state(ready, records=0, connected=True, sync_on=True) == MetaState.EMPTY
    # Disconnected: never "synced", whatever the audience last was.
    assert state(ready, records=5, connected=False, sync_on=True) == MetaState.DISCONNECTED
    assert state(ready, records=5, connected=True, sync_on=False) == MetaState.PAUSED
    assert state(None, records=0, connected=True, sync_on=False) == MetaState.OFF
    assert state(None, records=0, connected=True, sync_on=True) == MetaState.SYNCING
    look = MetaAudience(kind=MetaAudienceKind.LOOKALIKE, status=MetaAudienceStatus.READY)
    assert state(look, records=0, connected=True, sync_on=False) == MetaState.CREATED
    replacing = MetaAudience(kind=MetaAudienceKind.VALUE, status=MetaAudienceStatus.REPLACING)
    assert state(replacing, records=9, connected=True, sync_on=True) == MetaState.REFRESHING
