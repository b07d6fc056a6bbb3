"""When each node is polled: a wheel per task, ticked by futurist.

Each node has a fixed phase within its task's interval (from its name), so
10,000 nodes never fire at once and a node keeps its slot when it moves to
another worker (phases follow the wall clock, which hosts share). futurist's
PeriodicWorker runs one cheap tick per task every few tens of milliseconds;
a tick hands every node whose phase just passed to the dispatcher in one
batch. Adding or removing nodes swaps the wheel's buckets: nothing stops,
nothing waits for in-flight polls (Ironic's one periodic pass feeding bounded
workers, not one callable per node).
"""

import collections
import itertools
import logging
import math
import threading
import time
import zlib

from futurist import periodics

LOG = logging.getLogger(__name__)

BACKOFF_CAP = 4  # a dead BMC is still polled at least every 4 intervals
CATCH_UP = 2.0  # a node handed over this soon after its phase is polled at once


def bucket_width(interval):
    """Seconds of one wheel bucket for a task polled every `interval` s
    (pure): the polls whose phases fall in one bucket are dispatched
    together. 1/60 of the interval, between 50 ms and 1 s, so a 60 s task
    dispatches once a second. An event loop woken once for a batch of polls
    spends far less CPU per poll than one woken for each poll alone
    (docs/benchmarks.md: 2,000 Redfish BMCs every 60 s, 1.88 ms a poll with
    50 ms buckets, 1.16 ms with 1 s ones); a node is still polled once an
    interval, at the same point of it."""
    return min(1.0, max(0.05, interval / 60.0))


def phase(name, spacing):
    """A node's fixed offset within the interval, from its name (pure)."""
    return (zlib.crc32(name.encode("utf-8")) / 2**32) * spacing


def rounds_to_skip(consecutive_failures):
    """Poll a failing BMC less often: every 2nd round after 2 failures in a
    row, every 4th after 3 or more (pure)."""
    return min(2 ** max(0, consecutive_failures - 1), BACKOFF_CAP) - 1


class NodeState:
    __slots__ = ("node", "in_flight", "failures", "skip")

    def __init__(self, node):
        self.node = node
        self.in_flight = False
        self.failures = 0
        self.skip = 0


class Wheel:
    """One task's nodes in buckets over its interval.

    State has one owner: the thread that ticks the wheel (`due`). The sync
    loop (`set_nodes`) and the results (`done`) post to its inbox, which
    `due` applies in the order posted before it reads a bucket, so no other
    thread ever reads or writes a node's state. (With a lock per call, a
    label-only change copied a node's in-flight flag while its poll ended
    on another thread, and the node stayed "in flight", never polled again.)
    """

    def __init__(self, interval, width):
        self.interval = interval
        self.buckets = max(1, math.ceil(interval / width))
        self.width = interval / self.buckets
        self._slots = [[] for _ in range(self.buckets)]
        self._states = {}
        self._last = None  # the last bucket handed out
        self._catch_up = []  # new nodes whose phase passed just before they came
        self._inbox = collections.deque()  # appends and pops are atomic
        self.skipped_busy = 0

    # -- posted from other threads ------------------------------------------
    def set_nodes(self, nodes):
        """Poll exactly `nodes` from the next tick on; kept nodes keep their
        state. The buckets are computed here, on the caller's thread."""
        self._inbox.append((self._set_nodes, [
            (n, int(phase(n.name, self.interval) / self.width) % self.buckets) for n in nodes]))

    def done(self, name, ok):
        """A poll of `name` ended."""
        self._inbox.append((self._done, name, ok))

    # -- the owner's thread -------------------------------------------------
    def _apply(self):
        while True:
            try:
                fn, *args = self._inbox.popleft()
            except IndexError:
                return
            fn(*args)

    def _set_nodes(self, placed):
        """A new node whose bucket was handed out less than CATCH_UP s (or
        half an interval) ago is polled at the next tick instead of a whole
        interval late: a node handed over between workers may have been
        missed by both (the old owner let go before its phase, the new one
        learnt of it after). The price is, at worst, one extra poll of it."""
        old = self._states
        states, slots, new = {}, [[] for _ in range(self.buckets)], []
        for node, bucket in placed:
            st = old.get(node.name)
            if st is None:
                st = NodeState(node)
                new.append((bucket, st))
            elif st.node != node:  # changed (labels, address): same BMC slot rules
                fresh = NodeState(node)
                fresh.in_flight = st.in_flight
                st = fresh
            states[node.name] = st
            slots[bucket].append(st)
        window = max(1, int(min(CATCH_UP, self.interval / 2) / self.width))
        self._states, self._slots = states, slots
        self._catch_up = [st for st in self._catch_up if states.get(st.node.name) is st]
        if self._last is not None:
            self._catch_up += [st for bucket, st in new
                               if (self._last - bucket) % self.buckets < window]

    def _done(self, name, ok):
        st = self._states.get(name)
        if st is None:
            return  # removed while its poll ran
        st.in_flight = False
        st.failures = 0 if ok else st.failures + 1
        st.skip = rounds_to_skip(st.failures) if st.failures else 0

    def due(self, now):
        """The nodes whose phase passed since the last call (at most one
        interval's worth, whatever the clock did). Only the ticking thread
        calls it."""
        self._apply()
        current = int((now % self.interval) / self.width) % self.buckets
        last, self._last = self._last, current
        if last is None or last == current:
            indices = [current] if last is None else []
        else:
            count = (current - last) % self.buckets
            indices = [(last + 1 + i) % self.buckets for i in range(count)]
        late, self._catch_up = self._catch_up, []
        out = []
        for st in itertools.chain(late, *(self._slots[i] for i in indices)):
            if st.in_flight:
                self.skipped_busy += 1
            elif st.skip > 0:
                st.skip -= 1
            else:
                st.in_flight = True
                out.append(st.node)
        return out

    def in_flight(self):
        """How many nodes are in flight: for tests, from the owner's thread
        or once it stopped."""
        self._apply()
        return sum(1 for st in self._states.values() if st.in_flight)


class Scheduler:
    """futurist's PeriodicWorker ticking every task's wheel, in one thread."""

    def __init__(self, wheels, dispatch, tick=0.05, clock=time.time):
        self.wheels = wheels          # task name -> Wheel
        self._dispatch = dispatch     # called with [(task, node)]
        self._clock = clock
        callables = []
        for task, wheel in wheels.items():
            spacing = min(tick, wheel.width)
            fn = periodics.periodic(spacing=spacing, run_immediately=True)(
                self._ticker(task, wheel))
            callables.append((fn, (), {}))
        self._worker = periodics.PeriodicWorker(callables, schedule_strategy="last_started",
                                                on_failure=self._failed)
        self._thread = None

    def _ticker(self, task, wheel):
        def tick():
            due = wheel.due(self._clock())
            if due:
                self._dispatch([(task, node) for node in due])
        tick.__name__ = f"tick_{task}"
        return tick

    def _failed(self, cb, kind, spacing, exc_info, traceback=None):
        LOG.error("scheduling tick %s failed: %s", getattr(cb, "__name__", cb), exc_info[1])

    def start(self):
        self._thread = threading.Thread(target=self._worker.start, kwargs={"allow_empty": True},
                                        name="farm-periodics", daemon=True)
        self._thread.start()

    def stop(self, timeout):
        self._worker.stop()
        self._worker.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
