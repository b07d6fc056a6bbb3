"""The counts, polled and names keys that `farm nodes summary` and the
pages of `farm nodes list` read instead of every node stay equal to a count
of every node's state, whatever imports, removals and results come in what
order (a real Redis, farm's own scripts; hypothesis draws the sequences)."""

import collections

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.fleet import views
from farm.model import Node, PollResult, PowerState

NAMES = [f"n{i}" for i in range(8)]
results = st.builds(lambda name, power, kind: PollResult(
    name, 1.0, 0.01, None if kind else power, kind, "x" if kind else None),
    st.sampled_from(NAMES), st.sampled_from([PowerState.ON, PowerState.OFF]),
    st.sampled_from([None, None, "timeout", "auth"]))
steps = st.one_of(
    st.tuples(st.just("import"), st.sets(st.sampled_from(NAMES)), st.booleans()),
    st.tuples(st.just("remove"), st.sets(st.sampled_from(NAMES), min_size=1)),
    st.tuples(st.just("write"), st.lists(results, min_size=1, max_size=6)))


def recounted(store):
    """What the summary must say, counted here from every node's state."""
    names = sorted(n.name for n in store.load_nodes()[1])
    states = store.node_states(names)
    power = collections.Counter(s.get("power_state") or "unknown" for s in states.values())
    failing = collections.Counter(s["error_kind"] for s in states.values() if s.get("error_kind"))
    polled = [float(s["seen_at"]) for s in states.values() if s.get("seen_at")]
    return names, {"nodes": len(names), "power": dict(sorted(power.items())),
                   "failing": dict(sorted(failing.items())),
                   "never_polled": len(names) - len(polled), "oldest": min(polled, default=None)}


def summarized(store):
    counts = store.counts()
    s = views.summarize(counts)
    s["oldest"] = counts["oldest_seen_at"]
    del s["oldest_poll_age"]
    return s


def apply(store, step):
    if step[0] == "import":
        store.import_nodes([Node(n, "127.0.0.1", 623, "u", "p") for n in sorted(step[1])],
                           replace=step[2])
    elif step[0] == "remove":
        store.remove_nodes(sorted(step[1]))
    else:
        store.write_results(step[1], worker="w")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(steps, min_size=1, max_size=12))
def test_counts_follow_every_change(store, redis_server, namespace, sequence):
    redis.Redis(port=redis_server.port).delete(
        *[f"{namespace}:{k}" for k in ("inventory", "counts", "polled", "names", "layout")],
        *[f"{namespace}:state:{n}" for n in NAMES])
    store.upgrade()  # an empty farm: the keys are kept from the first import on
    for step in sequence:
        apply(store, step)
        names, expected = recounted(store)
        assert summarized(store) == expected, step
        assert list(store.name_page(limit=0)[0]) == names
    # a recount from scratch (an upgrade, `--recount`) agrees with the kept counts
    kept = summarized(store)
    assert store.upgrade(force=True)
    assert summarized(store) == kept


def test_upgrade_builds_the_keys_of_an_older_farm(store, redis_server, namespace):
    nodes = [Node(f"n{i:02d}", "127.0.0.1", 623, "u", "p") for i in range(30)]
    store.import_nodes(nodes)
    store.write_results([PollResult(n.name, 1.0, 0.01, PowerState.OFF if i % 3 else None,
                                    None if i % 3 else "timeout", None if i % 3 else "x")
                         for i, n in enumerate(nodes[:20])])
    _, expected = recounted(store)
    r = redis.Redis(port=redis_server.port)
    # what an older version left: inventory and states, none of the kept keys
    r.delete(*[f"{namespace}:{k}" for k in ("counts", "polled", "names", "layout")])
    page, total = views.page_names(store, after="n04", limit=5)
    assert (list(page), total) == (["n05", "n06", "n07", "n08", "n09"], 30)
    assert summarized(store) == expected
    assert summarized(store)["power"] == {"off": 13, "unknown": 17}
    assert not store.upgrade()  # built once
