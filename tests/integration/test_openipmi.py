"""farm against OpenIPMI's ipmi_sim, a BMC nobody here wrote, with farm's
default configuration (cipher suites 17 then 3, administrator): login, power
read and control, the SEL, an account limited to USER, and refusals."""

import json
import re
import subprocess

import pytest

from farm.bmc import engine
from farm.model import Node
from farm.sim import openipmi
from farm.tasks.power import PowerPoll
from farm.tasks.sensors import SensorsPoll
from tests.conftest import IPMI_SIM_PASSWORD as PASSWORD
from tests.conftest import IPMI_SIM_USER as USER
from tests.conftest import script, wait_for, write_config
from tests.integration.test_tasks import events, farm, sections
from tests.integration.test_worker import start_worker, stop_worker


def import_inventory(tmp_path, cfg, bmcs):
    path = tmp_path / "ipmi_sim.yaml"
    path.write_text(openipmi.inventory_yaml(bmcs))
    out = farm(cfg, "nodes", "import", str(path))
    assert out.returncode == 0, out.stderr
    return [f"isim-{i:02d}" for i in range(len(bmcs))]


def test_defaults_poll_every_ipmi_sim_and_control_power(ipmi_sims, store, redis_server,
                                                       namespace, tmp_path):
    bmcs = ipmi_sims(8, sel_entries=3)
    bmcs[1].ipmitool("chassis", "power", "off")
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=3, sections=sections())
    names = import_inventory(tmp_path, cfg, bmcs)
    proc, log = start_worker(tmp_path, cfg)
    try:
        # every node within two intervals of the worker's first pass, as ipmitool reads it
        def polled():
            got = store.node_states(names)
            return all(got[n].get("power_state") for n in names) and got
        got = wait_for(polled, 30, what="every ipmi_sim node polled")
        for name, bmc in zip(names, bmcs, strict=True):
            said = bmc.ipmitool("chassis", "power", "status").stdout
            assert f"Chassis Power is {got[name]['power_state']}" in said, (name, said)
        assert got[names[1]]["power_state"] == "off"

        # power control through the CLI: the BMC's own log shows the change
        out = farm(cfg, "nodes", "power", names[2], "off")
        assert out.returncode == 0, out.stderr
        assert [v for _, v in bmcs[2].chassis_log()] == ["off"]
        wait_for(lambda: store.node_states([names[2]])[names[2]].get("power_state") == "off",
                 30, what="the new state polled")

        # the SEL ipmi_sim started with: the same entries, ids and descriptions as ipmitool's
        listed = bmcs[0].ipmitool("sel", "list").stdout.splitlines()
        assert len(listed) == 3, listed
        want = [(int(row.split("|")[0], 16), row.split("|")[4].strip()) for row in listed]
        ours = wait_for(lambda: len(store.node_detail(names[0])["sel"]) == 3 and [
            (e["id"], e["description"]) for e in reversed(store.node_detail(names[0])["sel"])],
            30, what="farm's SEL pass")
        assert ours == want
        shown = farm(cfg, "nodes", "show", names[0], "--json")
        assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr
        assert "suite" not in log.read_text()  # nothing to warn about on a plain login
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_an_account_limited_to_user_is_polled_and_never_retried_into_maintenance(
        ipmi_sims, store, redis_server, namespace, tmp_path):
    bmc, = ipmi_sims(1)
    # as an operator would limit it: every cipher suite's maximum at USER
    limit = bmc.ipmitool("lan", "set", "1", "cipher_privs", "u" * 15)
    assert limit.returncode == 0, limit.stderr
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=3, sections={"power": {"settle_time": 1, "max_retries": 2}})
    name, = import_inventory(tmp_path, cfg, [bmc])
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: store.node_states([name])[name].get("power_state") == "on", 30,
                 what="the node polled at USER")
        out = farm(cfg, "nodes", "power", name, "off")
        assert out.returncode != 0
        assert "power-action needs operator" in out.stdout + out.stderr
        assert farm(cfg, "nodes", "desired", name, "off").returncode == 0
        wait_for(lambda: "farm stops keeping its power state" in log.read_text(), 30,
                 what="the enforcer to give up on the node")
        # positive signal first: polls go on after farm gave up
        polled = store.node_states([name])[name]["polled_at"]
        wait_for(lambda: float(store.node_states([name])[name]["polled_at"]) > float(polled) + 2,
                 30, what="more polls")
        assert store.controls()[1][name].get("maintenance", "") == ""
        assert bmc.chassis_log() == [] and bmc.power() == "on"
        text = log.read_text()
        assert text.count("the BMC does not grant administrator") == 1, text[-3000:]
        refused = [e for e in events(cfg, "--type", "action") if e.get("outcome") == "failed"]
        assert refused and all("privilege" in e["error"] for e in refused)
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


