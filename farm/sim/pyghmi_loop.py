"""Fixes to pyghmi 1.6.19's shared session loop, applied once per process.

pyghmi runs one IO thread per process; synchronous callers wait in `_io_wait`
for that thread to wake them. Three defects make a thread pool stall there:

1. Lock-order inversion. `send_payload` holds KEEPALIVE_SESSIONS and then takes
   WAITING_SESSIONS (in `_xmit_packet`); `awaitresponse` and `wait_for_rsp`
   hold WAITING_SESSIONS while calling `_timedout`, which sends and so takes
   KEEPALIVE_SESSIONS. A retransmission on one thread and any send on another
   can deadlock. Binding both names to one RLock (the obvious fix) was measured
   to cost healthy polls their deadline under load (186 of 3,600 in
   bench/pyghmi_threads.py); instead the two methods, copied, call `_timedout`
   after releasing WAITING_SESSIONS (the session is popped under the lock, so
   only one thread times it out).
2. Lost wake-ups. A caller sends, then queues its wait. If the reply arrived
   and the IO thread already moved it to the session's queue before the wait
   was queued, the waiter sleeps until its retry timer (0.5-1 s) although its
   reply is there. The replacement `_io_wait` checks for already-queued
   packets after queueing the wait, so either it sees them or the IO thread
   sees its waiter.
3. Blocking flip. `_io_sendto`, called from any thread, switches the shared
   socket to blocking; the IO thread's `recvfrom` on that socket then blocks
   until the next packet for it arrives, and every waiter of the process
   stalls behind it. The replacement sends without touching the mode.
4. Spinning waiters. pyghmi's clock ticks every 10 ms. `wait_for_rsp` and
   `awaitresponse` compute a wait of 0 once a timer is due (`due <= now`) but
   act on it only when `due < now`, so every waiter on a due timer spins for
   up to a tick. (Acting at `due <= now` instead made pyghmi give up on
   healthy sessions.) The copies wait one tick when a timer is due now.
   Also, the IO thread wakes
   every generic waiter (one
   with no BMC address: a login driving `wait_for_rsp`) whenever `select`
   returns, including for the wake-up pokes waiters send it. A waiter that
   pokes after the IO thread already took its wait item wakes itself at once,
   loops and pokes again: one login to a silent BMC burnt 1.8 s of CPU per 2 s.
   The replacement IO loop (pyghmi's, Apache-2.0, with two changes) wakes
   generic waiters only for real packets or at their deadline.
   Its second change: stock pyghmi select()s on every socket, then tries a
   recvfrom on every one of them, ready or not; the simulator's 10,000 server
   sockets exceed select's 1,024-descriptor limit, and the per-wake-up cost
   grows with the socket count. The replacement waits on epoll and reads only
   the sockets that are ready.
5. Thundering logins. A synchronous login waits in `wait_for_rsp` as a
   generic waiter, woken by every packet for any session, with the soonest
   retry timer of every session in the process as its timeout. With 10 % of
   1,000 BMCs hung, about 40 logins hang at any time; 128 threads then called
   wait_for_rsp 2,600 times a second and the process burnt a core (0.14
   without hung BMCs), mostly handing the GIL around. The fix records, per
   thread, the session it is logging in: its waits are directed to that BMC's
   address, time out at that session's own timer, and whichever thread
   processes a packet of that session wakes it (its one Event is cleared
   before the session's state is checked, so no wake-up is lost).
6. No deadline. A call against a dead or frozen BMC waits out pyghmi's retry
   and re-login schedule (28 s and more). The replacement `_io_wait` honours a
   per-thread deadline set with `deadline()` and raises DeadlineExceeded,
   a BaseException so that pyghmi's own `except Exception` cannot swallow it.
   The session it interrupted must be discarded (see ipmi.abandon_session).

Every blocking wait in pyghmi's session layer goes through `_io_wait`, so these
and the IO loop are the only places patched. `FARM_PYGHMI_FIXES` picks fixes
1-5 by name (`locks,wakeups,sendto,ioloop,logins`, the default `all`, or `0`
for none) to reproduce the stalls in bench/pyghmi_threads.py; the deadline (6)
is always on.
"""

