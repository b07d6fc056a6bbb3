"""A worker whose clock runs an hour ahead (libfaketime, wall clock only):
its skew shows in `farm status`, and once it dies its nodes show as stale
after two intervals, not after an hour (staleness uses Redis's clock), and
so does /ipmi: its sensors collector goes down."""

import glob
import json
import os
import signal
import subprocess

from tests.conftest import script, wait_for, write_config
from tests.integration.test_worker import import_sim

# the library itself, not the faketime wrapper, so that SIGKILL reaches the worker
LIBFAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + [None])[0]


def status(cfg):
    out = subprocess.run([script("farm"), "status", "--json", "--config-file", cfg],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_worker_clock_ahead_cannot_hide_stale_nodes(make_sim, store, redis_server, namespace, tmp_path):
    assert LIBFAKETIME, "needs libfaketime (Debian: faketime)"
    sim = make_sim(3)
    import_sim(sim, store)
    # its report would expire only after membership_timeout (30 s): within the
    # 15 s below only the heartbeat's age on Redis's clock can show it dead
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace,
                       {"membership_timeout": 30}, poll_interval=1, bmc_timeout=2,
                       sections={"tasks": {"enabled": "power,sensors"},
                                 "sensors": {"interval": 1}})
    log = open(tmp_path / "worker.log", "w")
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME="+1h", FAKETIME_DONT_FAKE_MONOTONIC="1")
    worker = subprocess.Popen([script("farm-worker"), "--config-file", cfg],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        report = wait_for(lambda: (r := status(cfg))["nodes"]["never_polled"] == 0
                          and r["nodes"]["unaccounted"] == 0
                          and r["workers"] and r["workers"][0]["clock_skew"] and r, 30,
                          interval=0.3, what="three polls and a skew report")
        assert 3590 < report["workers"][0]["clock_skew"] < 3610
        assert report["nodes"]["stale"] == 0
        name = store.load_nodes()[1][0].name
        wait_for(lambda: ipmi_up(store, name) == 1.0, 30, what="its sensors read, /ipmi up")
        assert "clock is" in (tmp_path / "worker.log").read_text()  # the worker warned
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    wait_for(lambda: status(cfg)["nodes"]["stale"] == 3, 15, interval=0.3,
             what="the dead worker's nodes to show as stale")
    # stored an hour "ahead": only Redis's clock shows the readings growing old
    wait_for(lambda: ipmi_up(store, name) == 0.0, 15, interval=0.3,
             what="/ipmi's sensors collector to go down")


def ipmi_up(store, name):
    """ipmi_up{collector="ipmi"} of /ipmi rendered from what is stored (sensors every 1 s)."""
    from farm.api import ipmi
    detail = store.node_detail(name)
    text = ipmi.render(detail["state"], {k: json.dumps(v) for k, v in detail["sensors"].items()},
                       store.server_time(), {"sensors": 1.0}, ("ipmi",))
    return float(text.split('ipmi_up{collector="ipmi"} ')[1].split()[0])