@pytest.mark.parametrize("node_options, expected", [
    # ipmi_sim has no suite 17: a node that allows only 17 is refused, at once
    ({"cipher_suites": (17,)}, "suite 17 at administrator: Open Session: invalid authentication "
                               "algorithm (0x04)"),
    # an unknown user is refused at every level; the error says what to check
    ({"username": "nobody"}, "no level knows this user name"),
])
def test_refusals_are_named_within_one_retry_interval(ipmi_sims, node_options, expected):
    bmc, = ipmi_sims(1)
    fields = dict(name="n", address="127.0.0.1", port=bmc.port, username=USER, password=PASSWORD)
    node = Node(**dict(fields, **node_options))
    config = engine.EngineConfig(timeout=5.0, retry_interval=1.0)
    outcome = engine.run_one(config, PowerPoll.programs, "power", node)
    assert outcome.error_kind == "auth", outcome
    assert expected in outcome.error
    assert outcome.latency < config.retry_interval


def test_a_bmc_key_kg_is_used_and_its_absence_named(ipmi_sims):
    bmc, = ipmi_sims(1, kg="farm-kg-0123456789a")
    assert bmc.ipmitool("chassis", "power", "status").returncode == 0  # ipmitool -y agrees
    config = engine.EngineConfig(timeout=3.0)
    node = Node("n", "127.0.0.1", bmc.port, USER, PASSWORD, kg=bmc.kg.encode().hex())
    ours = engine.run_one(config, PowerPoll.programs, "power", node)
    assert ours.ok and ours.value.value == "on", ours
    without = engine.run_one(config, PowerPoll.programs, "power", Node(
        "n", "127.0.0.1", bmc.port, USER, PASSWORD))
    assert without.error_kind == "auth" and "K_g" in without.error, without
    assert bmc.kg not in without.error and node.kg not in without.error


def test_ipmitool_and_ipmipower_agree_with_farm_on_ipmi_sim(ipmi_sims):
    on, off = ipmi_sims(2)
    off.ipmitool("chassis", "power", "off")
    config = engine.EngineConfig(timeout=3.0)
    for bmc in (on, off):
        node = Node("n", "127.0.0.1", bmc.port, USER, PASSWORD)
        ours = engine.run_one(config, PowerPoll.programs, "power", node)
        theirs = subprocess.run(
            ["ipmipower", "-D", "LAN_2_0", "-I", "3", "-W", "opensesspriv", "-h",
             f"127.0.0.1:{bmc.port}", "-u", USER, "-p", PASSWORD, "--stat"],
            capture_output=True, text=True, timeout=30)
        assert ours.ok, ours
        assert theirs.stdout.strip().endswith(ours.value.value), theirs.stdout + theirs.stderr


