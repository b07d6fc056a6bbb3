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


site_names = st.sampled_from(["default", "dc1", "dc2", "dc3"])
site_members_st = st.dictionaries(
    member_ids, st.tuples(st.integers(1, 4), st.lists(site_names, min_size=1, max_size=2, unique=True),
                          st.lists(site_names, max_size=2, unique=True)),
    max_size=10)
SITES = ["default", "dc1", "dc2", "dc3"]


def _sites(members):
    return {m: (w, tuple(own), tuple(backs)) for m, (w, own, backs) in members.items()}


@settings(max_examples=60, deadline=None)
@given(site_members_st)
def test_each_site_goes_to_its_own_members_else_its_backups_else_nobody(members):
    out = placement.place_sites(_sites(members), SITES, P)
    for site in SITES:
        own = {m for m, (_, served, _) in members.items() if site in served}
        backs = {m for m, (_, _, b) in members.items() if site in b}
        owners = set(out[site])
        if own:
            assert owners and owners <= own
        elif backs:
            assert owners and owners <= backs
        else:
            assert out[site] == ()


@settings(max_examples=60, deadline=None)
@given(site_members_st, member_ids, st.lists(site_names, min_size=1, max_size=2, unique=True),
       st.lists(site_names, max_size=2, unique=True))
def test_one_sites_membership_change_moves_nothing_of_another_site(members, other, served, backs):
    """A member joins (or, read backwards, leaves): the sites it neither
    serves nor backs up keep every partition where it was; a site it backs
    up moves only where that site had no member of its own."""
    if other in members:
        return
    before = placement.place_sites(_sites(members), SITES, P)
    after = placement.place_sites(_sites({**members, other: (1, served, backs)}), SITES, P)
    for site in SITES:
        own_before = any(site in m[1] for m in members.values())
        if site in served or (site in backs and not own_before):
            continue
        assert before[site] == after[site], site
        assert not placement.moved(before[site], after[site])


def test_a_site_with_nodes_and_no_member_is_placed_on_nobody():
    out = placement.place_sites({"w1": (1, ("dc1",), ())}, ["dc1", "dc2"], 16)
    assert out["dc2"] == () and set(out["dc1"]) == {"w1"}
    # and its backup takes it, and gives it back when a worker of its own returns
    out = placement.place_sites({"w1": (1, ("dc1",), ("dc2",))}, ["dc1", "dc2"], 16)
    assert set(out["dc2"]) == {"w1"}
    out = placement.place_sites({"w1": (1, ("dc1",), ("dc2",)), "w2": (1, ("dc2",), ())},
                                ["dc1", "dc2"], 16)
    assert set(out["dc2"]) == {"w2"} and set(out["dc1"]) == {"w1"}
    assert placement.owner_of(out, "dc2", "n1") == "w2"
    assert placement.owner_of(out, "dc3", "n1") is None
