"""Redfish nodes next to IPMI ones: one farm-worker, farm-sim in both
protocols, and sushy-tools' sushy-emulator as a Redfish service nobody here
wrote."""

import dataclasses
import json
import signal
import subprocess

import requests

from farm.fleet import inventory
from tests.conftest import free_tcp_port, metrics_of, script, wait_for, write_config
from tests.integration.test_tasks import farm, sim_stats
from tests.integration.test_worker import import_sim, start_worker, stop_worker


def polled_at(store, name):
    return float(store.node_states([name])[name].get("polled_at") or 0)


def test_mixed_fleet_kept_sessions_and_a_hung_redfish_bmc(make_sim, store, redis_server,
                                                          namespace, tmp_path):
    ipmi = make_sim(2)
    redfish = make_sim(3, protocol="redfish", tls=True, hung_fraction=1 / 3, session_timeout=3600)
    nodes = import_sim(ipmi, store) + import_sim(redfish, store)
    hung, good, other = (n.name for n in nodes[2:])
    # a first contact gets [redfish] login_timeout (30 s by default), which
    # the hung BMC's first poll would use up entirely
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=2, sections={"redfish": {"login_timeout": 3}})
    proc, log = start_worker(tmp_path, cfg)
    try:
        def polled():
            s = store.node_states([n.name for n in nodes])
            return all(s[n.name].get("power_state") == "on" for n in nodes if n.name != hung) and s
        wait_for(polled, 60, what="IPMI and Redfish nodes polled")
        # the hung Redfish BMC costs only its own slot: the others keep their interval
        start = {n.name: polled_at(store, n.name) for n in nodes if n.name != hung}
        wait_for(lambda: store.node_states([hung])[hung].get("error_kind") == "timeout", 30,
                 what="the hung Redfish BMC's timeout")
        for name, at in start.items():
            wait_for(lambda name=name, at=at: polled_at(store, name) >= at + 2.0, 30,
                     what=f"{name} polled on while the hung BMC times out")
        # an out-of-band change through the simulator's own Redfish API
        url = next(n.address for n in nodes if n.name == good)
        s = requests.Session()
        s.auth = (redfish.username, redfish.password)
        r = s.post(f"{url}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                   json={"ResetType": "ForceOff"}, verify=redfish.tls_cert)
        assert r.status_code == 204, r.text
        wait_for(lambda: store.node_states([good])[good].get("power_state") == "off", 10,
                 what="farm to see the change within an interval or two")
        out = farm(cfg, "nodes", "power", other, "off")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: store.node_states([other])[other].get("power_state") == "off", 10,
                 what="the power action's effect")
        logins = metrics_of(log)["farm_bmc_redfish_logins_total"]
        assert logins == 2  # one per healthy Redfish BMC, across every poll
        # the BMCs forget every session: farm logs in again, once each, and goes on
        redfish.proc.send_signal(signal.SIGUSR1)
        logins = wait_for(lambda: (n := metrics_of(log)["farm_bmc_redfish_logins_total"]) >= 4
                          and n, 30, what="new sessions after the BMCs dropped theirs")
        assert logins == 4, log.read_text()[-3000:]
        at = polled_at(store, good)
        wait_for(lambda: polled_at(store, good) > at + 1.0, 30, what="polls on the new session")
        assert store.node_states([good])[good]["consecutive_failures"] == "0"
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]
    stats = sim_stats(redfish)
    assert stats["logins"] == 4 and stats["requests"] > 20
    # kept HTTP connections: sushy's setup after each login opens up to 4 (it
    # asks for each to be closed), a power action one more; polls reuse theirs
    assert stats["connections"] <= 5 * stats["logins"] + 4 < stats["requests"], stats


