"""Seeded, deterministic shops for the sandbox: a linen and tableware store, as in the playbook.

The playbook's merchant sells napkins, placemats, tablecloths and wedding handkerchiefs. Its
customers fall into a few kinds, and the generator makes each kind on purpose so that every
segment Goldpan finds has real members to find:

- **one-off wedding buyers** — one order of handkerchiefs and a gift box, in wedding season;
- **casual one-time buyers** and **occasional repeaters** (two to four orders, holiday-heavy);
- **true fans** reordering every one to four months up to the present;
- **business buyers** — hotels, small airlines, event planners, restaurants — ordering by the
  case (36 or more of one item), colleagues sharing a company email domain, the company on the
  billing address;
- **customers going cold** — regular once, last order 60–89 days ago or 90+ days ago;
- **prospects** who signed up but never ordered, and the merchant's own test orders.

Around them: holiday peaks in November and December, discount codes, cancelled and test orders,
refunds, mixed marketing consent, and customers in Greek, Korean and Arabic as well as
American English — native-script names, local cities and province codes, and phone numbers in
the formats people actually type (trunk zeros, ``+`` prefixes, Arabic-Indic digits).

Refunds are real ones (:meth:`Store.refund_order`): about 4% of orders are refunded in full
(a third of those the day they were placed, before shipping), about 3% in part (a few units
of a line; for a business, part of a case, never below the case). Two customers are planted
for the rule "refunds are not purchases": ``refunded_vip``, whose very large order was refunded
the same day (counting it would make them the biggest spender), and ``returned_case``, who
ordered one case of napkins and sent most of it back (counting it would make them a business
buyer).

Everything comes from one ``random.Random(seed)``, so a seed always yields the same store.
Ids and order numbers are handed out in chronological order, as Shopify's are. Sizes scale to a
million orders: about 3.3 orders per customer and 2.5 line items per order.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gc
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from goldpan_sandbox.store import Address, Customer, LineItem, Order, Product, Store, Variant

_T = TypeVar("_T")

HISTORY_DAYS = 4 * 365
"""How far back the store's history goes from ``as_of``."""

CENT = Decimal("0.01")
ZERO = Decimal("0")
FREE_SHIPPING_OVER = Decimal("100")
SHIPPING = Decimal("8.95")
BULK_SHIPPING = Decimal("39.00")

# -- the catalog -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ProductSpec:
    handle: str
    title: str
    product_type: str
    sku_prefix: str
    price: str
    variants: tuple[str, ...]
    consumer_quantities: tuple[int, ...]
    weight: float  # how often it appears in an ordinary basket
    bulk: bool = False  # sold by the case to hotels, airlines and planners


_COLOURS = ("White", "Natural", "Sage", "Charcoal", "Blush", "Navy")

CATALOG: tuple[_ProductSpec, ...] = (
    _ProductSpec(
        "linen-dinner-napkins", "Linen Dinner Napkins", "Napkins", "DN", "9.50",
        _COLOURS, (4, 4, 6, 8, 8, 12, 12, 24), 10, bulk=True,
    ),
    _ProductSpec(
        "cocktail-napkins", "Linen Cocktail Napkins", "Napkins", "CN", "5.50",
        _COLOURS[:4], (6, 8, 12, 12, 24), 6, bulk=True,
    ),
    _ProductSpec(
        "tea-napkins", "Hemstitched Tea Napkins", "Napkins", "TN", "6.75",
        ("White", "Ivory", "Dove Grey"), (4, 6, 8, 12), 4, bulk=True,
    ),
    _ProductSpec(
        "linen-placemats", "Linen Placemats", "Placemats", "PM", "14.00",
        _COLOURS[:5], (2, 4, 4, 6, 8), 6, bulk=True,
    ),
    _ProductSpec(
        "linen-tablecloth", "Stonewashed Linen Tablecloth", "Tablecloths", "TC", "119.00",
        ('60" x 90"', '60" x 120"', '70" round', '90" round'), (1, 1, 1, 2), 3,
    ),
    _ProductSpec(
        "table-runner", "Linen Table Runner", "Table Runners", "TR", "34.00",
        ('14" x 72"', '14" x 108"'), (1, 1, 2), 3,
    ),
    _ProductSpec(
        "wedding-handkerchief", "Embroidered Wedding Handkerchief", "Handkerchiefs", "WH",
        "24.00",
        ("Bride", "Mother of the Bride", "Mother of the Groom", "Father of the Bride", "Groom"),
        (1, 1, 2, 3, 4), 2,
    ),
    _ProductSpec(
        "handkerchief-gift-box", "Handkerchief Gift Box", "Gifts", "GB", "48.00",
        ("Set of 3",), (1, 1, 2), 1.5,
    ),
    _ProductSpec(
        "monogrammed-handkerchiefs", "Monogrammed Handkerchiefs", "Handkerchiefs", "MH", "18.00",
        ("Classic", "Script"), (1, 2, 3), 1.5,
    ),
    _ProductSpec(
        "linen-tea-towels", "Linen Tea Towels", "Kitchen", "TT", "16.00",
        ("Striped", "Plain", "Check"), (2, 2, 3, 4), 3, bulk=True,
    ),
    _ProductSpec(
        "linen-apron", "Linen Apron", "Kitchen", "AP", "38.00",
        ("Natural", "Charcoal"), (1, 1, 2), 1.5,
    ),
    _ProductSpec(
        "napkin-rings", "Brass Napkin Rings", "Tableware", "NR", "22.00",
        ("Set of 4",), (1, 1, 2), 1.5,
    ),
    _ProductSpec(
        "bread-basket-liner", "Linen Bread Basket Liner", "Tableware", "BL", "12.00",
        ("Natural", "White"), (1, 2), 1,
    ),
)  # fmt: skip

_LINE_COUNT_CUM = (0.12, 0.38, 0.62, 0.8, 0.92)
"""Cumulative odds of 1..6 line items in an ordinary basket (about 3 on average)."""

_REORDER_COUNT_CUM = (0.2, 0.55, 0.85)
"""Cumulative odds of 1..4 line items when a regular tops up (about 2.4 on average)."""

CASE_QUANTITIES = (36, 36, 48, 48, 60, 72, 72, 96, 120, 144, 240)
"""Business orders come by the case: never fewer than 36 of the main item."""

CANCEL_REASONS = ("customer", "customer", "inventory", "fraud", "declined")

CANCEL_RATE = 0.02
FULL_REFUND_RATE = 0.04
PARTIAL_REFUND_RATE = 0.035
"""Some of these draw an order with nothing to give back in part (one unit): about 3% happen."""
SAME_DAY_REFUND_SHARE = 0.35
"""Of the full refunds, how many happen the day the order was placed (restock: CANCEL)."""

DISCOUNTS = {
    "WELCOME10": Decimal("0.10"),
    "WEDDING15": Decimal("0.15"),
    "HOLIDAY20": Decimal("0.20"),
    "TRADE12": Decimal("0.12"),
    "THANKYOU15": Decimal("0.15"),
}

