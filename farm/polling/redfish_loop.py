"""The asyncio Redfish engine (`[redfish] engine = asyncio`): the periodic
Redfish polls (power, sensors, sel) as coroutines on one event loop in one
thread, over one aiohttp connection pool (farm.bmc.redfish_aio). A BMC
that takes a second, or never answers, holds a coroutine and a socket, not
one of `pool_size` threads: at the deadline its coroutine is cancelled, its
connection closed, its slot freed, and the poll reported as timed out.

The guarantees of the thread pool (farm.polling.redfish_pool) hold: at most
`[redfish] max_requests_per_bmc` jobs at once per BMC and never two of one
task, in order; a hard deadline per job, reported at the deadline; one
session per BMC for the farm (SharedSessions). Power actions and SEL
clears go to `actions`, the thread pool, where sushy and the acting
lease's checks live.

The loop's state is owned by the loop's thread; other threads reach it
only through call_soon_threadsafe (submit, retain, stop). `in_flight` reads
one counter the loop keeps.
"""

import asyncio
import collections
import logging
import threading
import time

from farm import errors
from farm.bmc.engine import Outcome
from farm.bmc.redfish_aio import AsyncRedfishBmc, http_client

LOG = logging.getLogger(__name__)
FETCH = {"power": "power_state", "sensors": "sensors", "sel": "log_entries"}


class _Prefetched:
    """What a task's Redfish program asks of a BMC, read beforehand on the
    loop: the sync programs of farm.tasks run on it unchanged."""

    def __init__(self, method, value):
        setattr(self, method, lambda *a, **k: value)


