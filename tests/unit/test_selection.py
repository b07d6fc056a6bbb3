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


def run_bounded(code, timeout=20):
    """Run `code` in a fresh interpreter: a selection that would take
    minutes (or gigabytes) fails the test at `timeout` instead of hanging it."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)


def test_a_catastrophic_regex_is_matched_in_linear_time():
    """`(a+)+$` against 'a' * 40 + 'b': Python's re backtracks for hours
    (2 s at 27 characters, doubling with each); RE2 answers at once."""
    out = run_bounded(
        "from farm.fleet import selection as s\n"
        "items = s.parse('t26=~(a+)+$')\n"
        "labels = s.LabelsOf(['n1'], lambda n: {'t26': 'a' * 40 + 'b'})\n"
        "try:\n    s.resolve(items, ['n1'], labels)\n"
        "except s.SelectionError as e:\n    print(e)\n")
    assert out.returncode == 0 and "selects no node" in out.stdout, out.stderr


def test_a_selection_is_bounded_before_its_work():
    from farm.fleet import selection
    with pytest.raises(SelectionError, match="at most 4,096"):
        parse("n1," * 2000)
    with pytest.raises(SelectionError, match="at most 256"):
        parse("rack=~" + "a" * 300)
    with pytest.raises(SelectionError, match="not a regular expression RE2 reads"):
        parse(r"rack=~(a)\1")  # a backreference: no RE2, no backtracking
    # ten terms of 100,000 names each: refused by counting, past the second
    # (the cap was per term: 22.7 s and 1.27 GB)
    out = run_bounded(
        "from farm.fleet import selection as s\n"
        "try:\n    s.parse(','.join(f'n{k}x[0-99999]' for k in range(10)))\n"
        "except s.SelectionError as e:\n    print(e)\n"
        # VmHWM: this process's peak (ru_maxrss would count the forking parent's)
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    assert out.returncode == 0 and "past what one selection may name" in out.stdout, out.stderr
    assert int(out.stdout.split()[-1]) < 100_000  # KiB: under 100 MB in all
    # the budget is shared: two terms of 150,000 each are past 200,000 together
    with pytest.raises(SelectionError, match="in all"):
        parse("a[000001-150000],b[000001-150000]")
    assert len(parse("a[000001-150000]")[0][1][0][1]) == 150_000 == selection.MAX_EXPANDED - 50_000
