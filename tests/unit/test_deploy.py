"""Files that cannot run here are at least checked."""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_systemd_worker_unit():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str
    unit.read(os.path.join(ROOT, "deploy", "systemd", "farm-worker.service"))
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith("farm-worker")
    assert service["KillMode"] == "mixed" and service["Restart"] == "on-failure"
    # the stop timeout must exceed the default bmc_timeout (5 s) plus the flush
    assert int(service["TimeoutStopSec"]) > 5 + 5


def test_example_config_loads():
    from farm import conf
    s = conf.load(os.path.join(ROOT, "deploy", "farm.conf.example"))
    assert s.worker.poll_interval == 60
