"""Waves of a bulk power action (farm.power.plan): each node once, waves of at
most `batch` spaced by `interval`, and spread round-robin across a label."""

import collections
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.power.plan import GUARD, summary, waves

names = st.lists(st.from_regex(r"n[0-9]{1,4}", fullmatch=True), min_size=1, max_size=300,
                 unique=True)


@given(names, st.integers(1, 50), st.floats(0, 30))
def test_each_node_once_in_waves_of_at_most_batch(nodes, batch, interval):
    steps = waves(nodes, batch, interval, start=1000.0)
    assert sorted(s.node for s in steps) == sorted(nodes)
    per_wave = collections.Counter(s.wave for s in steps)
    assert max(per_wave.values()) <= batch
    assert sorted(per_wave) == list(range(math.ceil(len(nodes) / batch)))
    assert all(s.not_before == pytest.approx(1000.0 + s.wave * (interval + GUARD)) for s in steps)
    assert summary(steps)[:2] == (len(per_wave), len(nodes))


@given(names, st.integers(1, 20), st.integers(1, 8))
def test_spread_by_shares_each_wave_across_the_labels_values(nodes, batch, pdus):
    pdu = {n: f"p{i % pdus}" for i, n in enumerate(nodes)}
    steps = waves(nodes, batch, 1.0, 0.0, spread_by="pdu", labels_of=lambda n: {"pdu": pdu[n]})
    assert sorted(s.node for s in steps) == sorted(nodes)
    remaining = collections.Counter(pdu.values())
    for wave in range(steps[-1].wave + 1):
        in_wave = collections.Counter(pdu[s.node] for s in steps if s.wave == wave)
        remaining -= in_wave
        # round-robin: a value takes more than one node over another's share
        # only when that other one has no node left
        for a in in_wave:
            for b in set(remaining) | set(in_wave):
                if in_wave[a] > in_wave[b] + 1:
                    assert remaining[b] == 0, (wave, in_wave, remaining)


def test_bad_arguments():
    with pytest.raises(ValueError):
        waves(["a"], 0, 1, 0)
    with pytest.raises(ValueError):
        waves(["a"], 1, -1, 0)
