"""Secrets never leak (issue 16): not into the database, an API answer or a log line.

The end-to-end test runs the Meta sync against the Graph API stand-in over loopback, first
failing (HTTP 500 on every retry) and then unreachable, and looks for the merchant's Meta token
and its ``appsecret_proof`` everywhere: every text column of every table, the page's API
answers, and every log record (at DEBUG, where ``urllib3`` logs each URL it requests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from typing import Any

import pytest
import requests
from sqlalchemy import JSON, String, Text, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.server import free_port
from shopify_app import jobs, logs
from shopify_app.db.models import AuditEntry, Base, MetaAudience
from shopify_app.errors import (
    MetaError,
    MetaTokenError,
    MetaUnreachableError,
    SyncError,
    TokenError,
    stored_error,
)
from tests.fixtures_api import serving
from tests.fixtures_auth import session_token
from tests.fixtures_meta import *  # noqa: F403
from tests.fixtures_meta import META_APP_SECRET, MetaStand, add_segment, connect_shop, make_people

TOKEN = "EAAG" + "k3Zq" * 16
SIGNED = (
    "https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk/7.jsonl"
    "?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40shopify.iam%2F20261207"
    "&X-Goog-Date=20261207T000000Z&X-Goog-Expires=604800&X-Goog-SignedHeaders=host"
    "&X-Goog-Signature=9f8e7d"
)


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Max retries exceeded with url: /v26.0/me?fields=id&access_token={TOKEN}"
            "&appsecret_proof=00ff (Caused by NewConnectionError)",
            "Max retries exceeded with url: /v26.0/me?fields=id&access_token=[redacted]"
            "&appsecret_proof=[redacted] (Caused by NewConnectionError)",
        ),
        (
            "GET /v26.0/oauth/access_token?grant_type=fb_exchange_token&client_id=12"
            f"&client_secret=hush&fb_exchange_token={TOKEN}",
            "GET /v26.0/oauth/access_token?grant_type=fb_exchange_token&client_id=12"
            "&client_secret=[redacted]&fb_exchange_token=[redacted]",
        ),
        (
            "GET /meta/callback?code=AQDx-1_2&state=s1 200",
            "GET /meta/callback?code=[redacted]&state=s1 200",
        ),
        (
            "grant_type=refresh_token&refresh_token=shprt_abc&client_id=k",
            "grant_type=refresh_token&refresh_token=[redacted]&client_id=k",
        ),
        (
            f"bulk download of {SIGNED} broke off",
            f"bulk download of {SIGNED[: SIGNED.index('?')]}?[redacted] broke off",
        ),
        (
            "'http://127.0.0.1:9/_sandbox/bulk-results/3.jsonl?Expires=17&Signature=ab'",
            "'http://127.0.0.1:9/_sandbox/bulk-results/3.jsonl?[redacted]'",
        ),
        (
            "https://x.blob.core.windows.net/c/f?sv=2024&sig=Zm9v",
            "https://x.blob.core.windows.net/c/f?[redacted]",
        ),
        (f"pasted {TOKEN}.", "pasted [redacted]."),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
    ],
)
def test_redact_removes_credentials(text: str, expected: str) -> None:
    assert logs.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"error": {"code": 190, "error_subcode": 463, "message": "Session has expired"}}',
        "bulk operation failed (TIMEOUT) after 3 attempts; error_code=5",
        "What? a=b&c=d",
        "https://admin.shopify.com/store/linen/apps/goldpan?shop=linen.myshopify.com&host=YWRtaW4",
    ],
)
def test_redact_keeps_what_is_not_a_credential(text: str) -> None:
    assert logs.redact(text) == text


# --- stored errors ---------------------------------------------------------------------------


def test_stored_error_is_a_short_message_and_a_code() -> None:
    assert stored_error(MetaUnreachableError("Meta could not be reached.")) == (
        "Meta could not be reached. [network]"
    )
    expired = MetaTokenError("The Meta login expired; reconnect it.", code=190, subcode=463)
    assert stored_error(expired) == "The Meta login expired; reconnect it. [meta 190/463]"
    assert stored_error(MetaError("Meta answered HTTP 502")) == "Meta answered HTTP 502 [meta]"
    refused = TokenError("Shopify refused the token refresh", code="invalid_grant")
    assert stored_error(refused) == "Shopify refused the token refresh [shopify invalid_grant]"
    broke = SyncError(f"the bulk result of linen.myshopify.com broke off: GET {SIGNED}")
    assert stored_error(broke) == (
        "the bulk result of linen.myshopify.com broke off: GET "
        f"{SIGNED[: SIGNED.index('?')]}?[redacted] [sync]"
    )
    long = stored_error(MetaError("x" * 5000, code=100))
    assert long.endswith("… [meta 100]") and len(long) < 320


def test_stored_error_never_keeps_a_library_exceptions_text() -> None:
    raw = requests.ConnectionError(f"Max retries exceeded with url: /v26.0/me?access_token={TOKEN}")
    assert stored_error(raw) == ("Unexpected error; the details are in the log. [ConnectionError]")
    assert stored_error(KeyError("customer 12 email a@b.example")) == (
        "Unexpected error; the details are in the log. [KeyError]"
    )


# --- log records -----------------------------------------------------------------------------


class _Holder:
    """An object whose text holds a secret, logged as an argument."""

    def __str__(self) -> str:
        return f"connection with token {TOKEN}"


def test_log_records_are_redacted_before_any_handler_sees_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """caplog's handler has no Goldpan filter: the records themselves must be clean."""
    caplog.set_level(logging.INFO)
    log = logging.getLogger("goldpan.test.secrets")
    url = f"http://graph.test/v26.0/me?fields=id&access_token={TOKEN}&appsecret_proof=00ff"
    log.info("GET %s failed", url)
    # uvicorn's access formatter unpacks these five arguments: their shape must survive.
    log.info(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/meta/callback?code=AQ1&state=s", "1.1", 200
    )
    log.warning("reusing %s", _Holder())
    try:
        raise requests.ConnectionError(f"Max retries exceeded with url: {url}")
    except requests.ConnectionError:
        log.exception("Meta is down")
    first, access, held, failed = caplog.records
    assert first.getMessage() == (
        "GET http://graph.test/v26.0/me?fields=id&access_token=[redacted]"
        "&appsecret_proof=[redacted] failed"
    )
    assert access.args == ("1.2.3.4:5", "GET", "/meta/callback?code=[redacted]&state=s", "1.1", 200)
    assert held.getMessage() == "reusing connection with token [redacted]"
    assert failed.exc_text is not None and "access_token=[redacted]" in failed.exc_text
    assert TOKEN not in caplog.text and "00ff" not in caplog.text and "AQ1" not in caplog.text


