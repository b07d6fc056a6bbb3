"""farm against DMTF's Redfish-Mockup-Server serving DMTF's own mockups
(tests/fixtures/redfish-dmtf), with DMTF's Tacklebox (redfish-utilities:
the get_sensors that rf_sensor_list.py prints) as the reader farm's
readings must equal: services and a reader nobody here wrote."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import requests

from farm.bmc import redfish_data
from farm.fleet import inventory
from tests.conftest import free_tcp_port, script, stop_process, wait_for, write_config
from tests.integration.test_worker import start_worker, stop_worker

DMTF = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "redfish-dmtf"
KINDS = ("Cel", "%", "RPM", "V", "A", "W")  # temperature, fan, voltage, current, power


def without_expand(tmp_path, name):
    """A copy of a DMTF mockup whose service root does not offer $expand."""
    copy = tmp_path / f"{name}-no-expand"
    shutil.copytree(DMTF / "mockups" / name, copy)
    root = json.loads((copy / "index.json").read_text())
    root.get("ProtocolFeaturesSupported", {}).pop("ExpandQuery", None)
    (copy / "index.json").write_text(json.dumps(root))
    return copy


class MockupServer:
    def __init__(self, mockup, tmp_path, delay=None):
        self.port = free_tcp_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp_path / f"dmtf-{self.port}.log", "w")
        argv = [sys.executable, "-u", str(DMTF / "redfishMockupServer.py"), "-S", "-H", "127.0.0.1",
                "-p", str(self.port), "-D", str(DMTF / "mockups" / mockup)]
        if os.path.isabs(mockup):
            argv[-1] = mockup
        if delay:
            argv += ["-t", str(delay)]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, what=f"DMTF's mockup server on {mockup}")

    def _up(self):
        assert self.proc.poll() is None, "the mockup server exited"
        try:
            return requests.get(f"{self.base}/redfish/v1/", timeout=2).ok
        except requests.RequestException:
            return False

    def gets(self):
        """The GETs the server logged so far (its own access log)."""
        self.log.flush()
        text = pathlib.Path(self.log.name).read_text()
        return [line.split('"GET ', 1)[1].split(" HTTP/", 1)[0]
                for line in text.splitlines() if '"GET ' in line]

    def get(self, path):
        return requests.get(f"{self.base}{path}", timeout=10).json()

    def stop(self):
        stop_process(self.proc)
        self.log.close()


@pytest.fixture
def mockup(tmp_path):
    started = []

    def start(name, **kw):
        started.append(MockupServer(name, tmp_path, **kw))
        return started[-1]
    yield start
    for server in started:
        server.stop()


def tacklebox(base):
    """DMTF's Tacklebox's readings of every chassis (redfish_utilities'
    get_sensors, what rf_sensor_list.py prints), in a process of its own."""
    code = ("import json, sys, redfish, redfish_utilities\n"
            "c = redfish.redfish_client(base_url=sys.argv[1], username='u', password='p', "
            "timeout=15)\n"
            "c.login(auth='session')\n"
            "print(json.dumps(redfish_utilities.get_sensors(c)))\n"
            "redfish_utilities.logout(c)\n")
    out = subprocess.run([sys.executable, "-c", code, base], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def sensors_of_tacklebox(base):
    """name -> (value, unit, health) of every enabled reading Tacklebox took
    from a Sensor resource of a kind farm compares."""
    out = {}
    for chassis in tacklebox(base):
        for r in chassis["Readings"]:
            if r["State"] == "Enabled" and r["Units"] in KINDS:
                out[r["Name"]] = (float(r["Reading"]), r["Units"], r["Health"])
    return out


def poll(store, redis_server, namespace, tmp_path, base, worker=None, **sections):
    from tests.integration.test_tasks import sections as make_sections
    store.import_nodes(inventory.parse(
        f"nodes:\n- {{name: dmtf, driver: redfish, address: '{base}', username: u, "
        f"password: p}}\n", "dmtf.yaml"))
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=10, sections=make_sections(
                           tasks={"enabled": "power,sensors"}, **sections), **(worker or {}))
    proc, log = start_worker(tmp_path, cfg)
    try:
        detail = wait_for(lambda: (d := store.node_detail("dmtf"))["sensors"] and d, 60,
                          what="a sensors pass on DMTF's mockup")
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]
    return detail


def farm_sensors(detail):
    return {r["name"]: (r["value"], redfish_data.FARM_UNITS[r["unit"]], r["health"])
            for r in detail["sensors"].values() if redfish_data.FARM_UNITS.get(r["unit"]) in KINDS}


@pytest.mark.parametrize("mockup_name", ["public-liquid-cooled-server", "public-rackmount1"])
def test_readings_equal_dmtf_tacklebox(mockup, store, redis_server, namespace, tmp_path,
                                       mockup_name):
    server = mockup(mockup_name)
    detail = poll(store, redis_server, namespace, tmp_path, server.base)
    theirs = sensors_of_tacklebox(server.base)
    assert len(theirs) >= 10, theirs
    assert farm_sensors(detail) == theirs
    # the DCMI reading: EnvironmentMetrics' PowerWatts, the Sensor it names
    environment = server.get("/redfish/v1/Chassis/1U/EnvironmentMetrics")
    total = server.get(environment["PowerWatts"]["DataSourceUri"])["Reading"]
    assert float(detail["state"]["power_watts"]) == total
    # rf_sensor_list.py itself runs and lists each sensor (its table cuts names to 25)
    listed = subprocess.run([script("rf_sensor_list.py"), "-u", "u", "-p", "p", "-r",
                             server.base], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for name in theirs:
        assert name[:25] in listed.stdout


def test_the_processes_executor_without_kept_connections_reads_what_tacklebox_reads(
        mockup, store, redis_server, namespace, tmp_path):
    """The asyncio engine in a poll process (executor = processes), with
    keep_alive = false and its own first-contact deadline, against DMTF's
    mockup server: the same readings as DMTF's Tacklebox."""
    server = mockup("public-liquid-cooled-server")
    detail = poll(store, redis_server, namespace, tmp_path, server.base,
                  worker={"executor": "processes", "processes": 2},
                  redfish={"keep_alive": "false", "login_timeout": 20})
    theirs = sensors_of_tacklebox(server.base)
    assert len(theirs) >= 10 and farm_sensors(detail) == theirs
    assert detail["state"]["power_state"] in ("on", "off")


