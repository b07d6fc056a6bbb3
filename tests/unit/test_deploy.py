"""Files that cannot run here are at least checked."""

import configparser
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



@pytest.mark.parametrize("daemon", ["farm-worker", "farm-coordinator"])
def test_systemd_units(daemon):
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str
    assert unit.read(os.path.join(ROOT, "deploy", "systemd", f"{daemon}.service"))
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith(daemon)
    assert service["KillMode"] == "mixed" and service["Restart"] == "on-failure"
    # the stop timeout must exceed the default bmc_timeout (5 s) plus the flush
    assert int(service["TimeoutStopSec"]) > 5 + 5


def test_example_config_loads():
    from farm import conf
    s = conf.load(os.path.join(ROOT, "deploy", "farm.conf.example"))
    assert s.worker.poll_interval == 60