def test_wrong_credentials_and_bad_tls_are_typed_errors(make_sim, store, redis_server, namespace,
                                                       tmp_path):
    sim = make_sim(3, protocol="redfish", tls=True)
    nodes = list(inventory.parse(open(sim.inventory).read(), sim.inventory))
    wrong, unverified, plain = nodes
    nodes = [dataclasses.replace(wrong, password="not-the-password"),
             dataclasses.replace(unverified, verify_tls=""),   # the default: verify, and fail
             dataclasses.replace(plain, address=plain.address.replace("https", "http"))]
    store.import_nodes(nodes)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=2)
    proc, log = start_worker(tmp_path, cfg)
    try:
        kinds = wait_for(lambda: (s := store.node_states([n.name for n in nodes])) and all(
            v.get("error_kind") for v in s.values()) and {k: v["error_kind"] for k, v in s.items()},
            30, what="every node failing")
        assert kinds[wrong.name] == "auth"
        assert kinds[unverified.name] == "tls"
        assert kinds[plain.name] in ("unreachable", "error")
        text = log.read_text() + json.dumps(store.node_states([n.name for n in nodes]))
        assert sim.password not in text and "not-the-password" not in text
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]


def test_against_sushy_emulator(store, redis_server, namespace, tmp_path):
    port = free_tcp_port()
    emulator_log = open(tmp_path / "emulator.log", "w")
    emulator = subprocess.Popen([script("sushy-emulator"), "--fake", "--interface", "127.0.0.1",
                                 "--port", str(port)], stdout=emulator_log,
                                stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        base = f"http://127.0.0.1:{port}"

        def systems():
            try:
                return requests.get(f"{base}/redfish/v1/Systems", timeout=2).json()["Members"]
            except (requests.RequestException, ValueError, KeyError):
                return None
        members = wait_for(systems, 60, what="sushy-emulator to serve")
        system_url = base + members[0]["@odata.id"]
        store.import_nodes(inventory.parse(
            f"nodes:\n- {{name: emu, driver: redfish, address: '{base}', username: u, "
            f"password: p}}\n", "emu.yaml"))
        from tests.integration.test_tasks import sections
        cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace,
                           poll_interval=0.5, bmc_timeout=5,
                           sections=sections(tasks={"enabled": "power,sensors"}))
        proc, log = start_worker(tmp_path, cfg)
        try:
            first = wait_for(lambda: store.node_states(["emu"])["emu"].get("power_state"), 60,
                             what="the emulated system polled")
            # sensors from the emulator's own Thermal, and /ipmi's families from them
            detail = wait_for(lambda: (d := store.node_detail("emu"))["sensors"] and d, 60,
                              what="a sensors pass on the emulator")
            chassis = requests.get(f"{base}/redfish/v1/Chassis", timeout=5).json()["Members"][0]
            thermal = requests.get(f"{base}{chassis['@odata.id']}/Thermal", timeout=5).json()
            temps = {t["Name"]: t["ReadingCelsius"] for t in thermal["Temperatures"]}
            assert {k: r["value"] for k, r in detail["sensors"].items()
                    if r["type"] == "temperature"} == temps
            _ipmi_families_equal_thermal(detail, store.server_time(), temps, thermal)
            assert first == requests.get(system_url, timeout=5).json()["PowerState"].lower()
            target = "off" if first == "on" else "on"
            out = farm(cfg, "nodes", "power", "emu", target)
            assert out.returncode == 0, out.stderr
            wait_for(lambda: requests.get(system_url, timeout=5).json()["PowerState"].lower()
                     == target, 30, what="the emulator to change state")
            wait_for(lambda: store.node_states(["emu"])["emu"].get("power_state") == target, 30,
                     what="farm to see it")
        finally:
            assert stop_worker(proc) == 0, log.read_text()[-2000:]
    finally:
        emulator.terminate()
        try:
            emulator.wait(10)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait(5)
        emulator_log.close()


def _ipmi_families_equal_thermal(detail, now, temps, thermal):
    """/ipmi rendered from what farm stored of sushy-emulator's Thermal."""
    from prometheus_client.parser import text_string_to_metric_families

    from farm.api import ipmi
    text = ipmi.render(detail["state"], {k: json.dumps(v) for k, v in detail["sensors"].items()},
                       now, {"sensors": 300}, ("ipmi", "dcmi"), driver="redfish")
    families = {f.name: {s.labels.get("name", s.labels.get("collector")): s.value
                         for s in f.samples} for f in text_string_to_metric_families(text)}
    assert families["ipmi_temperature_celsius"] == temps
    assert families["ipmi_fan_speed_rpm"] == {f["Name"]: f["Reading"] for f in thermal["Fans"]}
    # the emulator's chassis has no Power resource: no DCMI reading, as on a BMC without DCMI
    assert families["ipmi_up"] == {"ipmi": 1.0, "dcmi": 0.0}


