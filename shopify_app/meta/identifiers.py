"""Customer identifiers for Meta Custom Audiences: normalise to Meta's published rules, then hash.

Pure functions over plain data, shared by the audience sync (:mod:`shopify_app.meta.audiences`)
and ``shopify-app analyze --meta-dir``. The rules are Meta's customer-file table, not the
Facebook Python SDK's normaliser, which strips every non-ASCII letter, never adds a country
calling code, keeps trunk zeros and hashes empty strings:

========  ==================================================================================
EMAIL     trimmed, lowercase; must contain ``@``
PHONE     E.164 digits without ``+`` using the customer's country (``phonenumbers``): trunk
          zeros dropped, non-ASCII digits (Arabic-Indic, full-width, ...) converted
FN / LN   lowercase, punctuation, spaces and digits removed, every UTF-8 letter kept (Greek,
          Korean, Arabic, accented Latin); NFKC first so full-width letters and ligatures fold
CT        like names: lowercase letters only (``New York`` → ``newyork``)
ST        US and Canada: the two-letter code, lowercase; elsewhere lowercase, no punctuation
ZIP       lowercase, no spaces or punctuation; US: the first five digits (ZIP+4 cut)
COUNTRY   ISO 3166-1 alpha-2, lowercase
========  ==================================================================================

An unknown value is ``""`` and is never hashed (a hash of the empty string would match
nothing and counts as an invalid entry). Values are hashed with SHA-256, lowercase hex.

Speed matters (a million members should prepare in a few seconds; see
``benchmarks/meta_prepare.py``): :func:`hash_members` is one loop with the per-field steps
inlined; the fields that repeat across customers (first names, non-Latin last names, and the
place: city, state, zip and country together) are normalised and hashed once per distinct raw
value; phones already in E.164 (Shopify stores customer phones that way) skip ``phonenumbers``
entirely; plain national numbers take an exact shortcut through ``phonenumbers``' own metadata
(:class:`_RegionPlan`), and only the rest pay for a full parse, once per ``(raw, country)``.
"""

from __future__ import annotations

import csv
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from hashlib import sha256
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers

from shopify_app.errors import InputError

SCHEMA: tuple[str, ...] = ("EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY")
"""Meta's multi-key schema names, in the order of every row Goldpan builds."""

CSV_HEADER: tuple[str, ...] = ("email", "phone", "fn", "ln", "ct", "st", "zip", "country")
"""The header of the hashed customer file Ads Manager accepts for manual upload."""

CONSENT_POLICIES: tuple[str, ...] = ("subscribed", "subscribed_or_pending", "all")
"""``subscribed`` (default): only customers subscribed to email marketing.
``subscribed_or_pending``: also those who have not yet confirmed a double opt-in.
``all``: every customer except those who unsubscribed or were redacted.
(The same names as :data:`shopify_app.segments.config.CONSENT_POLICIES`.)"""

DEFAULT_CONSENT_POLICY = "subscribed"

# Marketing states that always keep a person out of an audience, whatever the policy:
# people who opt out must be removed from every audience (Meta's terms and Shopify's).
_OPTED_OUT = frozenset({"UNSUBSCRIBED", "REDACTED"})

_CACHE_LIMIT = 250_000  # distinct raw values kept per field cache before it is cleared

K = TypeVar("K")


