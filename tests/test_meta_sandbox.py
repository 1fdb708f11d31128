"""Contract tests: the Graph API stand-in follows Meta's documented rules, and the Graph client
maps its answers onto Goldpan's errors. Raw HTTP on loopback, no client shortcuts."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import requests

from goldpan_sandbox.meta import MAX_ROWS, hashed
from goldpan_sandbox.server import free_port
from shopify_app.errors import (
    MetaError,
    MetaTermsError,
    MetaThrottledError,
    MetaTokenError,
    MetaUnreachableError,
    stored_error,
)
from shopify_app.meta import graph
from shopify_app.meta.identifiers import SCHEMA, Person, hash_row
from tests.fixtures_meta import AD_ACCOUNT, META_APP_ID, META_APP_SECRET, MetaStand, make_people

V = "v26.0"


class Graph:
    """Raw Graph calls with a token."""

    def __init__(self, meta: MetaStand, token: str) -> None:
        self.base = f"{meta.url}/{V}"
        self.token = token

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(
            f"{self.base}/{path}", params={**params, "access_token": self.token}, timeout=10
        )

    def post(self, path: str, **data: Any) -> requests.Response:
        for key, value in list(data.items()):
            if isinstance(value, dict | list):
                data[key] = json.dumps(value)
        return requests.post(
            f"{self.base}/{path}", data={**data, "access_token": self.token}, timeout=30
        )


def error_of(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code >= 400, resp.text
    err = resp.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(err)
    return err  # type: ignore[no-any-return]


@pytest.fixture
def g(meta: MetaStand) -> Graph:
    return Graph(meta, meta.sandbox.issue_user_token())


def new_audience(g: Graph) -> str:
    resp = g.post(
        f"{AD_ACCOUNT}/customaudiences",
        name="Fans",
        subtype="CUSTOM",
        customer_file_source="USER_PROVIDED_ONLY",
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def rows_for(people: list[Person]) -> list[list[str]]:
    return [list(hash_row(p)) for p in people]


def test_login_dialog_code_exchange_and_long_lived_token(meta: MetaStand) -> None:
    redirect = "https://app.example/meta/callback"
    dialog = requests.get(
        f"{meta.url}/{V}/dialog/oauth",
        params={"client_id": META_APP_ID, "redirect_uri": redirect, "state": "s1"},
        allow_redirects=False,
        timeout=10,
    )
    assert dialog.status_code == 302
    location = dialog.headers["location"]
    assert location.startswith(redirect + "?") and "state=s1" in location
    code = requests.utils.urlparse(location).query.split("code=")[1].split("&")[0]
    base = {"client_id": META_APP_ID, "client_secret": META_APP_SECRET}
    url = f"{meta.url}/{V}/oauth/access_token"
    wrong_uri = requests.get(
        url, params={**base, "redirect_uri": redirect + "x", "code": code}, timeout=10
    )
    assert error_of(wrong_uri)["error_subcode"] == 36008
    # The code was consumed by the failed attempt too: it is single use.
    dialog = requests.get(dialog.url, allow_redirects=False, timeout=10)
    code = requests.utils.urlparse(dialog.headers["location"]).query.split("code=")[1].split("&")[0]
    bad_secret = requests.get(
        url, params={**base, "client_secret": "nope", "redirect_uri": redirect, "code": code}
    )
    assert error_of(bad_secret)["code"] == 1
    short = requests.get(url, params={**base, "redirect_uri": redirect, "code": code}, timeout=10)
    assert short.status_code == 200 and short.json()["token_type"] == "bearer"
    replay = requests.get(url, params={**base, "redirect_uri": redirect, "code": code}, timeout=10)
    assert error_of(replay)["error_subcode"] == 36009
    long = requests.get(
        url,
        params={
            **base,
            "grant_type": "fb_exchange_token",
            "fb_exchange_token": short.json()["access_token"],
        },
        timeout=10,
    )
    assert long.json()["expires_in"] == 60 * 86400
    denied_client = requests.get(
        f"{meta.url}/{V}/dialog/oauth",
        params={"client_id": "999", "redirect_uri": redirect},
        allow_redirects=False,
        timeout=10,
    )
    assert denied_client.status_code == 400


def test_token_errors(meta: MetaStand) -> None:
    missing = requests.get(f"{meta.url}/{V}/me/adaccounts", timeout=10)
    assert error_of(missing)["code"] == 104
    assert error_of(Graph(meta, "EAAGnope").get("me/adaccounts"))["code"] == 190
    token = meta.sandbox.issue_user_token(long_lived=False)
    meta.sandbox.advance(3 * 3600)
    expired = error_of(Graph(meta, token).get("me/adaccounts"))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    token = meta.sandbox.issue_system_user_token()
    meta.sandbox.advance(400 * 86400)  # system-user tokens never expire
    assert Graph(meta, token).get("me/adaccounts").status_code == 200
    meta.sandbox.revoke_token(token)
    revoked = error_of(Graph(meta, token).get("me/adaccounts"))
    assert (revoked["code"], revoked["error_subcode"]) == (190, 458)
    # The client maps both to MetaTokenError.
    settings = _settings(meta)
    with pytest.raises(MetaTokenError):
        graph.GraphClient(settings, token, sleep=lambda s: None).ad_accounts()


def _settings(meta: MetaStand) -> Any:
    from shopify_app.settings import Settings

    return Settings(
        api_key="k",
        api_secret="s",
        token_encryption_keys=("k",),
        meta_app_id=META_APP_ID,
        meta_app_secret=META_APP_SECRET,
        meta_graph_url=meta.url,
        meta_dialog_url=meta.url,
    )


def test_accounts_terms_and_audience_creation_rules(meta: MetaStand, g: Graph) -> None:
    accounts = g.get("me/adaccounts").json()["data"]
    assert [a["id"] for a in accounts] == [AD_ACCOUNT]
    assert g.get(AD_ACCOUNT, fields="tos_accepted").json()["tos_accepted"] == {
        "custom_audience_tos": 1,
        "value_based_custom_audience_tos": 1,
    }
    assert error_of(g.get("act_999", fields="tos_accepted"))["error_subcode"] == 33
    path = f"{AD_ACCOUNT}/customaudiences"
    assert "name" in error_of(g.post(path, subtype="CUSTOM"))["message"]
    no_source = error_of(g.post(path, name="x", subtype="CUSTOM"))
    assert "customer_file_source" in no_source["message"]
    assert error_of(g.post(path, name="x", subtype="WEIRD"))["code"] == 100
    meta.sandbox.set_tos(AD_ACCOUNT, False)
    assert (
        "custom_audience_tos" not in g.get(AD_ACCOUNT, fields="tos_accepted").json()["tos_accepted"]
    )
    terms = error_of(
        g.post(path, name="x", subtype="CUSTOM", customer_file_source="USER_PROVIDED_ONLY")
    )
    assert (terms["code"], terms["error_subcode"]) == (200, 1870090)
    client = graph.GraphClient(_settings(meta), g.token, sleep=lambda s: None)
    with pytest.raises(MetaTermsError):
        client.create_audience(AD_ACCOUNT, "x", "y")
    assert client.tos_accepted(AD_ACCOUNT) is False


def test_audience_cap_of_500(meta: MetaStand, g: Graph) -> None:
    for _ in range(500):
        new_audience(g)
    cap = error_of(
        g.post(
            f"{AD_ACCOUNT}/customaudiences",
            name="one too many",
            subtype="CUSTOM",
            customer_file_source="USER_PROVIDED_ONLY",
        )
    )
    assert cap["code"] == 2654


def test_users_payload_rules_and_invalid_entries(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    people = make_people(20)
    meta.sandbox.seed_people(people, match_rate=1.0)
    good = rows_for(people)
    bad_hash = ["john@example.com", *[""] * 7]  # not hashed: counted invalid, with a sample
    empty = [""] * 8  # identifies nobody
    ok = g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": [*good, bad_hash, empty]})
    body = ok.json()
    assert body["audience_id"] == aud
    assert (body["num_received"], body["num_invalid_entries"]) == (22, 2)
    assert "john@example.com" in body["invalid_entry_samples"]
    assert len(meta.sandbox.members(aud)) == 20
    info = g.get(aud, fields="approximate_count_lower_bound,approximate_count_upper_bound").json()
    assert info["approximate_count_lower_bound"] <= 20 <= info["approximate_count_upper_bound"]
    # A single-key schema takes a list of strings.
    single = g.post(f"{aud}/users", payload={"schema": "EMAIL", "data": [hashed("x@y.io")]})
    assert single.json()["num_received"] == 1
    too_many = g.post(
        f"{aud}/users", payload={"schema": ["EMAIL"], "data": [[hashed("a")]] * (MAX_ROWS + 1)}
    )
    assert "10000" in error_of(too_many)["message"]
    assert error_of(g.post(f"{aud}/users", payload={"schema": ["NAME"], "data": []}))["code"] == 100
    assert error_of(g.post(f"{aud}/users", payload="{not json"))["code"] == 100
    assert error_of(g.post(f"{aud}/users"))["code"] == 100


def test_sessions_batches_and_retries(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    people = make_people(30)
    meta.sandbox.seed_people(people, match_rate=1.0)
    rows = rows_for(people)
    payload = {"schema": list(SCHEMA), "data": rows[:15]}
    sess = {"session_id": 77, "batch_seq": 1, "last_batch_flag": False, "estimated_num_total": 30}
    assert g.post(f"{aud}/users", payload=payload, session=sess).json()["session_id"] == 77
    # A retried batch (same batch_seq) is acknowledged, not applied twice.
    g.post(f"{aud}/users", payload=payload, session=sess)
    assert meta.sandbox.audiences[aud].received == 15
    changed = g.post(
        f"{aud}/users",
        payload={"schema": ["EMAIL"], "data": [[r[0]] for r in rows[15:]]},
        session={**sess, "batch_seq": 2},
    )
    assert error_of(changed)["code"] == 2650  # schema fixed within a session
    last = {**sess, "batch_seq": 2, "last_batch_flag": True}
    g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": rows[15:]}, session=last)
    assert len(meta.sandbox.members(aud)) == 30
    after = g.post(f"{aud}/users", payload=payload, session={**sess, "batch_seq": 3})
    assert error_of(after)["error_subcode"] == 1870159
    # A session left open expires 90 minutes after its first batch.
    g.post(f"{aud}/users", payload=payload, session={**sess, "session_id": 78})
    meta.sandbox.advance(91 * 60)
    late = g.post(
        f"{aud}/users", payload=payload, session={**sess, "session_id": 78, "batch_seq": 2}
    )
    assert error_of(late)["error_subcode"] == 1870158


def test_removal_by_post_method_delete_and_long_delete_urls(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    people = make_people(10)
    meta.sandbox.seed_people(people, match_rate=1.0)
    rows = rows_for(people)
    g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": rows})
    removed = g.post(
        f"{aud}/users", method="DELETE", payload={"schema": list(SCHEMA), "data": rows[:4]}
    )
    assert removed.json()["num_received"] == 4
    assert len(meta.sandbox.members(aud)) == 6
    small = requests.delete(
        f"{g.base}/{aud}/users",
        params={
            "access_token": g.token,
            "payload": json.dumps({"schema": ["EMAIL"], "data": [[rows[4][0]]]}),
        },
        timeout=10,
    )
    assert small.status_code == 200 and len(meta.sandbox.members(aud)) == 5
    huge = requests.delete(
        f"{g.base}/{aud}/users",
        params={
            "access_token": g.token,
            "payload": json.dumps({"schema": list(SCHEMA), "data": rows * 3}),
        },
        timeout=10,
    )
    assert huge.status_code == 414


def test_usersreplace_session_rules(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    old, new = make_people(10, seed=1), make_people(12, seed=2)
    meta.sandbox.seed_people([*old, *new], match_rate=1.0)
    g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": rows_for(old)})
    payload = {"schema": list(SCHEMA), "data": rows_for(new[:6])}
    s = {"session_id": 5, "batch_seq": 2, "last_batch_flag": False, "estimated_num_total": 12}
    assert (
        error_of(g.post(f"{aud}/usersreplace", payload=payload, session=s))["error_subcode"]
        == 1870147
    )
    huge = {**s, "batch_seq": 1, "estimated_num_total": 100_000_001}
    assert (
        error_of(g.post(f"{aud}/usersreplace", payload=payload, session=huge))["error_subcode"]
        == 1870144
    )
    first = g.post(f"{aud}/usersreplace", payload=payload, session={**s, "batch_seq": 1})
    assert first.json()["num_received"] == 6
    status = g.get(aud, fields="operation_status").json()["operation_status"]
    assert status["code"] == 414
    other = g.post(f"{aud}/usersreplace", payload=payload, session={**s, "session_id": 6})
    assert error_of(other)["error_subcode"] == 1870145
    adds = g.post(f"{aud}/users", payload=payload)
    assert error_of(adds)["error_subcode"] == 1870145
    done = g.post(
        f"{aud}/usersreplace",
        payload={"schema": list(SCHEMA), "data": rows_for(new[6:])},
        session={**s, "batch_seq": 2, "last_batch_flag": True},
    )
    assert done.status_code == 200
    assert len(meta.sandbox.members(aud)) == 12  # the old ten are gone
    assert g.get(aud, fields="operation_status").json()["operation_status"]["code"] == 200
    again = g.post(f"{aud}/usersreplace", payload=payload, session={**s, "batch_seq": 3})
    assert error_of(again)["error_subcode"] == 1870159
    # A replace that never finishes times out after 90 minutes and fails (415).
    g.post(f"{aud}/usersreplace", payload=payload, session={**s, "session_id": 9, "batch_seq": 1})
    meta.sandbox.advance(91 * 60)
    late = g.post(f"{aud}/usersreplace", payload=payload, session={**s, "session_id": 9})
    assert error_of(late)["error_subcode"] == 1870158
    assert g.get(aud, fields="operation_status").json()["operation_status"]["code"] == 415
    assert len(meta.sandbox.members(aud)) == 12  # a failed replace leaves the list alone


def test_lookalike_rules(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    people = make_people(120)
    meta.sandbox.seed_people(people[:99], match_rate=1.0)
    g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": rows_for(people)})
    path = f"{AD_ACCOUNT}/customaudiences"
    spec = {"country": "US", "ratio": 0.01}
    small = error_of(
        g.post(path, name="LAL", subtype="LOOKALIKE", origin_audience_id=aud, lookalike_spec=spec)
    )
    assert small["code"] == 2654 and small["error_subcode"] == 1713007
    meta.sandbox.seed_people(people[99:], match_rate=1.0)
    g.post(f"{aud}/users", payload={"schema": list(SCHEMA), "data": rows_for(people[99:])})
    bad_ratio = g.post(
        path,
        name="LAL",
        subtype="LOOKALIKE",
        origin_audience_id=aud,
        lookalike_spec={"country": "US", "ratio": 0.5},
    )
    assert error_of(bad_ratio)["code"] == 100
    made = g.post(
        path, name="LAL", subtype="LOOKALIKE", origin_audience_id=aud, lookalike_spec=spec
    )
    lal = made.json()["id"]
    info = g.get(lal, fields="subtype,lookalike_spec,approximate_count_lower_bound").json()
    assert info["subtype"] == "LOOKALIKE" and info["lookalike_spec"] == spec
    assert info["approximate_count_lower_bound"] > 0
    assert (
        error_of(g.post(f"{lal}/users", payload={"schema": ["EMAIL"], "data": []}))["code"] == 100
    )


def test_deleted_and_flagged_audiences(meta: MetaStand, g: Graph) -> None:
    aud = new_audience(g)
    meta.sandbox.flag_audience(aud)
    assert g.get(aud, fields="operation_status").json()["operation_status"]["code"] == 471
    meta.sandbox.delete_in_ads_manager(aud)
    gone = error_of(g.get(aud, fields="name"))
    assert (gone["code"], gone["error_subcode"]) == (100, 33)
    other = new_audience(g)
    assert requests.delete(f"{g.base}/{other}", params={"access_token": g.token}).json() == {
        "success": True
    }


@pytest.mark.parametrize("code", [80003, 80004, 17, 613, 4])
def test_throttling_errors_carry_the_usage_header(meta: MetaStand, g: Graph, code: int) -> None:
    meta.sandbox.throttle(code, minutes=7)
    resp = g.get(AD_ACCOUNT, fields="tos_accepted")
    assert error_of(resp)["code"] == code
    usage = json.loads(resp.headers["X-Business-Use-Case-Usage"])
    (entries,) = usage.values()
    assert entries[0]["estimated_time_to_regain_access"] == 7
    err = graph.error_from_response(resp)
    assert isinstance(err, MetaThrottledError) and err.retry_after == 7 * 60
    # Normal answers carry the header too, below 100 %.
    ok = g.get(AD_ACCOUNT, fields="tos_accepted")
    assert json.loads(ok.headers["X-Business-Use-Case-Usage"])


def test_client_backs_off_short_throttles_and_transient_errors(meta: MetaStand, g: Graph) -> None:
    waits: list[float] = []
    client = graph.GraphClient(_settings(meta), g.token, sleep=waits.append, max_wait=30)
    meta.sandbox.throttle(80003, minutes=0.25)
    meta.sandbox.fail_next(1, status=503)
    assert client.tos_accepted(AD_ACCOUNT) is True
    assert waits == [1.0, 15.0]  # the 503 first, then the 15 s the usage header asked for
    meta.sandbox.throttle(17, minutes=5)
    with pytest.raises(MetaThrottledError) as info:
        client.tos_accepted(AD_ACCOUNT)
    assert info.value.retry_after == 300
    meta.sandbox.fail_next(10)
    with pytest.raises(MetaError):
        client.tos_accepted(AD_ACCOUNT)
    meta.sandbox._failures.clear()


def test_client_upload_reports_match_figures(meta: MetaStand, g: Graph) -> None:
    client = graph.GraphClient(_settings(meta), g.token, sleep=lambda s: None)
    aud = client.create_audience(AD_ACCOUNT, "n", "d")
    people = make_people(40)
    meta.sandbox.seed_people(people, match_rate=0.5, seed=3)
    rows = [hash_row(p) for p in people] + [("f" * 63, "", "", "", "", "", "", "")]
    result = client.upload(aud, SCHEMA, rows)
    assert (result.received, result.invalid, result.batches) == (41, 1, 1)
    assert result.samples
    info = client.audience(aud)
    matched = len(meta.sandbox.members(aud))
    assert 5 < matched < 35
    assert info["approximate_count_lower_bound"] <= matched <= info["approximate_count_upper_bound"]


def test_client_uploads_in_sessions_of_at_most_10000_rows(meta: MetaStand, g: Graph) -> None:
    client = graph.GraphClient(_settings(meta), g.token, sleep=lambda s: None)
    aud = client.create_audience(AD_ACCOUNT, "big", "d")
    rows = [(hashed(f"user{i}@example.com"), "", "", "", "", "", "", "") for i in range(10_050)]
    result = client.upload(aud, SCHEMA, rows, total=len(rows))
    assert (result.received, result.batches) == (10_050, 2)
    first, second = meta.sandbox.requests_to("/users")
    assert (first.rows, second.rows) == (10_000, 50)
    s1, s2 = json.loads(first.params["session"]), json.loads(second.params["session"])
    assert s1["session_id"] == s2["session_id"] == result.session_id
    assert (s1["batch_seq"], s2["batch_seq"]) == (1, 2)
    assert (s1["last_batch_flag"], s2["last_batch_flag"]) == (False, True)
    assert s1["estimated_num_total"] == s2["estimated_num_total"] == 10_050
    removed = client.upload(aud, SCHEMA, rows[:3], mode="remove")
    (removal,) = meta.sandbox.requests_to("/users", "DELETE")
    assert removal.http_method == "POST" and removal.query_length < 200
    assert removed.received == 3


def test_appsecret_proof(meta: MetaStand, g: Graph) -> None:
    meta.sandbox.require_appsecret_proof = True
    assert error_of(g.get("me/adaccounts"))["code"] == 100
    assert error_of(g.get("me/adaccounts", appsecret_proof="0" * 64))["code"] == 100
    # The client signs every call with the app secret.
    client = graph.GraphClient(_settings(meta), g.token, sleep=lambda s: None)
    assert [a["id"] for a in client.ad_accounts()] == [AD_ACCOUNT]


def test_client_pauses_when_usage_reaches_100_percent(meta: MetaStand, g: Graph) -> None:
    waits: list[float] = []
    client = graph.GraphClient(_settings(meta), g.token, sleep=waits.append, max_wait=120)
    meta.sandbox.usage_percent = 100
    meta.sandbox.regain_minutes = 1.5
    assert client.tos_accepted(AD_ACCOUNT) is True  # the answer itself succeeds
    meta.sandbox.usage_percent = 10
    assert client.tos_accepted(AD_ACCOUNT) is True
    assert len(waits) == 1 and 80 < waits[0] <= 90  # paused before the next call
    meta.sandbox.usage_percent, meta.sandbox.regain_minutes = 100, 10
    client.tos_accepted(AD_ACCOUNT)
    with pytest.raises(MetaThrottledError) as info:
        client.tos_accepted(AD_ACCOUNT)  # too long to wait in-line: the job is re-queued
    assert info.value.retry_after > 500


def test_access_token_from_query_body_or_authorization_header(meta: MetaStand, g: Graph) -> None:
    """Graph reads ``access_token`` as a parameter or from ``Authorization: Bearer|OAuth``."""
    url = f"{g.base}/me"
    assert g.get("me").status_code == 200
    assert g.post(f"{AD_ACCOUNT}/customaudiences", name="n", subtype="CUSTOM").status_code == 400
    for scheme in ("Bearer", "OAuth", "bearer"):
        resp = requests.get(url, headers={"Authorization": f"{scheme} {g.token}"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["id"] == meta.sandbox.login_user
    basic = requests.get(url, headers={"Authorization": f"Basic {g.token}"}, timeout=10)
    assert error_of(basic)["code"] == 104
    wrong = requests.get(url, headers={"Authorization": "Bearer EAAGnope"}, timeout=10)
    assert error_of(wrong)["code"] == 190
    assert [r.token_in for r in meta.sandbox.requests_to("/me")] == [
        "query",
        "header",
        "header",
        "header",
        "",
        "header",
    ]
    (created,) = meta.sandbox.requests_to("/customaudiences")
    assert created.token_in == "body"
    # appsecret_proof is checked against the token from the header as well.
    meta.sandbox.require_appsecret_proof = True
    header = {"Authorization": f"Bearer {g.token}"}
    proof = hmac.new(META_APP_SECRET.encode(), g.token.encode(), hashlib.sha256).hexdigest()
    signed = requests.get(url, params={"appsecret_proof": proof}, headers=header, timeout=10)
    assert signed.status_code == 200
    forged = requests.get(url, params={"appsecret_proof": "0" * 64}, headers=header, timeout=10)
    assert error_of(forged)["code"] == 100


def test_client_sends_the_token_only_in_the_authorization_header(meta: MetaStand, g: Graph) -> None:
    meta.sandbox.require_appsecret_proof = True  # every call below must also carry the proof
    client = graph.GraphClient(_settings(meta), g.token, sleep=lambda s: None)
    assert client.me()["id"] == meta.sandbox.login_user
    aud = client.create_audience(AD_ACCOUNT, "Fans", "d")
    client.upload(aud, SCHEMA, [hash_row(p) for p in make_people(3)])
    client.upload(aud, SCHEMA, [hash_row(p) for p in make_people(1)], mode="remove")
    client.audience(aud)
    client.delete_audience(aud)
    sent = meta.sandbox.log
    assert {(r.http_method, r.method) for r in sent} == {
        ("GET", "GET"),
        ("POST", "POST"),
        ("POST", "DELETE"),
        ("DELETE", "DELETE"),
    }
    for request in sent:
        assert request.token_in == "header", request
        assert g.token not in request.query and "access_token" not in request.query


def test_unreachable_meta_error_does_not_quote_the_request(meta: MetaStand, g: Graph) -> None:
    """``requests``' text names the URL (with ``appsecret_proof`` and, for the token exchange,
    the client secret and the token); the error Goldpan raises leaves it out."""
    down = _settings(meta).with_overrides(meta_graph_url=f"http://127.0.0.1:{free_port()}")
    waits: list[float] = []
    with pytest.raises(MetaUnreachableError) as info:
        graph.GraphClient(down, g.token, sleep=waits.append).ad_accounts()
    assert waits == [1.0, 2.0, 4.0]  # retried, then given up
    cause = str(info.value.__cause__)
    assert "appsecret_proof=" in cause  # what used to be stored and shown
    assert str(info.value) == "Meta could not be reached."
    assert stored_error(info.value) == "Meta could not be reached. [network]"
    with pytest.raises(MetaUnreachableError) as exchange:
        graph.exchange_long_lived(down, g.token)
    assert META_APP_SECRET in str(exchange.value.__cause__)
    assert str(exchange.value) == "Meta could not be reached."
