"""Pure pieces: scheduling, staggering, classification, fleet picking, config."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm import conf, errors
from farm.polling import scheduling
from farm.polling.scheduling import phase
from farm.sim.fleet import pick


def test_phases_spread_over_the_interval():
    spacing = 60.0
    offsets = [phase(f"node-{i}", spacing) for i in range(10000)]
    assert all(0 <= o < spacing for o in offsets)
    buckets = [0] * 60
    for o in offsets:
        buckets[int(o)] += 1
    # 10,000 nodes over 60 one-second buckets: none far from 167
    assert max(buckets) < 167 * 1.4 and min(buckets) > 167 * 0.6, buckets


def test_phase_is_stable():
    assert phase("node-1", 60) == phase("node-1", 60)
    assert phase("node-1", 60) != phase("node-2", 60)


@pytest.mark.parametrize("failures,skip", [(0, 0), (1, 0), (2, 1), (3, 3), (10, 3)])
def test_backoff(failures, skip):
    assert scheduling.rounds_to_skip(failures) == skip


@pytest.mark.parametrize("suites,expected", [("17,3", (17, 3)), ("3", (3,))])
def test_cipher_suites_option(tmp_path, suites, expected):
    f = tmp_path / "farm.conf"
    f.write_text(f"[worker]\ncipher_suites = {suites}\n")
    assert conf.load(str(f)).worker.cipher_suites == expected


@given(st.integers(1, 5000), st.floats(0, 1), st.integers(0, 3))
def test_pick_count(count, fraction, salt):
    chosen = pick(count, fraction, salt)
    assert len(chosen) == round(count * fraction)
    assert all(0 <= i < count for i in chosen)


def test_config_defaults_and_file(tmp_path):
    s = conf.load()
    assert s.coordination.backend_url == "redis://127.0.0.1:6379"
    assert s.coordination.namespace == "farm"
    assert s.worker.executor == "threads" and s.worker.bmc_timeout == 5.0
    f = tmp_path / "farm.conf"
    f.write_text("[worker]\nexecutor = processes\npoll_interval = 2.5\n[coordination]\nnamespace = x\n")
    s = conf.load(str(f))
    assert (s.worker.executor, s.worker.poll_interval, s.coordination.namespace) == ("processes", 2.5, "x")
    f.write_text("[worker]\nworkarounds = intel20, nochecksumcheck\ndetect_workarounds = false\n")
    engine = conf.engine_config(conf.load(str(f)).worker)
    assert engine.workarounds == ("intel20", "nochecksumcheck") and not engine.detect_workarounds


@pytest.mark.parametrize("body", ["[worker]\nexecutor = fibers\n", "[worker]\npoll_interval = soon\n",
                                  "[worker]\nworkers_pool_size = 0\n",
                                  "[worker]\ncipher_suites = 2\n",
                                  "[worker]\nworkarounds = intel20,fixall\n",
                                  "[worker]\nsites = dc 1\n", "[worker]\nsites =\n",
                                  "[worker]\nbackup_sites = dc1,a=b\n",
                                  "[coordination]\nmembership_timeout = 2\n"])
def test_config_errors_are_clear(tmp_path, body):
    f = tmp_path / "farm.conf"
    f.write_text(body)
    with pytest.raises(errors.ConfigError):
        conf.load(str(f))


def test_sites_options(tmp_path):
    assert (conf.load().worker.sites, conf.load().worker.backup_sites) == (("default",), ())
    f = tmp_path / "farm.conf"
    f.write_text("[worker]\nsites = dc1, dc2, dc1\nbackup_sites = dc2, dc3\n")
    w = conf.load(str(f)).worker
    assert (w.sites, w.backup_sites) == (("dc1", "dc2"), ("dc3",))  # a site served is no backup


def test_missing_config_file():
    with pytest.raises(errors.ConfigError, match="not found"):
        conf.load("/nonexistent/farm.conf")


def test_summarize():
    from farm.fleet.views import summarize
    counts = {"nodes": 3, "polled": 2, "power": {"on": 1, "off": 1}, "failing": {"timeout": 1},
              "oldest_seen_at": 70.0, "now": 100.0}
    assert summarize(counts) == {"nodes": 3, "power": {"off": 1, "on": 1, "unknown": 1},
                                      "failing": {"timeout": 1}, "never_polled": 1,
                                      "oldest_poll_age": 30.0}


def test_against_desired_names_the_nodes_farm_would_turn_back():
    from farm.fleet.views import against_desired
    controls = {"a": {"desired": "on"}, "b": {"desired": "off"}, "c": {}, "d": {"desired": ""}}
    names = ["a", "b", "c", "d", "e"]
    assert against_desired(controls, names, "off") == ["a"]
    assert against_desired(controls, names, "on") == ["b"]
    # a cycle or reset ends where it began: nothing to turn back
    assert against_desired(controls, names, "cycle") == []
    assert against_desired(controls, names, "reset") == []
