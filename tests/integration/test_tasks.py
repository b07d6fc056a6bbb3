"""The sensors, sel and power tasks of a real farm-worker against farm-sim,
checked against ipmitool and through the CLI."""

import json
import os
import re
import subprocess
import threading
import time

import pytest

from tests.conftest import metrics_of, script, wait_for, write_config
from tests.integration.test_worker import import_sim, start_worker, stop_worker

TASKS = {"tasks": {"enabled": "power,sensors,sel"}, "sensors": {"interval": 1},
         "sel": {"interval": 1}}


def farm(cfg, *args, timeout=60):
    return subprocess.run([script("farm"), "--config-file", cfg, *args], capture_output=True,
                          text=True, timeout=timeout)


def events(cfg, *args):
    out = farm(cfg, "events", "--json", "--limit", "1000", *args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def sim_stats(sim):
    sim.stop()
    with open(os.path.join(str(sim.tmpdir), f"sim-{sim.base_port}.log")) as f:
        line = next(x for x in f if x.startswith("farm-sim stats: "))
    return json.loads(line[len("farm-sim stats: "):])


def sections(**extra):
    out = {k: dict(v) for k, v in TASKS.items()}
    for group, options in extra.items():
        out.setdefault(group, {}).update(options)
    return out


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_sensors_and_sel_match_ipmitool_and_sel_clear(executor, make_sim, store, redis_server,
                                                     namespace, tmp_path):
    sim = make_sim(2, sensor_period=0, sel_interval=0)
    nodes = import_sim(sim, store)
    name = nodes[0].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=2, executor=executor, processes=2, sections=sections())
    proc, log = start_worker(tmp_path, cfg)
    try:
        detail = wait_for(lambda: (d := store.node_detail(name)) and len(d["sensors"]) == 7 and d,
                          60, what="a sensors pass")
        sdr = sim.ipmitool(0, "sdr", "list")
        assert sdr.returncode == 0, sdr.stderr
        seen = 0
        for line in sdr.stdout.splitlines():
            sensor, reading, status = (x.strip() for x in line.split("|"))
            ours = detail["sensors"][sensor]
            assert ours["status"] == status, (sensor, ours)
            number = re.match(r"(-?[\d.]+) (.+)", reading)
            if number:  # a threshold sensor: the same value in the same unit
                assert abs(ours["value"] - float(number.group(1))) < 0.011, (sensor, ours)
                assert ours["unit"] == number.group(2)
            seen += 1
        assert seen == 7

        # an out-of-band power change logs an entry: farm reads it, as ipmitool does
        assert sim.ipmitool(0, "chassis", "power", "off").returncode == 0
        wait_for(lambda: any(e.get("description") == "S4/S5: soft-off"
                             for e in store.node_detail(name)["sel"]), 30, what="the SEL entry")
        listed = sim.ipmitool(0, "sel", "list").stdout.splitlines()
        ours = list(reversed(store.node_detail(name)["sel"]))
        assert [int(x.split("|")[0], 16) for x in listed] == [e["id"] for e in ours]
        assert [x.split("|")[4].strip() for x in listed] == [e["description"] for e in ours]

        out = farm(cfg, "nodes", "sel-clear", "--yes", name)
        assert out.returncode == 0, out.stderr
        assert "SEL clear done" in out.stdout
        wait_for(lambda: any(e["type"] == "sel-cleared" for e in events(cfg, "--node", name)),
                 30, what="the sel-cleared event")
        listed = sim.ipmitool(0, "sel", "list").stdout.splitlines()
        assert len(listed) == 1 and "Log area reset/cleared" in listed[0]
        wait_for(lambda: store.node_detail(name)["sel"][0]["description"] == "Log area reset/cleared",
                 30, what="the entry the clear logged")
        shown = farm(cfg, "nodes", "show", name, "--json")
        assert shown.returncode == 0 and sim.password not in shown.stdout + shown.stderr
        shown = json.loads(shown.stdout)
        assert shown["control"] == {} and len(shown["sensors"]) == 7
        assert shown["sel"][0]["description"] == "Log area reset/cleared"
        assert shown["state"]["sensors_error_kind"] == "" and shown["state"]["sel_error_kind"] == ""
        # who the BMC is, and its DCMI power reading, as bmc-info and ipmi-dcmi print them
        text = farm(cfg, "nodes", "show", name).stdout
        assert "bmc: firmware 2.14   manufacturer 49871   system firmware 1.0.0" in text, text
        assert re.search(r"power draw \d+ W \(DCMI\)", text), text
        actions = events(cfg, "--type", "action", "--node", name)
        assert [(e["action"], e["outcome"]) for e in actions] == [("sel-clear", "ok")]
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_threshold_crossings_are_events_and_metrics(make_sim, store, redis_server, namespace,
                                                    tmp_path):
    sim = make_sim(2, engine="lean", sensor_period=3, hot_fraction=1.0, sel_interval=0)
    import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=2, sections=sections(sensors={"interval": 0.3}))
    proc, log = start_worker(tmp_path, cfg)
    try:
        def crossings():
            found = events(cfg, "--type", "sensor")
            into = [e for e in found if e["to"] in ("nc", "cr", "nr")]
            out_of = [e for e in found if e["from"] in ("nc", "cr", "nr") and e["to"] == "ok"]
            return into and out_of and found
        found = wait_for(crossings, 60, what="crossings into and out of a threshold state")
        assert {e["sensor"] for e in found} <= {"CPU Temp", "FAN1"}
        # counted every 2 s, over both nodes' 7 sensors
        series = wait_for(lambda: (m := metrics_of(log)) and sum(
            v for k, v in m.items() if k.startswith("farm_sensors{")) == 14 and m, 30,
            what="sensor counts in the metrics")
        assert series.get('farm_task_runs_total{result="ok",task="sensors"}', 0) > 0
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_desired_state_enforced_never_on_an_unknown_read(make_sim, store, redis_server,
                                                        namespace, tmp_path):
    # node 0 hangs, node 1 is off, node 2 on; power changes take 1 s
    sim = make_sim(3, hung_fraction=1 / 3, off_fraction=1 / 3, power_delay=1)
    nodes = import_sim(sim, store)
    hung, off = nodes[0].name, nodes[1].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1, sections={"power": {"settle_time": 3}})
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: store.node_states([off])[off].get("power_state") == "off", 30,
                 what="the off node polled")
        for name in (hung, off):
            assert farm(cfg, "nodes", "desired", name, "on").returncode == 0
        wait_for(lambda: store.node_states([off])[off].get("power_state") == "on", 30,
                 what="farm to power the off node on")
        # the hung node: several failed polls since its desired state was set
        failures = int(store.node_states([hung])[hung].get("consecutive_failures") or 0)
        wait_for(lambda: int(store.node_states([hung])[hung]["consecutive_failures"]) >= failures + 3,
                 60, what="three more failed polls of the hung node")
        acts = events(cfg, "--type", "action")
        farm_acts = [e for e in acts if e["type"] == "action"]
        assert [(e["node"], e["action"], e["by"]) for e in farm_acts] == [
            (off, "on", "farm (desired state)")]
        assert sim.ipmitool(1, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_maintenance_after_corrections_that_do_not_take(make_sim, store, redis_server, namespace,
                                                       tmp_path):
    sim = make_sim(1, off_fraction=1.0, power_delay=600)  # a power change never shows
    name = import_sim(sim, store)[0].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.3,
                       bmc_timeout=1, sections={"power": {"settle_time": 0.5, "max_retries": 2}})
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: store.node_states([name])[name].get("power_state") == "off", 30,
                 what="the node polled")
        assert farm(cfg, "nodes", "desired", name, "on").returncode == 0
        control = wait_for(lambda: store.controls()[1].get(name, {}).get("maintenance")
                           and store.controls()[1][name], 30, what="maintenance")
        assert control["maintenance"] == "power stayed off after 2 attempts to turn it on"
        # positive signal first: more polls after maintenance began, then no action
        polled = float(store.node_states([name])[name]["polled_at"])
        wait_for(lambda: float(store.node_states([name])[name]["polled_at"]) > polled + 1, 30,
                 what="polls after maintenance")
        corrections = [e for e in events(cfg, "--type", "action") if e["type"] == "action"]
        assert len(corrections) == 2
        shown = farm(cfg, "nodes", "show", name)
        assert "maintenance: power stayed off after 2 attempts" in shown.stdout
        assert farm(cfg, "nodes", "maintenance", name, "off").returncode == 0
        # (>= 3: with settle_time 0.5 s the second attempt may come before
        # the CLI that reads the events has started)
        wait_for(lambda: len([e for e in events(cfg, "--type", "action")
                              if e["type"] == "action"]) >= 3, 30, what="enforcement to resume")
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_power_command_from_the_cli(make_sim, store, redis_server, namespace, tmp_path):
    sim = make_sim(2, hung_fraction=0.5, power_delay=0.5)
    nodes = import_sim(sim, store)
    hung, good = nodes[0].name, nodes[1].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=1)
    out = farm(cfg, "nodes", "power", good, "off")
    assert out.returncode != 0 and "no worker is running" in out.stderr
    proc, log = start_worker(tmp_path, cfg)
    follow = subprocess.Popen([script("farm"), "--config-file", cfg, "events", "--follow", "--json",
                               "--type", "action"], stdout=subprocess.PIPE, text=True)
    followed = []
    threading.Thread(target=lambda: followed.extend(json.loads(x) for x in follow.stdout),
                     daemon=True).start()
    try:
        wait_for(lambda: store.worker_reports(), 30, what="the worker's report")
        out = farm(cfg, "nodes", "power", good, "off")
        assert out.returncode == 0, out.stderr
        assert f"{good}: power off done by worker" in out.stdout
        wait_for(lambda: "off" in sim.ipmitool(1, "chassis", "power", "status").stdout, 30,
                 what="the BMC to power off")
        wait_for(lambda: store.node_states([good])[good].get("power_state") == "off", 30,
                 what="the poll to see it")
        out = farm(cfg, "nodes", "power", hung, "on")
        assert out.returncode != 0 and f"power on of {hung} failed: no answer within" in out.stderr
        assert "no node named nope" in farm(cfg, "nodes", "power", "nope", "on").stderr
        acts = [(e["node"], e["action"], e["outcome"]) for e in events(cfg, "--type", "action")]
        assert acts == [(good, "off", "ok"), (hung, "on", "failed")]
        out = farm(cfg, "nodes", "power", good, "on", "--no-wait")
        assert out.returncode == 0 and "sent to worker" in out.stdout
        wait_for(lambda: len(events(cfg, "--type", "action")) == 3, 30, what="the queued command")
        wait_for(lambda: len(followed) == 3, 30, what="`farm events --follow` to print them")
        assert [(e["node"], e["action"]) for e in followed] == [(good, "off"), (hung, "on"), (good, "on")]
    finally:
        follow.kill()
        follow.wait(5)
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_a_command_sent_after_a_control_change_is_not_undone(make_sim, store, redis_server,
                                                             namespace, tmp_path):
    """`farm nodes desired X none` then at once `farm nodes power X on`: the
    worker must not turn X back off from the desired state it had not yet
    re-read (its sync reads controls once a second; the command comes at
    once). Three rounds: without the fix each lost the race most times."""
    from farm.fleet.views import owner_of, send_command
    sim = make_sim(1)
    name = import_sim(sim, store)[0].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.2,
                       bmc_timeout=1, sections={"power": {"settle_time": 0.5}})
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: owner_of(store, name)[0], 30, what="the worker's report")
        for _ in range(3):
            store.set_controls([name], "desired", "test", desired="off")
            wait_for(lambda: store.node_states([name])[name].get("power_state") == "off", 30,
                     what="farm to keep the node off")
            store.set_controls([name], "desired", "test", desired="")
            command = send_command(store, owner_of(store, name)[0], "power", name, "on", "test", 30)
            reply = store.wait_reply(command, 30)
            assert reply and reply["ok"], reply
            # positive signal: polls for well past settle_time with the node on
            until = time.time() + 2
            wait_for(lambda t=until: float(store.node_states([name])[name].get("polled_at", 0)) > t,
                     30, what="two more seconds of polls")
            assert "on" in sim.ipmitool(0, "chassis", "power", "status").stdout
        acts = [(e["action"], e["by"]) for e in events(cfg, "--type", "action")
                if e["type"] == "action"]
        assert acts == [("off", "farm (desired state)"), ("on", "test")] * 3, acts
        # the CLI says so when the command goes against a desired state
        store.set_controls([name], "desired", "test", desired="off")
        out = farm(cfg, "nodes", "power", name, "on")
        assert out.returncode == 0 and f"note: {name} keeps desired off" in out.stderr, out
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_a_cycle_is_not_fought_by_the_desired_state(make_sim, store, redis_server, namespace,
                                                     tmp_path):
    """A node kept on, cycled by an operator: the BMC reads off for a while
    (farm-sim, as IPMI's Chassis Control says: down, then up a second or
    more later). Neither a single command nor a plan's step may draw a
    correction to on while it does."""
    sim = make_sim(3, power_delay=2)
    names = [n.name for n in import_sim(sim, store)]
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.2,
                       bmc_timeout=1, sections={"power": {"settle_time": 5}})
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(s.get("power_state") == "on"
                             for s in store.node_states(names).values()), 30, what="first polls")
        assert farm(cfg, "nodes", "desired", ",".join(names), "on").returncode == 0
        # what the polls read, from before the commands: each node's changes
        seen, done = {n: [] for n in names}, threading.Event()

        def sample():
            while not done.wait(0.05):
                for n, s in store.node_states(names).items():
                    if not seen[n] or seen[n][-1] != s.get("power_state"):
                        seen[n].append(s.get("power_state"))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = farm(cfg, "nodes", "power", names[0], "cycle", "--no-wait")
        assert out.returncode == 0, out.stderr
        out = farm(cfg, "nodes", "power", ",".join(names[1:]), "cycle", "--batch", "2",
                   "--no-wait")
        assert out.returncode == 0, out.stderr
        # positive signal: each node polled off (the cycle's down half), then on again
        wait_for(lambda: all(v.count("off") == 1 and v[-1] == "on" for v in seen.values()), 30,
                 what="each node read off during its cycle, then on")
        done.set()
        sampler.join(5)
        until = time.time() + 1
        wait_for(lambda: all(float(s.get("polled_at", 0)) > until
                             for s in store.node_states(names).values()), 30,
                 what="a second more of polls")
        acts = [(e["node"], e["action"]) for e in events(cfg, "--type", "action")
                if e["type"] == "action"]
        assert sorted(acts) == sorted((n, "cycle") for n in names), acts
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_tasks_never_overlap_on_a_bmc_and_commands_are_spaced(make_sim, store, redis_server,
                                                              namespace, tmp_path):
    sim = make_sim(3, delay=0.05, sel_interval=1)  # each answer takes 50 ms
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=5, sections=sections(sensors={"interval": 0.5, "timeout": 10},
                                                        sel={"interval": 0.5},
                                                        bmc={"min_command_interval": 0.1}))
    proc, log = start_worker(tmp_path, cfg)
    try:
        first = {}

        def passes():
            s = store.node_states([n.name for n in nodes])
            for n, v in s.items():
                if v.get("sensors_polled_at"):
                    first.setdefault(n, float(v["sensors_polled_at"]))
            return len(first) == 3 and all(
                float(s[n]["sensors_polled_at"]) > first[n] + 3 for n in first)
        wait_for(passes, 90, what="several sensors passes per node")
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]
    stats = sim_stats(sim)
    assert stats["commands"] > 100
    assert stats["max_commands_in_flight_per_bmc"] == 1
    assert stats["min_command_gap_ms"] >= 80  # 100 ms apart when sent; loopback jitter aside
