"""The simulator speaks real IPMI: both engines checked with the real
ipmitool (and the lean one with ipmipower and farm's own client)."""

import socket
import subprocess

import pytest

from farm.bmc.engine import EngineConfig, run_one
from farm.fleet import inventory
from farm.tasks.power import read_power

ENGINES = pytest.mark.parametrize("engine", ["pyghmi", "lean"])


def ipmi_exporter(sim, i, collector, tmp_path):
    """One scrape of BMC `i` by the real ipmi_exporter (Debian's
    prometheus-ipmi-exporter, running FreeIPMI's tools), `collector` only."""
    import requests

    from farm.sim.ports import free_tcp_port
    from tests.conftest import wait_for
    config = tmp_path / "ipmi_exporter.yml"
    config.write_text(f"modules:\n  default:\n    user: {sim.username}\n    pass: {sim.password}\n"
                      f"    driver: LAN_2_0\n    privilege: admin\n    collectors: [{collector}]\n")
    port = free_tcp_port()
    exporter = subprocess.Popen(["prometheus-ipmi-exporter", f"--config.file={config}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def scraped():
            try:
                return requests.get(f"http://127.0.0.1:{port}/ipmi", params={
                    "target": f"127.0.0.1:{sim.port(i)}", "module": "default"}, timeout=30).text
            except requests.ConnectionError:
                return None
        return wait_for(scraped, 30, what="ipmi_exporter to answer")
    finally:
        exporter.terminate()
        exporter.wait(10)


@ENGINES
def test_ipmitool_reads_and_sets_power(make_sim, engine):
    sim = make_sim(4, off_fraction=0.25, engine=engine)
    states = [sim.ipmitool(i, "chassis", "power", "status") for i in range(4)]
    assert all(r.returncode == 0 for r in states), [r.stderr for r in states]
    outputs = [r.stdout.strip() for r in states]
    assert outputs.count("Chassis Power is off") == 1
    assert outputs.count("Chassis Power is on") == 3
    on = outputs.index("Chassis Power is on")
    assert sim.ipmitool(on, "chassis", "power", "off").returncode == 0
    assert sim.ipmitool(on, "chassis", "power", "status").stdout.strip() == "Chassis Power is off"
    assert sim.ipmitool(on, "chassis", "power", "on").returncode == 0
    assert sim.ipmitool(on, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"


@ENGINES
def test_wrong_password_is_refused(make_sim, engine):
    sim = make_sim(1, engine=engine)
    sim.password = "not-the-password"
    result = sim.ipmitool(0, "chassis", "power", "status")
    assert result.returncode != 0
    assert "Chassis Power" not in result.stdout


@ENGINES
def test_hung_bmc_never_answers(make_sim, engine):
    sim = make_sim(2, hung_fraction=0.5, engine=engine)
    results = [sim.ipmitool(i, "-R", "1", "-N", "1", "chassis", "power", "status") for i in range(2)]
    assert sorted(r.returncode == 0 for r in results) == [False, True]


@ENGINES
def test_inventory_file_is_importable(make_sim, engine):
    sim = make_sim(3, engine=engine)
    with open(sim.inventory) as f:
        nodes = inventory.parse(f.read(), sim.inventory)
    assert [n.port for n in nodes] == [sim.port(i) for i in range(3)]
    assert {n.password for n in nodes} == {sim.password}


@ENGINES
def test_stray_packets_do_not_kill_the_fleet(make_sim, engine):
    sim = make_sim(2, engine=engine)
    junk = [b"", b"\x00", b"\x06\x00\xff\x07" + b"\xff" * 40, bytes(range(256)) * 4,
            b"\x06\x00\xff\x07\x06\x10" + b"\x00" * 10, b"\x06\x00\xff\x07\x00" + b"\x01" * 30]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            for packet in junk:
                s.sendto(packet, ("127.0.0.1", sim.port(0)))
    assert sim.proc.poll() is None
    for i in range(2):
        assert sim.ipmitool(i, "chassis", "power", "status").stdout.strip().startswith("Chassis Power is")


@pytest.mark.parametrize("suite", ["3", "17"])
def test_ipmitool_cipher_suites(make_sim, suite):
    """The pyghmi engine is a suite-3-only BMC, like many real ones."""
    sim = make_sim(1)
    result = sim.ipmitool(0, "-C", suite, "chassis", "power", "status")
    if suite == "3":
        assert result.stdout.strip() == "Chassis Power is on"
    else:
        assert result.returncode != 0


@pytest.mark.parametrize("suite", [3, 17])
def test_lean_engine_agrees_with_ipmitool_ipmipower_and_farm(make_sim, suite):
    """Suites 3 and 17 against three clients; farm's session keys for suite 17
    once used a 32-byte constant that only a server sharing the mistake accepted."""
    sim = make_sim(2, engine="lean", off_fraction=0.5)
    tool = [sim.ipmitool(i, "-C", str(suite), "chassis", "power", "status").stdout.strip()
            for i in range(2)]
    assert sorted(tool) == ["Chassis Power is off", "Chassis Power is on"]
    power = subprocess.run(  # the simulator's throwaway password on argv is fine here
        ["ipmipower", "-D", "LAN_2_0", "-I", str(suite), "-u", sim.username, "-p", sim.password,
         "-h", ",".join(f"127.0.0.1:{sim.port(i)}" for i in range(2)), "--stat"],
        capture_output=True, text=True, timeout=60)
    assert sorted(line.split(": ")[1] for line in power.stdout.split("\n") if line) == ["off", "on"]
    with open(sim.inventory) as f:
        nodes = inventory.parse(f.read(), sim.inventory)
    config = EngineConfig(timeout=5, cipher_suites=(suite,))
    farm = [run_one(config, {"power": read_power}, "power", n) for n in nodes]
    assert [o.error for o in farm] == [None, None]
    assert ["on" if "Chassis Power is on" == t else "off" for t in tool] == \
        [str(o.value.value) for o in farm]


@ENGINES
def test_dcmi_power_reading_as_freeipmi_ipmitool_and_ipmi_exporter_read_it(make_sim, engine,
                                                                           tmp_path):
    """DCMI Get Power Reading, written from the DCMI 1.5 specification (6.6.1):
    FreeIPMI's ipmi-dcmi, ipmitool and the real ipmi_exporter (Debian's
    prometheus-ipmi-exporter, which runs ipmi-dcmi) all read it, and agree:
    about 200 W on, standby power off."""
    import re

    sim = make_sim(2, engine=engine, off_fraction=0.5, sensor_period=0)
    on = 0 if "on" in sim.ipmitool(0, "chassis", "power", "status").stdout else 1
    for i, expected in ((on, 200), (1 - on, 8)):
        freeipmi = subprocess.run(
            ["ipmi-dcmi", "-h", f"127.0.0.1:{sim.port(i)}", "-u", sim.username, "-p", sim.password,
             "-l", "admin", "-D", "LAN_2_0", "--get-system-power-statistics"],
            capture_output=True, text=True, timeout=30)
        assert re.search(rf"Current Power\s*: {expected} Watts", freeipmi.stdout), freeipmi
        assert "Power Measurement                    : Active" in freeipmi.stdout
        tool = sim.ipmitool(i, "dcmi", "power", "reading").stdout
        assert re.search(rf"Instantaneous power reading:\s+{expected} Watts", tool), tool
    text = ipmi_exporter(sim, on, "dcmi", tmp_path)
    assert 'ipmi_up{collector="dcmi"} 1' in text, text
    assert "\nipmi_dcmi_power_consumption_watts 200\n" in text, text


@ENGINES
def test_identity_as_ipmitool_freeipmi_and_ipmi_exporter_read_it(make_sim, engine, tmp_path):
    """Get Device ID, the GUIDs, Get Channel Access/Info and the system
    firmware version, written from IPMI 2.0 (20.1, 20.8, 22.23-22.25): no
    zero manufacturer, and the same identity through three readers."""
    import uuid

    sim = make_sim(1, engine=engine)
    name = inventory.parse(open(sim.inventory).read(), sim.inventory)[0].name
    guid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.farm-sim"))
    info = sim.ipmitool(0, "mc", "info").stdout
    for line in ("Manufacturer ID           : 49871", "Product ID                : 3906 (0x0f42)",
                 "Firmware Revision         : 2.14", "IPMI Version              : 2.0"):
        assert line in info, info
    got = sim.ipmitool(0, "mc", "guid").stdout
    assert f"System GUID   : {guid}" in got and "GUID Encoding : IPMI" in got, got
    channel = sim.ipmitool(0, "channel", "info", "1")
    assert channel.returncode == 0 and "802.3 LAN" in channel.stdout, channel
    bmc = subprocess.run(["bmc-info", "-h", f"127.0.0.1:{sim.port(0)}", "-u", sim.username, "-p",
                          sim.password, "-l", "admin", "-D", "LAN_2_0"],
                         capture_output=True, text=True, timeout=30).stdout
    for line in ("Manufacturer ID       : 49871", f"System GUID : {guid}",
                 "System Firmware Version       : 1.0.0", "Medium Type          : 802.3 LAN"):
        assert line in bmc, bmc
    text = ipmi_exporter(sim, 0, "bmc", tmp_path)
    assert ('ipmi_bmc_info{firmware_revision="2.14",manufacturer_id="49871",'
            'system_firmware_version="1.0.0"} 1') in text, text
