"""Pure pieces: scheduling, staggering, classification, fleet picking, config."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm import conf, errors, scheduling
from farm.bmc.ipmi import classify
from farm.bmc.pyghmi_fixes import enabled_fixes
from farm.sim.fleet import pick
from farm.store import _redis_url, redact_url
from farm.tasks import phase


@given(st.floats(0, 1e6), st.floats(0.1, 3600), st.floats(0, 3600))
def test_first_run_is_within_one_interval_and_on_phase(now, spacing, ph):
    ph = ph % spacing
    t = scheduling.first_run(now, spacing, ph)
    assert now <= t < now + spacing + 1e-6
    off_phase = (t - ph) % spacing
    tolerance = 1e-6 * max(1, now)
    assert off_phase < tolerance or spacing - off_phase < tolerance


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


@pytest.mark.parametrize("failures,factor", [(0, 1), (1, 1), (2, 2), (3, 4), (10, 4)])
def test_backoff(failures, factor):
    assert scheduling.next_run(100.0, 10.0, failures) == 100.0 + 10.0 * factor


@pytest.mark.parametrize("message,cls", [
    ("Incorrect password provided", errors.BmcAuthError),
    ("Unauthorized name", errors.BmcAuthError),
    ("Session no longer connected", errors.BmcUnreachable),
    ("timeout", errors.BmcUnreachable),
    ("Unable to transmit to specified address", errors.BmcUnreachable),
    ("Unrecognized RMCP code 99", errors.BmcProtocolError),
    (None, errors.BmcProtocolError),
])
def test_classify(message, cls):
    assert classify(message) is cls


@given(st.integers(1, 5000), st.floats(0, 1), st.integers(0, 3))
def test_pick_count(count, fraction, salt):
    chosen = pick(count, fraction, salt)
    assert len(chosen) == round(count * fraction)
    assert all(0 <= i < count for i in chosen)


def test_enabled_fixes():
    assert enabled_fixes("all") == {"locks", "wakeups", "sendto", "ioloop", "logins"}
    assert enabled_fixes("0") == set()
    assert enabled_fixes("locks, sendto") == {"locks", "sendto"}
    with pytest.raises(ValueError):
        enabled_fixes("locks,bogus")


def test_urls():
    assert redact_url("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
    assert _redis_url("redis://h:1?timeout=5&db=2&membership_timeout=3") == "redis://h:1?db=2"


def test_config_defaults_and_file(tmp_path):
    s = conf.load()
    assert s.coordination.backend_url == "redis://127.0.0.1:6379"
    assert s.coordination.namespace == "farm"
    assert s.worker.executor == "threads" and s.worker.bmc_timeout == 5.0
    f = tmp_path / "farm.conf"
    f.write_text("[worker]\nexecutor = processes\npoll_interval = 2.5\n[coordination]\nnamespace = x\n")
    s = conf.load(str(f))
    assert (s.worker.executor, s.worker.poll_interval, s.coordination.namespace) == ("processes", 2.5, "x")


@pytest.mark.parametrize("body", ["[worker]\nexecutor = fibers\n", "[worker]\npoll_interval = soon\n",
                                  "[worker]\nworkers_pool_size = 0\n"])
def test_config_errors_are_clear(tmp_path, body):
    f = tmp_path / "farm.conf"
    f.write_text(body)
    with pytest.raises(errors.ConfigError):
        conf.load(str(f))


def test_missing_config_file():
    with pytest.raises(errors.ConfigError, match="not found"):
        conf.load("/nonexistent/farm.conf")


def test_summarize():
    from farm.cli import summarize
    rows = [{"power_state": "on", "error_kind": None, "last_polled_at": 90.0},
            {"power_state": "off", "error_kind": "timeout", "last_polled_at": 70.0},
            {"power_state": None, "error_kind": None, "last_polled_at": None}]
    assert summarize(rows, 100.0) == {"nodes": 3, "power": {"off": 1, "on": 1, "unknown": 1},
                                      "failing": {"timeout": 1}, "never_polled": 1,
                                      "oldest_poll_age": 30.0}