def test_redfish_sensors_sel_and_sel_clear(make_sim, store, redis_server, namespace, tmp_path):
    """The sensors and sel tasks on a Redfish node (HTTPS): readings equal
    what sushy's own Thermal and Power classes read from the same BMC; an
    out-of-band power change's SEL entry reaches farm; `farm nodes
    sel-clear` clears the log through LogService.ClearLog."""
    import sushy
    from sushy import auth as sushy_auth

    from tests.integration.test_tasks import events, sections
    sim = make_sim(1, protocol="redfish", tls=True, sensor_period=0, sel_interval=0)
    (node,) = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=3, sections=sections())
    proc, log = start_worker(tmp_path, cfg)
    try:
        detail = wait_for(lambda: (d := store.node_detail(node.name)) and len(d["sensors"]) == 7
                          and d, 60, what="a Redfish sensors pass")
        root = sushy.Sushy(f"{node.address}/redfish/v1", verify=sim.tls_cert,
                           auth=sushy_auth.BasicAuth(sim.username, sim.password))
        chassis = root.get_chassis("/redfish/v1/Chassis/1")
        theirs = {t.name: (t.reading_celsius, "degrees C") for t in chassis.thermal.temperatures}
        theirs.update({f.name: (f.reading, "RPM") for f in chassis.thermal.fans})
        assert len(theirs) == 4
        for name, (value, unit) in theirs.items():
            ours = detail["sensors"][name]
            assert (ours["value"], ours["unit"], ours["status"]) == (value, unit, "ok"), ours
        (psu,) = chassis.power.power_supplies
        assert detail["sensors"][psu.name]["status"] == "ok"
        assert {r["type"] for r in detail["sensors"].values()} == {
            "temperature", "fan", "voltage", "power_supply"}
        # /ipmi answers for it under ipmi_exporter's names, from what is stored
        from prometheus_client.parser import text_string_to_metric_families

        from farm.api import ipmi
        text = ipmi.render(detail["state"], {k: json.dumps(v) for k, v in detail["sensors"].items()},
                           store.server_time(), {"power": 1, "sensors": 300, "sel": 600},
                           ipmi.COLLECTORS, driver="redfish")
        families = {f.name: {s.labels.get("name"): s.value for s in f.samples}
                    for f in text_string_to_metric_families(text)}
        assert families["ipmi_temperature_celsius"] == {
            t.name: t.reading_celsius for t in chassis.thermal.temperatures}
        assert families["ipmi_fan_speed_rpm"] == {f.name: f.reading for f in chassis.thermal.fans}
        assert families["ipmi_sensor_state"] == {psu.name: 0.0}  # type Power Supply, nominal
        power = requests.get(f"{node.address}/redfish/v1/Chassis/1/Power", verify=sim.tls_cert,
                             auth=(sim.username, sim.password)).json()  # sushy has no PowerControl
        assert families["ipmi_dcmi_power_consumption_watts"] == {
            None: power["PowerControl"][0]["PowerConsumedWatts"]}
        assert "ipmi_bmc_info" not in families

        s = requests.Session()
        s.auth = (sim.username, sim.password)
        r = s.post(f"{node.address}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                   json={"ResetType": "ForceOff"}, verify=sim.tls_cert)
        assert r.status_code == 204, r.text
        wait_for(lambda: any(e.get("description") == "S4/S5: soft-off"
                             for e in store.node_detail(node.name)["sel"]), 30,
                 what="the power change's SEL entry")
        listed = s.get(f"{node.address}/redfish/v1/Systems/1/LogServices/SEL/Entries",
                       verify=sim.tls_cert).json()["Members"]
        ours = list(reversed(store.node_detail(node.name)["sel"]))
        assert [int(m["Id"]) for m in listed] == [e["id"] for e in ours]

        out = farm(cfg, "nodes", "sel-clear", "--yes", node.name)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: any(e["type"] == "sel-cleared" for e in events(cfg, "--node", node.name)),
                 30, what="the sel-cleared event")
        wait_for(lambda: store.node_detail(node.name)["sel"][0]["description"]
                 == "Log area reset/cleared", 30, what="the entry the clear logged")
        state = store.node_detail(node.name)["state"]
        assert state["sensors_error_kind"] == "" and state["sel_error_kind"] == ""
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]