class RedfishLoop:
    def __init__(self, timeout, programs, on_results, actions, timeouts=(), sessions=None,
                 per_bmc=1, max_answer_bytes=4 * 2**20, max_members=1000, sensor_gets=4,
                 login_timeout=30.0, keep_alive=True):
        self.timeout, self.timeouts = timeout, dict(timeouts)
        self.login_timeout, self.keep_alive = login_timeout, keep_alive
        self.programs, self.on_results, self.actions = programs, on_results, actions
        self.per_bmc, self.sessions = per_bmc, sessions
        self.limits = {"max_bytes": max_answer_bytes, "max_members": max_members,
                       "sensor_gets": sensor_gets}
        self.stats = collections.Counter()
        self.restarts = 0
        self.bmcs = {}                  # name -> (Node, AsyncRedfishBmc): the loop's
        self._waiting = collections.defaultdict(collections.deque)
        self._running = collections.Counter()
        self._tasks = set()
        self._jobs = set()              # the asyncio tasks running jobs
        self._count = 0                 # jobs running or waiting (read by other threads)
        self._outcomes = []             # reported, not yet handed on (one batch per turn)
        self._loop = self._http = self._thread = None
        self._ready = threading.Event()
        self._stopping = False
        self._ssl = {}

    # -- other threads --------------------------------------------------
    def start(self):
        self.actions.start()
        self._thread = threading.Thread(target=self._main, name="farm-redfish-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Redfish event loop did not start")

    def submit(self, jobs):
        polls = [j for j in jobs if j[0] in FETCH]
        if len(polls) < len(jobs):
            self.actions.submit([j for j in jobs if j[0] not in FETCH])
        if polls:
            self._loop.call_soon_threadsafe(self._enqueue, polls)

    def in_flight(self):
        return self._count + self.actions.in_flight()

    def stats_dict(self):
        return dict(self.actions.stats_dict(), **{
            "redfish_logins": self.stats["redfish_logins"] + self.actions.stats["redfish_logins"],
            "redfish_deadlines": self.stats["redfish_deadlines"]
            + self.actions.stats["redfish_deadlines"],
            "redfish_sessions": len(self.bmcs)})

    def retain(self, names):
        self.actions.retain(names)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._retain, set(names))

    def stop(self, timeout):
        deadline = time.monotonic() + timeout
        clean = self.actions.stop(timeout)
        if self._loop is None:
            return clean
        done = asyncio.run_coroutine_threadsafe(self._stop(deadline), self._loop)
        try:
            clean = done.result(max(0.1, deadline - time.monotonic()) + 1) and clean
        except Exception:  # noqa: BLE001 - a bounded exit whatever the loop does
            clean = False
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(max(0.1, deadline - time.monotonic()) + 1)
        return clean

    # -- the loop's thread ----------------------------------------------
    def _main(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._close())
            self._loop.close()

    async def _open(self):
        self._http = http_client(self.per_bmc, self.keep_alive)

    async def _close(self):
        if self._http is not None:
            await self._http.close()

    def _enqueue(self, jobs):
        for task, node, *rest in jobs:
            job = (task, node, rest[0] if rest else None, time.monotonic())
            self._count += 1
            if self._stopping:
                self._report(job, None, errors.Stopping())
            elif self._may_begin(job):
                self._begin(job)
            else:
                self._waiting[node.name].append(job)

    def _may_begin(self, job):
        return (self._running[job[1].name] < self.per_bmc
                and (job[1].name, job[0]) not in self._tasks)

    def _begin(self, job):
        self._running[job[1].name] += 1
        self._tasks.add((job[1].name, job[0]))
        task = self._loop.create_task(self._run(job))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _bmc(self, node):
        held = self.bmcs.get(node.name)
        if held is not None and held[0] == node:
            return held[1]
        bmc = AsyncRedfishBmc(node, self._http, self.sessions, self._login,
                              ssl_cache=self._ssl, **self.limits)
        self.bmcs[node.name] = (node, bmc)
        return bmc

    def _login(self):
        self.stats["redfish_logins"] += 1

    async def _run(self, job):
        task, node, arg, _ = job
        limit = self.timeouts.get(task, self.timeout)
        started = time.monotonic()
        value = error = None
        try:
            bmc = self._bmc(node)  # in here: a node's bad verify_tls costs its poll only
            if bmc.first_contact:  # a login and the system's path first: seconds on real BMCs
                limit = max(limit, self.login_timeout)
            fetch = FETCH[task]
            async with asyncio.timeout(limit):  # no task of its own, as wait_for makes
                got = await getattr(bmc, fetch)()
            value = self.programs[task](_Prefetched(fetch, got), arg)
        except TimeoutError:
            self.stats["redfish_deadlines"] += 1
            error = errors.BmcTimeout(f"no answer within {limit:g} s")
        except asyncio.CancelledError:  # stopping: nothing of this poll is kept
            error = errors.Stopping()
        except errors.BmcError as exc:
            error = exc
        except Exception as exc:  # a task's bug costs its own poll only
            LOG.exception("redfish task %s failed on %s", task, node.name)
            error = errors.BmcProtocolError(f"task {task} failed: {type(exc).__name__}")
        self._report(job, value, error, started)
        self._running[node.name] -= 1
        self._tasks.discard((node.name, task))
        if not self._running[node.name]:
            del self._running[node.name]
        queue = self._waiting.get(node.name)
        for waiting in list(queue or ()):
            if self._may_begin(waiting):
                queue.remove(waiting)
                self._begin(waiting)
        if queue is not None and not queue:
            del self._waiting[node.name]

    def _report(self, job, value, error, started=None):
        task, node, arg, queued = job
        latency = time.monotonic() - (started or queued)
        self._outcomes.append(Outcome(task, node.name, value, error.kind if error else None,
                                      str(error) if error else None, latency, time.time(), arg))
        if len(self._outcomes) == 1:  # one batch per turn of the loop, as the engine hands on
            self._loop.call_soon(self._hand_on)

    def _hand_on(self):
        outcomes, self._outcomes = self._outcomes, []
        self._count -= len(outcomes)  # in flight until handed on
        try:
            self.on_results(outcomes)
        except Exception:
            LOG.exception("handling redfish results failed")

    def _retain(self, names):
        for name in [n for n in self.bmcs if n not in names and n not in self._running]:
            del self.bmcs[name]

    async def _stop(self, deadline):
        """Queued jobs fail as Stopping; running ones are cancelled (a
        coroutine waiting on a BMC holds nothing worth waiting for)."""
        self._stopping = True
        for queue in self._waiting.values():
            for job in queue:
                self._report(job, None, errors.Stopping())
        self._waiting.clear()
        for task in list(self._jobs):
            task.cancel()
        while self._jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self._jobs
