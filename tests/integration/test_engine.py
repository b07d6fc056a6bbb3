"""farm's poll engine and RMCP+ client against the simulator, over real UDP."""

import signal
import socket
import threading
import time

from farm.bmc.engine import Engine, EngineConfig
from farm.model import Node, PowerState
from farm.tasks.power import read_power
from tests.conftest import wait_for


def node_for(sim, i, password=None, name=None):
    return Node(name=name or f"n{i}", address="127.0.0.1", port=sim.port(i),
                username=sim.username, password=password or sim.password)


class Collector:
    def __init__(self):
        self.outcomes = []
        self.lock = threading.Lock()

    def __call__(self, outcomes):
        with self.lock:
            self.outcomes.extend(outcomes)

    def wait(self, count, timeout=20):
        wait_for(lambda: len(self.outcomes) >= count, timeout, what=f"{count} outcomes")
        return list(self.outcomes)


def engine(**config):
    got = Collector()
    eng = Engine(EngineConfig(**config), {"power": read_power}, got).start()
    return eng, got


def poll(eng, got, *nodes):
    before = len(got.outcomes)
    eng.submit([("power", n) for n in nodes])
    return got.wait(before + len(nodes))[before:]


def test_power_state_and_one_login_per_bmc(make_sim):
    sim = make_sim(2, off_fraction=0.5)
    eng, got = engine(timeout=3)
    try:
        first = poll(eng, got, node_for(sim, 0), node_for(sim, 1))
        assert {o.value for o in first} == {PowerState.ON, PowerState.OFF}
        for _ in range(5):
            (o,) = poll(eng, got, node_for(sim, 0))
            assert o.ok
        assert eng.stats["logins"] == 2
    finally:
        eng.stop()


def test_falls_back_to_cipher_suite_3_and_remembers_it(make_sim):
    """The simulator refuses suite 17 like a suite-3-only BMC."""
    sim = make_sim(1)
    eng, got = engine(timeout=3)
    try:
        (o,) = poll(eng, got, node_for(sim, 0))
        assert o.value is PowerState.ON
        (session,) = eng.sessions.values()
        assert session.suite_known == 3 and session.keys.suite.number == 3
    finally:
        eng.stop()


def test_suite_17_only_is_a_clear_error_on_a_suite_3_bmc(make_sim):
    sim = make_sim(1)
    eng, got = engine(timeout=3, cipher_suites=(17,))
    try:
        (o,) = poll(eng, got, node_for(sim, 0))
        # refused at once, as an auth error naming the refusal (not a timeout)
        assert o.error_kind == "auth" and "suite 17 at administrator" in o.error
        assert "no cipher suite match" in o.error and o.latency < 1.0
    finally:
        eng.stop()


def test_wrong_password_is_an_auth_error_without_the_password(make_sim):
    sim = make_sim(1)
    eng, got = engine(timeout=3)
    secret = "Wr0ng-pa55-xyzzy"
    try:
        (o,) = poll(eng, got, node_for(sim, 0, password=secret))
        assert o.error_kind == "auth" and secret not in o.error
        assert o.latency < 1.0  # refused at RAKP 2, not timed out
    finally:
        eng.stop()


def test_hung_bmc_times_out_and_does_not_hold_up_a_healthy_one(make_sim):
    sim = make_sim(2, hung_fraction=0.5)
    hung = [i for i in range(2) if sim.ipmitool(i, "-R", "1", "-N", "1", "chassis",
                                                "power", "status").returncode != 0]
    assert len(hung) == 1
    eng, got = engine(timeout=1.0, retry_interval=0.3)
    try:
        outcomes = poll(eng, got, node_for(sim, hung[0], name="hung"),
                        node_for(sim, 1 - hung[0], name="healthy"))
        assert [o.node for o in outcomes] == ["healthy", "hung"]
        healthy, dead = outcomes
        assert healthy.ok and healthy.latency < 0.5
        assert dead.error_kind == "timeout" and 0.9 <= dead.latency < 1.5, dead
    finally:
        eng.stop()