# --- end to end ------------------------------------------------------------------------------


def _columns_holding(sessions: sessionmaker[Session], needle: str) -> list[str]:
    """``table.column`` of every text or JSON column in which some row contains ``needle``."""
    found = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                hits = session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(cast(column, Text).contains(needle, autoescape=True))
                )
                if hits:
                    found.append(f"{table.name}.{column.name}")
    return found


def _strings_of(record: logging.LogRecord) -> list[str]:
    values: list[Any] = [record.getMessage(), record.exc_text, *vars(record).values()]
    return [v for v in values if isinstance(v, str)]


def test_meta_down_leaks_the_token_into_no_table_answer_or_log(  # type: ignore[no-untyped-def]
    meta_ctx: jobs.Context, meta: MetaStand, make_shop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shop = make_shop(name="Linen & Co")
    people = make_people(12, seed=shop.id)
    meta.sandbox.seed_people(people, match_rate=0.75, seed=1)
    segment_id, ids = add_segment(meta_ctx.sessions, shop.id, people)
    token = connect_shop(meta_ctx, meta, shop.id)
    proof = hmac.new(META_APP_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
    jobs.run_now(meta_ctx, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)
    # Every Graph request carried the token in the Authorization header and nowhere else.
    assert meta.sandbox.log
    for sent in meta.sandbox.log:
        assert sent.token_in == "header" and token not in sent.query, sent

    meta.sandbox.fail_next(4)  # Meta failing: HTTP 500 on the call and its three retries
    jobs.run_now(meta_ctx, "meta.forget_customer", shop_id=shop.id, customer_id=ids[0])
    unreachable = meta_ctx.settings.with_overrides(meta_graph_url=f"http://127.0.0.1:{free_port()}")
    down = dataclasses.replace(meta_ctx, settings=unreachable)
    jobs.run_now(down, "meta.sync_segment", shop_id=shop.id, segment_id=segment_id)

    with serving(down) as url:
        answers = {
            path: requests.get(
                url + path,
                headers={"Authorization": f"Bearer {session_token(shop.domain)}"},
                timeout=120,
            )
            for path in (
                "/api/meta/adaccounts",
                "/api/meta/status",
                "/api/audit",
                f"/api/segments/{segment_id}",
            )
        }

    # The failures were recorded and answered, as a message and a code.
    with down.sessions() as session:
        aud = session.scalars(
            select(MetaAudience).where(MetaAudience.segment_id == segment_id)
        ).one()
        errors = session.scalars(
            select(AuditEntry.error).where(
                AuditEntry.shop_id == shop.id, AuditEntry.result == "error"
            )
        ).all()
    assert (aud.status, aud.error) == ("error", "Meta could not be reached. [network]")
    assert "Meta could not be reached. [network]" in errors
    assert any(e.endswith("[meta 2]") for e in errors)
    assert answers["/api/meta/adaccounts"].status_code == 502
    assert answers["/api/meta/adaccounts"].json()["error"] == "Meta could not be reached."
    for path, answer in answers.items():
        assert answer.status_code in (200, 502), (path, answer.text)
        assert token not in answer.text and proof not in answer.text, path
        assert "access_token" not in answer.text and "appsecret_proof" not in answer.text, path
    assert "Meta could not be reached. [network]" in answers["/api/meta/status"].text
    assert "Meta could not be reached. [network]" in answers[f"/api/segments/{segment_id}"].text
    assert "Meta could not be reached. [network]" in answers["/api/audit"].text

    assert _columns_holding(meta_ctx.sessions, token) == []
    assert _columns_holding(meta_ctx.sessions, proof) == []

    # urllib3 logs every URL it requests at DEBUG: the proof was in them, and was redacted.
    assert "appsecret_proof=[redacted]" in caplog.text
    for record in caplog.records:
        for text in _strings_of(record):
            assert token not in text and proof not in text, record
