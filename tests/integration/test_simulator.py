"""The simulator speaks real IPMI: checked with the real ipmitool."""

import socket

import pytest

from farm import inventory


def test_ipmitool_reads_and_sets_power(make_sim):
    sim = make_sim(4, off_fraction=0.25)
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


def test_wrong_password_is_refused(make_sim):
    sim = make_sim(1)
    sim.password = "not-the-password"
    result = sim.ipmitool(0, "chassis", "power", "status")
    assert result.returncode != 0
    assert "Chassis Power" not in result.stdout


def test_hung_bmc_never_answers(make_sim):
    sim = make_sim(2, hung_fraction=0.5)
    results = [sim.ipmitool(i, "-R", "1", "-N", "1", "chassis", "power", "status") for i in range(2)]
    assert sorted(r.returncode == 0 for r in results) == [False, True]


def test_inventory_file_is_importable(make_sim):
    sim = make_sim(3)
    with open(sim.inventory) as f:
        nodes = inventory.parse(f.read(), sim.inventory)
    assert [n.port for n in nodes] == [sim.port(i) for i in range(3)]
    assert {n.password for n in nodes} == {sim.password}


def test_stray_packets_do_not_kill_the_fleet(make_sim):
    sim = make_sim(2)
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
    """The simulator is a suite-3-only BMC, like many real ones."""
    sim = make_sim(1)
    result = sim.ipmitool(0, "-C", suite, "chassis", "power", "status")
    if suite == "3":
        assert result.stdout.strip() == "Chassis Power is on"
    else:
        assert result.returncode != 0
