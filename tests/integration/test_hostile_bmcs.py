"""BMCs that answer garbage, truncated headers, foreign session ids or a flood
of replies: each shows as a typed error on its own node, and the worker keeps
every healthy node's interval at a bounded CPU cost. Real UDP responders
(threads of this test) beside a real farm-sim and a real farm-worker."""

import os
import socket
import struct
import threading
import time

import pytest

from farm.model import Node
from tests.conftest import wait_for, write_config
from tests.integration.test_shutdown import start
from tests.integration.test_worker import import_sim

RMCP = b"\x06\x00\xff\x07"


def garbage(packet):
    return [os.urandom(len(packet))]


def truncated(packet):
    return [RMCP + b"\x06\x00\x01"]


def foreign_session(packet):
    # a well-formed RMCP+ header for some other session, with a junk payload
    return [RMCP + struct.pack("<BBIIH", 0x06, 0xC0, 0xDEADBEEF, 7, 32) + os.urandom(32 + 16)]


def flood(packet):
    return [os.urandom(60) for _ in range(500)]


class Hostile:
    """A UDP 'BMC' on loopback answering every packet with `answer(packet)`."""

    def __init__(self, answer):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer, self.stop = answer, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                packet, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            for reply in self.answer(packet):
                try:
                    self.sock.sendto(reply, addr)
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def hostiles():
    made = {name: Hostile(fn) for name, fn in
            (("garbage", garbage), ("truncated", truncated), ("foreign", foreign_session),
             ("flood", flood))}
    yield made
    for h in made.values():
        h.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_hostile_bmcs_cost_only_their_own_node(hostiles, make_sim, store, redis_server, namespace,
                                              tmp_path):
    sim = make_sim(30)
    healthy = [n.name for n in import_sim(sim, store)]
    store.import_nodes([Node(f"hostile-{k}", "127.0.0.1", h.port, "admin", "pw")
                        for k, h in hostiles.items()])
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=2)
    worker = start("worker", cfg, tmp_path)
    try:
        wait_for(lambda: all(s.get("last_ok_at") for s in store.node_states(healthy).values()), 30,
                 what="every healthy node polled")
        cpu0, t0 = cpu_seconds(worker.pid), time.monotonic()
        seen = {n: [] for n in healthy}
        while time.monotonic() - t0 < 12:  # polls of healthy nodes, sampled 10 times a second
            for n, s in store.node_states(healthy).items():
                if not seen[n] or seen[n][-1] != s["last_ok_at"]:
                    seen[n].append(s["last_ok_at"])
            time.sleep(0.1)
        cpu = (cpu_seconds(worker.pid) - cpu0) / (time.monotonic() - t0)
        gaps = [float(b) - float(a) for stamps in seen.values()
                for a, b in zip(stamps, stamps[1:], strict=False)]
        states = store.node_states([f"hostile-{k}" for k in hostiles])
    finally:
        worker.terminate()
        worker.wait(30)
    print(f"worker CPU {100 * cpu:.0f} % of a core; longest healthy gap {max(gaps):.2f} s; "
          + "; ".join(f"{n}: {s.get('error_kind')} ({s.get('last_error')})" for n, s in states.items()))
    assert max(gaps) < 1.5, sorted(gaps)[-5:]  # every healthy node kept its 1 s interval
    assert min(len(stamps) for stamps in seen.values()) >= 10
    for name, s in states.items():  # a typed error on the hostile node itself, never a crash
        assert s.get("error_kind") in ("error", "timeout") and s.get("power_state", "") == "", (name, s)
    assert states["hostile-garbage"]["error_kind"] == "error"
    assert cpu < 0.5  # 500 junk replies a poll cost the worker far less than a core
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log
