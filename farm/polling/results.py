"""Batches poll results into pipelined Redis writes, and survives Redis outages.

Results wait at most `flush_interval` and go out in one round trip per batch
and task. While Redis is away only the newest result per node and task is
kept (memory stays bounded by the node count; SEL results merge their
entries, up to a cap) and writes are retried with backoff. Other writes a
worker must not lose (action outcomes, maintenance) queue here too (`defer`),
in order, none dropped.
"""

import collections
import logging
import threading
import time

from farm.errors import BackendRefused, BackendUnavailable

LOG = logging.getLogger(__name__)

# Results written in one script call. A Redis script runs alone: 2,000 took
# about 33 ms on a 2-core host (SLOWLOG, bench bulk-off), holding every other
# client, and 500 up to 14.5 ms on a busy one; 250 keep a call under 10 ms,
# and 100,000 nodes a minute are still only 7 calls a second.
MAX_BATCH = 250
DEFERRED_WARN = 20_000  # deferred writes waiting before the log says so


class _Batched:
    """A deferred write that batches: equal when the batch function is."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __eq__(self, other):
        return isinstance(other, _Batched) and other.fn is self.fn

    __hash__ = None


class ResultWriter:
    def __init__(self, store, flush_interval=0.2, max_backoff=5.0, worker=""):
        self._store = store
        self._worker = worker
        self._flush_interval = flush_interval
        self._max_backoff = max_backoff
        self._pending = {}   # (kind, node) -> result
        self._calls = collections.deque()  # deferred store calls, in order
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = None
        self.written = 0
        self.failed_writes = 0
        self.backend_ok = True
        self.refused = None  # the BackendRefused that retrying cannot fix, if any

    def add_many(self, results):
        with self._cond:
            for result in results:
                key = (result.kind, result.node)
                older = self._pending.get(key)
                self._pending[key] = (result.after(older) if older is not None
                                      and hasattr(result, "after") else result)
            if len(self._pending) >= MAX_BATCH:
                self._cond.notify()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="farm-results", daemon=True)
        self._thread.start()

    def defer(self, fn, *args):
        """Run fn(store, *args) in the writer's thread, in order, retried
        while Redis is away. Never dropped: these are step outcomes, replies
        and maintenance marks, which nothing else would write again. Their
        number is bounded by the power actions under way when Redis went
        away (a worker that cannot renew its acting lease starts none), a few
        per node; the log says when the queue grows past DEFERRED_WARN."""
        with self._cond:
            self._calls.append((fn, args))
            if len(self._calls) == DEFERRED_WARN:
                LOG.warning("%d writes wait for Redis (step outcomes, replies, maintenance); "
                            "none is dropped", len(self._calls))
            self._cond.notify()

    def defer_many(self, fn_many, item):
        """As defer, for writes that batch: consecutive `item`s deferred with
        the same `fn_many` go out as one fn_many(store, [item, ...]) call
        (step outcomes: one pipelined round trip, not one per step)."""
        self.defer(_Batched(fn_many), item)

    def _run_calls(self):
        while True:
            with self._cond:
                if not self._calls:
                    return
                fn, args = self._calls[0]
                count = 1
                if isinstance(fn, _Batched):  # its run of consecutive items, at most MAX_BATCH
                    while (count < len(self._calls) and count < MAX_BATCH
                           and self._calls[count][0] == fn):
                        count += 1
                    fn, args = fn.fn, ([self._calls[i][1][0] for i in range(count)],)
            try:
                fn(self._store, *args)
            except (BackendUnavailable, BackendRefused):
                raise  # kept, retried with the results
            except Exception:  # a bug costs these writes, not the queue
                LOG.exception("deferred write %s failed", getattr(fn, "__name__", fn))
            with self._cond:  # only this thread takes from the left
                for _ in range(count):
                    self._calls.popleft()

    def _take(self):
        with self._cond:
            keys = list(self._pending)[:MAX_BATCH]
            return [self._pending.pop(k) for k in keys]

    def _put_back(self, batch):
        with self._cond:
            for r in batch:  # a newer result that arrived meanwhile wins (SEL: merges)
                key = (r.kind, r.node)
                newer = self._pending.get(key)
                self._pending[key] = (r if newer is None else
                                      newer.after(r) if hasattr(newer, "after") else newer)

    def flush(self):
        """Write everything pending now; False if Redis refused."""
        while True:
            batch = self._take()
            try:
                if self._calls:
                    self._run_calls()
                if not batch:
                    return True
                self._store.write_any(batch, self._worker)
            except (BackendUnavailable, BackendRefused) as exc:
                if isinstance(exc, BackendRefused):
                    self.refused = exc  # the worker's loop exits on it
                self._put_back(batch)
                self.failed_writes += 1
                if self.backend_ok:
                    LOG.error("cannot write poll results, keeping the newest per node: %s", exc)
                self.backend_ok = False
                return False
            if not self.backend_ok:
                LOG.warning("Redis is back; poll results are written again")
            self.backend_ok = True
            self.written += len(batch)

    def _run(self):
        backoff = self._flush_interval
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(backoff)
                if self._stopping:
                    return
            ok = self.flush()
            backoff = self._flush_interval if ok else min(self._max_backoff, backoff * 2)

    def stop(self, timeout=5.0):
        """Stop the thread and make a last attempt to write what is left; True
        if nothing was left unwritten. A write blocked on a paused Redis can
        outlast `timeout` (by the socket timeout): callers bound the call."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread:
            self._thread.join(timeout)
        while time.monotonic() < deadline:
            if self.flush():
                return True
            time.sleep(0.2)
        return False
