"""Property tests for partition placement."""

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from farm.coordination import placement

member_ids = st.text("abcdefghij0123456789-", min_size=1, max_size=12)
members_st = st.dictionaries(member_ids, st.integers(1, 4), min_size=1, max_size=12)
P = 256


@settings(max_examples=40, deadline=None)
@given(members_st)
def test_deterministic_and_order_free(members):
    a = placement.place(members, P)
    b = placement.place(dict(reversed(list(members.items()))), P)
    assert a == b
    assert len(a) == P and set(a) <= set(members)


@settings(max_examples=40, deadline=None)
@given(members_st, member_ids)
def test_join_moves_only_to_the_newcomer(members, newcomer):
    if newcomer in members:
        return
    before = placement.place(members, P)
    after = placement.place({**members, newcomer: 1}, P)
    for p in placement.moved(before, after):
        assert after[p] == newcomer


@settings(max_examples=40, deadline=None)
@given(members_st)
def test_leave_moves_only_the_leavers_partitions(members):
    if len(members) < 2:
        return
    leaver = sorted(members)[0]
    before = placement.place(members, P)
    after = placement.place({m: w for m, w in members.items() if m != leaver}, P)
    assert placement.moved(before, after) == placement.owned(before, leaver)


def test_join_moves_about_one_in_n_plus_one():
    members = {f"worker-{i}": 1 for i in range(3)}
    before = placement.place(members, 1024)
    after = placement.place({**members, "worker-3": 1}, 1024)
    fraction = len(placement.moved(before, after)) / 1024
    assert 0.25 * 0.7 <= fraction <= 0.25 * 1.3, fraction


def test_shares_within_fifteen_percent_of_even():
    members = {f"host{i}-{1000 + i}": 1 for i in range(10)}
    counts = collections.Counter(placement.place(members, 1024))
    even = 1024 / 10
    assert all(0.85 * even <= c <= 1.15 * even for c in counts.values()), counts


def test_weights_are_respected():
    members = {"small-1": 1, "small-2": 1, "big": 2}
    counts = collections.Counter(placement.place(members, 1024))
    assert 0.8 * 512 <= counts["big"] <= 1.2 * 512, counts


@given(st.text(min_size=1, max_size=40), st.integers(1, 4096))
def test_partition_of_in_range_and_stable(name, partitions):
    p = placement.partition_of(name, partitions)
    assert 0 <= p < partitions and p == placement.partition_of(name, partitions)


def test_no_members_no_placement():
    assert placement.place({}, 16) == ()
    assert placement.moved((), ("a",) * 4) == frozenset(range(4))
