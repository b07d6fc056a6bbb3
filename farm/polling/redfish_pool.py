"""Where Redfish jobs run: a futurist thread pool (sushy blocks), with the
guarantees the IPMI engine gives: at most `[redfish] max_requests_per_bmc`
jobs at a time per BMC (default 1; one per task), a hard deadline
per job (reported at the deadline even if the BMC still holds its thread),
one kept session per BMC (farm.bmc.redfish), batches of Outcomes out.

A hung BMC holds one thread until its request's own timeout (the deadline)
ends it; `[redfish] pool_size` threads bound how many such BMCs can be
waited on at once before other polls queue.
"""

import collections
import heapq
import itertools
import logging
import threading
import time

import futurist

from farm import errors
from farm.bmc.engine import Outcome
from farm.bmc.redfish import RedfishBmc

LOG = logging.getLogger(__name__)


class SharedSessions:
    """The farm's one Redfish session per BMC, kept sealed in Redis
    (farm.store.sessions): what RedfishBmc loads before logging in and
    saves after. Redis out of reach costs a login, never a poll."""

    def __init__(self, store):
        self.store = store
        # this process's own copy: the asyncio engine and the thread pool
        # (its actions) share one session per BMC even without a key file
        self._local = {}

    @property
    def shared(self):
        credentials = getattr(self.store, "credentials", None)
        return credentials is not None and credentials.sealing

    def load(self, name):
        if name in self._local:
            return self._local[name]
        try:
            return self.store.redfish_session(name) if self.shared else None
        except errors.FarmError as exc:
            LOG.warning("node %s: no stored Redfish session read (%s)", name, exc)
            return None

    def retain(self, names):
        """Keep this process's copies only for the nodes polled here."""
        for name in [n for n in list(self._local) if n not in names]:  # list(): atomic
            self._local.pop(name, None)

    def save(self, name, token, uri):
        self._local[name] = (token, uri)
        if not self.shared:
            return
        try:
            self.store.save_redfish_session(name, token, uri)
        except errors.FarmError as exc:
            LOG.warning("node %s: its new Redfish session not stored (%s)", name, exc)


class _Job:
    __slots__ = ("task", "node", "arg", "started", "reported")

    def __init__(self, task, node, arg):
        self.task, self.node, self.arg = task, node, arg
        self.started = None
        self.reported = False


