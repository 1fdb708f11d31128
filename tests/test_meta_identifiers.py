"""Meta identifier normalisation and hashing: Meta's published rules, multilingual cases."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from shopify_app.errors import InputError
from shopify_app.meta.identifiers import (
    CSV_HEADER,
    SCHEMA,
    Person,
    consent_allows,
    csv_text,
    hash_row,
    normalize,
    normalize_city,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    write_csv,
)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def test_schema_and_header_line_up() -> None:
    assert SCHEMA == ("EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY")
    assert tuple(name.lower() for name in SCHEMA) == CSV_HEADER


def test_us_customer_follows_metas_table() -> None:
    person = Person(
        email="  John.Doe@Example.COM ",
        phone="(415) 555-0123",
        first_name="John-Paul",
        last_name="O'Neil",
        city="San Francisco",
        province_code="CA",
        zip="94107-1234",
        country_code="US",
    )
    assert normalize(person) == (
        "john.doe@example.com",
        "14155550123",
        "johnpaul",
        "oneil",
        "sanfrancisco",
        "ca",
        "94107",
        "us",
    )
    assert hash_row(person) == tuple(sha(v) for v in normalize(person))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Γιώργος", "γιώργος"),  # Greek kept, accents are part of the letter
        ("ΓΙΏΡΓΟΣ", "γιώργος"),  # final sigma lowercases to ς
        ("\u0393\u03b9\u03c9\u0301\u03c1\u03b3\u03bf\u03c2", "γιώργος"),  # NFD input
        ("김민준", "김민준"),  # Hangul syllables kept
        ("محمد", "محمد"),  # Arabic kept
        ("مـحـمـد", "محمد"),  # tatweel is typography, not a letter
        ("José", "josé"),
        ("Ｊｏｈｎ", "john"),  # full-width folds (NFKC)
        ("Mary Ann", "maryann"),
        ("O'Brien-Smith Jr.", "obriensmithjr"),
        ("  ", ""),
        (None, ""),
    ],
)
def test_names_keep_letters_of_every_script(raw: str | None, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (415) 555-0123", "US", "14155550123"),
        ("415.555.0123", "US", "14155550123"),
        ("+14155550123", None, "14155550123"),  # Shopify's E.164 fast path
        ("020 7946 0958", "GB", "442079460958"),  # UK trunk zero dropped
        ("+44 (0)20 7946 0958", "GB", "442079460958"),
        ("+44 020 7946 0958", None, "442079460958"),
        ("691 234 5678", "GR", "306912345678"),  # Greek mobile
        ("210 123 4567", "GR", "302101234567"),  # Athens landline
        ("010-1234-5678", "KR", "821012345678"),  # Korean trunk zero dropped
        ("٠٥٠١٢٣٤٥٦٧", "SA", "966501234567"),  # Arabic-Indic digits, Saudi trunk zero
        ("+٩٦٦ ٥٠ ١٢٣ ٤٥٦٧", None, "966501234567"),
        ("۰۵۰۱۲۳۴۵۶۷", "sa", "966501234567"),  # Persian digits, lowercase country
        ("０２０ ７９４６ ０９５８", "GB", "442079460958"),  # full-width digits
        ("306912345678", "GR", "306912345678"),  # country code without '+'
        ("12", "US", ""),
        ("call me", "US", ""),
        ("020 7946 0958", None, ""),  # national number, country unknown
        ("", "US", ""),
    ],
)
def test_phones_become_e164_digits(raw: str, country: str | None, expected: str) -> None:
    assert normalize_phone(raw, country) == expected


def test_email_cities_states_zips() -> None:
    assert normalize_email("no-at-sign.example.com") == ""
    assert normalize_email("a@b") == ""
    assert normalize_city("New York") == "newyork"
    assert normalize_city("Αθήνα") == "αθήνα"
    assert normalize_city("서울특별시") == "서울특별시"
    assert normalize_city("St. John's") == "stjohns"
    assert normalize_state("CA", "US") == "ca"
    assert normalize_state("US-NY", "US") == "ny"
    assert normalize_state("California", "US") == ""  # US wants the two-letter code
    assert normalize_state("ON", "CA") == "on"
    assert normalize_state("KR-11", "KR") == "11"
    assert normalize_state("I", "GR") == "i"
    assert normalize_zip("94107-1234", "US") == "94107"
    assert normalize_zip("941071234", None) == "94107"
    assert normalize_zip("SW1A 1AA", "GB") == "sw1a1aa"
    assert normalize_zip("105 57", "GR") == "10557"
    assert normalize_zip("٠٤٥٣٨", "KR") == "04538"
    assert normalize_zip("abc", "US") == ""


def test_unknown_values_are_empty_never_hashed() -> None:
    row = hash_row(Person(email="a@example.com"))
    assert row[0] == sha("a@example.com")
    assert row[1:] == ("",) * 7
    assert sha("") not in row
    assert hash_row(Person(email="a@example.com", country_code="Greece"))[7] == ""
    assert all(len(v) == 64 for v in hash_row(Person(email="x@y.io", country_code="gr"))[::7])


def test_multilingual_rows_hash_utf8() -> None:
    row = hash_row(
        Person(
            email="giorgos@example.gr",
            phone="691 234 5678",
            first_name="Γιώργος",
            last_name="Παπαδόπουλος",
            city="Αθήνα",
            zip="105 57",
            country_code="GR",
        )
    )
    assert row[2] == sha("γιώργος")
    assert row[3] == sha("παπαδόπουλος")
    assert row[1] == sha("306912345678")
    assert row[7] == sha("gr")


def test_consent_policies() -> None:
    subscribed = Person(email="a@example.com", email_marketing_state="SUBSCRIBED")
    never = Person(email="b@example.com", email_marketing_state="NOT_SUBSCRIBED")
    left = Person(email="c@example.com", email_marketing_state="UNSUBSCRIBED")
    redacted = Person(email_marketing_state="REDACTED")
    unknown = Person(email="d@example.com")
    assert consent_allows("subscribed", subscribed)
    assert not consent_allows("subscribed", never)
    assert not consent_allows("subscribed", unknown)
    pending = Person(email="e@example.com", email_marketing_state="PENDING")
    assert consent_allows("subscribed_or_pending", pending)
    assert consent_allows("subscribed_or_pending", subscribed)
    assert not consent_allows("subscribed", pending)
    assert not consent_allows("subscribed_or_pending", never)
    assert consent_allows("all", never) and consent_allows("all", unknown)
    assert not consent_allows("all", left)
    assert not consent_allows("all", redacted)
    with pytest.raises(InputError) as info:
        consent_allows("everyone", subscribed)
    assert info.value.field == "meta_consent_policy"


def test_write_csv_matches_csv_text(tmp_path: Path) -> None:
    people = [
        Person(email="a@example.com", first_name="김민준", country_code="KR"),
        Person(city="Nowhere", country_code="US"),  # identifies nobody: left out
        Person(phone="٠٥٠١٢٣٤٥٦٧", country_code="SA"),
    ]
    path = tmp_path / "audience.csv"
    assert write_csv(path, people) == 2
    text = path.read_text(encoding="utf-8")
    assert text == "".join(csv_text(people))
    rows = list(csv.reader(text.splitlines()))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[1][2] == sha("김민준")
    assert rows[2][1] == sha("966501234567")
    assert rows[2][0] == ""


@pytest.mark.parametrize("policy", ["subscribed", "subscribed_or_pending", "all"])
def test_consent_check_agrees_with_consent_allows(policy: str) -> None:
    from shopify_app.meta.identifiers import consent_check

    check = consent_check(policy)
    for state in (
        None,
        "SUBSCRIBED",
        "subscribed",
        "PENDING",
        "NOT_SUBSCRIBED",
        "UNSUBSCRIBED",
        "REDACTED",
        "INVALID",
    ):
        person = Person(email="a@example.com", email_marketing_state=state)
        assert check(person) == consent_allows(policy, person), (policy, state)
    with pytest.raises(InputError):
        consent_check("nobody")


# --- the fast paths agree with the reference ---------------------------------------------------

_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _phone_cases(seed: int) -> list[tuple[str, str]]:
    """Phones as people type them, for every region phonenumbers knows: its example numbers in
    national and international format and without the '+', then random numbers of the same
    shape with and without trunk prefixes, international prefixes, country codes, separators
    and non-ASCII digits."""
    import random

    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    rng = random.Random(seed)

    def typed(digits: str) -> str:
        out = []
        for ch in digits:
            if rng.random() < 0.25:
                out.append(rng.choice(["", " ", "-", ".", "/", "(", ")", "  "]))
            out.append(ch)
        text = "".join(out)
        roll = rng.random()
        if roll < 0.05:
            return text.translate(_ARABIC_INDIC)
        if roll < 0.07:
            return text.translate(_PERSIAN)
        if roll < 0.08:
            return text.translate(_FULL_WIDTH)
        return text

    types = (
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.VOIP,
        PhoneNumberType.UAN,
    )
    cases: list[tuple[str, str]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert meta is not None
        cc = str(meta.country_code)
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            cases += [
                (phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL), region),
                (phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL), region),
                (cc + nsn, region),
                (nsn, region),
                ("0" + nsn, region),
            ]
            for _ in range(8):
                keep = rng.choice((1, 2, 3))
                tail = len(nsn) - keep + rng.choice((-1, 0, 0, 0, 1))
                digits = nsn[:keep] + "".join(rng.choice("0123456789") for _ in range(tail))
                prefix = rng.choice(("", "", "0", meta.national_prefix or "", "00", cc, "1"))
                cases.append((typed(prefix + digits), region))
        for _ in range(12):
            length = rng.randint(3, 17)
            cases.append((typed("".join(rng.choice("0123456789") for _ in range(length))), region))
    # Many more for the markets the playbook names, national formats first.
    for region in ("US", "CA", "GB", "GR", "KR", "SA", "EG", "AE", "DE", "FR", "BR", "JP", "AU"):
        for _ in range(150):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 13)))
            cases.append((typed(("0" if rng.random() < 0.5 else "") + digits), region))
    return cases


def test_fast_phone_path_agrees_with_phonenumbers() -> None:
    """The fast national path is phonenumbers.parse + E.164 format, only cheaper: wherever it
    answers, the answer is the full parse's (the reference function and the library itself)."""
    import phonenumbers

    from shopify_app.meta import identifiers

    reference = identifiers._parse_phone.__wrapped__
    cases = _phone_cases(seed=20261123)
    answered = 0
    for raw, region in cases:
        expected = reference(raw.translate(identifiers._DIGIT_TABLE).strip(), region)
        assert normalize_phone(raw, region) == expected, (raw, region)
        fast = identifiers._fast_phone(raw.translate(identifiers._DIGIT_TABLE).strip(), region)
        if fast is None:
            continue
        answered += 1
        assert fast == expected, (raw, region)
        parsed = phonenumbers.parse(raw, region)
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == "+" + fast
    # The fast path must actually carry the common national formats, not just decline.
    assert len(cases) > 15_000
    assert answered > len(cases) // 3, (answered, len(cases))
    for raw, region in (
        ("(415) 555-0123", "US"),
        ("020 7946 0958", "GB"),
        ("691 234 5678", "GR"),
        ("010-1234-5678", "KR"),
        ("٠٥٠١٢٣٤٥٦٧", "SA"),
        ("010 1234 5678", "EG"),
        ("030 123456", "DE"),
        ("03-1234-5678", "JP"),
        ("(11) 98765-4321", "BR"),
    ):
        text = raw.translate(identifiers._DIGIT_TABLE)
        assert identifiers._fast_phone(text, region) == reference(text, region) != "", raw


