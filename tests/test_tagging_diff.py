"""The pure tag diff: only the tags Goldpan wrote, Shopify's comparison rules, the 250-tag limit;
and the naming rules for prefixes and moved tags."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shopify_app.shopify.client import load_document
from shopify_app.tagging import diff as tag_diff
from shopify_app.tagging.changes import native_segment_query
from shopify_app.tagging.diff import TagDiff, apply, diff, plan
from shopify_app.tagging.tags import (
    moved_tag,
    prefix_problem,
    stored_prefix_problem,
    tag_key,
    tag_problem,
    written,
)

PREFIX = "goldpan-"
OWNED_EXTRA = "VIP Club"  # a segment tag the merchant renamed outside the prefix

_word = st.text(alphabet="abcdefgXYZ-_ 1", min_size=1, max_size=8).filter(lambda s: s.strip())
merchant_tags = _word.filter(
    lambda t: not tag_key(t).startswith(PREFIX) and tag_key(t) != "vip club"
)
goldpan_tags = st.one_of(
    _word.map(lambda w: PREFIX + w.strip()),
    _word.map(lambda w: (PREFIX + w.strip()).upper()),
    st.just(OWNED_EXTRA),
    st.just(" vip club "),
)


def _unique(tags: list[str]) -> list[str]:
    """Shopify holds each tag once (case-insensitively)."""
    seen: set[str] = set()
    out = []
    for tag in tags:
        if tag_key(tag) not in seen:
            seen.add(tag_key(tag))
            out.append(tag.strip())
    return out


currents = st.lists(st.one_of(merchant_tags, goldpan_tags), max_size=30).map(_unique)
wanteds = st.sets(goldpan_tags, max_size=8)


def OWNED(tag: str) -> bool:
    """What the ledger says in these properties: every generated Goldpan tag was written by it."""
    return tag_key(tag).startswith(PREFIX) or tag_key(tag) == "vip club"


def _others(tags: list[str]) -> list[str]:
    return [t for t in tags if not OWNED(t)]


@settings(max_examples=300, deadline=None)
@given(currents, wanteds)
def test_merchant_tags_survive_untouched(current: list[str], wanted: set[str]) -> None:
    change = diff(current, wanted, OWNED)
    assert _others(apply(current, change)) == _others(current)
    assert not any(not OWNED(t) for t in change.remove)


@settings(max_examples=300, deadline=None)
@given(currents, wanteds)
def test_end_state_is_the_wanted_state(current: list[str], wanted: set[str]) -> None:
    after = apply(current, diff(current, wanted, OWNED))
    assert {tag_key(t) for t in after if OWNED(t)} == {tag_key(t) for t in wanted}


@settings(max_examples=300, deadline=None)
@given(currents, wanteds)
def test_second_run_writes_nothing(current: list[str], wanted: set[str]) -> None:
    after = apply(current, diff(current, wanted, OWNED))
    assert diff(after, wanted, OWNED).empty


@settings(max_examples=200, deadline=None)
@given(st.lists(merchant_tags, min_size=0, max_size=12).map(_unique), wanteds, st.integers(0, 12))
def test_limit_never_evicts_merchant_tags(current: list[str], wanted: set[str], limit: int) -> None:
    change = diff(current, wanted, OWNED, limit=limit)
    after = apply(current, change)
    assert _others(after) == current
    assert len(after) <= max(limit, len(current))
    assert len(change.add) + len(change.dropped) == len({tag_key(t) for t in wanted})


def test_examples() -> None:
    current = ["wholesale", "goldpan-vip", "Goldpan-Lapsed", "newsletter"]
    ours = written(["goldpan-vip", "goldpan-lapsed"])
    change = diff(current, {"goldpan-vip", "goldpan-fans"}, ours)
    assert change == TagDiff(add=("goldpan-fans",), remove=("Goldpan-Lapsed",))
    # Shopify compares trimmed and case-insensitively: nothing to do.
    assert diff(["GOLDPAN-VIP "], {"goldpan-vip"}, ours).empty
    # A tag under the prefix that Goldpan did not write is not Goldpan's, nor is one that
    # merely contains a tag Goldpan wrote.
    assert diff(["goldpan-merchant", "x-goldpan-vip"], set(), ours).empty


def test_only_written_tags_are_ever_removed() -> None:
    """The issue's merchant: prefix ``VIP``, a rename to ``pop-up-2024``, a prefix ``s``."""
    merchant = ["VIP", "staff", "pop-up-2024", "goldpan-friends"]
    ours = written(["VIPone-time-buyers", "goldpan-vip"])
    change = diff([*merchant, "VIPone-time-buyers", "goldpan-vip"], set(), ours)
    assert change == TagDiff(remove=("VIPone-time-buyers", "goldpan-vip"))
    assert apply([*merchant, "VIPone-time-buyers", "goldpan-vip"], change) == merchant


