"""futurist's PeriodicWorker, set up for a fleet: staggered first runs, backoff
from failing BMCs, and a pool that outlives a rebuild. The futurist adapter.

PeriodicWorker cannot drop a callable, so a changed node set means a new
PeriodicWorker on the same executor (see Scheduler.replace).
"""

import logging
import threading
import time

from futurist import periodics

LOG = logging.getLogger(__name__)

BACKOFF_CAP = 4  # a dead BMC is still polled at least every 4 intervals


def first_run(now, spacing, phase):
    """The next time at or after `now` that falls on the node's phase (pure)."""
    return now + ((phase - now) % spacing)


def next_run(started_at, spacing, consecutive_failures):
    """When to poll again: each interval, or less often while the BMC keeps
    failing (2x after 2 failures in a row, 4x after 3 or more) (pure)."""
    factor = min(2 ** max(0, consecutive_failures - 1), BACKOFF_CAP)
    return started_at + spacing * factor


def _staggered_first(cb, now):
    return first_run(now, cb._periodic_spacing, getattr(cb, "phase", 0.0))


def _backoff_next(cb, started_at, finished_at, metrics):
    return next_run(started_at, cb._periodic_spacing, getattr(cb, "consecutive_failures", 0))


class _FleetPeriodicWorker(periodics.PeriodicWorker):
    BUILT_IN_STRATEGIES = dict(periodics.PeriodicWorker.BUILT_IN_STRATEGIES,
                               fleet=(_backoff_next, _staggered_first))


def _log_failure(cb, kind, spacing, exc_info, traceback=None):
    # ResultExecutor already logged the failure with its node; futurist's
    # default would add a full traceback per failed poll.
    LOG.debug("periodic %s failed: %s", getattr(cb, "__name__", cb), exc_info[1])


class Scheduler:
    """Runs a set of periodic calls on a shared executor, in a thread."""

    def __init__(self, executor):
        self._executor = executor
        self._worker = None
        self._thread = None

    def replace(self, calls, stop_timeout):
        """Stop the current PeriodicWorker (in-flight calls finish) and run `calls`."""
        self.stop(stop_timeout)
        if not calls:
            return
        factory = periodics.ExistingExecutor(self._executor, shutdown=False)
        worker = _FleetPeriodicWorker([(c, (), {}) for c in calls],
                                      executor_factory=factory,
                                      schedule_strategy="fleet", on_failure=_log_failure,
                                      now_func=time.monotonic)
        thread = threading.Thread(target=worker.start, name="farm-periodics", daemon=True)
        self._worker, self._thread = worker, thread
        thread.start()

    def stop(self, timeout):
        """Take no new calls; wait up to `timeout` for those in flight. True if all done."""
        worker, thread = self._worker, self._thread
        self._worker = self._thread = None
        if worker is None:
            return True
        worker.stop()
        done = worker.wait(timeout)
        thread.join(max(0.0, timeout))
        return done and not thread.is_alive()
