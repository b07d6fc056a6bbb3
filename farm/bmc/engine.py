"""The poll engine: one thread drives every BMC session of a process.

Polls arrive in batches (`submit`), run as jobs on their BMC's session and
come back in batches (`on_results`), so a poll costs its packets and a few
heap operations, not a thread hand-off. One epoll loop reads every reply;
timers (retransmission, the per-poll deadline, keepalives) live in one heap.
A hung BMC holds only its own session until its deadline, and at most
`max_in_flight` jobs run at once (the rest wait in order).
"""

import collections
import dataclasses
import heapq
import ipaddress
import itertools
import logging
import os
import select
import socket
import threading
import time
from concurrent import futures

from farm import errors
from farm.bmc.session import ACTIVE, Job, Session, keepalive_program

LOG = logging.getLogger(__name__)
RCVBUF = 8 * 1024 * 1024
# A pseudo-job: (SESSION_HINT, node, (suite, privilege)) seeds what a BMC
# accepted at an earlier login (another process's, before a restart), so the
# first login here asks for that first. Reported back at once, with no value.
SESSION_HINT = "session-hint"
RESOLVE_TTL = 300.0


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    timeout: float = 5.0            # hard deadline of one job, login included
    retry_interval: float = 1.0     # resend an unanswered packet after this long
    session_timeout: float = 60.0   # the BMC's inactivity timeout
    keepalive: bool = True          # keep idle sessions below session_timeout
    max_in_flight: int = 1024
    cipher_suites: tuple = (17, 3)
    privilege: int = 4              # administrator
    min_command_interval: float = 0.0  # seconds between two commands to one BMC
    detect_workarounds: bool = True  # let RAKP 2 and checksums say what a BMC needs
    workarounds: tuple = ()         # for every BMC, beside each node's own
    timeouts: tuple = ()            # ((program, seconds), ...): deadlines other than `timeout`

    def keepalive_after(self):
        # Early enough that a keepalive retransmitted twice still lands in time.
        margin = min(self.session_timeout / 2, max(10.0, 3 * self.retry_interval))
        return self.session_timeout - margin


@dataclasses.dataclass(frozen=True)
class Outcome:
    task: str
    node: str
    value: object
    error_kind: str | None
    error: str | None
    latency: float
    finished_at: float  # epoch seconds
    arg: object = None  # the job's argument, handed back (e.g. a command's id)
    login: tuple | None = None  # (suite, privilege level) when this job logged in
    workarounds: tuple = ()  # with login: the workarounds found to be needed

    @property
    def ok(self):
        return self.error_kind is None


