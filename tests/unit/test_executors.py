"""The executors' failure paths, in-process: a task that raises, a result
handler that raises, a stop with work queued (the thread engine), and a
poll child that dies or will not stop (the process pool). BMCs are the lean
simulator on a thread of this process (real IPMI over loopback UDP); a hung
BMC is a bound socket nobody reads."""

import os
import signal
import socket
import threading
import time

import pytest

from farm.bmc.engine import EngineConfig
from farm.model import Node
from farm.polling.executors import ChildPool, InProcess
from farm.sim.harness import wait_for
from farm.sim.lean import LeanFleet
from farm.sim.ports import free_udp_range
from farm.tasks.power import read_power


@pytest.fixture
def fleet():
    """Two answering BMCs on a thread of this process, and one hung."""
    port = free_udp_range(2)
    f = LeanFleet(2, "127.0.0.1", port, "admin", "secret")
    stop = threading.Event()
    thread = threading.Thread(target=f.serve, args=(stop,), daemon=True)
    thread.start()
    hung = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hung.bind(("127.0.0.1", 0))
    f.hung_node = Node("hung", "127.0.0.1", hung.getsockname()[1], "admin", "secret")
    yield f
    stop.set()
    thread.join(5)
    hung.close()
    f.close()


class Collector:
    """on_results: keeps outcomes; raises on the first call when asked."""

    def __init__(self, raise_first=False):
        self.outcomes, self.lock, self.raise_next = [], threading.Lock(), raise_first

    def __call__(self, outcomes):
        with self.lock:
            self.outcomes += outcomes
            if self.raise_next:
                self.raise_next = False
                raise RuntimeError("a bug in the result handler")

    def of(self, node, task="power"):
        with self.lock:
            return [o for o in self.outcomes if o.node == node and o.task == task]


def boom(node, memo, arg):
    yield from ()
    raise KeyError("a bug in a task")


def test_a_task_that_raises_fails_its_own_job_and_the_engine_goes_on(fleet):
    got = Collector(raise_first=True)
    ex = InProcess(EngineConfig(timeout=5.0), {"power": read_power, "boom": boom}, got)
    ex.start()
    try:
        a, b = fleet.nodes
        ex.submit([("boom", a)])
        failed = wait_for(lambda: got.of(a.name, "boom"), 10, what="the failed job")[0]
        assert failed.error_kind == "error" and "KeyError" in failed.error
        # the first delivery raised in the handler; the engine delivers the next ones
        ex.submit([("power", a), ("power", b)])
        wait_for(lambda: got.of(a.name) and got.of(b.name), 10, what="both polls")
        assert all(o.error_kind is None for o in got.of(a.name) + got.of(b.name))
    finally:
        assert ex.stop(5)


def test_stopping_fails_queued_jobs_instead_of_dropping_them(fleet):
    got = Collector()
    ex = InProcess(EngineConfig(timeout=30.0), {"power": read_power}, got)
    ex.start()
    hung = fleet.hung_node
    ex.submit([("power", hung)] * 3)  # one in flight on the session, two queued behind it
    wait_for(lambda: ex.in_flight() == 3, 10, what="the jobs taken")
    started = time.monotonic()
    assert ex.stop(5)
    assert time.monotonic() - started < 5  # not the 30 s deadline
    outcomes = got.of("hung")
    assert len(outcomes) == 3 and {(o.error_kind, o.error) for o in outcomes} == {
        ("stopping", "worker stopping")}


@pytest.fixture
def pool():
    got = Collector()
    p = ChildPool(1, EngineConfig(timeout=30.0), ["power"], got)
    p.got = got
    p.start()
    yield p
    p.stop(5)


def test_a_dead_child_reports_its_polls_as_failed_and_is_replaced(pool, fleet):
    hung, good = fleet.hung_node, fleet.nodes[0]
    pool.submit([("power", hung), ("power", hung, ("x",))])
    wait_for(lambda: pool.in_flight() == 2, 10, what="the polls in flight")
    victim = pool.children[0].process
    os.kill(victim.pid, signal.SIGKILL)
    lost = wait_for(lambda: len(pool.got.of("hung")) == 2 and pool.got.of("hung"), 15,
                    what="the lost polls reported")
    assert {o.error_kind for o in lost} == {"error"}
    assert all(o.error == "the poll process died (exit code -9)" for o in lost)
    assert {o.arg for o in lost} == {None, ("x",)}  # each job once, with its argument
    assert pool.restarts == 1 and pool.in_flight() == 0
    assert pool.children[0].process.pid != victim.pid
    pool.submit([("power", good)])  # the new child polls
    ok = wait_for(lambda: pool.got.of(good.name), 30, what="a poll in the new child")[0]
    assert ok.error_kind is None, ok


def test_a_raising_result_handler_does_not_stop_the_reader(pool, fleet):
    a, b = fleet.nodes
    pool.got.raise_next = True
    pool.submit([("power", a)])
    wait_for(lambda: pool.got.of(a.name), 30, what="the first result (its handler raises)")
    pool.submit([("power", b)])
    wait_for(lambda: pool.got.of(b.name), 30, what="a result after the handler raised")


def test_a_child_that_will_not_stop_is_killed_at_the_deadline(pool, fleet):
    pool.submit([("power", fleet.nodes[0])])
    wait_for(lambda: pool.got.of(fleet.nodes[0].name), 30, what="the child running")
    child = pool.children[0].process
    os.kill(child.pid, signal.SIGSTOP)  # it can no longer read the stop request
    started = time.monotonic()
    assert pool.stop(1.0) is False  # not clean
    assert time.monotonic() - started < 4
    assert not child.is_alive()
