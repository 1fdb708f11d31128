"""The page in the merchant's language, in headless Chromium: Arabic plural forms for every count
(Intl.PluralRules through ICU-style plural arguments), region names through Intl.DisplayNames,
statuses as messages, and amounts in the currency Shopify reports for the shop."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from shopify_app.db.models import Customer, MetaAudience, Segment, Shop
from shopify_app.segments import recompute
from shopify_app.states import MetaAudienceKind, MetaAudienceStatus, MetaState
from shopify_app.sync.shop import refresh_shop
from shopify_app.tagging.writes import admin_client
from tests.fixtures_api import ApiClient
from tests.fixtures_browser import open_view
from tests.fixtures_demo import SeededPage

pytestmark = pytest.mark.e2e

WEB = Path(__file__).resolve().parents[2] / "web"


def _shop_id(app: SeededPage) -> int:
    with app.ctx.sessions() as s:
        return s.scalars(select(Shop.id).where(Shop.domain == app.shop)).one()


def test_arabic_counts_take_the_plural_form_of_their_own_number(
    page: Page, seeded_page: SeededPage
) -> None:
    open_view(page, seeded_page.page_url, "#/", "home", locale="ar")
    said: dict[str, Any] = page.evaluate(
        """async () => {
          const i18n = await import("/static/i18n.js");
          await i18n.init("ar");
          const reason = (key, params) => i18n.reason(JSON.stringify({ key, params }));
          const out = { n: {} };
          for (const n of [1, 2, 5, 11, 100, 318]) {
            out.n[n] = i18n.number(n);
            const history = { needed_days: n, history_days: 3 };
            out[`history_${n}`] = i18n.t("prediction.short_history", history);
            out[`lapsed_${n}`] = i18n.t("segment.lapsed_open", { from: n });
            out[`scores_${n}`] = i18n.t("actions.scores_on", { count: n });
            out[`fan_${n}`] = reason("true_fan", { orders: 3, days: n, last_date: "2026-03-03" });
          }
          out.range = i18n.t("segment.lapsed_range", { from: 60, to: 89 });
          out.likely = i18n.t("prediction.likely", {
            size: 2, calibration_date: "x", ordered_share: "y", horizon: 90, average_share: "z",
          });
          await i18n.init("en");
          out.en = [
            i18n.t("segment.lapsed_open", { from: 90 }),
            i18n.t("prediction.short_history", { needed_days: 180, history_days: 30 }),
          ];
          return out;
        }"""
    )
    n = said["n"]
    # The example: "كل 318 يوم" is wrong; 318 takes the "many" form.
    assert f"كل {n['318']} يومًا" in said["fan_318"]
    assert f"كل {n['5']} أيام" in said["fan_5"] and f"كل {n['11']} يومًا" in said["fan_11"]
    assert said["history_1"].startswith("لا يوجد سجل كافٍ بعد: يحتاج الاختبار الرجعي إلى يوم واحد ")
    assert "إلى يومين من الطلبات" in said["history_2"]
    assert f"إلى {n['5']} أيام من" in said["history_5"]
    assert f"إلى {n['11']} يومًا من" in said["history_11"]
    assert f"إلى {n['100']} يوم من" in said["history_100"]
    assert said["lapsed_5"] == f"منقطعون {n['5']}+ أيام"
    assert said["lapsed_11"] == f"منقطعون {n['11']}+ يومًا"
    assert said["lapsed_100"] == f"منقطعون {n['100']}+ يوم"
    assert said["scores_1"] == "مفعّل: عميل واحد لديهم درجات"
    assert said["scores_2"] == "مفعّل: عميلان لديهم درجات"
    assert said["scores_318"] == f"مفعّل: {n['318']} عميلًا لديهم درجات"
    assert said["range"].endswith("يومًا")  # 89: many
    assert said["likely"].startswith("من بين عميلين ") and "خلال 90 يومًا" in said["likely"]
    assert said["en"] == [
        "Lapsed 90+ days",
        "not enough history yet: the backtest needs 180 days of orders, this store has 30",
    ]


# What the page says for 0, 1, 2, 3, 11 and 100 ("{n}" is the number as the page shows it),
# written out by a reader of each language: Arabic has six forms and its two-form changes with
# the case ("every two days" is "كل يومين", "two days" alone "يومان"); Greek has one and other;
# Korean counts with a counter word and no plural.
COUNTS = (0, 1, 2, 3, 11, 100)
GREEK_NONE = (
    "Στις D καμία ομάδα πελατών δεν ξεχώρισε: καμία δεν παρήγγειλε εντός {days} με τον διπλάσιο"
    " ρυθμό από τον μέσο όρο του καταστήματος (A)."
)
READS: dict[str, dict[str, tuple[str, ...]]] = {
    "ar": {
        "count.days": ("{n} يوم", "يوم واحد", "يومان", "{n} أيام", "{n} يومًا", "{n} يوم"),
        "every_days": (
            "يطلب كل {n} يوم تقريبًا", "يطلب كل يوم تقريبًا", "يطلب كل يومين تقريبًا",
            "يطلب كل {n} أيام تقريبًا", "يطلب كل {n} يومًا تقريبًا", "يطلب كل {n} يوم تقريبًا",
        ),
        "tags.gain": (
            "لن يحصل أي عميل على الوسم", "سيحصل عميل واحد على الوسم", "سيحصل عميلان على الوسم",
            "سيحصل {n} عملاء على الوسم", "سيحصل {n} عميلًا على الوسم", "سيحصل {n} عميل على الوسم",
        ),
        "analytics.returning_bar": (
            "T: عاد R من {n} عميل", "T: عاد R من عميل واحد", "T: عاد R من عميلين",
            "T: عاد R من {n} عملاء", "T: عاد R من {n} عميلًا", "T: عاد R من {n} عميل",
        ),
        "settings.error.too_many": (
            "{n} قاعدة على الأكثر.", "قاعدة واحدة على الأكثر.", "قاعدتان على الأكثر.",
            "{n} قواعد على الأكثر.", "{n} قاعدة على الأكثر.", "{n} قاعدة على الأكثر.",
        ),
    },
    "el": {
        "count.days": ("{n} ημέρες", "{n} ημέρα", *["{n} ημέρες"] * 4),
        "every_days": (
            "παραγγέλνει περίπου κάθε {n} ημέρες", "παραγγέλνει περίπου κάθε ημέρα",
            *["παραγγέλνει περίπου κάθε {n} ημέρες"] * 4,
        ),
        "actions.scores_on": (
            "Ενεργό: {n} πελάτες έχουν βαθμολογίες", "Ενεργό: {n} πελάτης έχει βαθμολογίες",
            *["Ενεργό: {n} πελάτες έχουν βαθμολογίες"] * 4,
        ),
        "backtest.none_stood_out": tuple(
            GREEK_NONE.replace("{days}", days)
            for days in ("{n} ημερών", "{n} ημέρας", *["{n} ημερών"] * 4)
        ),
        "settings.error.too_many": (
            "Το πολύ {n} κανόνες.", "Το πολύ {n} κανόνας.", *["Το πολύ {n} κανόνες."] * 4,
        ),
    },
    "ko": {
        "count.days": ("{n}일",) * 6,
        "every_days": ("약 {n}일마다 주문",) * 6,
        "tags.gain": ("고객 {n}명에게 태그가 추가됩니다",) * 6,
    },
}  # fmt: skip


def test_counts_read_right_in_every_language(page: Page, seeded_page: SeededPage) -> None:
    open_view(page, seeded_page.page_url, "#/", "home")
    said: dict[str, Any] = page.evaluate(
        """async ([langs, counts]) => {
          const i18n = await import("/static/i18n.js");
          const out = {};
          for (const lang of langs) {
            await i18n.init(lang);
            const likely = (days) =>
              JSON.stringify({ key: "likely", params: { days, last_date: "2026-03-03" } });
            const read = (n) => ({
              n: i18n.number(n),
              "count.days": i18n.t("count.days", { count: n }),
              // A reason's first clause: "orders about every {days}" (its date follows).
              every_days: i18n.reason(likely(n)).split(/[؛·;]/)[0].trim(),
              "tags.gain": i18n.t("tags.gain", { count: n }),
              "analytics.returning_bar": i18n.t(
                "analytics.returning_bar", { title: "T", rate: "R", count: n },
              ),
              "settings.error.too_many": i18n.t("settings.error.too_many", { max: n }),
              "actions.scores_on": i18n.t("actions.scores_on", { count: n }),
              "backtest.none_stood_out": i18n.t(
                "backtest.none_stood_out", { date: "D", days: n, average: "A" },
              ),
            });
            out[lang] = counts.map(read);
          }
          await i18n.init("en");
          return out;
        }""",
        [list(READS), list(COUNTS)],
    )
    for lang, messages in READS.items():
        for key, forms in messages.items():
            shown = [said[lang][i][key] for i in range(len(COUNTS))]
            expected = [form.replace("{n}", said[lang][i]["n"]) for i, form in enumerate(forms)]
            assert shown == expected, (lang, key)


NOUNS = {
    "ar": ("يوم", "أيام", "عميل", "عملاء", "طلب", "سجل", "قطع", "قاعدة", "قواعد", "فئ", "شخص"),
    "el": ("ημέρ", "πελάτ", "παραγγελ", "εγγραφ", "κανόν", "φορ", "τεμάχ", "βαθμίδ", "τρόπ"),
}


@pytest.mark.parametrize("lang", sorted(NOUNS))
def test_every_number_beside_a_noun_is_a_plural_argument(lang: str) -> None:
    """A count written straight before a noun ("{days} يومًا", "{days} ημέρες") has one form
    for every number. Left alone: the other end of a range ("{from}–{to} ημέρες", "έως {max}")
    and "{from}+" in Greek (plural whatever the number), {range} (a span of days) and {count}
    in a plural message (its forms are chosen by it already)."""
    messages = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    after = r"\+?\s+" if lang == "ar" else r"\s+"
    for key, message in messages.items():
        texts = message.values() if isinstance(message, dict) else [message]
        chosen = {"count", "range"} if isinstance(message, dict) else {"range"}
        for text in texts:
            bare = re.findall(rf"(?<!–)(?<!έως )\{{(\w+)\}}{after}(\S+)", text)
            wrong = [(n, w) for n, w in bare if w.startswith(NOUNS[lang]) and n not in chosen]
            assert wrong == [], (key, text)


def test_region_names_come_from_intl_display_names(page: Page, seeded_page: SeededPage) -> None:
    shop_id = _shop_id(seeded_page)
    recompute.recompute_shop_now(seeded_page.ctx, shop_id)
    with seeded_page.ctx.sessions() as s:
        regions = s.scalars(
            select(Segment).where(Segment.shop_id == shop_id, Segment.kind == "region")
        ).all()
        countries = {str(seg.definition["country"]) for seg in regions}
        region_id = regions[0].id
    assert countries, "the seeded shop has no region segments"
    for locale in ("ar", "el", "ko"):
        open_view(page, seeded_page.page_url, "#/segments", "segments", locale=locale)
        names = page.evaluate(
            "([locale, codes]) => { const d = new Intl.DisplayNames([locale], { type: 'region' });"
            " return Object.fromEntries(codes.map((c) => [c, d.of(c)])); }",
            [locale, sorted(countries)],
        )
        for code in countries:
            assert names[code] != code
            expect(page.locator("#app").get_by_text(names[code]).first).to_be_visible()
        body = page.locator("#app").inner_text()
        assert "Customers in" not in body, locale
        for code in countries:
            assert not re.search(rf"(?<![A-Z]){code}(?![A-Z])", body), (locale, code)
    # A member's reason names the region in the page's language too.
    open_view(page, seeded_page.page_url, f"#/segments/{region_id}", "segment", locale="el")
    first_reason = page.locator("[data-table='members'] .gp-reason").first
    expect(first_reason).to_have_text(re.compile(r"^μένει στην περιοχή [^A-Z]+·"))


def test_badges_show_a_status_as_a_message() -> None:
    """A badge shows a status's message, never the raw value the API sent (that every status
    has a message in every language is tests/test_api.py's every-message check)."""
    for path in (WEB / "views").glob("*.js"):
        raw = re.findall(
            r"\bbadge\(\s*([\w.?]+\.(?:status|state))\b", path.read_text(encoding="utf-8")
        )
        assert raw == [], (path.name, raw)