def test_full_customer_reports_instead_of_evicting() -> None:
    current = [f"m{i}" for i in range(249)]
    change = diff(current, {"goldpan-a", "goldpan-b"}, written([]))
    assert change.add == ("goldpan-a",)
    assert change.dropped == ("goldpan-b",)
    # Freeing Goldpan's own tag makes room in the same diff.
    change = diff([*current, "goldpan-old"], {"goldpan-a"}, written(["goldpan-old"]))
    assert change == TagDiff(add=("goldpan-a",), remove=("goldpan-old",))


def test_plan_leaves_out_unchanged_customers_and_reports_the_limit() -> None:
    full = [f"m{i}" for i in range(250)]
    current = {1: ["goldpan-a"], 2: ["x", "goldpan-old"], 3: full, 4: ["goldpan-old"]}
    ledger = {1: ["goldpan-a"], 2: ["goldpan-old"]}
    changes, limited = plan(current, {1: {"GOLDPAN-A"}, 3: {"goldpan-a"}}, ledger)
    # 4 carries the same tag as 2, but Goldpan never wrote it there.
    assert changes == {2: TagDiff(remove=("goldpan-old",))}
    assert limited == {3: ("goldpan-a",)}


def test_prefix_rules() -> None:
    for good in ("goldpan-", "gp-", "gp_", "gp.", "my/", "Shop2-"):
        assert prefix_problem(good) is None, good
    for bad in ("VIP", "s", "s-", "gp", "gp:", "-gp-", "has space-", "x" * 40 + "-", ""):
        assert prefix_problem(bad) is not None, bad
    # A prefix saved before these rules stays readable; nonsense does not.
    assert stored_prefix_problem("gp") is None and stored_prefix_problem("gp:") is None
    assert stored_prefix_problem("") is not None and stored_prefix_problem("a b") is not None


def test_moved_tags_follow_the_prefix_only_when_named_under_it() -> None:
    assert moved_tag("goldpan-vip", "goldpan-", "gp-") == "gp-vip"
    assert moved_tag("Goldpan-Lapsed-60", "goldpan-", "gp-") == "gp-Lapsed-60"
    assert moved_tag("best customers", "goldpan-", "gp-") is None
    assert moved_tag("gp-vip", "gp-", "goldpan-") == "goldpan-vip"


def test_tags_shopify_refuses_are_reported() -> None:
    change = diff([], {"goldpan-" + "x" * 300, "goldpan-a,b", "goldpan-ok"}, written([]))
    assert change.add == ("goldpan-ok",)
    assert len(change.invalid) == 2
    assert tag_problem("  ") is not None


def test_native_segment_query_escapes_quotes() -> None:
    assert native_segment_query("goldpan-vip") == "customer_tags CONTAINS 'goldpan-vip'"
    assert native_segment_query("o'brien") == "customer_tags CONTAINS 'o\\'brien'"


def test_batch_document_files_match_generator() -> None:
    for slots in tag_diff.BATCH_SIZES:
        name = tag_diff.batch_document_name(slots)
        assert load_document(name) == tag_diff.batch_document(slots)
        assert Path(tag_diff.__file__).parents[1].joinpath("graphql", f"{name}.graphql").is_file()


def test_batches_respect_slots() -> None:
    changes = {i: TagDiff(add=("goldpan-a",), remove=("goldpan-b",)) for i in range(25)}
    batches = list(tag_diff.batches(changes))
    assert [len(b) for b in batches] == [10, 10, 5]
    doc, variables, keys = tag_diff.batch_request({i: changes[i] for i in batches[2]})
    assert doc == "tags_batch_10"
    assert sum(variables[f"a{i}On"] for i in range(10)) == 5
    assert len(keys) == 10
    doc, variables, keys = tag_diff.batch_request({i: changes[i] for i in range(3)})
    assert doc == "tags_batch_4" and len(keys) == 6 and variables["r3On"] is False
    doc, _, keys = tag_diff.batch_request({3: changes[3]})
    assert doc == "tags_batch_1" and keys == [("r0", 3), ("a0", 3)]
    doc, variables, keys = tag_diff.batch_request({7: TagDiff(add=("goldpan-a",))})
    assert (doc, keys) == ("tags_add", [("tagsAdd", 7)])
