"""Where the poll engines run: `threads` (the IPMI engine on a thread of
the worker process, beside the Redfish executor) or `processes` (a few
spawned children, each with both: a host's cores all serve, whatever
protocol its nodes speak).

Both take batches of (task, node) and report batches of Outcomes through
`on_results`. The process pool routes each node to a fixed child (its session
lives there), spawns rather than forks (a forked child inherits locks and
sockets mid-use), replaces a child that died and reports its in-flight polls
as failed, so nothing goes silent.
"""

import logging
import multiprocessing
import signal
import threading
import time
import zlib
from multiprocessing import connection

from farm.bmc.engine import Engine, Outcome

LOG = logging.getLogger(__name__)


class ByDriver:
    """IPMI jobs to the poll engine (either executor), Redfish jobs to the
    Redfish thread pool; one interface for the worker."""

    def __init__(self, ipmi, redfish):
        self.ipmi, self.redfish = ipmi, redfish

    @property
    def restarts(self):
        return self.ipmi.restarts

    def start(self):
        self.ipmi.start()
        self.redfish.start()

    def submit(self, jobs):
        ipmi = [j for j in jobs if j[1].driver == "ipmi"]
        if ipmi:
            self.ipmi.submit(ipmi)
        if len(ipmi) < len(jobs):
            self.redfish.submit([j for j in jobs if j[1].driver != "ipmi"])

    def in_flight(self):
        return self.ipmi.in_flight() + self.redfish.in_flight()

    def stats(self):
        return dict(self.ipmi.stats(), **self.redfish.stats_dict())

    def retain(self, names):
        """Sessions only with the BMCs of `names`, the nodes polled here."""
        self.ipmi.retain(names)
        self.redfish.retain(names)

    def stop(self, timeout):
        stopped = [False, False]
        threads = [threading.Thread(target=lambda i=i, e=e: stopped.__setitem__(i, e.stop(timeout)),
                                    daemon=True) for i, e in enumerate((self.ipmi, self.redfish))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 1)
        return all(stopped)


class LazyRedfish:
    """The Redfish executor, built and started on its first job: a worker or
    poll process with IPMI nodes only runs no Redfish threads or loop (they
    cost the IPMI engine 17 % more CPU a poll in poll processes,
    measured A/B with bench compare)."""

    def __init__(self, factory):
        self.factory = factory
        self.executor = None
        self._lock = threading.Lock()

    def start(self):
        pass  # on the first job

    def submit(self, jobs):
        if self.executor is None:
            with self._lock:  # the scheduler and the actor may both submit
                if self.executor is None:
                    executor = self.factory()
                    executor.start()
                    self.executor = executor
        self.executor.submit(jobs)

    def in_flight(self):
        return self.executor.in_flight() if self.executor is not None else 0

    def stats_dict(self):
        return self.executor.stats_dict() if self.executor is not None else {}

    def retain(self, names):
        if self.executor is not None:
            self.executor.retain(names)

    def stop(self, timeout):
        return self.executor.stop(timeout) if self.executor is not None else True


class InProcess:
    """The engine on a thread of this process."""

    def __init__(self, config, programs, on_results):
        self.engine = Engine(config, programs, on_results)
        self.restarts = 0

    def start(self):
        self.engine.start()

    def submit(self, jobs):
        self.engine.submit(jobs)

    def stats(self):
        return dict(self.engine.stats, sessions=len(self.engine.sessions))

    def retain(self, names):
        self.engine.retain(names)

    def in_flight(self):
        return self.engine.pending

    def stop(self, timeout):
        return self.engine.stop(timeout)