def test_amounts_are_in_the_currency_shopify_reports(page: Page, seeded_page: SeededPage) -> None:
    shop_id = _shop_id(seeded_page)
    seeded_page.sandbox.store(seeded_page.shop).currency = "EUR"
    refresh_shop(seeded_page.ctx, admin_client(seeded_page.ctx, shop_id), shop_id)  # type: ignore[arg-type]
    home = ApiClient(seeded_page.app_url, seeded_page.shop).get("/home").json()
    assert home["shop"]["currency"] == "EUR"
    with seeded_page.ctx.sessions() as s:
        customer_id = s.scalars(
            select(Customer.id).where(Customer.shop_id == shop_id, Customer.amount_spent > 0)
        ).first()
    open_view(page, seeded_page.page_url, f"#/customers/{customer_id}", "customer")
    # What they spent in the shop's currency; each order stays in the currency it was paid in.
    expect(page.locator("#app .gp-facts")).to_contain_text("€")
    expect(page.locator("#app .gp-facts")).not_to_contain_text("$")


def test_before_shopify_names_the_currency_amounts_carry_no_guessed_symbol(
    page: Page, seeded_page: SeededPage
) -> None:
    shop_id = _shop_id(seeded_page)
    with seeded_page.ctx.sessions.begin() as s:
        s.execute(update(Shop).where(Shop.id == shop_id).values(currency=None))
        segment_id = s.scalars(
            select(Segment.id).where(Segment.shop_id == shop_id, Segment.member_count > 0)
        ).first()
    open_view(page, seeded_page.page_url, f"#/segments/{segment_id}", "segment")
    spent = page.locator("[data-table='members'] s-table-row s-table-cell:nth-child(3)").first
    expect(spent).to_have_text(re.compile(r"^[\d,]+\.\d\d$"))


