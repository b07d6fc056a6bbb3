"""Fixes to pyghmi 1.6.19's shared session loop, applied once per process.

pyghmi runs one IO thread per process; synchronous callers wait in `_io_wait`
for that thread to wake them. Three defects make a thread pool stall there:

1. Lock-order inversion. `send_payload` holds KEEPALIVE_SESSIONS and then takes
   WAITING_SESSIONS (in `_xmit_packet`); `wait_for_rsp` holds WAITING_SESSIONS
   and then takes KEEPALIVE_SESSIONS (via `_timedout` -> `send_payload`). Two
   threads doing those at once deadlock. Both names are bound to one RLock.
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
4. No deadline. A call against a dead or frozen BMC waits out pyghmi's retry
   and re-login schedule (28 s and more). The replacement `_io_wait` honours a
   per-thread deadline set with `deadline()` and raises DeadlineExceeded,
   a BaseException so that pyghmi's own `except Exception` cannot swallow it.
   The session it interrupted must be discarded (see ipmi.abandon_session).

Every blocking wait in pyghmi's session layer goes through `_io_wait`, so these
are the only places patched. `FARM_PYGHMI_FIXES` picks fixes 1-3 by name
(`locks,wakeups,sendto`, the default `all`, or `0` for none) to reproduce the
stalls in bench/pyghmi_threads.py; the deadline (4) is always on.
"""

import contextlib
import os
import select
import threading
import time

from pyghmi.ipmi.private import session as _session

_local = threading.local()
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
    return any(getattr(h, "pktqueue", None) for h in handlers)


def io_sendto(mysocket, packet, sockaddr):
    try:
        mysocket.sendto(packet, sockaddr)
    except BlockingIOError:
        # Send buffer full: wait briefly for room, once. UDP may drop anyway.
        if select.select((), (mysocket,), (), 0.05)[1]:
            try:
                mysocket.sendto(packet, sockaddr)
            except OSError:
                pass
    except OSError:
        pass  # as stock pyghmi: a failed send is a lost packet, retried later


def _make_io_wait(fix_wakeups):
    def _io_wait(timeout, myaddr=None, evq=None):
        limit = getattr(_local, "deadline", None)
        now = time.monotonic()
        if limit is not None:
            if now >= limit:
                raise DeadlineExceeded()
            timeout = min(timeout, limit - now) if timeout is not None else limit - now
        evt = threading.Event()
        if evq is not None:
            evq.append(evt)
        wake_at = timeout + now
        _session.ioqueue.append((wake_at, evt, myaddr))
        if not (fix_wakeups and _replies_waiting(myaddr)):
            if wake_at < _session.selectdeadline:
                sock = _session.iosockets[0]
                sock.sendto(b"\x01", (_session.myself, sock.getsockname()[1]))
            # The IO thread sets evt by wake_at; the extra bound only guards
            # against that thread being gone.
            evt.wait(max(timeout, 0) + 1.0)
        if limit is not None and time.monotonic() >= limit:
            raise DeadlineExceeded()
    return _io_wait


ALL_FIXES = ("locks", "wakeups", "sendto")


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
            _session.WAITING_SESSIONS = _session.KEEPALIVE_SESSIONS
        if "sendto" in fixes:
            _session._io_sendto = io_sendto
        _session._io_wait = _make_io_wait(fix_wakeups="wakeups" in fixes)
        _applied = True