def test_nothing_listening_is_a_typed_error(make_sim):
    sim = make_sim(1)
    sim.stop()
    eng, got = engine(timeout=1.0)
    try:
        (o,) = poll(eng, got, node_for(sim, 0))
        assert o.error_kind in ("timeout", "unreachable")
    finally:
        eng.stop()


def test_dropped_session_is_reestablished_within_one_poll(make_sim):
    """The BMC forgets every session (SIGUSR1 to farm-sim): the next poll sees
    its kept session go unanswered, logs in again and succeeds."""
    sim = make_sim(1)
    eng, got = engine(timeout=4, retry_interval=0.3)
    try:
        assert poll(eng, got, node_for(sim, 0))[0].ok
        sim.proc.send_signal(signal.SIGUSR1)
        # The drop is applied on the simulator's next loop turn; a poll that
        # still finds the session alive would prove nothing, so repeat until
        # one had to log in again.
        deadline = time.monotonic() + 20
        while eng.stats["sessions_lost"] == 0 and time.monotonic() < deadline:
            (o,) = poll(eng, got, node_for(sim, 0))
            assert o.ok, o
        assert eng.stats["sessions_lost"] == 1 and eng.stats["logins"] == 2
    finally:
        eng.stop()


def test_keepalive_holds_a_session_past_the_bmcs_inactivity_timeout(make_sim):
    """The simulator forgets sessions idle 3 s; the engine keeps its session
    with keepalives, so a poll after 3x that idle time needs no new login."""
    sim = make_sim(1, session_timeout=3)
    eng, got = engine(timeout=3, retry_interval=0.3, session_timeout=3)
    try:
        assert poll(eng, got, node_for(sim, 0))[0].ok
        wait_for(lambda: eng.stats["keepalives"] >= 6, 20, what="six keepalives")
        assert poll(eng, got, node_for(sim, 0))[0].ok
        assert eng.stats["logins"] == 1 and eng.stats["sessions_lost"] == 0
    finally:
        eng.stop()


def test_without_keepalive_a_long_idle_session_is_replaced(make_sim):
    sim = make_sim(1, session_timeout=60)
    eng, got = engine(timeout=3, retry_interval=0.3, session_timeout=2, keepalive=False)
    try:
        assert poll(eng, got, node_for(sim, 0))[0].ok
        (session,) = eng.sessions.values()
        wait_for(lambda: time.monotonic() - session.last_activity > 2.2, 10, what="idle")
        assert poll(eng, got, node_for(sim, 0))[0].ok
        assert eng.stats["logins"] == 2 and eng.stats["keepalives"] == 0
    finally:
        eng.stop()


def test_garbage_answering_bmc_is_a_typed_error():
    """A 'BMC' that answers every packet with junk: error, not timeout, no crash."""
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
            for junk in (b"\x06\x00\xff\x07\x06\x11" + b"\xff" * 30,
                         b"\x06\x00\xff\x07" + bytes(range(60)), b"\x06"):
                sock.sendto(junk, addr)
    t = threading.Thread(target=answer_junk, daemon=True)
    t.start()
    eng, got = engine(timeout=1.0)
    try:
        (o,) = poll(eng, got, Node("junk", "127.0.0.1", sock.getsockname()[1], "u", "p"))
        assert o.error_kind == "error" and "no valid answer" in o.error, o
        assert eng.stats["bad_packets"] >= 1
    finally:
        eng.stop()
        stop.set()
        t.join(2)
        sock.close()


def test_unresolvable_host_name_is_unreachable():
    eng, got = engine(timeout=1.0)
    try:
        (o,) = poll(eng, got, Node("x", "no-such-bmc.invalid", 623, "u", "p"))
        assert o.error_kind == "unreachable" and "resolve" in o.error
    finally:
        eng.stop()


def test_one_engine_many_bmcs_one_session_each(make_sim):
    sim = make_sim(200, off_fraction=0.2)
    eng, got = engine(timeout=3)
    try:
        nodes = [node_for(sim, i) for i in range(200)]
        for _ in range(3):
            outcomes = poll(eng, got, *nodes)
            assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
        assert eng.stats["logins"] == 200
        assert sum(o.value is PowerState.OFF for o in outcomes) == 40
    finally:
        eng.stop()

