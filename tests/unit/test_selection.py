"""Selections (farm.fleet.selection): ranges, labels, union, exclusion and
intersection against Python's own set algebra; unknown names refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.fleet.selection import LabelsOf, SelectionError, expand, named, needs_labels, parse, resolve

NODES = [f"rack{r}-{i:02d}" for r in (1, 2) for i in range(1, 41)] + ["n1", "n3", "n5", "n7"]
LABELS = {n: {"rack": n[4] if n.startswith("rack") else "0",
              "role": "compute" if n.endswith(("1", "3", "5")) else "storage",
              **({"pdu": f"p{n[-1]}"} if n.startswith("rack1") else {})} for n in NODES}


def select(text):
    """As farm.fleet.views.select does: every name only when a term needs it."""
    items = parse(text)
    mentioned = named(items)
    names = NODES if mentioned is None else [n for n in NODES if n in mentioned]
    return resolve(items, names, LabelsOf(NODES, LABELS.__getitem__))


def test_ranges_keep_padding():
    assert expand("rack1-[01-03]") == ["rack1-01", "rack1-02", "rack1-03"]
    assert expand("n[1,3,5-7]") == ["n1", "n3", "n5", "n6", "n7"]
    assert expand("n[8-10]") == ["n8", "n9", "n10"]
    assert expand("r[1-2]-[1-2]") == ["r1-1", "r1-2", "r2-1", "r2-2"]


def test_terms_and_operators():
    assert select("all") == sorted(NODES)
    assert select("rack1-[01-40]") == [f"rack1-{i:02d}" for i in range(1, 41)]
    assert select("rack=2@role=compute") == sorted(n for n in NODES if n.startswith("rack2")
                                                   and LABELS[n]["role"] == "compute")
    assert select("all,-rack=1,-rack=2") == ["n1", "n3", "n5", "n7"]
    assert select("-rack=1") == sorted(n for n in NODES if not n.startswith("rack1"))
    assert select("role!=compute@rack=0") == ["n7"]
    assert select("pdu=~p[12]") == sorted(n for n in NODES if n.startswith("rack1")
                                          and n[-1] in "12")
    assert select("n1,n3,n[5,7],-n3") == ["n1", "n5", "n7"]
    assert needs_labels(parse("rack=1")) and not needs_labels(parse("n[1-3],all"))


@pytest.mark.parametrize("text, words", [
    ("n2", "no node named n2"),
    ("n[1-3]", "no node named n2"),
    ("rack=9", "selects no node"),
    ("", "empty selection"),
    ("n1,,n3", "empty item"),
    ("n[1-3", "unmatched '['"),
    ("n[3-1]", "runs backwards"),
    ("n[a-b]", "not a range"),
    ("pdu=~(", "not a regular expression"),
    ("a~b", "label term"),
])
def test_bad_selections_are_clear(text, words):
    with pytest.raises(SelectionError, match=words.replace("[", r"\[").replace("(", r"\(")):
        select(text)


names = st.sampled_from(NODES)
label_terms = st.sampled_from(["rack=1", "rack=2", "rack!=1", "role=compute", "role=storage",
                               "pdu=~p[0-4]", "all", "n[1,3]", "rack1-[01-20]"])


@given(st.lists(st.tuples(st.booleans(), names), min_size=1, max_size=8))
def test_union_and_exclusion_follow_set_algebra(items):
    """Left to right: an item adds its name, a '-' item takes it away (a
    leading '-' starts from all nodes)."""
    text = ",".join(("-" if exclude else "") + name for exclude, name in items)
    expected = set(NODES) if items[0][0] else set()
    for exclude, name in items:
        expected = expected - {name} if exclude else expected | {name}
    if expected:
        assert select(text) == sorted(expected)
    else:
        with pytest.raises(SelectionError, match="selects no node"):
            select(text)


def _or_empty(text):
    try:
        return set(select(text))
    except SelectionError:
        return set()


@given(label_terms, label_terms, label_terms)
def test_intersection_binds_tighter_than_union(a, b, c):
    expected = (_or_empty(a) & _or_empty(b)) | _or_empty(c)
    assert _or_empty(f"{a}@{b},{c}") == expected
    assert _or_empty(f"{c},-{a}@{b}") == _or_empty(c) - (_or_empty(a) & _or_empty(b))


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text):
    try:
        select(text)
    except SelectionError:
        pass