def _messy_people(n: int, seed: int) -> list[Person]:
    import random

    rng = random.Random(seed)
    emails = ("a@example.com", "  John.Doe@Example.COM ", "no-at", "a@b", "x y@z.com", None, "")
    emails += ("@x.com", "a@b.c", "Ünïcode@exämple.gr")
    phones = ("(415) 555-0123", "+1 415 555 0123", "020 7946 0958", "+44 (0)20 7946 0958")
    phones += ("٠٥٠١٢٣٤٥٦٧", "010-1234-5678", "306912345678", "12", "call me", "+0123456789")
    phones += ("+12", "", None, "0030 691 234 5678", "1 (415) 555-0123", "+٩٦٦ ٥٠ ١٢٣ ٤٥٦٧")
    phones += ("+14155550123", "+306912345678", "(02) 9876 5432", "11 98765-4321")
    countries = ("US", "GB", "SA", "KR", "GR", "AU", "BR", "eg", " us ", None, "", "XX", "Greece")
    names = ("John", "Γιώργος", "ΓΙΏΡΓΟΣ", "김민준", "مـحـمـد", "Ｊｏｈｎ", "O'Brien-Smith Jr.")
    names += ("  ", None, "", "José", "Mary Ann", "Lastname42")
    cities = (*names, "New York", "St. John's", "서울특별시")
    states = ("CA", "US-NY", "California", "KR-11", "I", None, "", "ON")
    zips = ("94107-1234", "941071234", "SW1A 1AA", "105 57", "٠٤٥٣٨", "abc", None, "")
    marketing = ("SUBSCRIBED", "subscribed", "PENDING", "NOT_SUBSCRIBED", "UNSUBSCRIBED")
    marketing += ("REDACTED", None, "INVALID", "unsubscribed")
    return [
        Person(
            email=rng.choice(emails),
            phone=rng.choice(phones),
            first_name=rng.choice(names),
            last_name=rng.choice(names),
            city=rng.choice(cities),
            province_code=rng.choice(states),
            zip=rng.choice(zips),
            country_code=rng.choice(countries),
            email_marketing_state=rng.choice(marketing),
        )
        for _ in range(n)
    ]


def test_hash_row_is_the_hash_of_normalize_with_cold_and_warm_memos() -> None:
    """Memoised names and places, the inlined email and E.164 paths: every field is still the
    SHA-256 of the published normalisation, whether the memos are cold or warm."""
    from shopify_app.meta.identifiers import clear_caches

    people = _messy_people(3000, seed=5)
    expected = [tuple(sha(v) if v else "" for v in normalize(p)) for p in people]
    clear_caches()
    assert [hash_row(p) for p in people] == expected
    assert [hash_row(p) for p in people] == expected  # warm


@pytest.mark.parametrize("policy", ["subscribed", "subscribed_or_pending", "all"])
def test_hash_members_is_consent_hash_row_and_matchable(policy: str) -> None:
    from shopify_app.meta.identifiers import clear_caches, hash_members, is_matchable

    people = list(enumerate(_messy_people(3000, seed=7)))
    expected = {}
    for cid, person in people:
        if consent_allows(policy, person):
            row = hash_row(person)
            if is_matchable(row):
                expected[cid] = row
    clear_caches()
    got = hash_members(iter(people), policy)
    assert got == expected
    assert list(got) == list(expected)  # input order kept
    with pytest.raises(InputError):
        hash_members(people, "nobody")