@dataclass(slots=True)
class Person:
    """What Goldpan knows about one customer, raw as Shopify has it."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    email_marketing_state: str | None = None


# --- building blocks -------------------------------------------------------------------------

# Every decimal digit in Unicode (Arabic-Indic ٠-٩, Persian ۰-۹, Devanagari, full-width, ...)
# mapped to its ASCII digit, built once.
_DIGITS = {
    cp: str(unicodedata.digit(chr(cp)))
    for cp in range(sys.maxunicode + 1)
    if unicodedata.category(chr(cp)) == "Nd"
}
_DIGIT_TABLE = str.maketrans(_DIGITS)

_TATWEEL = "\u0640"  # Arabic elongation stroke: typography, not a letter of the name
_NON_DIGITS = re.compile(r"[^0-9]")
_COUNTRY = re.compile(r"[a-z]{2}")
_NOT_ASCII_LETTERS = re.compile(r"[^a-z]+")
_NOT_ASCII_LETTER_BYTES = bytes(b for b in range(256) if not 0x61 <= b <= 0x7A)  # not a-z


def _sha256(value: str) -> str:
    return sha256(value.encode()).hexdigest() if value else ""


def _letters(raw: str) -> str:
    """Lowercase, keep only letters (and the combining marks that belong to them)."""
    if raw.isascii():
        # The common case (ASCII is NFKC-stable), far faster than the per-character walk.
        return raw.lower() if raw.isalpha() else _NOT_ASCII_LETTERS.sub("", raw.lower())
    text = unicodedata.normalize("NFKC", raw).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LM" and ch != _TATWEEL)


def normalize_email(raw: str | None) -> str:
    """Trim and lowercase; ``""`` unless it looks like an address (local part, @, domain)."""
    if not raw:
        return ""
    value = raw.strip().lower()
    at = value.rfind("@")
    if at < 1 or "." not in value[at:] or " " in value:
        return ""
    return value


def normalize_name(raw: str | None) -> str:
    """First or last name: lowercase letters of any script, nothing else."""
    return _letters(raw) if raw else ""


def normalize_city(raw: str | None) -> str:
    """City: lowercase letters only, no spaces or punctuation."""
    return _letters(raw) if raw else ""


def normalize_country(raw: str | None) -> str:
    """ISO 3166-1 alpha-2, lowercase; anything else is unknown."""
    if not raw:
        return ""
    value = raw.strip().lower()
    return value if _COUNTRY.fullmatch(value) else ""


def normalize_state(raw: str | None, country: str | None = None) -> str:
    """State or province. US/CA: the two-letter code; Shopify's ``XX-`` prefixes are dropped."""
    if not raw:
        return ""
    country_n = normalize_country(country)
    value = unicodedata.normalize("NFKC", raw).strip().lower()
    if country_n and value.startswith(country_n + "-"):
        value = value[len(country_n) + 1 :]
    value = "".join(ch for ch in value if ch.isalnum())
    if country_n in ("us", "ca"):
        return value if len(value) == 2 and value.isascii() and value.isalpha() else ""
    return value


def normalize_zip(raw: str | None, country: str | None = None) -> str:
    """Postal code: lowercase, no spaces or punctuation; US keeps the first five digits."""
    if not raw:
        return ""
    value = "".join(ch for ch in raw.translate(_DIGIT_TABLE).lower() if ch.isalnum())
    country_n = normalize_country(country)
    if country_n == "us" or (not country_n and re.fullmatch(r"\d{5}(\d{4})?", value)):
        return value[:5] if len(value) >= 5 and value[:5].isdigit() else ""
    return value


def normalize_phone(raw: str | None, country: str | None = None) -> str:
    """E.164 digits (no ``+``) using ``country`` for national numbers; ``""`` if unparseable."""
    if not raw:
        return ""
    if raw[0] == "+" and raw[1:].isdigit() and raw.isascii():
        # Already E.164, as Shopify stores customer phones: no parsing needed.
        return raw[1:] if 9 <= len(raw) <= 16 and raw[1] != "0" else ""
    return _national_phone(raw, country)