import contextlib
import os
import random
import select
import selectors
import threading
import time

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi.private import session as _session

_local = threading.local()


_TICK = 1.0 / os.sysconf("SC_CLK_TCK")  # the resolution of pyghmi's clock


def _clock():
    # pyghmi times everything with os.times()[4] (10 ms ticks), not
    # time.monotonic: code compared with its timestamps must use the same.
    return _session._monotonic_time()
_applied = False
_apply_lock = threading.Lock()


class DeadlineExceeded(BaseException):
    """The calling thread's deadline passed inside pyghmi."""


@contextlib.contextmanager
def deadline(seconds):
    """Bound every pyghmi wait of this thread for the duration of the block."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def _replies_waiting(myaddr):
    if myaddr is None:
        return bool(_session.sessionqueue)
    try:
        handlers = list(_session.Session.bmc_handlers.get(myaddr, {}).values())
    except RuntimeError:  # dict changed size under us: just wait normally
        return False
    # Only sessions inside awaitresponse() drain their own queue after the
    # wait; a stale session's leftovers would make every wait return at once.
    return any(getattr(h, "pktqueue", None) and getattr(h, "awaitingresponse", False)
               and not getattr(h, "broken", False) for h in handlers)


def io_sendto(mysocket, packet, sockaddr):
    try:
        mysocket.sendto(packet, sockaddr)
    except BlockingIOError:
        # Send buffer full: wait briefly for room, once. UDP may drop anyway.
        waiter = select.poll()  # not select(): descriptors may exceed 1,024
        waiter.register(mysocket, select.POLLOUT)
        if waiter.poll(50):
            try:
                mysocket.sendto(packet, sockaddr)
            except OSError:
                pass
    except OSError:
        pass  # as stock pyghmi: a failed send is a lost packet, retried later


POKE_SLACK = 0.002


def _make_io_wait(fix_wakeups):
    def _io_wait(timeout, myaddr=None, evq=None):
        limit = getattr(_local, "deadline", None)
        if limit is not None:
            left = limit - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded()
            timeout = min(timeout, left) if timeout is not None else left
        login = getattr(_local, "login", None) if myaddr is None else None
        if login is not None:  # changed (fix 5): directed, on the session's Event
            myaddr = login.sockaddr  # None until the BMC first answered; then
            candidates = getattr(login, "allsockaddrs", ())  # what login sent to
            if myaddr is None and len(candidates) == 1:
                myaddr = candidates[0]
            evt = login.farm_wake
        else:
            evt = threading.Event()
        if evq is not None:
            evq.append(evt)
        wake_at = timeout + _clock()  # pyghmi's clock, like everything it compares with
        _session.ioqueue.append((wake_at, evt, myaddr))
        # A login processes the whole sessionqueue when it wakes, and a packet
        # for it may have been queued before this wait was (fix 5).
        waiting = bool(_session.sessionqueue) if login is not None else _replies_waiting(myaddr)
        if not (fix_wakeups and waiting):
            # Poke the IO thread only if it would otherwise sleep past our
            # deadline by more than a hair. Stock pyghmi pokes whenever
            # wake_at < selectdeadline; when both name the same retry timer
            # (a login to a silent BMC) float noise makes that true, the poke
            # wakes every generic waiter, and they spin (1.8 s of CPU per 2 s).
            if wake_at < _session.selectdeadline - POKE_SLACK:
                sock = _session.iosockets[0]
                sock.sendto(b"\x01", (_session.myself, sock.getsockname()[1]))
            # The IO thread sets evt by wake_at; the extra bound only guards
            # against that thread being gone.
            evt.wait(max(timeout, 0) + 1.0)
        if limit is not None and time.monotonic() >= limit:
            raise DeadlineExceeded()
    return _io_wait


def _awaitresponse(self, retry, netfn, command):
    # pyghmi 1.6.19 Session.awaitresponse, except where marked.
    self.awaitingresponse = True
    try:
        alltimeout = _clock() + (self._getmaxtimeout() * 2)
        while (retry and _session.unmatched(self.lastresponse, netfn, command)
               and (self.logging or self.logged or self.onlogpayload)):
            timeout = self.expiration - _clock() or _TICK  # changed: due now = wait a tick (fix 4)
            _session._io_wait(timeout, self.sockaddr)
            while self.iterwaiters:
                self.iterwaiters.pop()({"success": True})
            self.process_pktqueue()
            if _clock() > alltimeout:
                self._mark_broken()
                raise pyghmi_exc.IpmiException("Session no longer connected")
            expired = False
            with _session.util.protect(_session.WAITING_SESSIONS):
                if self in self.waiting_sessions and self.expiration < _clock():
                    self.waiting_sessions.pop(self, None)
                    expired = True
            if expired:  # changed: outside WAITING_SESSIONS (lock order)
                if not self.lastpayload and not self.logging:
                    return
                self._timedout()
    finally:
        self.awaitingresponse = False


def _soonest(timeout, sessions, curtime):
    """The wait until the first of `sessions` is due, capped by `timeout`."""
    for parms in list(sessions.values()):
        left = parms["timeout"] - curtime
        if left < 0:
            return 0
        left = left or _TICK  # due now is acted on after the next tick (fix 4)
        if timeout is None or left < timeout:
            timeout = left
    return timeout


def _wait_for_rsp(cls, timeout=None, callout=True):
    # pyghmi 1.6.19 Session.wait_for_rsp, except where marked.
    curtime = _clock()
    own = getattr(_local, "login", None)
    if own is not None:  # changed (fix 5)
        own.farm_wake.clear()  # before the check: a later change sets it again
        if not own.logging or own.broken:
            return 0
    if timeout != 0:
        with _session.util.protect(_session.WAITING_SESSIONS):
            if own in cls.waiting_sessions:  # changed (fix 5): its own timer
                timeout = _soonest(timeout, {own: cls.waiting_sessions[own]}, curtime)
            else:
                timeout = _soonest(timeout, cls.waiting_sessions, curtime)
        with _session.util.protect(_session.KEEPALIVE_SESSIONS):
            timeout = _soonest(timeout, cls.keepalive_sessions, curtime)
    while cls.iterwaiters:
        cls.iterwaiters.pop()({"success": True})
        if timeout is not None:
            timeout = 0
    if timeout is None:
        return 0
    if _session._poller(timeout=timeout):
        while _session.sessionqueue:
            session = _session.sessionqueue.popleft()
            session.process_pktqueue()
            wake = getattr(session, "farm_wake", None)
            if wake is not None:  # changed (fix 5): its login thread may wait
                wake.set()
    sessionstokeepalive = []
    with _session.util.protect(_session.KEEPALIVE_SESSIONS):
        for session, parms in list(cls.keepalive_sessions.items()):
            if parms["timeout"] < curtime and not session._isincommand():
                cls.keepalive_sessions[session]["timeout"] = (
                    _clock() + _session.MAX_IDLE - (random.random() * 4.9))
                sessionstokeepalive.append(session)
    for session in sessionstokeepalive:
        session._keepalive()
    with _session.util.protect(_session.WAITING_SESSIONS):
        sessionstodel = [session for session, parms in list(cls.waiting_sessions.items())
                         if parms["timeout"] < curtime]
        for session in sessionstodel:
            cls.waiting_sessions.pop(session, None)
        remaining = len(cls.waiting_sessions)
    for session in sessionstodel:  # changed: outside WAITING_SESSIONS (lock order)
        session._timedout()
    return remaining


class _Readiness:
    """epoll over pyghmi's socket list, which only ever grows (by append)."""

    def __init__(self, sockets):
        self.sockets = sockets
        self.known = 0
        self.selector = selectors.EpollSelector()

    def wait(self, timeout):
        while self.known < len(self.sockets):
            self.selector.register(self.sockets[self.known], selectors.EVENT_READ)
            self.known += 1
        return [key.fileobj for key, _ in self.selector.select(timeout)]


