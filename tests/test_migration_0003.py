"""Revision 0003 on a populated 0001 database: what the new tag ledger may claim, and lapsed
tiers becoming segments by position."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, insert, select

from shopify_app import db
from tests.conftest import fresh_database

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _segment(shop_id: int, sid: int, handle: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "shop_id": shop_id,
        "handle": handle,
        "kind": "builtin",
        "name": handle,
        "definition": {},
        "enabled": True,
        "tag": None,
        "tag_sync": False,
        "meta_sync": False,
        "member_count": 0,
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }


def _customer(shop_id: int, cid: int, tags: list[str]) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "id": cid,
        "tags": tags,
        "number_of_orders": 1,
        "amount_spent": 10,
    }


def test_the_ledger_claims_only_current_tags_on_current_members(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        db.upgrade(url, "0001")
        engine = db.make_engine(url)
        meta = MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(meta.tables["shops"]),
                [
                    {
                        "id": 1,
                        "domain": "a.myshopify.com",
                        "token_version": 0,
                        "scopes": "",
                        "settings": {"tag_prefix": "gp-"},
                        "api_cost_spent": 0,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                ],
            )
            conn.execute(
                insert(meta.tables["segments"]),
                [
                    # Tag sync on, tag following the prefix (older rows may have none stored).
                    _segment(1, 10, "vip", tag_sync=True),
                    # Tag sync on, renamed by the merchant.
                    _segment(1, 11, "true-fans", tag="True Fans", tag_sync=True),
                    # Tag sync off: whoever carries its tag, Goldpan is not writing it.
                    _segment(1, 12, "one-time-buyers", tag="gp-one-time-buyers"),
                    # Switched off.
                    _segment(1, 13, "at-risk", tag="gp-at-risk", tag_sync=True, enabled=False),
                    # The configured tiers (the defaults, 60 and 90 days) ...
                    _segment(1, 14, "lapsed-60", tag_sync=True, meta_sync=True),
                    _segment(1, 15, "lapsed-90", tag="gp-lapsed-90"),
                    # ... and one an earlier tier change left behind, still "on".
                    _segment(1, 16, "lapsed-30", tag="gp-lapsed-30", tag_sync=True),
                ],
            )
            conn.execute(
                insert(meta.tables["customers"]),
                [
                    _customer(1, 100, ["VIP", "GP-VIP"]),  # member: its gp-vip is claimed
                    _customer(1, 101, ["gp-vip", "staff"]),  # not a member: nothing claimed
                    _customer(1, 102, ["True Fans", "pop-up-2024"]),  # member of true-fans
                    _customer(1, 103, ["gp-one-time-buyers", "gp-at-risk"]),  # syncs off
                    _customer(1, 104, []),  # a member without the tag: nothing to claim
                    _customer(1, 105, ["gp-lapsed-60"]),  # member of the first tier
                ],
            )
            conn.execute(
                insert(meta.tables["memberships"]),
                [
                    {"segment_id": sid, "customer_id": cid, "shop_id": 1, "since": NOW}
                    for sid, cid in (
                        (10, 100),
                        (10, 104),
                        (11, 102),
                        (12, 103),
                        (13, 103),
                        (14, 105),
                    )
                ],
            )
        db.upgrade(url)
        after = MetaData()
        after.reflect(engine)
        ledger = after.tables["tag_ledger"]
        with engine.connect() as conn:
            rows = conn.execute(
                select(ledger.c.shop_id, ledger.c.customer_id, ledger.c.tag_key, ledger.c.tag)
            ).all()
        assert sorted(tuple(r) for r in rows) == [
            (1, 100, "gp-vip", "GP-VIP"),
            (1, 102, "true fans", "True Fans"),
            (1, 105, "gp-lapsed-60", "gp-lapsed-60"),
        ]
        segments = after.tables["segments"]
        audit = after.tables["audit_log"]
        with engine.connect() as conn:
            tiers = {
                sid: (handle, tag, tag_sync, meta_sync)
                for sid, handle, tag, tag_sync, meta_sync in conn.execute(
                    select(
                        segments.c.id,
                        segments.c.handle,
                        segments.c.tag,
                        segments.c.tag_sync,
                        segments.c.meta_sync,
                    ).where(segments.c.id.in_([14, 15, 16]))
                )
            }
            entries = conn.execute(select(audit.c.action, audit.c.subject, audit.c.detail)).all()
        # Same rows (members, audiences), same tags, same syncs: only the handle says "tier".
        assert tiers == {
            14: ("lapsed-tier-1", "gp-lapsed-60", True, True),
            15: ("lapsed-tier-2", "gp-lapsed-90", False, False),
            16: ("lapsed-30", "gp-lapsed-30", False, False),
        }
        assert [(a, s) for a, s, _ in entries] == [("segment.removed", "lapsed-30")]
        assert entries[0][2]["tag_sync"] is True
        engine.dispose()
