"""farm's IPMI adapter against the simulator, over real UDP."""

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyghmi.ipmi.private import session as ipmi_session

from farm import errors
from farm.bmc.ipmi import IpmiClient
from farm.model import Node, PowerState


def node_for(sim, i, password=None):
    return Node(name=f"n{i}", address="127.0.0.1", port=sim.port(i),
                username=sim.username, password=password or sim.password)


def test_power_state_and_session_reuse(make_sim):
    sim = make_sim(2, off_fraction=0.5)
    client = IpmiClient(timeout=3)
    states = {client.get_power_state(node_for(sim, i)) for i in range(2)}
    assert states == {PowerState.ON, PowerState.OFF}
    first = client._kept[client._key(node_for(sim, 0))].command.ipmi_session
    for _ in range(5):
        client.get_power_state(node_for(sim, 0))
    again = client._kept[client._key(node_for(sim, 0))].command.ipmi_session
    assert again is first and not first.broken
    client.close()
    assert first.broken  # logged out


def test_falls_back_to_cipher_suite_3(make_sim):
    """The simulator refuses suite 17 like a suite-3-only BMC; pyghmi proposes
    17 first and must end on SHA-1."""
    sim = make_sim(1)
    client = IpmiClient(timeout=3)
    assert client.get_power_state(node_for(sim, 0)) is PowerState.ON
    session = client._kept[client._key(node_for(sim, 0))].command.ipmi_session
    assert session.currhashlib is hashlib.sha1


def test_wrong_password_is_an_auth_error_without_the_password(make_sim):
    sim = make_sim(1)
    client = IpmiClient(timeout=3)
    secret = "Wr0ng-pa55-xyzzy"
    with pytest.raises(errors.BmcAuthError) as info:
        client.get_power_state(node_for(sim, 0, password=secret))
    assert secret not in str(info.value)


def test_hung_bmc_times_out_at_farms_deadline(make_sim):
    sim = make_sim(2, hung_fraction=0.5)
    client = IpmiClient(timeout=1.0)
    hung = [i for i in range(2) if sim.ipmitool(i, "-R", "1", "-N", "1", "chassis",
                                                "power", "status").returncode != 0]
    assert len(hung) == 1
    started = time.monotonic()
    with pytest.raises(errors.BmcTimeout):
        client.get_power_state(node_for(sim, hung[0]))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0, elapsed
    # and the healthy one still answers right after
    assert client.get_power_state(node_for(sim, 1 - hung[0])) in set(PowerState)


def test_nothing_listening_is_a_typed_error(make_sim):
    sim = make_sim(1)
    sim.stop()
    client = IpmiClient(timeout=1.0)
    with pytest.raises(errors.BmcError):
        client.get_power_state(node_for(sim, 0))


def test_session_is_reestablished_after_bmc_restart(make_sim, tmp_path):
    sim = make_sim(1)
    client = IpmiClient(timeout=1.5)
    node = node_for(sim, 0)
    assert client.get_power_state(node) is PowerState.ON
    sim.stop()
    sim.start(base_port=sim.base_port)
    outcomes = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            outcomes.append(client.get_power_state(node))
            break
        except errors.BmcError as exc:
            outcomes.append(exc.kind)
    assert outcomes[-1] is PowerState.ON, outcomes
    assert len(outcomes) <= 2, outcomes  # at most the one poll on the dead session fails


def test_garbage_answering_bmc_is_a_typed_error():
    """A 'BMC' that answers every packet with junk: a typed error, no crash."""
    import socket
    import threading
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer_junk():
        while not stop.is_set():
            try:
                _, addr = sock.recvfrom(4096)
            except OSError:
                continue
            for junk in (b"\x06\x00\xff\x07\x06\x11" + b"\xff" * 30, b"\x06\x00\xff\x07" + bytes(range(60))):
                sock.sendto(junk, addr)
    t = threading.Thread(target=answer_junk, daemon=True)
    t.start()
    try:
        client = IpmiClient(timeout=1.0)
        node = Node("junk", "127.0.0.1", sock.getsockname()[1], "u", "p")
        with pytest.raises(errors.BmcError):
            client.get_power_state(node)
    finally:
        stop.set()
        t.join(2)
        sock.close()


def test_kept_sessions_stay_out_of_pyghmis_keepalive_table(make_sim):
    """The thread that completes a login adds the session to pyghmi's
    keepalive table just after Command() may return; every wait_for_rsp walks
    that table and pyghmi's keepalives would race farm's polls."""
    sim = make_sim(100)
    client = IpmiClient(timeout=3)
    nodes = [node_for(sim, i) for i in range(100)]
    with ThreadPoolExecutor(32) as pool:
        for _ in range(2):
            assert set(pool.map(client.get_power_state, nodes)) == {PowerState.ON}
    kept = {k.command.ipmi_session for k in client._kept.values()}
    assert len(kept) == 100
    assert not kept & set(ipmi_session.Session.keepalive_sessions)
    client.close()