# -- markets: names, cities, phones -----------------------------------------------------------

_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@dataclass(frozen=True, slots=True)
class _City:
    name: str
    latin: str
    province_code: str | None
    country_code: str
    zip_prefix: str  # "" means the country has no postal codes in use (UAE)
    area: str  # phone area / mobile prefix hint


@dataclass(frozen=True, slots=True)
class _Person:
    """A first name as (native, latin, gender)."""

    native: str
    latin: str
    female: bool


@dataclass(frozen=True, slots=True)
class _Market:
    locale: str
    weight: float
    first_names: tuple[_Person, ...]
    last_names: tuple[tuple[str, str, str, str], ...]  # native m, native f, latin m, latin f
    native_share: float  # how many write their name in the native script
    cities: tuple[_City, ...]
    streets: tuple[str, ...]
    email_domains: tuple[str, ...]
    phone: Callable[[random.Random, _City], tuple[str, str]]  # (as typed, E.164 digits)
    company_tld: str


def _p(spec: str) -> tuple[_Person, ...]:
    """Parse ``"native/latin/f native/latin/m ..."`` into first names."""
    out = []
    for item in spec.split():
        native, latin, sex = item.split("/")
        out.append(_Person(native.replace("_", " "), latin.replace("_", " "), sex == "f"))
    return tuple(out)


def _same(names: str) -> tuple[tuple[str, str, str, str], ...]:
    return tuple((n, n, n, n) for n in names.split())


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10**count)).zfill(count)


def _us_phone(rng: random.Random, city: _City) -> tuple[str, str]:
    area = city.area
    exchange = str(rng.randrange(201, 990))
    line = _digits(rng, 4)
    key = f"1{area}{exchange}{line}"
    style = rng.randrange(6)
    if style == 0:
        return f"({area}) {exchange}-{line}", key
    if style == 1:
        return f"{area}-{exchange}-{line}", key
    if style == 2:
        return f"+1 {area} {exchange} {line}", key
    if style == 3:
        return f"+1{area}{exchange}{line}", key
    if style == 4:
        return f"{area}.{exchange}.{line}", key
    return f"1-{area}-{exchange}-{line}", key


def _gr_phone(rng: random.Random, city: _City) -> tuple[str, str]:
    # Greek numbers have no trunk prefix: mobiles 69x, landlines start with the area code.
    if rng.random() < 0.75:
        number = f"69{rng.randrange(10)}{_digits(rng, 7)}"
        spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    else:
        number = f"{city.area}{_digits(rng, 10 - len(city.area))}"
        spaced = f"{number[: len(city.area)]} {number[len(city.area) :]}"
    key = f"30{number}"
    style = rng.randrange(4)
    if style == 0:
        return spaced, key
    if style == 1:
        return f"+30 {spaced}", key
    if style == 2:
        return f"0030{number}", key
    return number, key


def _kr_phone(rng: random.Random, city: _City) -> tuple[str, str]:
    # Korean numbers are written with the trunk 0 that E.164 drops: 010-1234-5678 → +82 10...
    if rng.random() < 0.8:
        national = f"010{_digits(rng, 8)}"
        dashed = f"{national[:3]}-{national[3:7]}-{national[7:]}"
    else:
        national = f"0{city.area}{_digits(rng, 7)}"
        cut = 1 + len(city.area)
        dashed = f"{national[:cut]}-{national[cut : cut + 3]}-{national[cut + 3 :]}"
    key = f"82{national[1:]}"
    style = rng.randrange(4)
    if style == 0:
        return dashed, key
    if style == 1:
        return f"+82 {dashed[1:]}", key
    if style == 2:
        return national, key
    return f"+82-{dashed[1:]}", key


def _arab_phone(rng: random.Random, city: _City) -> tuple[str, str]:
    # Mobiles with the trunk 0 (050..., 05x..., 010..., 079...), sometimes in Arabic-Indic digits.
    country_codes = {"AE": "971", "SA": "966", "EG": "20", "JO": "962"}
    cc = country_codes[city.country_code]
    if city.country_code == "EG":
        national = f"01{rng.choice('0125')}{_digits(rng, 8)}"
        spaced = f"{national[:3]} {national[3:7]} {national[7:]}"
    else:
        national = f"0{city.area}{_digits(rng, 9 - len(city.area))}"
        spaced = f"{national[:3]} {national[3:6]} {national[6:]}"
    key = f"{cc}{national[1:]}"
    roll = rng.random()
    if roll < 0.3:
        return spaced, key
    if roll < 0.55:
        return f"+{cc} {spaced[1:]}", key
    if roll < 0.7:
        return f"00{cc}{national[1:]}", key
    if roll < 0.92:
        return spaced.translate(_ARABIC_INDIC), key
    return f"+{cc}{national[1:]}".translate(_PERSIAN_DIGITS), key