def _define_worker():
    stock = _STOCK_DEFINE_WORKER()

    class IOWorker(stock):
        def run(self):
            # pyghmi 1.6.19 session._IOWorker.run, except where marked.
            self.running = True
            iowaiters = []
            directediowaiters = {}
            timeout = 300
            readiness = _Readiness(_session.iosockets)
            _session.iothreadready = True
            while _session.iothreadwaiters:
                _session.iothreadwaiters.pop().set()
            while self.running:
                if timeout < 0:
                    timeout = 0
                _session.selectdeadline = _clock() + timeout
                ready = readiness.wait(timeout)  # changed: epoll, ready sockets only
                _session.selectdeadline = _clock() + 300
                timeout = 300
                sockaddrs = _session._io_graball(ready, directediowaiters)
                # changed: a poke is not activity; generic waiters wake for a
                # packet or at their own deadline, else they keep waiting.
                rightnow = _clock()
                pending = []
                for w in iowaiters:
                    if sockaddrs or w[0] <= rightnow:
                        w[1].set()
                    else:
                        pending.append(w)
                        timeout = min(timeout, w[0] - rightnow)
                iowaiters = pending
                rightnow = _clock()  # changed: one clock read per pass, not per address
                for d in list(directediowaiters):
                    for idx, w in reversed(list(enumerate(directediowaiters[d]))):
                        ltimeout = w[0] - rightnow
                        if ltimeout <= 0:  # changed: due now wakes (else select(0) spins a tick)
                            w[1].set()
                            del directediowaiters[d][idx]
                        elif ltimeout < timeout:
                            timeout = ltimeout
                    if not directediowaiters[d]:
                        del directediowaiters[d]
                while _session.ioqueue:
                    workitem = _session.ioqueue.popleft()
                    if workitem[2] is None and sockaddrs:
                        workitem[1].set()
                    elif workitem[2] in sockaddrs:
                        workitem[1].set()
                    else:
                        ltimeout = workitem[0] - _clock()
                        if ltimeout < timeout:
                            timeout = ltimeout
                        if workitem[2] is None:
                            iowaiters.append(workitem)
                        else:
                            directediowaiters.setdefault(workitem[2], []).append(workitem)

    return IOWorker