def test_farm_probe_finds_what_each_ipmi_sim_needs(ipmi_sims, tmp_path):
    plain, limited = ipmi_sims(2)
    assert limited.ipmitool("lan", "set", "1", "cipher_privs", "u" * 15).returncode == 0
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")

    def probe(bmc, password_file):
        return subprocess.run([script("farm"), "probe", "127.0.0.1", "--port", str(bmc.port),
                               "-u", USER, "--password-file", str(password_file)],
                              capture_output=True, text=True, timeout=120)
    out = probe(plain, secret)
    assert out.returncode == 0, out.stderr
    assert "suite  3 administrator ok       power on" in out.stdout
    assert "suite 17 administrator refused  auth: login refused: suite 17 at administrator: " \
           "Open Session: invalid authentication algorithm (0x04)" in out.stdout
    assert "settings needed: none (farm's defaults work)" in out.stdout
    # asked before a session as an IPMI 1.5 message, ipmi_sim lists its suites (not 17)
    listed = re.search(r"Get Channel Cipher Suites: the BMC lists \[([\d, ]+)\]", out.stdout)
    assert listed and "3" in listed.group(1).split(", ") and "17" not in listed.group(1)

    out = probe(limited, secret)
    assert out.returncode == 0, out.stderr
    assert "(0x0a)" in out.stdout and "suite  3 user          ok" in out.stdout
    assert "privilege: user}" in out.stdout and "cannot control power" in out.stdout

    out = probe(plain, wrong)
    assert out.returncode == 1 and "no combination logged in" in out.stdout
    assert "wrong password?" in out.stdout
    for text in (out.stdout, out.stderr):
        assert PASSWORD not in text and "not-the-password" not in text


def test_sensor_readings_equal_ipmitool_freeipmi_and_pyghmi_on_ipmi_sim(ipmi_sims, tmp_path):
    """Three readers nobody here wrote, on SDRs compiled by OpenIPMI's own
    sdrcomp: farm's names, values, units and statuses must be theirs."""
    bmc, = ipmi_sims(1, sensors=True)
    node = Node("n", "127.0.0.1", bmc.port, USER, PASSWORD)
    outcome = engine.run_one(engine.EngineConfig(timeout=5.0), SensorsPoll.programs, "sensors",
                             node)
    assert outcome.ok, outcome
    ours = {r["name"]: r for r in outcome.value[0]}
    assert len(ours) == len(openipmi.SENSORS)

    listed = bmc.ipmitool("sdr", "list").stdout.splitlines()
    assert len(listed) == len(ours)
    for line in listed:
        name, reading, status = (x.strip() for x in line.split("|"))
        r = ours[name]
        assert r["status"] == status, (name, r, line)
        if reading == "disabled":  # scanning off: no value, as ipmitool says
            assert r["value"] is None, (name, r)
            continue
        value, unit = reading.split(" ", 1)
        assert abs(r["value"] - float(value)) <= 0.06, (name, r, line)  # 12V: 0.06 V a count
        assert r["unit"] == unit, (name, r, line)

    (tmp_path / "sdr-cache").mkdir(mode=0o700)
    freeipmi = subprocess.run(
        ["ipmi-sensors", "-D", "LAN_2_0", "-I", "3", "-W", "opensesspriv", "-h",
         f"127.0.0.1:{bmc.port}", "-u", USER, "-p", PASSWORD, "--output-sensor-state",
         "--no-header-output",
         # its own SDR cache: FreeIPMI's default (~/.freeipmi) is keyed by host:port,
         # and an earlier run's BMC on this port had other SDRs ("out of date")
         "--sdr-cache-directory", str(tmp_path / "sdr-cache")],
        capture_output=True, text=True, timeout=60)
    rows = [[x.strip() for x in line.split("|")] for line in freeipmi.stdout.splitlines()]
    assert len(rows) == len(ours), freeipmi.stdout + freeipmi.stderr
    # FreeIPMI's state is its interpretation (farm.bmc.interpret), farm's `level`
    state_of = {"nominal": "Nominal", "warning": "Warning", "critical": "Critical", None: "N/A"}
    for _, name, _, state, reading, _, _ in rows:
        r = ours[name]
        assert state_of[r["level"]] == state, (name, r, state)
        assert (r["value"] is None) == (reading == "N/A"), (name, r, reading)
        if r["value"] is not None:
            assert abs(r["value"] - float(reading)) < 0.01, (name, r, reading)

    from pyghmi.ipmi import command
    theirs = command.Command("127.0.0.1", USER.encode(), PASSWORD.encode(),
                             port=bmc.port).get_sensor_data()
    seen = 0
    for s in theirs:
        r = ours[s.name]
        assert (r["value"] is None) == bool(s.unavailable), (s.name, r)
        if r["value"] is not None:
            assert abs(r["value"] - s.value) < 0.01, (s.name, r, s.value)
        assert (r["status"] in ("cr", "nr")) == bool(s.health & 2), (s.name, r, s.health)
        seen += 1
    assert seen == len(ours)