MARKETS: tuple[_Market, ...] = (
    _Market(
        locale="en",
        weight=0.62,
        first_names=_p(
            "Emily/Emily/f Olivia/Olivia/f Sarah/Sarah/f Jessica/Jessica/f Ashley/Ashley/f "
            "Megan/Megan/f Lauren/Lauren/f Hannah/Hannah/f Grace/Grace/f Abigail/Abigail/f "
            "Madison/Madison/f Charlotte/Charlotte/f Sophia/Sophia/f Isabella/Isabella/f "
            "Camila/Camila/f Maria/Maria/f Aaliyah/Aaliyah/f Jennifer/Jennifer/f Linda/Linda/f "
            "Patricia/Patricia/f Susan/Susan/f Karen/Karen/f Anne/Anne/f Claire/Claire/f "
            "Michael/Michael/m James/James/m David/David/m Robert/Robert/m John/John/m "
            "Daniel/Daniel/m Matthew/Matthew/m Andrew/Andrew/m Ryan/Ryan/m Tyler/Tyler/m "
            "Ethan/Ethan/m Noah/Noah/m Carlos/Carlos/m Marcus/Marcus/m William/William/m "
            "Thomas/Thomas/m Christopher/Christopher/m Benjamin/Benjamin/m"
        ),
        last_names=_same(
            "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
            "Hernandez Lopez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson "
            "White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Nguyen "
            "Hill Green Adams Baker Nelson Carter Mitchell Campbell Roberts Turner Phillips "
            "Parker Evans Edwards Collins Stewart Morris O'Brien McAllister Van_Der_Berg"
        ),
        native_share=1.0,
        cities=(
            _City("New York", "New York", "NY", "US", "100", "212"),
            _City("Brooklyn", "Brooklyn", "NY", "US", "112", "718"),
            _City("Austin", "Austin", "TX", "US", "787", "512"),
            _City("Houston", "Houston", "TX", "US", "770", "713"),
            _City("Chicago", "Chicago", "IL", "US", "606", "312"),
            _City("San Francisco", "San Francisco", "CA", "US", "941", "415"),
            _City("Los Angeles", "Los Angeles", "CA", "US", "900", "213"),
            _City("Seattle", "Seattle", "WA", "US", "981", "206"),
            _City("Charleston", "Charleston", "SC", "US", "294", "843"),
            _City("Savannah", "Savannah", "GA", "US", "314", "912"),
            _City("Atlanta", "Atlanta", "GA", "US", "303", "404"),
            _City("Boston", "Boston", "MA", "US", "021", "617"),
            _City("Denver", "Denver", "CO", "US", "802", "303"),
            _City("Nashville", "Nashville", "TN", "US", "372", "615"),
            _City("Portland", "Portland", "OR", "US", "972", "503"),
            _City("Miami", "Miami", "FL", "US", "331", "305"),
            _City("Santa Fe", "Santa Fe", "NM", "US", "875", "505"),
            _City("St. Louis", "St. Louis", "MO", "US", "631", "314"),
            _City("Honolulu", "Honolulu", "HI", "US", "968", "808"),
            _City("Minneapolis", "Minneapolis", "MN", "US", "554", "612"),
        ),
        streets=(
            "Main St", "Oak Ave", "Maple Dr", "King St", "Broadway", "Elm St", "Magnolia Ln",
            "Park Ave", "Meeting St", "Congress Ave", "Lakeview Rd", "Cedar Ct",
        ),
        email_domains=(
            "gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com",
            "hotmail.com", "aol.com", "me.com", "comcast.net",
        ),
        phone=_us_phone,
        company_tld=".com",
    ),
    _Market(
        locale="el",
        weight=0.13,
        first_names=_p(
            "Μαρία/Maria/f Ελένη/Eleni/f Κατερίνα/Katerina/f Σοφία/Sofia/f Βασιλική/Vasiliki/f "
            "Γεωργία/Georgia/f Αναστασία/Anastasia/f Δήμητρα/Dimitra/f Ειρήνη/Eirini/f "
            "Χριστίνα/Christina/f Αικατερίνη/Aikaterini/f Ζωή/Zoi/f "
            "Γιώργος/Giorgos/m Δημήτρης/Dimitris/m Νίκος/Nikos/m Κώστας/Kostas/m "
            "Γιάννης/Giannis/m Παναγιώτης/Panagiotis/m Χρήστος/Christos/m Αθανάσιος/Athanasios/m "
            "Βασίλης/Vasilis/m Σπύρος/Spyros/m Ευάγγελος/Evangelos/m Αλέξανδρος/Alexandros/m"
        ),
        last_names=(
            ("Παπαδόπουλος", "Παπαδοπούλου", "Papadopoulos", "Papadopoulou"),
            ("Παπαγεωργίου", "Παπαγεωργίου", "Papageorgiou", "Papageorgiou"),
            ("Οικονόμου", "Οικονόμου", "Oikonomou", "Oikonomou"),
            ("Γεωργίου", "Γεωργίου", "Georgiou", "Georgiou"),
            ("Νικολάου", "Νικολάου", "Nikolaou", "Nikolaou"),
            ("Βασιλείου", "Βασιλείου", "Vasileiou", "Vasileiou"),
            ("Ιωάννου", "Ιωάννου", "Ioannou", "Ioannou"),
            ("Αντωνίου", "Αντωνίου", "Antoniou", "Antoniou"),
            ("Καραγιάννης", "Καραγιάννη", "Karagiannis", "Karagianni"),
            ("Μαυρίδης", "Μαυρίδου", "Mavridis", "Mavridou"),
            ("Δημητρίου", "Δημητρίου", "Dimitriou", "Dimitriou"),
            ("Κωνσταντίνου", "Κωνσταντίνου", "Konstantinou", "Konstantinou"),
            ("Αλεξίου", "Αλεξίου", "Alexiou", "Alexiou"),
            ("Μακρής", "Μακρή", "Makris", "Makri"),
            ("Παπαδάκης", "Παπαδάκη", "Papadakis", "Papadaki"),
            ("Θεοδωρίδης", "Θεοδωρίδου", "Theodoridis", "Theodoridou"),
        ),
        native_share=0.6,
        cities=(
            _City("Αθήνα", "Athens", None, "GR", "10", "210"),
            _City("Θεσσαλονίκη", "Thessaloniki", None, "GR", "54", "2310"),
            _City("Πάτρα", "Patras", None, "GR", "26", "2610"),
            _City("Ηράκλειο", "Heraklion", None, "GR", "71", "2810"),
            _City("Λάρισα", "Larissa", None, "GR", "41", "2410"),
            _City("Γλυφάδα", "Glyfada", None, "GR", "16", "210"),
            _City("Κηφισιά", "Kifisia", None, "GR", "14", "210"),
            _City("Ρόδος", "Rhodes", None, "GR", "85", "22410"),
        ),
        streets=(
            "Ερμού", "Πανεπιστημίου", "Ακαδημίας", "Τσιμισκή", "Εγνατία", "Βασ. Σοφίας",
            "Ermou", "Kifisias", "Vouliagmenis",
        ),
        email_domains=(
            "gmail.com", "gmail.com", "yahoo.gr", "hotmail.gr", "otenet.gr", "outlook.com",
        ),
        phone=_gr_phone,
        company_tld=".gr",
    ),
    _Market(
        locale="ko",
        weight=0.13,
        first_names=_p(
            "서연/Seoyeon/f 지우/Jiwoo/f 서윤/Seoyun/f 민서/Minseo/f 하은/Haeun/f 지민/Jimin/f "
            "수아/Sua/f 예은/Yeeun/f 유나/Yuna/f 은지/Eunji/f 혜진/Hyejin/f 수빈/Subin/f "
            "민준/Minjun/m 서준/Seojun/m 도윤/Doyun/m 예준/Yejun/m 시우/Siwoo/m 하준/Hajun/m "
            "지훈/Jihoon/m 현우/Hyunwoo/m 준호/Junho/m 성민/Sungmin/m "
            "동현/Donghyun/m 태현/Taehyun/m"
        ),
        last_names=(
            ("김", "김", "Kim", "Kim"),
            ("이", "이", "Lee", "Lee"),
            ("박", "박", "Park", "Park"),
            ("최", "최", "Choi", "Choi"),
            ("정", "정", "Jung", "Jung"),
            ("강", "강", "Kang", "Kang"),
            ("조", "조", "Cho", "Cho"),
            ("윤", "윤", "Yoon", "Yoon"),
            ("장", "장", "Jang", "Jang"),
            ("임", "임", "Lim", "Lim"),
            ("한", "한", "Han", "Han"),
            ("오", "오", "Oh", "Oh"),
            ("서", "서", "Seo", "Seo"),
            ("신", "신", "Shin", "Shin"),
            ("권", "권", "Kwon", "Kwon"),
            ("황", "황", "Hwang", "Hwang"),
            ("남궁", "남궁", "Namgung", "Namgung"),
        ),
        native_share=0.7,
        cities=(
            _City("서울", "Seoul", "KR-11", "KR", "0", "2"),
            _City("부산", "Busan", "KR-26", "KR", "4", "51"),
            _City("인천", "Incheon", "KR-28", "KR", "2", "32"),
            _City("대구", "Daegu", "KR-27", "KR", "4", "53"),
            _City("성남시", "Seongnam", "KR-41", "KR", "1", "31"),
            _City("수원시", "Suwon", "KR-41", "KR", "1", "31"),
            _City("제주시", "Jeju", "KR-49", "KR", "6", "64"),
            _City("대전", "Daejeon", "KR-30", "KR", "3", "42"),
        ),
        streets=("테헤란로", "강남대로", "세종대로", "해운대로", "올림픽로", "Teheran-ro"),
        email_domains=(
            "naver.com", "naver.com", "gmail.com", "daum.net", "kakao.com", "hanmail.net",
        ),
        phone=_kr_phone,
        company_tld=".co.kr",
    ),
    _Market(
        locale="ar",
        weight=0.12,
        first_names=_p(
            "فاطمة/Fatima/f مريم/Mariam/f نور/Noor/f ليلى/Layla/f سارة/Sara/f عائشة/Aisha/f "
            "هند/Hind/f ريم/Reem/f دانة/Dana/f ياسمين/Yasmin/f لينا/Lina/f سلمى/Salma/f "
            "محمد/Mohammed/m أحمد/Ahmed/m عمر/Omar/m يوسف/Youssef/m خالد/Khaled/m علي/Ali/m "
            "حسن/Hassan/m عبدالله/Abdullah/m سعيد/Saeed/m طارق/Tarek/m كريم/Karim/m راشد/Rashid/m"
        ),
        last_names=(
            ("المنصوري", "المنصوري", "Al Mansouri", "Al Mansouri"),
            ("الحمادي", "الحمادي", "Al Hammadi", "Al Hammadi"),
            ("الشامسي", "الشامسي", "Al Shamsi", "Al Shamsi"),
            ("العتيبي", "العتيبي", "Al Otaibi", "Al Otaibi"),
            ("القحطاني", "القحطاني", "Al Qahtani", "Al Qahtani"),
            ("حداد", "حداد", "Haddad", "Haddad"),
            ("خوري", "خوري", "Khoury", "Khoury"),
            ("عبد الرحمن", "عبد الرحمن", "Abdelrahman", "Abdelrahman"),
            ("منصور", "منصور", "Mansour", "Mansour"),
            ("سالم", "سالم", "Salem", "Salem"),
            ("الزعبي", "الزعبي", "Al Zoubi", "Al Zoubi"),
            ("النجار", "النجار", "El Naggar", "El Naggar"),
            ("فرج", "فرج", "Farag", "Farag"),
            ("الكعبي", "الكعبي", "Al Kaabi", "Al Kaabi"),
        ),
        native_share=0.65,
        cities=(
            _City("دبي", "Dubai", "DU", "AE", "", "5"),
            _City("أبو ظبي", "Abu Dhabi", "AZ", "AE", "", "5"),
            _City("الشارقة", "Sharjah", "SH", "AE", "", "5"),
            _City("الرياض", "Riyadh", None, "SA", "1", "5"),
            _City("جدة", "Jeddah", None, "SA", "2", "5"),
            _City("القاهرة", "Cairo", "C", "EG", "11", "10"),
            _City("الإسكندرية", "Alexandria", "ALX", "EG", "21", "10"),
            _City("عمّان", "Amman", None, "JO", "11", "7"),
        ),
        streets=(
            "شارع الشيخ زايد", "شارع الملك فهد", "شارع التحرير", "شارع الرينبو",
            "Sheikh Zayed Road", "King Fahd Road", "Al Wasl Road",
        ),
        email_domains=("gmail.com", "gmail.com", "hotmail.com", "yahoo.com", "outlook.com"),
        phone=_arab_phone,
        company_tld=".com",
    ),
)  # fmt: skip

