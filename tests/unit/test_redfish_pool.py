"""The Redfish pool's bound per BMC ([redfish] max_requests_per_bmc):
programs that block until released stand in for requests in flight, so
what runs at once is counted where it runs, in-process."""

import threading

import pytest

from farm.model import Node
from farm.polling.redfish_pool import RedfishPool
from tests.conftest import wait_for

NODE = Node("r1", "http://127.0.0.1:9", 0, "u", "p", driver="redfish")


class Programs:
    def __init__(self):
        self.lock = threading.Lock()
        self.running, self.peak, self.started = [], 0, []
        self.release = threading.Event()

    def program(self, task):
        def run(bmc, arg):
            with self.lock:
                self.running.append(task)
                self.started.append((task, arg))
                self.peak = max(self.peak, len(self.running))
            self.release.wait(30)
            with self.lock:
                self.running.remove(task)
            return arg
        return run


@pytest.mark.parametrize("per_bmc", [1, 2])
def test_at_most_the_bound_at_once_and_never_one_task_twice(per_bmc):
    programs = Programs()
    results = []
    pool = RedfishPool(8, 30.0, {t: programs.program(t) for t in ("power", "sensors", "sel")},
                       results.extend, per_bmc=per_bmc)
    pool.start()
    try:
        pool.submit([("sensors", NODE, 1), ("sensors", NODE, 2), ("power", NODE, 3),
                     ("sel", NODE, 4)])
        wait_for(lambda: len(programs.started) == per_bmc, 10, what="the first jobs to start")
        # the first job running is the positive signal; the others are held
        assert sorted(programs.running) == sorted(["sensors", "power"][:per_bmc])
        assert pool.in_flight() == 4
        programs.release.set()
        wait_for(lambda: len(results) == 4, 10, what="every job to end")
    finally:
        programs.release.set()
        pool.stop(5)
    assert programs.peak == per_bmc
    assert [a for t, a in programs.started if t == "sensors"] == [1, 2]  # in order, one at a time