_STOCK_DEFINE_WORKER = _session.define_worker

_STOCK_SESSION_INIT = _session.Session.__init__


def _session_init(self, *args, **kwargs):
    # Session.__init__ logs in, or waits for a login already in progress, and
    # returns when it is done: meanwhile this thread's waits are for it.
    if getattr(self, "farm_wake", None) is None:
        self.farm_wake = threading.Event()
    outer = getattr(_local, "login", None)
    _local.login = self
    try:
        _STOCK_SESSION_INIT(self, *args, **kwargs)
    finally:
        _local.login = outer


ALL_FIXES = ("locks", "wakeups", "sendto", "ioloop", "logins")


def enabled_fixes(spec):
    """Parse FARM_PYGHMI_FIXES (pure)."""
    spec = (spec or "all").strip().lower()
    if spec in ("all", "1"):
        return set(ALL_FIXES)
    if spec in ("0", "none", ""):
        return set()
    chosen = {part.strip() for part in spec.split(",") if part.strip()}
    unknown = chosen - set(ALL_FIXES)
    if unknown:
        raise ValueError(f"FARM_PYGHMI_FIXES: unknown fix(es) {sorted(unknown)}")
    return chosen


def apply():
    """Patch pyghmi's session module. Idempotent; call before any pyghmi use."""
    global _applied
    with _apply_lock:
        if _applied:
            return
        fixes = enabled_fixes(os.environ.get("FARM_PYGHMI_FIXES", "all"))
        if "locks" in fixes:
            _session.Session.awaitresponse = _awaitresponse
            _session.Session.wait_for_rsp = classmethod(_wait_for_rsp)
        if "sendto" in fixes:
            _session._io_sendto = io_sendto
        if "ioloop" in fixes:
            if _session.iothread is not None:
                raise RuntimeError("pyghmi_fixes.apply() must run before pyghmi's IO thread starts")
            _session.define_worker = _define_worker
        if "logins" in fixes:
            _session.Session.__init__ = _session_init
        _session._io_wait = _make_io_wait(fix_wakeups="wakeups" in fixes)
        _applied = True
