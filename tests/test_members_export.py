"""The members list's search and the CSV export: literal ``%`` and ``_``, a match count, and a
file that Excel opens as written (byte order mark, plain times, usable phones, the merchant's
language)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Customer, Membership
from shopify_app.jobs import Context
from shopify_app.segments.library.reasons import Reason
from tests.fixtures_api import ApiClient, seed_shop, serving


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    with serving(ctx) as url:
        yield url


def vip_members(sessions: sessionmaker[Session], segment_id: int) -> list[Membership]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Membership)
                .where(Membership.segment_id == segment_id)
                .order_by(Membership.customer_id)
            )
        )


def rename(sessions: sessionmaker[Session], shop_id: int, names: dict[int, str]) -> None:
    with sessions.begin() as session:
        for cid, name in names.items():
            customer = session.get(Customer, (shop_id, cid))
            assert customer is not None
            customer.company = name


def test_search_treats_percent_and_underscore_literally_and_counts_matches(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=150, seed=3, history=False)
    members = vip_members(sessions, ids["vip"])
    a, b, c = (m.customer_id for m in members[:3])
    rename(sessions, shop.id, {a: "Linen_Works", b: "LinenXWorks", c: "100% Linen"})
    client = ApiClient(server, shop.domain)

    def found(q: str) -> tuple[set[int], int]:
        body = client.get(f"/segments/{ids['vip']}/members", q=q).json()
        return {m["id"] for m in body["members"]}, body["total"]

    # As wildcards "_" would match b and "%" every company containing "100" then "Linen".
    assert found("linen_works") == ({a}, 1)
    assert found("0% lin") == ({c}, 1)
    assert found("%") == ({c}, 1)
    # The count is of every match, not of the page shown.
    everyone, total = found("@")
    assert total == len(members) and len(everyone) == min(total, 50)
    assert client.get(f"/segments/{ids['vip']}/members").json()["total"] == len(members)


def csv_rows(
    client: ApiClient, segment_id: int, **params: str
) -> tuple[bytes, list[dict[str, str]]]:
    r = client.get(f"/segments/{segment_id}/members.csv", **params)
    assert r.status_code == 200, r.text
    return r.content, list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


def test_csv_opens_in_excel_with_plain_times_and_usable_phones(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=150, seed=3, history=False)
    members = vip_members(sessions, ids["vip"])
    phones = {
        members[0].customer_id: "+15551234567",
        members[1].customer_id: "+30 210 123 4567",
        members[2].customer_id: "+1+cmd|' /C calc'!A0",
        members[3].customer_id: '=HYPERLINK("http://x")',
    }
    since = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
    with sessions.begin() as session:
        for cid, phone in phones.items():
            customer = session.get(Customer, (shop.id, cid))
            assert customer is not None
            customer.phone = phone
        member = session.get(Membership, (ids["vip"], members[0].customer_id))
        assert member is not None
        member.since = since
    raw, rows = csv_rows(ApiClient(server, shop.domain), ids["vip"])
    assert raw.startswith(b"\xef\xbb\xbfcustomer_id,")
    by_id = {int(row["customer_id"]): row for row in rows}
    assert by_id[members[0].customer_id]["phone"] == "+15551234567"
    assert by_id[members[1].customer_id]["phone"] == "+30 210 123 4567"
    # Anything that is not a plain phone number is still guarded.
    assert by_id[members[2].customer_id]["phone"] == "'+1+cmd|' /C calc'!A0"
    assert by_id[members[3].customer_id]["phone"] == '\'=HYPERLINK("http://x")'
    assert by_id[members[0].customer_id]["member_since"] == "2026-03-04 05:06:07"
    assert all(len(row["member_since"]) == 19 for row in rows)


def test_csv_reasons_in_the_merchants_language(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop(currency="EUR")
    ids = seed_shop(sessions, shop.id, customers=150, seed=3, history=False)
    members = vip_members(sessions, ids["vip"])
    said = {
        members[0].customer_id: Reason("repeat", {"orders": 3, "last_date": "2026-03-03"}),
        members[1].customer_id: Reason("repeat", {"orders": 11, "last_date": "2026-03-03"}),
        members[2].customer_id: Reason(
            "holiday", {"season_orders": 2, "orders": 5, "season_months": [11, 12]}
        ),
        members[3].customer_id: Reason(
            "one_time", {"day_date": "2026-03-03", "spend_money": 456.0}
        ),
    }
    with sessions.begin() as session:
        for cid, reason in said.items():
            member = session.get(Membership, (ids["vip"], cid))
            assert member is not None
            member.reason = reason.to_json()
    client = ApiClient(server, shop.domain)

    def reasons(lang: str | None) -> list[str]:
        _, rows = csv_rows(client, ids["vip"], **({"lang": lang} if lang else {}))
        by_id = {int(row["customer_id"]): row["reason"] for row in rows}
        return [by_id[cid] for cid in said]

    assert reasons(None) == [
        "3 orders, the last on 3 March 2026",
        "11 orders, the last on 3 March 2026",
        "2 of 5 orders in November–December",
        "one order on 3 March 2026 (EUR 456.00)",
    ]
    # The page's own Arabic, with the plural each number needs (3: few, 11: many).
    assert reasons("ar") == [
        "3 طلبات، آخرها في 2026-03-03",
        "11 طلبًا، آخرها في 2026-03-03",
        "2 من أصل 5 طلبات في نوفمبر–ديسمبر",
        "طلب واحد في 2026-03-03 (EUR 456.00)",
    ]
    assert reasons("ko")[2] == "11월–12월: 전체 주문 5건 중 2건"
    assert reasons("el")[0] == "3 παραγγελίες, η τελευταία στις 2026-03-03"
    r = client.get(f"/segments/{ids['vip']}/members.csv", lang="xx")
    assert r.status_code == 400 and r.json()["field"] == "lang"


def test_csv_reasons_take_the_plural_form_of_each_count_and_its_place(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    """The export renders the page's plural arguments as the page does: Arabic "every two
    days" is "كل يومين" (not the "يومان" of "two days"), Greek "every 1 day" is "κάθε ημέρα"."""
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=150, seed=3, history=False)
    members = vip_members(sessions, ids["vip"])
    likely = [Reason("likely", {"days": n, "last_date": "2026-03-03"}) for n in (1, 2, 3, 11, 100)]
    said = [
        *likely,
        Reason("true_fan", {"orders": 2, "days": 2, "last_date": "2026-03-03"}),
        Reason("holiday", {"season_orders": 1, "orders": 2, "season_months": [12]}),
        Reason("business.window_units", {"units": 1, "days": 1}),
    ]
    with sessions.begin() as session:
        for member, reason in zip(members, said, strict=False):
            row = session.get(Membership, (ids["vip"], member.customer_id))
            assert row is not None
            row.reason = reason.to_json()
    client = ApiClient(server, shop.domain)

    def reasons(lang: str) -> list[str]:
        _, rows = csv_rows(client, ids["vip"], lang=lang)
        by_id = {int(row["customer_id"]): row["reason"] for row in rows}
        return [by_id[m.customer_id] for m in members[: len(said)]]

    last = "آخر طلب في 2026-03-03"
    assert reasons("ar") == [
        f"يطلب كل يوم تقريبًا؛ {last}",
        f"يطلب كل يومين تقريبًا؛ {last}",
        f"يطلب كل 3 أيام تقريبًا؛ {last}",
        f"يطلب كل 11 يومًا تقريبًا؛ {last}",
        f"يطلب كل 100 يوم تقريبًا؛ {last}",
        "طلبان، بمعدل طلب كل يومين تقريبًا؛ آخرها في 2026-03-03",
        "1 من أصل طلبين في ديسمبر",
        "قطعة واحدة خلال آخر يوم",
    ]
    greek = reasons("el")
    assert greek[0] == "παραγγέλνει περίπου κάθε ημέρα· τελευταία παραγγελία στις 2026-03-03"
    assert greek[1].startswith("παραγγέλνει περίπου κάθε 2 ημέρες·")
    assert greek[7] == "1 τεμάχιο την τελευταία ημέρα"
    assert reasons("ko")[1].startswith("약 2일마다 주문;")