class Engine:
    def __init__(self, config, programs, on_results):
        self.config = config
        self.programs = programs      # task name -> generator function(node)
        self.on_results = on_results  # called from the engine thread with [Outcome]
        self.sessions = {}
        self.stats = collections.Counter()
        self._timers = []
        self._seq = itertools.count()
        self._inbox = collections.deque()
        self._waiting = collections.deque()  # sessions with queued jobs and no slot
        self._busy = 0
        # jobs submitted and not yet reported (farm_executor_queue_depth):
        # _submitted grows on callers' threads (under the lock), _reported on ours
        self._submitted, self._reported = 0, 0
        self._count_lock = threading.Lock()
        self._outcomes = []
        self._sockets = {}
        self._by_fd = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._resolved = {}
        self._endpoints = {}  # (address, port) -> normalised endpoint, for IP literals
        self._keepalive_after = config.keepalive_after()
        self.timeouts = dict(config.timeouts)
        self._resolver = None
        self._kept = None  # names whose sessions stay (None: every one)
        self._stop = False
        self._thread = None
        self.now = time.monotonic

    # -- the API other threads call --------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="farm-engine", daemon=True)
        self._thread.start()
        return self

    @property
    def busy(self):
        """Sessions running a job now (at most max_in_flight)."""
        return self._busy

    @property
    def pending(self):
        """Jobs submitted and not yet reported: running, queued behind a
        session's job, waiting for a slot or for a name to resolve."""
        return self._submitted - self._reported

    def submit(self, jobs):
        """Queue [(task, node)] or [(task, node, arg)]; each comes back once
        through on_results. `arg` reaches the task's program (a SEL cursor,
        a power action) and comes back in the Outcome."""
        jobs = list(jobs)
        with self._count_lock:
            self._submitted += len(jobs)
        self._inbox.append(jobs)
        self._poke()

    def retain(self, names):
        """Keep sessions only with the BMCs of `names` (the nodes polled
        here): the others are closed (RMCP+ Close Session) as soon as they
        are idle. BMCs keep few sessions (often 4 or 5), and a former owner
        keeping its own alive takes one from the new owner, from ipmitool and
        from the BMC's web page."""
        self._inbox.append(("retain", frozenset(names)))
        self._poke()

    def stop(self, timeout=2.0):
        """Fail what is queued, close idle sessions (best effort), and return."""
        self._inbox.append("stop")
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _poke(self):
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of pokes already: the loop will wake

    # -- the loop -----------------------------------------------------------------------
    def _run(self):
        while not self._stop:
            try:
                self._once()
            except Exception:  # a bug must cost one iteration, not the engine
                LOG.exception("poll engine iteration failed")
        self._shutdown()

    def _once(self):
        timeout = 1.0
        if self._timers:
            timeout = min(timeout, max(0.0, self._timers[0][0] - self.now()))
        if self._inbox:
            timeout = 0
        for fd, _ in self._epoll.poll(timeout):
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 65536)
                except BlockingIOError:
                    pass
            else:
                self._read(fd)
        self._run_timers()
        self._take_inbox()
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                self.on_results(outcomes)
            except Exception:
                LOG.exception("handling poll results failed")

    def _take_inbox(self):
        now = self.now()
        while self._inbox:
            batch = self._inbox.popleft()
            if batch == "stop":
                self._stop = True
                return
            if isinstance(batch, tuple):  # ("retain", names)
                self._retain(batch[1])
                continue
            for item in batch:
                task, node = item[0], item[1]
                if task == SESSION_HINT:
                    self._hint(node, item[2])
                    continue
                self._enqueue(Job(task, node, self.programs[task], arg=item[2] if len(item) > 2
                                  else None), now)

    def _retain(self, names):
        self._kept = names
        for session in list(self.sessions.values()):
            self._release_if_unowned(session)
        self._endpoints = {key: e for key, e in self._endpoints.items() if e in self.sessions}

    def _release_if_unowned(self, session):
        """Close and forget an idle session no retained node uses."""
        if (self._kept is None or session.job is not None or session.queue
                or session.name in self._kept):
            return
        packet = session.close_packet()
        if packet is not None:
            self.send(session, packet)
        self.stats["sessions_released"] += 1
        del self.sessions[session.endpoint]

    def _hint(self, node, learned):
        job = Job(SESSION_HINT, node, None, arg=learned)
        endpoint = self._endpoint(job)
        if endpoint is None:
            return  # a name being resolved (it comes back) or that failed (reported)
        session = self._session(endpoint, node.name)
        if session.suite_known is None:
            session.suite_known, session.privilege_known = learned
        self._fail_now(job, None)

    def _session(self, endpoint, name):
        session = self.sessions.get(endpoint)
        if session is None:
            family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
            session = self.sessions[endpoint] = Session(self, endpoint, family)
        session.name = name
        return session

    def _enqueue(self, job, now):
        endpoint = self._endpoint(job)
        if endpoint is None:
            return  # resolving, or failed and reported
        session = self._session(endpoint, job.node.name)
        session.queue.append(job)
        if session.job is None and len(session.queue) == 1:
            self._schedule(session, now)

    def _schedule(self, session, now):
        """Give `session` a slot now, or queue it for the next free one."""
        if self._busy < self.config.max_in_flight:
            self._busy += 1
            session.begin(session.queue.popleft(), now)
        else:
            self._waiting.append(session)

    def finished(self, session, job, value, error):
        """Called by a session when its job ends."""
        now = self.now()
        self._busy -= 1
        if not job.internal:
            self._reported += 1
            self._outcomes.append(Outcome(
                job.task, job.node.name, value, error.kind if error else None,
                str(error) if error else None, now - job.started, time.time(), job.arg,
                (session.suite_known, session.granted) if job.logins and not error else None,
                tuple(sorted(session.detected)) if job.logins else ()))
        elif error is not None:
            self.stats["keepalive_failures"] += 1
        if session.queue:
            self._schedule(session, now)
        elif self._kept is not None and session.name not in self._kept:
            self._release_if_unowned(session)  # its node left while this job ran
        elif session.state == ACTIVE and self.config.keepalive:
            when = session.last_activity + self._keepalive_after
            self.at(when, session, "keepalive", session.last_activity)
        while self._waiting and self._busy < self.config.max_in_flight:
            waiting = self._waiting.popleft()
            if waiting.job is None and waiting.queue:
                self._busy += 1
                waiting.begin(waiting.queue.popleft(), now)

    # -- timers ------------------------------------------------------------------------------
    def at(self, when, session, kind, arg):
        heapq.heappush(self._timers, (when, next(self._seq), session, kind, arg))

    def _run_timers(self):
        now = self.now()
        while self._timers and self._timers[0][0] <= now:
            _, _, session, kind, arg = heapq.heappop(self._timers)
            if kind == "retry":
                session.retry(arg, now)
            elif kind == "deadline":
                session.deadline(arg, now)
            elif kind == "pace":
                session.paced(arg)
            elif (kind == "keepalive" and session.state == ACTIVE and session.job is None
                  and not session.queue and session.last_activity == arg):
                self.stats["keepalives"] += 1
                node = session.node
                session.queue.append(Job("keepalive", node, keepalive_program, internal=True))
                self._schedule(session, now)

    # -- sockets --------------------------------------------------------------------------------
    def send(self, session, packet):
        sock = self._socket(session.family)
        try:
            sock.sendto(packet, session.endpoint)
            self.stats["packets_sent"] += 1
        except (BlockingIOError, InterruptedError):
            self.stats["send_dropped"] += 1  # as good as lost on the wire: retried
        except OSError as exc:
            self.stats["send_errors"] += 1
            LOG.debug("sendto %s failed: %s", session.endpoint, exc)

    def _socket(self, family):
        sock = self._sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
                try:
                    if opt is not None:
                        sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                        break
                except OSError:
                    continue
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self._sockets[family] = sock
            self._by_fd = {s.fileno(): s for s in self._sockets.values()}
            self._epoll.register(sock.fileno(), select.EPOLLIN)
        return sock

    def _read(self, fd):
        sock = self._by_fd[fd]
        now = self.now()
        for _ in range(256):  # bounded, so timers and the inbox get their turn
            try:
                packet, addr = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors surface here on some kernels
                continue
            self.stats["packets_received"] += 1
            session = self.sessions.get((addr[0], addr[1]))
            if session is not None:
                session.received(packet, now)

    # -- addresses ------------------------------------------------------------------------------
    def _endpoint(self, job):
        address = job.node.address
        known = self._endpoints.get((address, job.node.port))
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
            endpoint = self._endpoints[(address, job.node.port)] = (str(ip), job.node.port)
            return endpoint
        except ValueError:
            pass
        cached = self._resolved.get(address)
        if cached is not None and cached[1] > self.now():
            if isinstance(cached[0], errors.BmcError):
                self._fail_now(job, cached[0])
                return None
            return (cached[0], job.node.port)
        # getaddrinfo blocks: never on the engine thread.
        if self._resolver is None:
            self._resolver = futures.ThreadPoolExecutor(2, thread_name_prefix="farm-resolve")
        self._resolver.submit(self._resolve, address).add_done_callback(
            lambda f: (self._inbox.append([(job.task, job.node, job.arg)]), self._poke()))
        return None

    def _resolve(self, address):
        try:
            info = socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)
            value = str(ipaddress.ip_address(info[0][4][0]))
        except (OSError, ValueError) as exc:
            value = errors.BmcUnreachable(f"cannot resolve the BMC's host name: {exc}")
        self._resolved[address] = (value, self.now() + RESOLVE_TTL)

    def _fail_now(self, job, error):
        """Report `job` now, unrun: with `error`, or (a hint) with none."""
        self._reported += 1
        self._outcomes.append(Outcome(job.task, job.node.name, None, error and error.kind,
                                      error and str(error), 0.0, time.time(), job.arg))

    def _shutdown(self):
        now = self.now()
        for batch in self._inbox:
            if batch != "stop":
                for item in batch:
                    self._fail_now(Job(item[0], item[1], None, arg=item[2] if len(item) > 2
                                       else None), errors.Stopping())
        for session in self.sessions.values():
            for job in session.queue:
                if not job.internal:
                    self._fail_now(job, errors.Stopping())
            session.queue.clear()
            if session.job is not None:
                session.deadline(session.job, now, stopping=True)
            packet = session.close_packet()
            if packet is not None:
                self.send(session, packet)
        if self._outcomes:
            try:
                self.on_results(self._outcomes)
            except Exception:
                LOG.exception("handling the last poll results failed")
        for sock in self._sockets.values():
            sock.close()
        self._epoll.close()
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)


def run_one(engine_config, programs, task, node, timeout=None, arg=None):
    """Run one job on a private engine and return its Outcome (CLI and tests)."""
    done = threading.Event()
    box = []

    def collect(outcomes):
        box.extend(outcomes)
        done.set()

    engine = Engine(engine_config, programs, collect).start()
    try:
        engine.submit([(task, node, arg)])
        done.wait(timeout or dict(engine_config.timeouts).get(task, engine_config.timeout) + 5)
    finally:
        engine.stop()
    return box[0] if box else None
