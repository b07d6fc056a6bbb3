"""futurist's PeriodicWorker on farm's ResultExecutor, both pools, no BMCs:
results reach the parent, a call that cannot run is a reported failure (never
silence), and first runs are staggered over the interval."""

import collections
import os
import threading
import time

import pytest

from farm.executors import ResultExecutor
from farm.model import Node
from farm.scheduling import Scheduler
from farm.tasks import NodeCall
from tests.conftest import wait_for


def report_pid(node):
    return (node.name, os.getpid())


def pid_after(seconds):
    time.sleep(seconds)
    return (os.getpid(), threading.get_ident())


def always_fails(node):
    raise RuntimeError(f"cannot poll {node.name}")


class Collector:
    def __init__(self):
        self.lock = threading.Lock()
        self.results = collections.defaultdict(list)
        self.errors = collections.defaultdict(list)
        self.first_seen = {}

    def __call__(self, call, result, error):
        with self.lock:
            self.first_seen.setdefault(call.node.name, time.monotonic())
            if error is not None:
                self.errors[call.node.name].append(error)
            else:
                self.results[call.node.name].append(result)


def nodes(n):
    return [Node(f"n{i}", "127.0.0.1", 623, "u", "p") for i in range(n)]


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_results_come_back_to_the_parent(kind):
    collect = Collector()
    executor = ResultExecutor(kind, 2, collect)
    scheduler = Scheduler(executor)
    try:
        scheduler.replace([NodeCall(report_pid, n, 0.3) for n in nodes(6)], stop_timeout=5)
        wait_for(lambda: all(len(collect.results[f"n{i}"]) >= 2 for i in range(6)), 30,
                 what="two results per node")
    finally:
        assert scheduler.stop(10)
        executor.shutdown()
    pids = {pid for rs in collect.results.values() for _, pid in rs}
    if kind == "threads":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= 2


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_failing_call_is_reported_and_retried(kind):
    collect = Collector()
    executor = ResultExecutor(kind, 2, collect)
    scheduler = Scheduler(executor)
    calls = [NodeCall(always_fails, n, 0.2) for n in nodes(2)]
    try:
        scheduler.replace(calls, stop_timeout=5)
        wait_for(lambda: all(len(collect.errors[c.node.name]) >= 2 for c in calls), 30,
                 what="repeated failures")
    finally:
        scheduler.stop(10)
        executor.shutdown()
    assert "RuntimeError: cannot poll n0" in collect.errors["n0"][0]
    assert calls[0].consecutive_failures == 0  # only the worker's on_result counts them


def test_unpicklable_call_is_a_failure_not_silence():
    """A closure cannot reach a child process: futurist alone hangs silently."""
    collect = Collector()
    executor = ResultExecutor("processes", 1, collect)
    scheduler = Scheduler(executor)
    secret = "closure-state"
    call = NodeCall(lambda node: secret, nodes(1)[0], 0.2)
    try:
        scheduler.replace([call], stop_timeout=5)
        wait_for(lambda: len(collect.errors["n0"]) >= 2, 30, what="pickling failures reported")
    finally:
        assert scheduler.stop(10)
        executor.shutdown()
    assert "pickle" in collect.errors["n0"][0].lower()
    assert not collect.results["n0"]


@pytest.mark.parametrize("kind,count", [("threads", 2000), ("processes", 400)])
def test_first_runs_are_staggered_over_the_interval(kind, count):
    collect = Collector()
    executor = ResultExecutor(kind, 4, collect)
    # Spawned children take a second or more to import on a busy machine:
    # start the clock once each of them has run something (threads: at once).
    deadline, seen = time.monotonic() + 60, set()
    while len(seen) < 4:
        assert time.monotonic() < deadline, f"only {len(seen)} of 4 pool members ran a call"
        seen |= {f.result(timeout=60) for f in [executor._pool.submit(pid_after, 0.2) for _ in range(8)]}
    scheduler = Scheduler(executor)
    spacing = 4.0
    started = time.monotonic()
    try:
        scheduler.replace([NodeCall(report_pid, n, spacing) for n in nodes(count)], stop_timeout=5)
        wait_for(lambda: len(collect.first_seen) == count, spacing * 3, what="every first run")
    finally:
        scheduler.stop(10)
        executor.shutdown()
    offsets = [t - started for t in collect.first_seen.values()]
    assert max(offsets) <= spacing + 1.0
    buckets = collections.Counter(int(o / (spacing / 8)) for o in offsets)
    # spread over the interval: no eighth of it holds more than a quarter of the nodes
    assert max(buckets.values()) < count / 4, sorted(buckets.items())
    assert len([b for b in buckets if b < 8]) == 8