def _national_phone(raw: str, country: str | None) -> str:
    """A phone that is not plain E.164: the exact fast path, else ``phonenumbers``."""
    text = raw.strip() if raw.isascii() else raw.translate(_DIGIT_TABLE).strip()
    plan = _PLANS.get(country, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _remember(_PLANS, country, _plan_for(_region(country)))
    if plan is not None:
        fast = plan.e164(text)
        if fast is not None:
            return fast
    # Anything else goes through phonenumbers, which also knows that "+44 (0)20 ..." and
    # "+44 020 ..." carry a trunk zero that E.164 drops.
    return _parse_phone(text, _region(country))


def _region(country: str | None) -> str:
    """The phonenumbers region of a country code as stored (``" gr"`` → ``"GR"``)."""
    return (country or "").strip().upper()


def _fast_phone(text: str, country: str | None) -> str | None:
    """:func:`_parse_phone`'s answer for a plain national number, or None when unsure."""
    plan = _PLANS.get(country, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _remember(_PLANS, country, _plan_for(_region(country)))
    return plan.e164(text) if plan is not None else None


# --- phones: the exact fast path ---------------------------------------------------------------
#
# phonenumbers.parse costs ~25 µs a number: it searches for extensions, RFC 3966 parameters,
# vanity letters and international prefixes before it gets to the national number. The common
# national number ("(415) 555-0123", "010-1234-5678", "٠٥٠١٢٣٤٥٦٧") needs none of that, so
# _RegionPlan replays parse's steps for it with the same metadata and the same regular
# expressions, compiled once per region: strip the national prefix when the library would
# (phonenumbers' _maybe_strip_national_prefix_carrier_code and its length test), then check the
# length is possible. Whatever it cannot decide exactly — a leading "+", an international
# prefix, digits that start with the country code (only validation can tell "30691..." apart),
# letters, extensions, an impossible length — returns None and takes the full parse.
# tests/test_meta_identifiers.py checks the two agree on tens of thousands of numbers across
# every region phonenumbers knows.

_MAX_TEXT = 64  # longer "numbers" are rare enough for the full parse
_MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN


class _RegionPlan:
    """What parsing a national number of one region needs, precomputed."""

    __slots__ = (
        "cc",
        "declined",
        "general",
        "idd",
        "possible",
        "prefix",
        "strip_ok",
        "transform",
        "trunk",
    )

    def __init__(self, region: str, meta: Any) -> None:
        from phonenumbers.phonemetadata import PhoneMetadata

        cc = meta.country_code
        main = phonenumbers.region_code_for_country_code(cc)
        main_meta = PhoneMetadata.metadata_for_region_or_calling_code(cc, main)
        self.cc: str = str(cc)
        # Digits that start with the country code or an international prefix need the full
        # parse. Most international prefixes ("00", "011") and trunk prefixes ("0", "1") are
        # plain digits: str.startswith then does what their regular expression would.
        idd = meta.international_prefix or ""
        self.idd = None if idd.isdigit() or not idd else re.compile(idd).match
        self.declined: tuple[str, ...] = (self.cc, idd) if idd.isdigit() else (self.cc,)
        npfp = meta.national_prefix_for_parsing or ""
        self.transform: str | None = meta.national_prefix_transform_rule or None
        self.trunk: str | None = npfp if npfp.isdigit() and self.transform is None else None
        self.prefix = re.compile(npfp) if npfp and self.trunk is None else None
        self.general = re.compile(meta.general_desc.national_number_pattern).fullmatch
        # parse keeps the number with its national prefix stripped unless the stripped length
        # tests TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY or INVALID_LENGTH; is_possible_number accepts
        # IS_POSSIBLE and IS_POSSIBLE_LOCAL_ONLY (with the metadata of the calling code's main
        # region). Both depend on the length only: tables indexed by length.
        self.strip_ok = tuple(
            _length_result(n, meta) in ("IS_POSSIBLE", "TOO_LONG") for n in range(_MAX_NSN + 1)
        )
        self.possible = tuple(
            _length_result(n, main_meta) in ("IS_POSSIBLE", "IS_POSSIBLE_LOCAL_ONLY")
            for n in range(_MAX_NSN + 1)
        )

    def e164(self, text: str) -> str | None:
        """E.164 digits of a national number (non-ASCII digits converted), or None to parse."""
        if not text or text[0] == "+" or len(text) > _MAX_TEXT:
            return None
        # Only digits and the separators people type; phonenumbers ignores those.
        digits = text
        if not text.isdecimal():
            digits = text.replace(" ", "").replace("-", "").replace(".", "")
            digits = digits.replace("(", "").replace(")", "").replace("/", "")
        if not (digits.isdecimal() and digits.isascii() and 3 <= len(digits) <= _MAX_NSN):
            return None
        if digits.startswith(self.declined) or (self.idd is not None and self.idd(digits)):
            return None
        # The national (trunk) prefix, as phonenumbers' _maybe_strip_national_prefix_carrier_code.
        stripped = None
        if self.trunk is not None:
            if digits.startswith(self.trunk):
                stripped = digits[len(self.trunk) :]
        elif self.prefix is not None:
            match = self.prefix.match(digits)
            if match is not None:
                if self.transform is None or match.groups()[-1] is None:
                    stripped = digits[match.end() :]
                else:
                    stripped = self.prefix.sub(self.transform, digits, count=1)
        nsn = digits
        # The library keeps the prefix when only the number with it fits the plan. Cheapest
        # test first: with its trunk prefix a number rarely fits, and a regex fails fast.
        if (
            stripped is not None
            and len(stripped) <= _MAX_NSN
            and self.strip_ok[len(stripped)]
            and (self.general(digits) is None or self.general(stripped) is not None)
        ):
            nsn = stripped
        return self.cc + nsn if len(nsn) >= 2 and self.possible[len(nsn)] else None


def _length_result(length: int, meta: Any) -> str:
    """phonenumbers' length test of a national number of ``length`` digits (any type)."""
    desc = meta.general_desc
    if desc is None:
        return "INVALID_LENGTH"
    possible = desc.possible_length
    if length in desc.possible_length_local_only:
        return "IS_POSSIBLE_LOCAL_ONLY"
    if possible[0] == length:
        return "IS_POSSIBLE"
    if possible[0] > length:
        return "TOO_SHORT"
    if possible[-1] < length:
        return "TOO_LONG"
    return "IS_POSSIBLE" if length in possible[1:] else "INVALID_LENGTH"


def _plan_for(region: str) -> _RegionPlan | None:
    from phonenumbers.phonemetadata import PhoneMetadata

    meta = PhoneMetadata.metadata_for_region(region, None) if region else None
    if meta is None or meta.general_desc is None or not meta.general_desc.national_number_pattern:
        return None
    return _RegionPlan(region, meta)


_UNPLANNED: Any = object()
_PLANS: dict[str | None, _RegionPlan | None] = {}  # country as stored -> plan (None: no metadata)


# --- phones: the full parse ----------------------------------------------------------------------


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


@lru_cache(maxsize=_CACHE_LIMIT)
def _parse_phone(text: str, region: str) -> str:
    """The reference: ``phonenumbers.parse`` of ``text`` (non-ASCII digits already converted)."""
    digits = _NON_DIGITS.sub("", text)
    # Some stores keep "306912345678" (country code, no plus): then the digits may be read
    # either way, and only full validation can tell which. Otherwise a possible number (a
    # length check) is enough: validation costs as much as parsing, and numbering plans change
    # faster than the metadata, so a possible number is kept rather than dropped.
    international = None
    if not text.startswith("+") and digits and digits[0] != "0":
        international = "+" + digits
    number = _parse(text, region or None)
    if number is not None and phonenumbers.is_possible_number(number):
        ambiguous = international is not None and digits.startswith(str(number.country_code))
        if not ambiguous or phonenumbers.is_valid_number(number):
            return _e164(number)
        other = _parse(international or "", None)
        if other is not None and phonenumbers.is_valid_number(other):
            return _e164(other)
        return _e164(number)
    if international is not None:
        other = _parse(international, None)
        if other is not None and phonenumbers.is_possible_number(other):
            return _e164(other)
    return ""


# Memos of raw value -> hash for the fields that repeat across customers: names (first and
# last share one), and the place — (city, province, zip, country) as stored — whose four
# hashes come from one lookup. Bounded: cleared when full (a worker lives through many syncs).
_NAMES: dict[str | None, str] = {}
_PLACES: dict[tuple[str | None, ...], tuple[str, str, str, str]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _place(key: tuple[str | None, ...]) -> tuple[str, str, str, str]:
    city, state, zip_code, country = key
    value = (
        _sha256(normalize_city(city)),
        _sha256(normalize_state(state, country)),
        _sha256(normalize_zip(zip_code, country)),
        _sha256(normalize_country(country)),
    )
    return _remember(_PLACES, key, value)


def _name(raw: str) -> str:
    return _remember(_NAMES, raw, _sha256(_letters(raw)))


def clear_caches() -> None:
    """Forget every memo (a benchmark's cold start; tests of the memo itself)."""
    for cache in (_NAMES, _PLACES, _PLANS):
        cache.clear()
    _parse_phone.cache_clear()


def _consent_sets(policy: str | None) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """``(allowed, denied)`` marketing states of ``policy`` (None: no consent filter)."""
    if policy is None:
        return None, None
    consent_allows(policy, Person())  # validates the policy name
    if policy == "all":
        return None, _OPTED_OUT
    if policy == "subscribed_or_pending":
        return frozenset({"SUBSCRIBED", "PENDING"}), None
    return frozenset({"SUBSCRIBED"}), None


def _hash_pairs(
    pairs: Iterable[tuple[K, Person]], policy: str | None, matchable_only: bool
) -> tuple[list[K], list[tuple[str, ...]]]:
    """Keys and hashed rows of the people ``policy`` allows (None: everyone), in input order.

    The one implementation of :func:`hash_row`, written as a single loop because it runs once
    per member on every sync: per row it is three SHA-256 (email, phone, last name) and two
    dictionary lookups, and Python-level calls would cost as much as the hashing.
    :func:`consent_allows` and :func:`is_matchable` are inlined. Last names in ASCII are
    hashed directly rather than memoised: they are nearly all distinct, and a lookup in a
    memo of hundreds of thousands of them (cache misses) costs more than the hash.
    """
    allowed, denied = _consent_sets(policy)
    keys: list[K] = []
    rows: list[tuple[str, ...]] = []
    add_key, add_row = keys.append, rows.append
    names_get = _NAMES.get
    places_get = _PLACES.get
    for key, person in pairs:
        state = person.email_marketing_state
        if allowed is not None:
            if state not in allowed and (state is None or state.upper() not in allowed):
                continue
        elif denied is not None and state and (state in denied or state.upper() in denied):
            continue
        # EMAIL: normalize_email inlined (trimmed, lowercase, local part @ domain with a dot).
        email = person.email
        if email:
            email = email.strip().lower()
            at = email.rfind("@")
            if at > 0 and email.find(".", at) > 0 and " " not in email:
                email = sha256(email.encode()).hexdigest()
            else:
                email = ""
        else:
            email = ""
        # PHONE: normalize_phone's E.164 fast path inlined.
        phone = person.phone
        country = person.country_code
        if phone:
            digits = phone[1:]
            if phone[0] == "+" and digits.isdigit() and digits.isascii():
                phone = digits if 8 <= len(digits) <= 15 and digits[0] != "0" else ""
            else:
                phone = _national_phone(phone, country)
            if phone:
                phone = sha256(phone.encode()).hexdigest()
        else:
            phone = ""
        first = person.first_name
        first = (names_get(first) or _name(first)) if first else ""
        last = person.last_name
        if last:
            if last.isascii():  # _letters' ASCII case, on bytes: no regex, no re-encoding
                data = last.lower().encode()
                if not last.isalpha():
                    data = data.translate(None, _NOT_ASCII_LETTER_BYTES)
                last = sha256(data).hexdigest() if data else ""
            else:
                last = names_get(last) or _name(last)
        else:
            last = ""
        if matchable_only and not (email or phone or (first and last)):
            continue
        where = (person.city, person.province_code, person.zip, country)
        city, province, zip_code, country = places_get(where) or _place(where)
        add_key(key)
        add_row((email, phone, first, last, city, province, zip_code, country))
    return keys, rows


def normalize(person: Person) -> tuple[str, ...]:
    """The normalised (unhashed) values in :data:`SCHEMA` order; ``""`` where unknown."""
    country = person.country_code
    return (
        normalize_email(person.email),
        normalize_phone(person.phone, country),
        normalize_name(person.first_name),
        normalize_name(person.last_name),
        normalize_city(person.city),
        normalize_state(person.province_code, country),
        normalize_zip(person.zip, country),
        normalize_country(country),
    )


def hash_members(pairs: Iterable[tuple[K, Person]], policy: str) -> dict[K, tuple[str, ...]]:
    """``(key, hash_row(person))`` for every person ``policy`` allows who can match someone.

    The same rows as :func:`consent_allows`, :func:`hash_row` and :func:`is_matchable` one
    person at a time, several times faster. Raises :class:`InputError` for an unknown policy.
    """
    return dict(zip(*_hash_pairs(pairs, policy, True), strict=True))


def hash_row(person: Person) -> tuple[str, ...]:
    """SHA-256 (lowercase hex) of each normalised value, :data:`SCHEMA` order; ``""`` if unknown."""
    return _hash_pairs(((0, person),), None, False)[1][0]


def hash_value(value: str) -> str:
    """SHA-256 hex of an already normalised value; ``""`` stays ``""``."""
    return _sha256(value)


def is_matchable(row: tuple[str, ...]) -> bool:
    """Whether a (hashed or normalised) row can match anyone: an email, a phone, or a full name.

    A row of only a city and a country identifies nobody; Meta would count it as invalid.
    """
    return bool(row[0] or row[1] or (row[2] and row[3]))


def consent_allows(policy: str, person: Person) -> bool:
    """Whether ``policy`` lets ``person`` be uploaded.

    ``subscribed``: only customers whose email marketing state is ``SUBSCRIBED``;
    ``subscribed_or_pending``: ``PENDING`` (double opt-in not yet confirmed) too.
    ``all``: everyone except customers who unsubscribed or were redacted — opting out always
    wins. Raises :class:`InputError` for an unknown policy.
    """
    state = (person.email_marketing_state or "").upper()
    if policy == "subscribed":
        return state == "SUBSCRIBED"
    if policy == "subscribed_or_pending":
        return state in ("SUBSCRIBED", "PENDING")
    if policy == "all":
        return state not in _OPTED_OUT
    raise InputError(
        f"unknown Meta consent policy {policy!r}; choose one of {', '.join(CONSENT_POLICIES)}",
        field="meta_consent_policy",
    )


def consent_check(policy: str) -> Callable[[Person], bool]:
    """:func:`consent_allows` bound to ``policy`` — the same answers, faster in a loop."""
    consent_allows(policy, Person())  # validates the policy name
    if policy == "all":
        return lambda p: (p.email_marketing_state or "").upper() not in _OPTED_OUT
    allowed = frozenset(
        {"SUBSCRIBED", "PENDING"} if policy == "subscribed_or_pending" else {"SUBSCRIBED"}
    )

    def check(person: Person) -> bool:
        state = person.email_marketing_state
        return state in allowed or (state is not None and state.upper() in allowed)

    return check


def hashed_rows(people: Iterable[Person]) -> Iterator[tuple[str, ...]]:
    """:func:`hash_row` of every matchable person (rows that identify nobody are dropped)."""
    # In chunks: the rows of a big file need not all be in memory at once.
    it = iter(people)
    while chunk := list(islice(it, 10_000)):
        yield from _hash_pairs(enumerate(chunk), None, True)[1]


def write_csv(path: str | Path, people: Iterable[Person]) -> int:
    """Write the hashed customer file (header :data:`CSV_HEADER`) Ads Manager accepts.

    Rows that identify nobody are left out. Returns the number of rows written.
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for row in hashed_rows(people):
            writer.writerow(row)
            count += 1
    return count


def csv_text(people: Iterable[Person]) -> Iterator[str]:
    """The same file as :func:`write_csv`, line by line (for a streamed download)."""
    yield ",".join(CSV_HEADER) + "\n"
    for row in hashed_rows(people):
        yield ",".join(row) + "\n"


__all__ = [
    "CONSENT_POLICIES",
    "CSV_HEADER",
    "DEFAULT_CONSENT_POLICY",
    "SCHEMA",
    "Person",
    "clear_caches",
    "consent_allows",
    "consent_check",
    "csv_text",
    "hash_members",
    "hash_row",
    "hash_value",
    "hashed_rows",
    "is_matchable",
    "normalize",
    "normalize_city",
    "normalize_country",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "write_csv",
]
