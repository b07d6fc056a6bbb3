"""docs/compatibility.md, cell by cell: one worker with farm's default
configuration polls power, sensors and the SEL of every kind of BMC farm is
tested against (farm-sim's two engines, OpenIPMI's ipmi_sim, and each quirk
of farm/sim/quirks.py), and runs a power command on each through the CLI."""

import json

import yaml

from farm.sim import openipmi
from tests.conftest import free_udp_range, wait_for, write_config
from tests.integration.test_openipmi import PASSWORD, USER
from tests.integration.test_tasks import farm, sections
from tests.integration.test_worker import start_worker, stop_worker

QUIRKS = ("intel20", "supermicro20", "sun20", "opensesspriv", "authcap", "nochecksumcheck")


def test_every_kind_of_bmc_with_farms_defaults(make_sim, store, redis_server, namespace,
                                                tmp_path):
    rows = {"farm-sim (pyghmi's server)": make_sim(1, sensor_period=0, sel_interval=0),
            "farm-sim lean": make_sim(1, engine="lean", sensor_period=0, sel_interval=0)}
    for quirk in QUIRKS:
        rows[f"quirk {quirk}"] = make_sim(1, engine="lean", quirk=quirk, sensor_period=0,
                                          sel_interval=0, password=PASSWORD)
    nodes = []
    for sim in rows.values():
        with open(sim.inventory) as f:
            nodes += yaml.safe_load(f)["nodes"]
    port = free_udp_range(1)
    isim = openipmi.started(tmp_path, [port], USER, PASSWORD, sel_entries=3, sensors=True)[0]
    try:
        nodes.append({"name": "ipmi-sim", "address": "127.0.0.1", "port": port,
                      "username": USER, "password": PASSWORD})
        names = {label: n["name"] for label, n in zip([*rows, "OpenIPMI ipmi_sim"], nodes,
                                                      strict=True)}
        inventory = tmp_path / "all.yaml"
        inventory.write_text(yaml.safe_dump({"nodes": nodes}))
        cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                           bmc_timeout=3, sections=sections())
        assert farm(cfg, "nodes", "import", str(inventory)).returncode == 0
        proc, log = start_worker(tmp_path, cfg)
        try:
            def all_read():
                got = {label: store.node_detail(name) for label, name in names.items()}
                done = all(d["state"].get("power_state") and d["state"].get("sensors_polled_at")
                           and d["state"].get("sel_polled_at") for d in got.values())
                return done and got
            details = wait_for(all_read, 90, what="power, sensors and SEL of every node")
            table = {}
            for label, name in names.items():
                d = details[label]
                out = farm(cfg, "nodes", "power", name, "on")
                state = d["state"]
                table[label] = {
                    "power read": state["power_state"],
                    "sensors": len(d["sensors"]), "sensors error": state.get("sensors_error_kind"),
                    "SEL entries": len(d["sel"]), "SEL error": state.get("sel_error_kind"),
                    "power control": out.returncode == 0 or out.stderr.strip(),
                    "session": state.get("ipmi_session")}
            print(json.dumps(table, indent=1))
            for label, row in table.items():
                assert row["power read"] == "on", (label, row)
                assert row["power control"] is True, (label, row)
                assert not row["sensors error"] and not row["SEL error"], (label, row)
                # farm-sim serves 7 sensors; ipmi_sim the 6 of farm.sim.openipmi.SENSORS
                assert row["sensors"] == (len(openipmi.SENSORS) if label == "OpenIPMI ipmi_sim"
                                          else 7), (label, row)
                assert row["SEL entries"] >= (3 if label == "OpenIPMI ipmi_sim" else 0), row
            text = log.read_text()
            for quirk, reported in (("intel20", "intel20"), ("supermicro20", "supermicro20"),
                                    ("nochecksumcheck", "nochecksumcheck")):
                assert f"FreeIPMI's {reported} workaround" in text, quirk
        finally:
            assert stop_worker(proc) == 0, log.read_text()[-3000:]
    finally:
        isim.stop()
