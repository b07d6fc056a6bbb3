"""Many simulated BMCs in one process sharing pyghmi's one event loop."""

import heapq
import itertools
import logging
import time

from pyghmi.ipmi.private import session as ipmisession

from farm.model import Node
from farm.sim.bmc import HungBmc, SimBmc, patch_server, server_sessions
from farm.sim.hardware import Hardware
from farm.sim.hardware import stats as hw_stats

LOG = logging.getLogger(__name__)


def sweep_sessions(fleet, next_sweep):
    """Drop every session if SIGUSR1 asked, and idle ones once a second (both
    engines' loops); returns when to sweep next."""
    if fleet.drop_requested:
        fleet.drop_requested = False
        fleet.drop_sessions(0)
    if time.monotonic() >= next_sweep:
        fleet.drop_sessions(fleet.session_timeout)
        return time.monotonic() + 1.0
    return next_sweep


def pick(count, fraction, salt):
    """Indices chosen for a fraction of the fleet, spread evenly (pure)."""
    chosen = round(count * fraction)
    if chosen <= 0:
        return set()
    step = count / chosen
    return {int(i * step + salt) % count for i in range(chosen)}


class Fleet:
    def __init__(self, count, address, base_port, username, password,
                 delay=0.0, hung_fraction=0.0, off_fraction=0.0, session_timeout=60.0,
                 name_prefix="bmc-", hardware=None):
        patch_server()
        self.delay = delay
        self.session_timeout = session_timeout
        self.drop_requested = False
        self.sessions_expired = 0
        self.max_in_flight = 0  # most commands one BMC held unanswered at once
        self._timers = []
        self._seq = itertools.count()
        hung = pick(count, hung_fraction, 0)
        off = pick(count, off_fraction, 1)
        options = dict(hardware or {})
        hot = pick(count, options.pop("hot_fraction", 0.0), 2)
        self.bmcs, self.hung, self.nodes = {}, {}, []
        for i in range(count):
            name = f"{name_prefix}{base_port + i}"
            port = base_port + i
            if i in hung:
                self.hung[name] = HungBmc(name, address, port)
            else:
                self.bmcs[name] = SimBmc(self, name, username, password, address, port,
                                         Hardware(name, powered=i not in off, hot=i in hot,
                                                  **options))
            self.nodes.append(Node(name=name, address=address, port=port,
                                   username=username, password=password))

    def later(self, delay, fn, *args):
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn, args))

    def _run_due(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self._timers)
            fn(*args)

    def drop_sessions(self, older_than):
        """Forget sessions idle for `older_than` seconds (0: all), as a BMC
        does after its inactivity timeout or a restart."""
        now = time.monotonic()
        for session in server_sessions():
            if now - getattr(session, "last_seen", now) >= older_than:
                session.close_server_session()
                self.sessions_expired += 1

    def serve(self, stop):
        """Answer requests until `stop` (a threading.Event) is set."""
        next_sweep = time.monotonic() + 1.0
        while not stop.is_set():
            next_sweep = sweep_sessions(self, next_sweep)
            timeout = 0.5
            if self._timers:
                timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
            try:
                ipmisession.Session.wait_for_rsp(timeout)
                self._run_due()
            except Exception:
                # Stock listen() dies on the first bad packet, with every BMC.
                LOG.warning("simulator: a packet could not be handled", exc_info=True)

    def stats(self):
        return hw_stats([b.hw for b in self.bmcs.values()], self.max_in_flight)

    def close(self):
        for h in self.hung.values():
            h.close()
