"""Real parts for the tests: a private redis-server and simulated BMC fleets.

Every wait has a deadline. Tests isolate themselves by a unique namespace, never
by flushing Redis.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from farm.sim.harness import RedisServer, scrape, wait_for  # noqa: F401 (tests import them from here)
from farm.sim.ports import free_tcp_port, free_tcp_range, free_udp_range  # noqa: F401

BIN = os.path.dirname(sys.executable)




def metrics_of(log_path, timeout=20):
    """A farm daemon's metrics (series -> value), from the address it logged."""
    import re
    match = wait_for(lambda: re.search(r"metrics on (https?://\S+/metrics)", log_path.read_text()),
                     timeout, what="the metrics address")
    return scrape(match.group(1))


def script(name):
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else shutil.which(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace():
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_server, namespace):
    from farm.store import Store
    s = Store(redis_server.url, namespace)
    yield s
    s.close()


def stop_process(proc, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Sim:
    """A farm-sim process serving `count` BMCs."""

    def __init__(self, tmpdir, count, **options):
        self.tmpdir = tmpdir
        self.count = count
        self.options = options
        self.username = options.get("username", "admin")
        self.password = options.get("password", "s3cret-Pw-%s" % uuid.uuid4().hex[:6])
        self.inventory = os.path.join(str(tmpdir), f"inventory-{uuid.uuid4().hex[:6]}.yaml")
        self.proc = None
        self.base_port = None

    def start(self, base_port=None):
        self.base_port = base_port or (free_tcp_range(self.count)
                                       if self.options.get("protocol") == "redfish"
                                       else free_udp_range(self.count))
        args = [script("farm-sim"), "--count", str(self.count), "--address", "127.0.0.1",
                "--base-port", str(self.base_port), "--username", self.username,
                "--inventory", self.inventory]
        for key in ("delay", "hung_fraction", "off_fraction", "session_timeout", "engine",
                    "power_delay", "sensor_period", "hot_fraction", "sel_interval", "protocol",
                    "quirk", "quirk_fraction", "control_log", "redfish_shape", "redfish_expand",
                    "max_sessions"):
            if key in self.options:
                args += ["--" + key.replace("_", "-"), str(self.options[key])]
        if self.options.get("tls"):
            args.append("--tls")
        env = dict(os.environ, FARM_SIM_PASSWORD=self.password)
        if os.path.exists(self.inventory):
            os.unlink(self.inventory)
        self.log = open(os.path.join(str(self.tmpdir), f"sim-{self.base_port}.log"), "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.inventory) or self.proc.poll() is not None,
                 30, what="farm-sim to be ready")
        assert self.proc.poll() is None, "farm-sim exited at start"
        return self

    @property
    def tls_cert(self):
        """The certificate a redfish --tls fleet serves (farm-sim writes it)."""
        return os.path.join(str(self.tmpdir), f"sim-cert-{self.base_port}.pem")

    def port(self, i):
        return self.base_port + i

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.log.close()

    def ipmitool(self, i, *command, timeout=20):
        env = dict(os.environ, IPMI_PASSWORD=self.password)
        return subprocess.run(
            ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.port(i)),
             "-U", self.username, "-E", *command],
            env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def make_sim(tmp_path):
    sims = []

    def make(count, **options):
        sim = Sim(tmp_path, count, **options).start()
        sims.append(sim)
        return sim
    yield make
    for sim in sims:
        sim.stop()


def write_config(path, redis_url, namespace, coordination=None, sections=None, **worker):
    lines = ["[coordination]", f"backend_url = {redis_url}", f"namespace = {namespace}"]
    lines += [f"{k} = {v}" for k, v in (coordination or {}).items()]
    # port 0: each daemon picks a free port and logs it; tests run many at once
    lines += ["[metrics]", "port = 0", "coordinator_port = 0"]
    # tests that import through the CLI without a key file (see test_credentials.py)
    lines += ["[security]", "allow_plaintext_credentials = true", "[worker]"]
    lines += [f"{k} = {v}" for k, v in worker.items()]
    for group, options in (sections or {}).items():
        lines += [f"[{group}]"] + [f"{k} = {v}" for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


IPMI_SIM_USER, IPMI_SIM_PASSWORD = "admin", "isim-Pw-7"


@pytest.fixture
def ipmi_sims(tmp_path):
    """make(count, **options): OpenIPMI ipmi_sim BMCs on free loopback ports
    (farm.sim.openipmi), stopped after the test."""
    from farm.sim import openipmi
    started = []

    def make(count, **options):
        base = free_udp_range(count)
        bmcs = openipmi.started(tmp_path, range(base, base + count), IPMI_SIM_USER,
                                IPMI_SIM_PASSWORD, **options)
        started.extend(bmcs)
        return bmcs
    yield make
    for bmc in started:
        bmc.stop()
