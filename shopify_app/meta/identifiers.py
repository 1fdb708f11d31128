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

Speed matters (a million members should prepare in a few seconds): the fields that repeat a
lot across customers (first names, cities, states, zips, countries) are normalised and hashed
once per distinct raw value, phones already in E.164 (Shopify stores customer phones that way)
skip ``phonenumbers`` entirely, and other phones are parsed once per ``(raw, country)``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import Any

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


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""


def _letters(raw: str) -> str:
    """Lowercase, keep only letters (and the combining marks that belong to them)."""
    if raw.isascii():
        # The common case (ASCII is NFKC-stable), far faster than the per-character walk.
        return _NOT_ASCII_LETTERS.sub("", raw.lower())
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
    # Anything else goes through phonenumbers, which also knows that "+44 (0)20 ..." and
    # "+44 020 ..." carry a trunk zero that E.164 drops.
    return _parse_phone(raw.translate(_DIGIT_TABLE).strip(), (country or "").strip().upper())


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


@lru_cache(maxsize=_CACHE_LIMIT)
def _parse_phone(text: str, region: str) -> str:
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


# Per-field memo of raw value -> hash, for the fields that repeat across customers. Plain dicts
# read inline in hash_row (no wrapper call per field): this is the hot loop of every sync.
_NAMES: dict[str, str] = {}
_CITIES: dict[str, str] = {}
_COUNTRIES: dict[str, str] = {}
_STATES: dict[tuple[str, str], str] = {}
_ZIPS: dict[tuple[str, str], str] = {}


def _remember(cache: dict[Any, str], key: Any, value: str) -> str:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


# --- public API ------------------------------------------------------------------------------


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


def hash_row(person: Person) -> tuple[str, ...]:
    """SHA-256 (lowercase hex) of each normalised value, :data:`SCHEMA` order; ``""`` if unknown."""
    country = person.country_code or ""
    email = normalize_email(person.email) if person.email else ""
    raw = person.phone
    if not raw:
        phone = ""
    elif raw[0] == "+" and raw[1:].isdigit() and raw.isascii() and 9 <= len(raw) <= 16:
        phone = raw[1:] if raw[1] != "0" else ""  # E.164 already (normalize_phone's fast path)
    else:
        phone = normalize_phone(raw, country)
    fn, ln, ct, st, zp = (
        person.first_name,
        person.last_name,
        person.city,
        person.province_code,
        person.zip,
    )
    h_fn = h_ln = h_ct = h_st = h_zp = h_co = ""
    if fn:
        h_fn = _NAMES.get(fn) or _remember(_NAMES, fn, _sha256(normalize_name(fn)))
    if ln:
        h_ln = _NAMES.get(ln) or _remember(_NAMES, ln, _sha256(normalize_name(ln)))
    if ct:
        h_ct = _CITIES.get(ct) or _remember(_CITIES, ct, _sha256(normalize_city(ct)))
    if st:
        key = (st, country)
        h_st = _STATES.get(key) or _remember(_STATES, key, _sha256(normalize_state(st, country)))
    if zp:
        key = (zp, country)
        h_zp = _ZIPS.get(key) or _remember(_ZIPS, key, _sha256(normalize_zip(zp, country)))
    if country:
        h_co = _COUNTRIES.get(country) or _remember(
            _COUNTRIES, country, _sha256(normalize_country(country))
        )
    return (
        sha256(email.encode()).hexdigest() if email else "",
        sha256(phone.encode()).hexdigest() if phone else "",
        h_fn,
        h_ln,
        h_ct,
        h_st,
        h_zp,
        h_co,
    )


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
    for person in people:
        row = hash_row(person)
        if is_matchable(row):
            yield row


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
    "consent_allows",
    "consent_check",
    "csv_text",
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