def test_a_bulk_plan_runs_on_ipmi_sim_and_reads_the_state_back(ipmi_sims, store, redis_server,
                                                              namespace, tmp_path):
    """A staggered plan's steps (held to the moment Redis set, then Chassis
    Control and the read-back) against ipmi_sim: every BMC's own log shows one
    change, spaced as planned, and the state read back is what ipmitool says."""
    bmcs = ipmi_sims(4)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=3)
    names = import_inventory(tmp_path, cfg, bmcs)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(s.get("power_state") == "on"
                             for s in store.node_states(names).values()), 30,
                 what="every ipmi_sim node polled on")
        out = farm(cfg, "nodes", "power", "all", "off", "--batch", "2", "--interval", "1",
                   "--json", timeout=90)
        assert out.returncode == 0, out.stderr
        steps = {s["node"]: s for s in map(json.loads, out.stdout.splitlines())}
        assert {s["state"] for s in steps.values()} == {"done"}
        for name, bmc in zip(names, bmcs, strict=True):
            assert [v for _, v in bmc.chassis_log()] == ["off"], name
            assert "Chassis Power is off" in bmc.ipmitool("chassis", "power", "status").stdout
            assert steps[name]["power_after"] == "off"
        # the second wave went out at least the interval after the first, by the BMCs' logs
        at = {name: bmc.chassis_log()[0][0] for name, bmc in zip(names, bmcs, strict=True)}
        first = max(at[n] for n, s in steps.items() if s["wave"] == 0)
        second = min(at[n] for n, s in steps.items() if s["wave"] == 1)
        assert second - first >= 1.0 - 0.05, at
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_sessions_of_nodes_no_longer_polled_here_are_closed(ipmi_sims):
    """After a rebalance the engine keeps sessions only with the BMCs of the
    nodes it still polls: the others get Close Session, as ipmi_sim's own
    count of active sessions (Get Session Info, read by ipmitool) says."""
    bmcs = ipmi_sims(3)
    got = []
    eng = engine.Engine(engine.EngineConfig(timeout=3.0), PowerPoll.programs, got.extend).start()
    nodes = [Node(f"n{i}", "127.0.0.1", b.port, USER, PASSWORD) for i, b in enumerate(bmcs)]

    def active(bmc):  # ipmitool's own session counts too
        out = bmc.ipmitool("session", "info", "active").stdout
        return int(re.search(r"active sessions\s*:\s*(\d+)", out).group(1))
    try:
        eng.submit([("power", n) for n in nodes])
        wait_for(lambda: len(got) == 3, 30, what="three polls")
        assert all(o.ok for o in got) and [active(b) for b in bmcs] == [2, 2, 2]
        eng.retain(["n0"])
        wait_for(lambda: len(eng.sessions) == 1, 10, what="two sessions released")
        assert [active(b) for b in bmcs] == [2, 1, 1]
        # a node that comes back is logged in again; one polled here but not
        # retained (a command for a node just handed on) is closed after it
        eng.retain(["n0", "n1"])
        eng.submit([("power", nodes[1]), ("power", nodes[2])])
        wait_for(lambda: len(got) == 5, 30, what="two more polls")
        wait_for(lambda: len(eng.sessions) == 2, 10, what="n2's session released after its job")
        assert [active(b) for b in bmcs] == [2, 2, 1]
    finally:
        eng.stop()