def child_main(conn, config, task_names, redfish=None):
    """A child's life: run an engine (and, with `redfish`, a Redfish
    executor) until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    from farm.tasks import load_tasks
    from farm.tasks import programs as programs_of
    programs = programs_of(load_tasks(task_names).values())
    lock = threading.Lock()
    executor = None

    def report(outcomes):
        with lock:
            conn.send((outcomes, executor.stats()))

    executor = InProcess(config, programs, report)
    if redfish is not None:
        from farm.polling.redfish_engines import build, child_sessions
        executor = ByDriver(executor, LazyRedfish(
            lambda: build(redfish, report, child_sessions(redfish))))
    executor.start()
    try:
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                break
            if batch is None:
                break
            if isinstance(batch, tuple):  # ("retain", names)
                executor.retain(batch[1])
            else:
                executor.submit(batch)
    finally:
        executor.stop(config.timeout + 1)


class _Child:
    def __init__(self, index, config, task_names, redfish=None):
        ctx = multiprocessing.get_context("spawn")
        self.index = index
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=child_main,
                                   args=(child_conn, config, task_names, redfish),
                                   name=f"farm-engine-{index}", daemon=True)
        self.process.start()
        child_conn.close()
        self.in_flight = {}   # (task, name, arg) -> node
        self.stats = {}
        self.lock = threading.Lock()


class ChildPool:
    """Every node's jobs, IPMI and (with `redfish`) Redfish, to a fixed
    child; each child runs the IPMI engine and the Redfish executor."""

    def __init__(self, count, config, task_names, on_results, redfish=None):
        self.count = count
        self.redfish = redfish
        self.config = config
        self.task_names = None if task_names is None else list(task_names)
        self.on_results = on_results
        self.children = []
        self.restarts = 0
        self._dead_stats = {}
        self._closing = False   # no more replacements
        self._stopping = False  # the reader may end
        self._reader = None
        self._retained = None   # the names of the last retain, for a replacement child

    def start(self):
        self.children = [_Child(i, self.config, self.task_names, self.redfish)
                         for i in range(self.count)]
        self._reader = threading.Thread(target=self._read, name="farm-results-in", daemon=True)
        self._reader.start()

    def route(self, name):
        """The child a node always goes to (pure given the count)."""
        return zlib.crc32(name.encode("utf-8")) % self.count

    def submit(self, jobs):
        batches = {}
        for job in jobs:
            batches.setdefault(self.route(job[1].name), []).append(job)
        for index, batch in batches.items():
            child = self.children[index]
            with child.lock:
                for job in batch:
                    child.in_flight[(job[0], job[1].name, job[2] if len(job) > 2 else None)] = job[1]
                try:
                    child.conn.send(batch)
                except (OSError, ValueError):
                    pass  # the child is dead: the reader reports these polls

    def in_flight(self):
        return sum(len(c.in_flight) for c in self.children)

    def retain(self, names):
        """Each child keeps sessions only with its share of `names`."""
        self._retained = list(names)
        for child in self.children:
            self._send_retain(child)

    def _send_retain(self, child):
        share = [n for n in self._retained or () if self.route(n) == child.index]
        with child.lock:
            try:
                child.conn.send(("retain", share))
            except (OSError, ValueError):
                pass  # dead: its replacement is told when it starts

    def stats(self):
        total = dict(self._dead_stats)
        for child in self.children:
            for key, value in child.stats.items():
                total[key] = total.get(key, 0) + value
        return total

    def _read(self):
        while not self._stopping:
            children = list(self.children)
            waitables = {c.conn: c for c in children}
            waitables.update({c.process.sentinel: c for c in children})
            try:
                ready = connection.wait(list(waitables), timeout=0.5)
            except OSError:
                continue
            for item in ready:
                child = waitables[item]
                if item is child.conn:
                    self._receive(child)
                elif not self._closing:
                    self._replace(child)

    def _receive(self, child):
        try:
            while child.conn.poll():
                outcomes, child.stats = child.conn.recv()
                with child.lock:
                    for o in outcomes:
                        child.in_flight.pop((o.task, o.node, o.arg), None)
                self._deliver(outcomes)
        except (EOFError, OSError):
            pass  # the sentinel tells us it died

    def _deliver(self, outcomes):
        try:
            self.on_results(outcomes)
        except Exception:
            LOG.exception("handling poll results failed")

    def _replace(self, child):
        # its pipe closes a moment before it can be reaped: wait (bounded)
        # so the log gives the real exit code, not None
        child.process.join(2.0)
        code = child.process.exitcode
        LOG.error("poll process %d (pid %s) died with exit code %s; starting a new one",
                  child.index, child.process.pid, code)
        for key, value in child.stats.items():
            self._dead_stats[key] = self._dead_stats.get(key, 0) + value
        with child.lock:
            lost, child.in_flight = child.in_flight, {}
        self.children[child.index] = _Child(child.index, self.config, self.task_names,
                                            self.redfish)
        if self._retained is not None:  # it lets go of what others own, as its forerunner did
            self._send_retain(self.children[child.index])
        self.restarts += 1
        now = time.time()
        self._deliver([Outcome(task, name, None, "error",
                               f"the poll process died (exit code {code})", 0.0, now, arg)
                       for (task, name, arg) in lost])

    def stop(self, timeout):
        self._closing = True
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.conn.send(None)
            except (OSError, ValueError):
                pass
        clean = True
        for child in self.children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                clean = False
                child.process.kill()
                child.process.join(1.0)
        self._stopping = True
        if self._reader is not None:
            self._reader.join(1.0)
        for child in self.children:
            self._receive(child)
        return clean