def test_audience_statuses_and_lookalike_countries_are_in_the_pages_language(
    page: Page, seeded_page: SeededPage
) -> None:
    shop_id = _shop_id(seeded_page)
    with seeded_page.ctx.sessions.begin() as s:
        segment_id = s.scalars(
            select(Segment.id).where(Segment.shop_id == shop_id, Segment.member_count > 0)
        ).first()
        assert segment_id is not None
        s.add(
            MetaAudience(
                shop_id=shop_id,
                segment_id=segment_id,
                kind=MetaAudienceKind.CUSTOM,
                audience_id="120000000001",
                status=MetaAudienceStatus.READY,
            )
        )
        s.add(
            MetaAudience(
                shop_id=shop_id,
                segment_id=segment_id,
                kind=MetaAudienceKind.LOOKALIKE,
                audience_id="120000000002",
                origin_audience_id="120000000001",
                spec={"country": "GR", "ratio": 0.02},
                status=MetaAudienceStatus.PENDING,
            )
        )
    open_view(page, seeded_page.page_url, f"#/segments/{segment_id}", "segment", locale="el")
    el = json.loads((WEB / "i18n" / "el.json").read_text(encoding="utf-8"))
    # Each badge shows the message of the state the page was sent (MetaState), never the value.
    custom = page.locator("[data-audience='custom'] dd [data-meta-state]")
    expect(custom).to_have_count(1)
    lookalike = page.locator("li", has=page.locator("s-badge"), has_text="Ελλάδα")
    expect(lookalike).to_have_count(1)
    for shown in (custom, lookalike.locator("[data-meta-state]")):
        state = shown.get_attribute("data-meta-state")
        assert state in set(MetaState), state
        expect(shown.locator("s-badge")).to_have_text(el[f"meta_state.{state}"])
        expect(page.locator("#app")).not_to_contain_text(state)  # type: ignore[arg-type]
    expect(page.locator("#app")).not_to_contain_text("ready")
