"""Reads every watched node's state from Redis on a period, in a thread, and
keeps what the scenarios report: staleness over time and each node's
successful polls (time, worker)."""

import threading
import time

from bench.common import percentile


class Sampler:
    """`started` is the epoch time the farm started: a node never polled yet
    counts as stale since then."""

    def __init__(self, store, names, started, period, window=(0.0, float("inf"))):
        self.store, self.names, self.started, self.period = store, list(names), started, period
        self.window = window  # seconds after start whose staleness values are pooled
        self.pooled = []
        self.series = []  # (t since start, p50, p99, max, never polled)
        self.polls = {n: [] for n in self.names}  # name -> [(last_ok_at, worker)]
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def sample(self):
        now = time.time()
        try:
            states = self.store.node_states(self.names)
        except Exception:
            self.errors += 1
            return
        stale, never = [], 0
        for name in self.names:
            s = states.get(name) or {}
            ok_at = float(s.get("last_ok_at") or 0)
            if ok_at:
                history = self.polls[name]
                if not history or history[-1][0] != ok_at:
                    history.append((ok_at, s.get("worker")))
                stale.append(now - ok_at)
            else:
                never += 1
                stale.append(now - self.started)
        stale.sort()
        if self.window[0] <= now - self.started <= self.window[1]:
            self.pooled += stale
        self.series.append((now - self.started, percentile(stale, 0.5), percentile(stale, 0.99),
                            stale[-1] if stale else None, never))

    def gaps(self, since, until):
        """Each node's longest time between two successful polls whose later
        poll fell in [since, until] (epoch)."""
        worst = {}
        for name, history in self.polls.items():
            for (a, _), (b, _) in zip(history, history[1:], strict=False):
                if since <= b <= until:
                    worst[name] = max(worst.get(name, 0.0), b - a)
        return worst