_COMPANY_STEMS = (
    "Harborview", "Lindenhof", "Cypress Point", "Magnolia House", "Bluewater", "Old Mill",
    "Meltemi", "Aegean Blue", "Caldera", "Olive Grove", "Han River", "Namsan", "Jeju Wind",
    "Desert Rose", "Al Noor", "Palm Crescent", "Nile Garden", "Blue Door", "Oak & Ivy",
    "Silver Birch", "Golden Hour", "Ivory Table", "Petal & Pearl", "Juniper", "Saltmarsh",
    "Copper Kettle", "Northwind", "Sparrow", "Willowbrook", "Stonegate",
)  # fmt: skip
_COMPANY_KINDS = (
    ("Hotel", "hotel"), ("Inn", "hotel"), ("Resort", "hotel"), ("Suites", "hotel"),
    ("Air", "airline"), ("Airways", "airline"), ("Events", "planner"), ("Weddings", "planner"),
    ("Catering", "planner"), ("Bistro", "restaurant"), ("Supper Club", "restaurant"),
    ("Yacht Charters", "hotel"),
)  # fmt: skip
_BUSINESS_MAILBOXES = ("purchasing", "events", "housekeeping", "procurement", "fnb", "info")

# -- archetypes --------------------------------------------------------------------------------

ARCHETYPES: dict[str, float] = {
    "wedding": 0.17,  # one order, wedding season
    "one_time": 0.27,  # one ordinary order
    "occasional": 0.21,  # two to four orders over the years
    "fan": 0.115,  # reorders every 1-4 months up to now
    "business": 0.04,  # by the case, company domains
    "cooling": 0.06,  # regular until 60-89 days ago
    "cold": 0.075,  # regular until 90+ days ago
    "prospect": 0.05,  # signed up, never ordered
}
"""Share of customers of each kind (the :data:`PLANTED` ones take a few places)."""

PLANTED = ("staff", "refunded_vip", "returned_case")
"""One of each in every store of 20 customers or more: the merchant's own test account, and
the two customers only refunds tell apart (see the module docstring)."""


@dataclass(slots=True)
class _Company:
    name: str
    domain: str
    market: _Market
    city: _City
    street: str
    members: int = 0


@dataclass(slots=True)
class _RefundPlan:
    """A refund decided with its order, applied once ids are handed out."""

    order: Order
    at: dt.datetime
    lines: list[tuple[LineItem, int]] | None  # None: everything, and the shipping
    restock_type: str


@dataclass(slots=True)
class _Draft:
    """A customer before ids are handed out (ids follow creation time, as Shopify's do)."""

    customer: Customer
    orders: list[Order]
    archetype: str