class RedfishPool:
    def __init__(self, size, timeout, programs, on_results, timeouts=(), keep_alive=True,
                 max_answer_bytes=4 * 2**20, max_members=1000, sensor_gets=4, sessions=None,
                 per_bmc=1):
        self.size = size
        self.per_bmc = per_bmc  # [redfish] max_requests_per_bmc: jobs (requests) at once
        self.keep_alive = keep_alive
        self.limits = {"max_bytes": max_answer_bytes, "max_members": max_members,
                       "sensor_gets": sensor_gets, "sessions": sessions}
        # sessions kept in Redis outlive this worker: a clean stop leaves
        # them to the nodes' next owners instead of logging out
        self.log_out_at_stop = sessions is None or not sessions.shared
        self.timeout = timeout
        self.timeouts = dict(timeouts)
        self.programs = programs        # program name -> fn(RedfishBmc, arg)
        self.on_results = on_results
        self.bmcs = {}                  # node name -> (Node, RedfishBmc)
        self.stats = collections.Counter()
        self.restarts = 0
        self._pool = None
        # reentrant: on_results, called with it held, may submit (a power correction)
        self._lock = threading.RLock()
        self._waiting = collections.defaultdict(collections.deque)  # name -> jobs queued
        self._running = collections.Counter()  # name -> jobs its threads run (> 0)
        self._tasks = set()             # (name, task) of the jobs running
        self._deadlines = []            # heap of (when, seq, job)
        self._seq = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._watchdog = None

    def start(self):
        self._pool = futurist.ThreadPoolExecutor(max_workers=self.size)
        self._watchdog = threading.Thread(target=self._watch, name="farm-redfish-deadlines",
                                          daemon=True)
        self._watchdog.start()

    def submit(self, jobs):
        with self._lock:
            for item in jobs:
                job = _Job(item[0], item[1], item[2] if len(item) > 2 else None)
                if self._stopping:
                    self._report(job, None, errors.Stopping())
                elif not self._may_begin(job):
                    self._waiting[job.node.name].append(job)
                else:
                    self._begin(job)

    def _may_begin(self, job):  # with the lock held
        """Below the BMC's bound, and no job of the same task running on it
        (a task's state, the sensors plan or the SEL cursor, is one pass's)."""
        return (self._running[job.node.name] < self.per_bmc
                and (job.node.name, job.task) not in self._tasks)

    def _begin(self, job):  # with the lock held
        job.started = time.monotonic()
        self._running[job.node.name] += 1
        self._tasks.add((job.node.name, job.task))
        deadline = job.started + self.timeouts.get(job.task, self.timeout)
        heapq.heappush(self._deadlines, (deadline, next(self._seq), job))
        self._wake.notify()
        self._pool.submit(self._run, job)

    def _bmc(self, node):
        with self._lock:  # one RedfishBmc (one session) per node, whatever runs at once
            return self._bmc_of(node)

    def _bmc_of(self, node):
        held = self.bmcs.get(node.name)
        if held is not None and held[0] == node:
            return held[1]
        if held is not None:
            held[1].forget()  # the node changed (address, credentials): a new session
        bmc = RedfishBmc(node, self.timeouts.get("power", self.timeout), self._login,
                         keep_alive=self.keep_alive, **self.limits)
        self.bmcs[node.name] = (node, bmc)
        return bmc

    def _login(self):
        self.stats["redfish_logins"] += 1

    def _run(self, job):
        value = error = None
        try:
            value = self.programs[job.task](self._bmc(job.node), job.arg)
        except errors.BmcError as exc:
            error = exc
        except Exception as exc:  # a task's bug costs its own poll only
            LOG.exception("redfish task %s failed on %s", job.task, job.node.name)
            error = errors.BmcProtocolError(f"task {job.task} failed: {type(exc).__name__}")
        with self._lock:
            self._report(job, value, error)
            self._running[job.node.name] -= 1
            self._tasks.discard((job.node.name, job.task))
            if not self._running[job.node.name]:
                del self._running[job.node.name]
            queue = self._waiting.get(job.node.name)
            for waiting in list(queue or ()):  # in order; one task's jobs keep theirs
                if self._may_begin(waiting):
                    queue.remove(waiting)
                    self._begin(waiting)
            if queue is not None and not queue:
                del self._waiting[job.node.name]

    def _report(self, job, value, error):  # with the lock held
        if job.reported:
            return  # the deadline already reported it
        job.reported = True
        latency = time.monotonic() - job.started if job.started else 0.0
        outcome = Outcome(job.task, job.node.name, value, error.kind if error else None,
                          str(error) if error else None, latency, time.time(), job.arg)
        try:
            self.on_results([outcome])
        except Exception:
            LOG.exception("handling redfish results failed")

    def _watch(self):
        with self._lock:
            while not (self._stopping and not self._running):
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, job = heapq.heappop(self._deadlines)
                    if not job.reported:
                        limit = self.timeouts.get(job.task, self.timeout)
                        self.stats["redfish_deadlines"] += 1
                        self._report(job, None, errors.BmcTimeout(f"no answer within {limit:g} s"))
                wait = self._deadlines[0][0] - now if self._deadlines else 1.0
                self._wake.wait(min(max(wait, 0.0), 1.0))

    def in_flight(self):
        # under the lock: pool threads change these (iterating them while a
        # queue came or went raised RuntimeError into the worker's loop)
        with self._lock:
            return self._running.total() + sum(len(q) for q in self._waiting.values())

    def stats_dict(self):
        with self._lock:
            return dict(self.stats, redfish_sessions=len(self.bmcs))

    def retain(self, names):
        """Forget the sessions of nodes no longer polled here."""
        with self._lock:
            if self.limits["sessions"] is not None:
                self.limits["sessions"].retain(names)
            gone = [n for n in self.bmcs if n not in names and n not in self._running]
            for name in gone:
                self.bmcs.pop(name)[1].forget()

    def stop(self, timeout):
        """Fail what is queued, wait for running jobs (bounded), log out of
        idle sessions (best effort, bounded)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            for queue in self._waiting.values():
                for job in queue:
                    self._report(job, None, errors.Stopping())
            self._waiting.clear()
            self._wake.notify()
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        clean = not self._running
        for name in list(self._running):
            held = self.bmcs.get(name)
            if held is not None:
                held[1].never_log_out()
        if not self.log_out_at_stop:
            for name in list(self.bmcs):
                self.bmcs[name][1].never_log_out()
        if self._pool is not None and self.log_out_at_stop:
            idle = [b for name, (_, b) in self.bmcs.items() if name not in self._running]
            futures = [self._pool.submit(b.close) for b in idle]
            for f in futures:
                try:
                    f.result(max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: S110 - logging out is best effort
                    pass
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        return clean
