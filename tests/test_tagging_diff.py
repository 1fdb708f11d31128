"""The pure tag diff: Goldpan's namespace only, Shopify's comparison rules, the 250-tag limit."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shopify_app.shopify.client import load_document
from shopify_app.tagging import diff as tag_diff
from shopify_app.tagging.changes import native_segment_query
from shopify_app.tagging.diff import TagDiff, apply, diff, plan
from shopify_app.tagging.tags import ownership, tag_key, tag_problem

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
OWNED = ownership(PREFIX, [OWNED_EXTRA])


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
    change = diff(current, {"goldpan-vip", "goldpan-fans"}, PREFIX)
    assert change == TagDiff(add=("goldpan-fans",), remove=("Goldpan-Lapsed",))
    # Shopify compares trimmed and case-insensitively: nothing to do.
    assert diff(["GOLDPAN-VIP "], {"goldpan-vip"}, PREFIX).empty
    # Another app's tag that merely contains the prefix is not ours.
    assert diff(["x-goldpan-vip"], set(), PREFIX).empty


def test_full_customer_reports_instead_of_evicting() -> None:
    current = [f"m{i}" for i in range(249)]
    change = diff(current, {"goldpan-a", "goldpan-b"}, PREFIX)
    assert change.add == ("goldpan-a",)
    assert change.dropped == ("goldpan-b",)
    # Freeing Goldpan's own tag makes room in the same diff.
    change = diff([*current, "goldpan-old"], {"goldpan-a"}, PREFIX)
    assert change == TagDiff(add=("goldpan-a",), remove=("goldpan-old",))


def test_plan_leaves_out_unchanged_customers_and_reports_the_limit() -> None:
    full = [f"m{i}" for i in range(250)]
    current = {1: ["goldpan-a"], 2: ["x", "goldpan-old"], 3: full}
    changes, limited = plan(current, {1: {"GOLDPAN-A"}, 3: {"goldpan-a"}}, OWNED)
    assert changes == {2: TagDiff(remove=("goldpan-old",))}
    assert limited == {3: ("goldpan-a",)}


def test_tags_shopify_refuses_are_reported() -> None:
    change = diff([], {"goldpan-" + "x" * 300, "goldpan-a,b", "goldpan-ok"}, PREFIX)
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