class _Generator:
    def __init__(self, domain: str, customers: int, seed: int, as_of: dt.date) -> None:
        self.rng = random.Random(seed)
        self.domain = domain
        self.as_of = as_of
        self.start = as_of - dt.timedelta(days=HISTORY_DAYS)
        self.epoch = dt.datetime.combine(self.start, dt.time(), dt.UTC)
        self.cutoff = dt.datetime.combine(as_of, dt.time(), dt.UTC)
        self.last_second = self.cutoff - dt.timedelta(seconds=1)
        # Day index → month, and the holiday-season day ranges, for quick date decisions.
        self.months = [(self.start + dt.timedelta(days=d)).month for d in range(HISTORY_DAYS)]
        self.holidays: list[tuple[int, int]] = []
        for year in range(self.start.year, as_of.year + 1):
            lo = (dt.date(year, 11, 10) - self.start).days
            hi = (dt.date(year, 12, 22) - self.start).days
            lo, hi = max(lo, 0), min(hi, HISTORY_DAYS - 1)
            if lo <= hi:
                self.holidays.append((lo, hi))
        self.emails: set[str] = set()
        self.phones: set[str] = set()
        self.companies: list[_Company] = []
        self.company_domains: set[str] = set()
        self.market_cum = _cumulative([m.weight for m in MARKETS])
        self.products: list[Product] = []
        self.variants_by_handle: dict[str, list[Variant]] = {}
        self.spec_by_product: dict[int, _ProductSpec] = {}
        self.refund_plans: list[_RefundPlan] = []
        self._random = self.rng.random

    def pick(self, seq: Sequence[_T]) -> _T:
        """``random.choice`` without its per-call overhead (millions of calls per big store)."""
        return seq[int(self._random() * len(seq))]

    def between(self, lo: int, hi: int) -> int:
        """``random.randint`` (both ends included), the fast way."""
        return lo + int(self._random() * (hi - lo + 1))

    # -- catalog ------------------------------------------------------------------------------
    def build_catalog(self, store: Store) -> None:
        created = self.epoch - dt.timedelta(days=30)
        for spec in CATALOG:
            product_id = store.next_id()
            price = Decimal(spec.price)
            variants = [
                Variant(
                    id=store.next_id(),
                    product_id=product_id,
                    title=title,
                    sku=f"{spec.sku_prefix}-{_sku_code(title)}",
                    price=price,
                )
                for title in spec.variants
            ]
            product = Product(
                id=product_id,
                title=spec.title,
                handle=spec.handle,
                product_type=spec.product_type,
                vendor=store.name,
                created_at=created,
                updated_at=created,
                variants=variants,
            )
            store.add_product(product)
            self.products.append(product)
            self.variants_by_handle[spec.handle] = variants
            self.spec_by_product[product_id] = spec
        self.basket_cum = _cumulative([s.weight for s in CATALOG])
        self.bulk_products = [p for p in self.products if self.spec_by_product[p.id].bulk]
        self.fan_products = [
            p for p in self.products if self.spec_by_product[p.id].product_type != "Handkerchiefs"
        ]

    # -- people -------------------------------------------------------------------------------
    def market(self) -> _Market:
        return MARKETS[bisect.bisect(self.market_cum, self.rng.random())]

    def person(self, market: _Market) -> tuple[str, str, str, str]:
        """(first, last) as written, and their latin forms for the email address."""
        rng = self.rng
        first = self.pick(market.first_names)
        last = self.pick(market.last_names)
        native = rng.random() < market.native_share
        if first.female:
            last_native, last_latin = last[1], last[3]
        else:
            last_native, last_latin = last[0], last[2]
        if native:
            return first.native, last_native, first.latin, last_latin
        return first.latin, last_latin, first.latin, last_latin

    def email(self, first: str, last: str, market: _Market, domain: str | None = None) -> str:
        rng = self.rng
        f = _slug(first, "")
        lname = _slug(last, "")
        patterns = (
            f"{f}.{lname}",
            f"{f}{lname}",
            f"{f}_{lname}{rng.randrange(70, 100)}",
            f"{f[:1]}{lname}",
            f"{lname}.{f}{rng.randrange(1, 99)}",
            f"{f}{rng.randrange(1960, 2006)}",
        )
        local = patterns[rng.randrange(len(patterns))] if domain is None else f"{f}.{lname}"
        host = domain or self.pick(market.email_domains)
        address = f"{local}@{host}"
        while address in self.emails:
            address = f"{local}{rng.randrange(2, 9999)}@{host}"
        self.emails.add(address)
        return address

    def phone(self, market: _Market, city: _City) -> str:
        for _ in range(20):
            typed, key = market.phone(self.rng, city)
            if key not in self.phones:
                self.phones.add(key)
                return typed
        raise RuntimeError("could not find a free phone number")  # pragma: no cover

    def address(
        self, market: _Market, first: str, last: str, phone: str | None, company: str | None = None
    ) -> Address:
        city = self.pick(market.cities)
        return self._address(market, city, self.pick(market.streets), first, last, phone, company)

    def _address(
        self,
        market: _Market,
        city: _City,
        street: str,
        first: str,
        last: str,
        phone: str | None,
        company: str | None,
    ) -> Address:
        rng = self.rng
        native = rng.random() < market.native_share
        number = rng.randrange(1, 400)
        if market.locale == "en":
            line1 = f"{number} {street}"
        elif market.locale == "ko":
            line1 = f"{street} {number}"
        else:
            line1 = f"{street} {number}"
        postcode: str | None
        if not city.zip_prefix:
            postcode = None
        elif city.country_code == "GR":
            raw = f"{city.zip_prefix}{_digits(rng, 3)}"
            postcode = f"{raw[:3]} {raw[3:]}"
        elif city.country_code == "US":
            postcode = f"{city.zip_prefix}{_digits(rng, 2)}"
            if rng.random() < 0.1:
                postcode += f"-{_digits(rng, 4)}"
        else:
            postcode = f"{city.zip_prefix}{_digits(rng, 5 - len(city.zip_prefix))}"
        return Address(
            first_name=first,
            last_name=last,
            company=company,
            address1=line1,
            city=city.name if native else city.latin,
            province_code=city.province_code,
            country_code=city.country_code,
            zip=postcode,
            phone=phone,
        )

    def company(self) -> _Company:
        """A business: often an existing one with a few colleagues, else a new one."""
        rng = self.rng
        open_companies = [c for c in self.companies[-50:] if c.members < 4]
        if open_companies and rng.random() < 0.45:
            company = self.pick(open_companies)
        else:
            market = self.market()
            stem = self.pick(_COMPANY_STEMS)
            kind, _category = self.pick(_COMPANY_KINDS)
            city = self.pick(market.cities)
            name = f"{stem} {kind}"
            slug = _slug(name, "")
            domain = f"{slug}{market.company_tld}"
            if domain in self.company_domains:
                name = f"{stem} {kind} {city.latin}"
                domain = f"{_slug(name, '')}{market.company_tld}"
            serial = 2
            while domain in self.company_domains:
                domain = f"{slug}{serial}{market.company_tld}"
                serial += 1
            self.company_domains.add(domain)
            company = _Company(name, domain, market, city, self.pick(market.streets))
            self.companies.append(company)
        company.members += 1
        return company

    # -- order plans --------------------------------------------------------------------------
    def holiday_day(self) -> int | None:
        if not self.holidays:
            return None
        lo, hi = self.pick(self.holidays)
        return self.between(lo, hi)

    def casual_day(self, lo: int = 0) -> int:
        """A day for an unscheduled order: two in five land in the November-December peak."""
        rng = self.rng
        if rng.random() < 0.4:
            day = self.holiday_day()
            if day is not None and day >= lo:
                return day
        return rng.randrange(lo, HISTORY_DAYS)

    def wedding_day(self) -> int:
        rng = self.rng
        for _ in range(3):
            day = rng.randrange(HISTORY_DAYS)
            if 4 <= self.months[day] <= 10:
                return day
        return day

    def cadence(
        self, last: int, interval: tuple[int, int], count: int, jitter: int = 12
    ) -> list[int]:
        """Days of ``count`` orders at a rhythm, ending on day ``last`` (walking backwards)."""
        step = self.between(*interval)
        days: list[int] = []
        day = last
        while len(days) < count and day >= 0:
            days.append(day)
            day -= max(7, step + self.between(-jitter, jitter))
        days.reverse()
        return days

    def plan(self, archetype: str) -> list[int]:
        rng = self.rng
        today = HISTORY_DAYS - 1
        if archetype == "wedding":
            return [self.wedding_day()]
        if archetype == "one_time":
            return [self.casual_day()]
        if archetype == "occasional":
            return sorted(self.casual_day() for _ in range(self.pick((2, 2, 2, 3, 3, 4))))
        if archetype == "fan":
            interval = (self.between(35, 60), self.between(60, 120))
            step = self.between(*sorted(interval))
            last = today - self.between(0, min(45, step))
            return self.cadence(last, (step, step), self.between(4, 15))
        if archetype == "business":
            last = today - self.between(0, 40)
            return self.cadence(last, (25, 80), self.between(4, 24), jitter=10)
        if archetype == "cooling":
            last = today - self.between(60, 89)
            return self.cadence(last, (30, 75), self.between(3, 7))
        if archetype == "cold":
            last = today - self.between(90, 500)
            return self.cadence(last, (30, 90), self.between(3, 7))
        if archetype == "staff":
            return sorted(rng.randrange(HISTORY_DAYS) for _ in range(3))
        if archetype == "refunded_vip":  # an ordinary order, then the huge one, recently
            return [rng.randrange(HISTORY_DAYS - 220), today - self.between(10, 200)]
        if archetype == "returned_case":
            return [self.casual_day()]
        return []  # prospect

    # -- baskets ------------------------------------------------------------------------------
    def consumer_lines(
        self, products: Sequence[Product] | None = None, *, reorder: bool = False
    ) -> list[LineItem]:
        """An ordinary basket; a reorder (fans, regulars) is smaller: a few things topped up."""
        rng = self.rng
        roll = rng.random()
        count = bisect.bisect(_REORDER_COUNT_CUM if reorder else _LINE_COUNT_CUM, roll) + 1
        chosen: dict[int, Variant] = {}
        for _ in range(count):
            if products is None:
                product = self.products[bisect.bisect(self.basket_cum, rng.random())]
            else:
                product = self.pick(products)
            variant = self.pick(product.variants)
            chosen.setdefault(variant.id, variant)
        lines = []
        for variant in chosen.values():
            spec = self.spec_by_product[variant.product_id]
            quantity = self.pick(spec.consumer_quantities)
            lines.append(self.line(variant, min(quantity, 6) if reorder else quantity))
        return lines

    def wedding_lines(self) -> list[LineItem]:
        rng = self.rng
        by_handle = self.variants_by_handle
        picked = rng.sample(by_handle["wedding-handkerchief"], self.between(1, 3))
        lines = [self.line(v, self.pick((1, 1, 2, 3, 4))) for v in picked]
        if rng.random() < 0.55:
            lines.append(self.line(by_handle["handkerchief-gift-box"][0], self.between(1, 2)))
        if rng.random() < 0.35:
            cocktail = self.pick(by_handle["cocktail-napkins"])
            lines.append(self.line(cocktail, self.pick((12, 12, 24))))
        if rng.random() < 0.2:
            mono = self.pick(by_handle["monogrammed-handkerchiefs"])
            lines.append(self.line(mono, self.between(1, 3)))
        return lines

    def business_lines(self) -> list[LineItem]:
        lines = []
        main = self.pick(self.bulk_products)
        variant = self.pick(main.variants)
        lines.append(self.line(variant, self.pick(CASE_QUANTITIES)))
        for _ in range(self.pick((0, 0, 1, 1, 2))):
            other = self.pick(self.bulk_products)
            v = self.pick(other.variants)
            if v.id != variant.id:
                qty = self.pick((12, 24, 36, 48, 72))
                lines.append(self.line(v, qty))
        return lines

    def whale_lines(self) -> list[LineItem]:
        """A very large order: a banquet hall's worth of tablecloths and runners."""
        by_handle = self.variants_by_handle
        return [
            self.line(self.pick(by_handle["linen-tablecloth"]), self.pick((240, 300, 360))),
            self.line(self.pick(by_handle["table-runner"]), self.pick((240, 300, 360))),
        ]

    def line(self, variant: Variant, quantity: int) -> LineItem:
        return LineItem(
            id=0,
            product_id=variant.product_id,
            variant_id=variant.id,
            sku=variant.sku,
            title=self.spec_by_product[variant.product_id].title,
            quantity=quantity,
            unit_price=variant.price,
        )

    # -- one customer ---------------------------------------------------------------------------
    def draft(self, index: int, archetype: str) -> _Draft:
        rng = self.rng
        company: _Company | None = None
        tags: list[str] = []
        note: str | None = None
        if archetype == "business":
            company = self.company()
            market = company.market
        else:
            market = self.market()
        first, last, first_latin, last_latin = self.person(market)
        phone: str | None = None
        if archetype == "staff":
            first, last = "Store", "Owner"
            staff_email = f"owner@{_slug(self.domain.split('.')[0], '')}.example"
            self.emails.add(staff_email)
            email: str | None = staff_email
            tags = ["staff"]
            address = self.address(MARKETS[0], first, last, None)
        elif company is not None:
            if rng.random() < 0.25:
                mailbox = self.pick(_BUSINESS_MAILBOXES)
                email = f"{mailbox}@{company.domain}"
                if email in self.emails:
                    email = self.email(first_latin, last_latin, market, company.domain)
                else:
                    self.emails.add(email)
            else:
                email = self.email(first_latin, last_latin, market, company.domain)
            if rng.random() < 0.8:
                phone = self.phone(market, company.city)
            address = self._address(
                market, company.city, company.street, first, last, phone, company.name
            )
            if rng.random() < 0.5:
                tags.append("wholesale")
            if rng.random() < 0.2:
                note = f"Buyer at {company.name}; invoices to accounts payable."
        else:
            email = self.email(first_latin, last_latin, market)
            phone_share = 0.85 if market.locale in ("ko", "ar") else 0.5
            address = self.address(market, first, last, None)
            if rng.random() < phone_share:
                city = next(
                    (c for c in market.cities if c.latin == address.city or c.name == address.city),
                    market.cities[0],
                )
                phone = self.phone(market, city)
                address.phone = phone
            if market.locale in ("ko", "ar") and phone is not None and rng.random() < 0.06:
                email = None  # phone-only shoppers
            elif rng.random() < 0.02 and email is not None:
                email = email.title()  # typed with capitals; Shopify keeps what was typed
        if rng.random() < 0.015 and archetype != "staff":
            first, last = first.upper(), last.upper()
        if rng.random() < 0.01 and archetype not in ("staff", "business"):
            first, last = "", ""
        if archetype == "wedding" and rng.random() < 0.3:
            tags.append("wedding")
        if archetype == "fan" and rng.random() < 0.15:
            tags.append("VIP")
        if rng.random() < 0.05:
            tags.append(self.pick(("newsletter", "instagram", "pop-up-2024", "gift-card")))

        days = self.plan(archetype)
        orders = [
            self.order(index, archetype, day, email, address, nth) for nth, day in enumerate(days)
        ]
        if orders:
            first_at = orders[0].created_at
            created = first_at - dt.timedelta(seconds=rng.randrange(60, 3600))
            if rng.random() < 0.2:  # signed up for the newsletter earlier
                created -= dt.timedelta(days=rng.randrange(1, 200))
            created = max(created, self.epoch)
        else:
            created = self.epoch + dt.timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
        customer = Customer(
            id=0,
            first_name=first or None,
            last_name=last or None,
            email=email,
            phone=phone,
            created_at=created,
            updated_at=created,
            email_marketing_state=self.consent(archetype) if email else "NOT_SUBSCRIBED",
            sms_marketing_state=self.sms_consent() if phone else "NOT_SUBSCRIBED",
            default_address=address,
            tags=tags,
            locale=market.locale if archetype != "staff" else "en",
            note=note,
        )
        return _Draft(customer, orders, archetype)

    def consent(self, archetype: str) -> str:
        roll = self.rng.random()
        subscribed = {"fan": 0.7, "business": 0.25, "prospect": 0.55, "staff": 0.0}.get(
            archetype, 0.42
        )
        if roll < subscribed:
            return "SUBSCRIBED"
        roll = (roll - subscribed) / (1 - subscribed)
        if roll < 0.62:
            return "NOT_SUBSCRIBED"
        if roll < 0.86:
            return "UNSUBSCRIBED"
        return "PENDING"

    def sms_consent(self) -> str:
        roll = self.rng.random()
        if roll < 0.2:
            return "SUBSCRIBED"
        if roll < 0.9:
            return "NOT_SUBSCRIBED"
        return "UNSUBSCRIBED"

    def order(
        self,
        owner: int,
        archetype: str,
        day: int,
        email: str | None,
        address: Address,
        nth: int,
    ) -> Order:
        rng = self.rng
        if archetype == "wedding":
            lines = self.wedding_lines()
        elif archetype == "refunded_vip" and nth == 1:
            lines = self.whale_lines()
        elif archetype == "returned_case":
            napkins = self.pick(self.variants_by_handle["linen-dinner-napkins"])
            lines = [self.line(napkins, self.pick((36, 48, 60)))]
        elif archetype == "business":
            lines = self.business_lines() if rng.random() < 0.85 else self.consumer_lines()
        elif archetype in ("fan", "cooling", "cold"):
            lines = self.consumer_lines(self.fan_products, reorder=nth > 0)
        else:
            lines = self.consumer_lines()
        created = self.epoch + dt.timedelta(days=day, seconds=int(rng.random() * 86400))
        subtotal = sum((li.unit_price * li.quantity for li in lines), Decimal("0"))
        codes: list[str] = []
        month = self.months[day]
        roll = rng.random()
        if nth == 0 and roll < 0.18:
            codes.append("WELCOME10")
        elif archetype == "wedding" and roll < 0.5:
            codes.append("WEDDING15")
        elif month in (11, 12) and roll < 0.4:
            codes.append("HOLIDAY20")
        elif archetype == "business" and roll < 0.3:
            codes.append("TRADE12")
        elif archetype == "fan" and roll < 0.12:
            codes.append("THANKYOU15")
        discount = (subtotal * DISCOUNTS[codes[0]]).quantize(CENT, ROUND_HALF_UP) if codes else ZERO
        if archetype == "business" and subtotal >= 300:
            shipping = BULK_SHIPPING
        else:
            shipping = ZERO if subtotal - discount >= FREE_SHIPPING_OVER else SHIPPING
        order = Order(
            id=0,
            name="",
            customer_id=owner,  # the draft's index until ids are handed out
            email=email,
            created_at=created,
            processed_at=created,
            updated_at=created,
            currency="USD",
            line_items=lines,
            test=archetype == "staff" or (archetype == "one_time" and rng.random() < 0.005),
            discount_codes=codes,
            discount_total=discount,
            shipping_total=shipping,
            billing_address=address,
        )
        roll = rng.random()
        if archetype == "refunded_vip":
            if nth == 1:  # the huge order goes back within hours; the ordinary one stays
                self.plan_refund(order, self.same_day(created, 20, 240), None, "CANCEL")
        elif archetype == "returned_case":
            line = lines[0]
            kept = self.pick((12, 24))
            self.plan_refund(order, self.later(created, 3, 20), [(line, line.quantity - kept)])
        elif roll < CANCEL_RATE:
            later = created + dt.timedelta(minutes=rng.randrange(5, 2880))
            order.cancelled_at = order.updated_at = min(later, self.last_second)
            order.cancel_reason = self.pick(CANCEL_REASONS)
        elif order.test:
            return order  # the merchant's own test orders are not refunded
        elif roll < CANCEL_RATE + FULL_REFUND_RATE:
            if rng.random() < SAME_DAY_REFUND_SHARE:  # changed their mind before it shipped
                self.plan_refund(order, self.same_day(created, 10, 360), None, "CANCEL")
            else:
                restock = "RETURN" if rng.random() < 0.8 else "NO_RESTOCK"
                self.plan_refund(order, self.later(created, 2, 45), None, restock)
        elif roll < CANCEL_RATE + FULL_REFUND_RATE + PARTIAL_REFUND_RATE:
            part = self.partial(lines, archetype == "business")
            if part is not None:
                restock = "RETURN" if rng.random() < 0.75 else "NO_RESTOCK"
                self.plan_refund(order, self.later(created, 3, 30), [part], restock)
        return order

    def same_day(self, when: dt.datetime, lo: int, hi: int) -> dt.datetime:
        """Some ``lo``..``hi`` minutes after ``when``, but before that day ends."""
        end = when.replace(hour=23, minute=59, second=59)
        return min(when + dt.timedelta(minutes=self.between(lo, hi)), end)

    def later(self, when: dt.datetime, lo: int, hi: int) -> dt.datetime:
        """Some ``lo``..``hi`` days after ``when``, at another time of day."""
        return when + dt.timedelta(days=self.between(lo, hi), seconds=self.between(0, 86399))

    def partial(self, lines: list[LineItem], business: bool) -> tuple[LineItem, int] | None:
        """Units of one line to give back: a few of a basket's line; part of a business's case
        (the case stays a case: 36 units or more); a single-unit line whole if there are others."""
        if business:
            case = max(lines, key=lambda li: li.quantity)
            units = min(self.pick((6, 12, 12, 24)), case.quantity - CASE_QUANTITIES[0])
            if units > 0:
                return case, units
            lines = [li for li in lines if li is not case]
            if not lines:
                return None
        line = self.pick(lines)
        if line.quantity > 1:
            return line, self.between(1, max(1, line.quantity // 4))
        return (line, 1) if len(lines) > 1 else None

    def plan_refund(
        self,
        order: Order,
        at: dt.datetime,
        lines: list[tuple[LineItem, int]] | None,
        restock_type: str = "RETURN",
    ) -> None:
        self.refund_plans.append(_RefundPlan(order, min(at, self.last_second), lines, restock_type))


def _sku_code(title: str) -> str:
    """``Sage`` → SAGE, ``60" x 90"`` → 60X90, ``Mother of the Bride`` → MOTB (unique per product
    for the catalog's titles; the catalog test checks it)."""
    words = re.findall(r"[A-Z0-9]+", title.upper())
    if len(words) >= 3 and not any(ch.isdigit() for ch in title):
        return "".join(w[0] for w in words)
    return "".join(words)[:10]


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for w in weights:
        total += w
        out.append(total)
    return [x / total for x in out]


def _slug(text: str, sep: str = "-") -> str:
    """Lowercase ASCII letters and digits only; ``sep`` joins the words."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("&", " and "))
    return sep.join(words)


def _archetypes(rng: random.Random, count: int) -> list[str]:
    """Exactly ``count`` archetypes in proportion, every kind present once count allows."""
    names = list(ARCHETYPES)
    kinds: list[str] = []
    for name in names:
        share = ARCHETYPES[name] * count
        kinds.extend([name] * (int(share) if count >= 2 * len(names) else 0))
    if count >= 2 * len(names):
        for name in names:  # small stores still get one of each
            if name not in kinds:
                kinds.append(name)
    cum = _cumulative([ARCHETYPES[n] for n in names])
    while len(kinds) < count:
        kinds.append(names[bisect.bisect(cum, rng.random())])
    del kinds[count:]
    rng.shuffle(kinds)
    if count >= 20:
        for kind, at in zip(PLANTED, rng.sample(range(count), len(PLANTED)), strict=True):
            kinds[at] = kind
    return kinds


def _rfm(orders: int, days_since: int | None) -> str:
    """A plausible ``CustomerStatistics.rfmGroup`` from recency and frequency."""
    if orders == 0 or days_since is None:
        return "PROSPECTS"
    if days_since <= 30:
        return "CHAMPIONS" if orders >= 5 else "NEW" if orders == 1 else "ACTIVE"
    if days_since <= 90:
        return "LOYAL" if orders >= 3 else "PROMISING"
    if days_since <= 180:
        return "AT_RISK" if orders >= 3 else "NEEDS_ATTENTION"
    if days_since <= 365:
        return "PREVIOUSLY_LOYAL" if orders >= 3 else "ALMOST_LOST"
    return "DORMANT"


def _spend_tier(spent: Decimal) -> str:
    if spent >= 1000:
        return "HIGH"
    if spent >= 200:
        return "MEDIUM"
    return "LOW"


def generate_store(
    domain: str,
    *,
    customers: int = 300,
    seed: int = 7,
    as_of: dt.date | None = None,
) -> Store:
    """A linen and tableware shop with ``customers`` customers, the same for the same seed.

    Every order is placed before midnight UTC starting ``as_of`` (default: today). Ids and
    order numbers follow creation time. The store's listeners are not notified: it is the
    starting state, not a stream of changes.
    """
    return generate_labelled(domain, customers=customers, seed=seed, as_of=as_of)[0]


def generate_labelled(
    domain: str,
    *,
    customers: int = 300,
    seed: int = 7,
    as_of: dt.date | None = None,
) -> tuple[Store, dict[int, str]]:
    """:func:`generate_store`, plus the kind each customer was made as (customer id → one of
    :data:`ARCHETYPES` or :data:`PLANTED`): ground truth for judging what the segments find."""
    if customers < 0:
        raise ValueError("customers must not be negative")
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    # Millions of small objects: the cyclic collector would rescan them again and again while
    # they are created (and there are no cycles to find), so it sleeps until we are done.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _generate(domain, customers, seed, as_of)
    finally:
        if collecting:
            gc.enable()


def _generate(
    domain: str, customers: int, seed: int, as_of: dt.date
) -> tuple[Store, dict[int, str]]:
    gen = _Generator(domain, customers, seed, as_of)
    store = Store(domain, name=_shop_name(domain))
    gen.build_catalog(store)

    drafts = [gen.draft(i, kind) for i, kind in enumerate(_archetypes(gen.rng, customers))]

    # Hand out ids in creation order, as Shopify does: customers, then orders and line items.
    ids_by_index = [0] * len(drafts)
    for draft in sorted(range(len(drafts)), key=lambda i: drafts[i].customer.created_at):
        customer = drafts[draft].customer
        customer.id = store.next_id()
        ids_by_index[draft] = customer.id
        store.add_customer(customer, notify=False)
    # Refunds take their ids in the same stream, when they happened.
    orders = [order for d in drafts for order in d.orders]
    orders.sort(key=lambda o: o.created_at)
    plans = sorted(gen.refund_plans, key=lambda p: p.at)
    applied = 0
    for order in orders:
        while applied < len(plans) and plans[applied].at < order.created_at:
            _apply_refund(store, plans[applied])
            applied += 1
        order.id = store.next_id()
        order.name = store.next_order_name()
        order.customer_id = ids_by_index[order.customer_id]  # type: ignore[index]
        for line in order.line_items:
            line.id = store.next_id()
        store.add_order(order, notify=False)
    for plan in plans[applied:]:
        _apply_refund(store, plan)

    # Shopify's own scoring, from what the customer did.
    for d in drafts:
        counted = [o for o in d.orders if not o.test]
        live = [o for o in counted if o.cancelled_at is None]
        spent = sum((o.current_total for o in live), Decimal("0"))
        days_since = (as_of - counted[-1].created_at.date()).days if counted else None
        d.customer.rfm_group = _rfm(len(counted), days_since)
        d.customer.predicted_spend_tier = _spend_tier(spent)
    return store, {d.customer.id: d.archetype for d in drafts}


def _apply_refund(store: Store, plan: _RefundPlan) -> None:
    lines = None if plan.lines is None else {line.id: units for line, units in plan.lines}
    store.refund_order(
        plan.order.id, lines, restock_type=plan.restock_type, at=plan.at, notify=False
    )


def _shop_name(domain: str) -> str:
    stem = domain.split(".")[0]
    return " ".join(w.capitalize() for w in stem.split("-") if w) or "Goldpan Linens"