def excerpt_readings(server, *paths):
    """{Sensor path: reading} of the excerpts in these documents, read here."""
    read = {}
    for path in paths:
        for value in server.get(path).values():
            for item in (value if isinstance(value, list) else [value]):
                if not isinstance(item, dict):
                    continue
                inner = [item] if "DataSourceUri" in item else list(item.values())
                read.update({i["DataSourceUri"]: i["Reading"] for i in inner
                             if isinstance(i, dict) and "DataSourceUri" in i and "Reading" in i})
    return read


def test_without_expand_at_most_the_configured_gets_and_every_sensor_read(mockup, tmp_path):
    """A service that does not offer $expand: each pass reads the excerpts
    and the other sensors in turn, [redfish] sensor_gets_per_pass GETs in
    all (counted in the server's own access log), and in ceil(others / 2)
    passes every other sensor once."""
    from farm.bmc.redfish import RedfishBmc
    from farm.model import Node
    server = mockup(str(without_expand(tmp_path, "public-liquid-cooled-server")))
    chassis = "/redfish/v1/Chassis/1U"
    excerpt_paths = (f"{chassis}/ThermalSubsystem/ThermalMetrics", f"{chassis}/EnvironmentMetrics")
    excerpts = excerpt_readings(server, *excerpt_paths)
    members = [m["@odata.id"] for m in server.get(f"{chassis}/Sensors")["Members"]]
    others = [m for m in members if m not in excerpts]
    node = Node(name="dmtf", address=server.base, port=0, username="u", password="p",
                driver="redfish")
    bmc = RedfishBmc(node, 10.0, sensor_gets=4)
    try:
        first, watts = bmc.sensors()
        mark = len(server.gets())
        passes = -(-len(others) // 2)
        for _ in range(passes):
            readings, _ = bmc.sensors()
        sent = server.gets()[mark:]
        assert len(sent) == 4 * passes, sent
        assert sorted(p for p in sent if p not in excerpt_paths) == sorted(others)
        assert {r["name"] for r in readings} == {r["name"] for r in first}
        # a static mockup: an excerpt does not always equal its Sensor, and
        # farm takes the excerpt (the resource it read) where there is one
        theirs = sensors_of_tacklebox(server.base)
        for path, value in excerpts.items():
            name = server.get(path)["Name"]
            if name in theirs:
                theirs[name] = (float(value), *theirs[name][1:])
        ours = {r["name"]: (r["value"], redfish_data.FARM_UNITS[r["unit"]], r["health"])
                for r in readings if redfish_data.FARM_UNITS.get(r["unit"]) in KINDS}
        assert ours == theirs
        assert watts == excerpts[server.get(f"{chassis}/EnvironmentMetrics")["PowerWatts"]
                                 ["DataSourceUri"]]
    finally:
        bmc.close()


def test_a_refused_expand_falls_back_once_and_is_remembered(make_sim):
    """farm-sim offering $expand in its service root but answering 501
    (--redfish-expand refused): the first pass falls back to the members,
    later passes never ask again, within the GET bound, reading what a BMC
    that expands reads."""
    from farm.bmc.redfish import RedfishBmc
    from farm.fleet import inventory as inv

    def node_of(sim):
        with open(sim.inventory) as f:
            return inv.parse(f.read(), sim.inventory)[0]
    refused = make_sim(1, protocol="redfish", redfish_shape="current", redfish_expand="refused",
                       sensor_period=0)
    served = make_sim(1, protocol="redfish", redfish_shape="current", redfish_expand="on",
                      sensor_period=0)
    asked = []
    bmc = RedfishBmc(node_of(refused), 10.0,
                     on_response=lambda r: asked.append((r.request.method, r.request.path_url)))
    other = RedfishBmc(node_of(served), 10.0)
    try:
        first, _ = bmc.sensors()
        assert any("$expand" in p for _, p in asked)
        mark = len(asked)
        for _ in range(3):
            readings, _ = bmc.sensors()
        later = [p for m, p in asked[mark:] if m == "GET"]
        assert len(later) <= 3 * 4 and not any("$expand" in p for p in later), later
        bmc.forget()  # a new connection chooses again, and remembers the refusal
        mark = len(asked)
        bmc.sensors()
        assert not any("$expand" in p for _, p in asked[mark:])
        expanded, _ = other.sensors()
        fields = ("name", "type", "unit", "value", "status")
        assert [tuple(r[f] for f in fields) for r in readings] == \
            [tuple(r[f] for f in fields) for r in expanded]
    finally:
        bmc.close()
        other.close()


def tacklebox_tool(tool, sim, node, *args):
    out = subprocess.run([script(tool), "-u", sim.username, "-p", sim.password, "-r",
                          node.address, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_power_actions_agree_with_dmtf_tacklebox(make_sim, store, redis_server, namespace,
                                                 tmp_path):
    """Tacklebox's rf_power_reset.py turns a current-shape BMC off and farm
    sees it; farm turns it on and Tacklebox's rf_raw_request.py reads On."""
    from tests.integration.test_tasks import farm
    from tests.integration.test_worker import import_sim
    sim = make_sim(1, protocol="redfish", redfish_shape="current", sensor_period=0)
    (node,) = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=5)
    proc, log = start_worker(tmp_path, cfg)
    try:
        def power():
            return store.node_states([node.name])[node.name].get("power_state")
        wait_for(lambda: power() == "on", 60, what="farm to read the BMC on")
        tacklebox_tool("rf_power_reset.py", sim, node, "-t", "ForceOff")
        wait_for(lambda: power() == "off", 60, what="farm to see Tacklebox's ForceOff")
        out = farm(cfg, "nodes", "power", node.name, "on")
        assert out.returncode == 0, out.stdout + out.stderr
        system = tacklebox_tool("rf_raw_request.py", sim, node, "-req", "/redfish/v1/Systems/1")
        assert json.loads(system[system.index("{"):])["PowerState"] == "On", system
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-2000:]
